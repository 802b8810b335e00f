"""The fine-tuning script on one process and under accelerate launch on 2 CPU processes (DDP,
DeepSpeed ZeRO-3, FSDP), as tests/test_scaleout.py runs it: test RMSE, its difference from one
process, and the wall time of the whole launch. Prints a Markdown table and writes
benchmarks/out/scaleout.md.

    .venv/bin/python benchmarks/scaleout.py      # about 2 minutes on 2 CPU cores

Each way runs on a tiny random T5 (the tests' model): this measures that the ways agree and what
they cost in start-up, not the speed of a real model.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "out"
sys.path.insert(0, str(ROOT / "tests"))
from test_scaleout import COMMON, LAUNCHERS


def run(way: str, launcher: list[str], out: Path, cache: Path, extra=()) -> dict:
    env = dict(os.environ, LLMREC_DATA_DIR=str(cache), OMP_NUM_THREADS="1",
               TOKENIZERS_PARALLELISM="false")
    head = [sys.executable, "-m", "accelerate.commands.launch", *launcher] if launcher else [sys.executable]
    start = time.perf_counter()
    proc = subprocess.run([*head, "-m", "llmrec.finetune", *COMMON, *extra, "--output-dir", str(out)],
                          env=env, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - start
    if proc.returncode:
        return {"way": way, "rmse": float("nan"), "seconds": seconds,
                "error": proc.stderr.strip().splitlines()[-1][:200]}
    metrics = json.loads((out / "metrics.json").read_text())
    return {"way": way, "rmse": metrics["metrics"]["rmse"], "seconds": seconds,
            "processes": metrics["processes"]}


def main() -> None:
    tmp = Path(tempfile.mkdtemp(prefix="llmrec-scaleout-"))
    cache = tmp / "cache"
    rows = [run("one process", [], tmp / "one", cache)]
    for way, (launcher, extra, _) in LAUNCHERS.items():
        rows.append(run(way, launcher, tmp / way, cache, extra))
        print(rows[-1], flush=True)
    base = rows[0]["rmse"]
    lines = ["| way | processes | test RMSE | minus one process | wall s |", "|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['way']} | {r.get('processes', '?')} | {r['rmse']:.5f} | "
                     f"{r['rmse'] - base:+.5f} | {r['seconds']:.0f} |"
                     + (f" {r['error']}" if "error" in r else ""))
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "scaleout.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
