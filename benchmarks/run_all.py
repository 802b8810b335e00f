"""Speed measurements of the foundation (not tests): numbers for the README and the notes.

    python benchmarks/run_all.py [--skip-ml1m] [--skip-course]

Writes benchmarks/out/foundation.json and prints a table. Targets (issue: foundation):
building ML-1M examples from 1,000,209 ratings in <= 30 s on 2 cores; the smoke course
(notebooks 00-02) in <= 3 minutes.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import psutil
import torch

from llmrec.baselines import fit_baseline, heuristic_predictions
from llmrec.data import load_ratings
from llmrec.paths import repo_root
from llmrec.splits import build_processed, ensure_processed
from llmrec.training import TrainConfig

OUT = Path(__file__).resolve().parent / "out"


def timed(fn):
    start = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - start


def bench_ml1m() -> dict:
    data, load_s = timed(lambda: load_ratings("ml-1m"))
    processed, build_s = timed(lambda: build_processed(data, history_len=10))
    return {"ml1m_ratings": len(data.ratings), "ml1m_load_s": load_s,
            "ml1m_build_examples_s": build_s, "ml1m_examples": len(processed.examples),
            "ml1m_target_s": 30}


def bench_baselines() -> dict:
    processed = ensure_processed("movielens-small", history_len=5, verbose=False)
    out = {}
    _, out["heuristics_s"] = timed(lambda: heuristic_predictions(processed, processed.split("test")))
    settings = {"MF": ({"dim": 8, "reg": 0.1}, {"lr": 3e-3}),
                "MLP": ({"dim": 32, "hidden": 64}, {"lr": 1e-3}),
                "Transformer+MLP": ({"dim": 64, "heads": 4, "layers": 2},
                                    {"lr": 1e-3, "batch_size": 512})}
    for name, (model_params, cfg) in settings.items():
        _, result = fit_baseline(name, processed, TrainConfig(**cfg), model_params)
        epochs = len(result.history)
        out[name] = {"seconds": result.seconds, "epochs": epochs,
                     "seconds_per_epoch": result.seconds / epochs}
    return out


def bench_smoke_course() -> dict:
    env = dict(os.environ, LLMREC_DATA_DIR=str(OUT / "cache"))
    cmd = [sys.executable, "-m", "llmrec.course", "--preset", "smoke", "--only", "00",
           "--only", "01", "--only", "02"]
    _, seconds = timed(lambda: subprocess.run(cmd, cwd=repo_root(), env=env, check=True,
                                              capture_output=True))
    return {"smoke_course_00_02_s": seconds, "smoke_course_target_s": 180}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--skip-ml1m", action="store_true")
    parser.add_argument("--skip-course", action="store_true")
    args = parser.parse_args()
    results = {"machine": {"cpu_cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                           "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
                           "processor": platform.processor() or platform.machine(),
                           "torch": torch.__version__}}
    if not args.skip_ml1m:
        results.update(bench_ml1m())
    results["baselines"] = bench_baselines()
    if not args.skip_course:
        results.update(bench_smoke_course())
    OUT.mkdir(exist_ok=True)
    (OUT / "foundation.json").write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
