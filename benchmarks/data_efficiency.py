"""Wall time of notebook 05 (data efficiency) with the laptop preset, and its time per point.

    python benchmarks/data_efficiency.py [--keep-caches]

Runs the notebook from scratch: no stored points, and (unless --keep-caches) an empty data cache,
so the layer cache of SmolLM2's test prompts is built too — a course run that went through 03 and
04 first reuses it. Target (issue: data efficiency): at most 40 minutes on 2 CPU cores.
Writes benchmarks/out/data_efficiency.json and prints the table of the README.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import tempfile
import time
from pathlib import Path

import pandas as pd
import yaml

from llmrec.course.record import load_metrics
from llmrec.course.runner import run_course
from llmrec.paths import presets_dir, runs_dir

OUT = Path(__file__).resolve().parent / "out"
NAME = "bench-05"  # its own preset name, so runs/laptop is left as it is


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--keep-caches", action="store_true",
                        help="reuse data/processed (e.g. the layer caches of notebooks 03-04)")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        preset = yaml.safe_load((presets_dir() / "laptop.yaml").read_text())
        path = Path(tmp) / f"{NAME}.yaml"
        path.write_text(yaml.safe_dump(preset))
        if not args.keep_caches:
            os.environ["LLMREC_DATA_DIR"] = str(Path(tmp) / "cache")
        shutil.rmtree(runs_dir(NAME) / "05_points", ignore_errors=True)
        start = time.perf_counter()
        run_course(str(path), only=["05"])
        wall = time.perf_counter() - start
    metrics = load_metrics("05_data_efficiency", NAME)["metrics"]
    peak_gb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20
    per_point = pd.DataFrame(metrics["seconds_per_point"]).rename_axis("fraction")
    result = {"wall_s": wall, "target_s": 40 * 60, "keep_caches": args.keep_caches,
              "points": metrics["points_computed"], "peak_rss_gb_kernel": peak_gb,
              "seconds_per_point": metrics["seconds_per_point"],
              "machine": {"processor": platform.processor() or platform.machine(),
                          "cores": os.cpu_count()}}
    OUT.mkdir(exist_ok=True)
    (OUT / "data_efficiency.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"notebook 05, laptop preset, {'warm' if args.keep_caches else 'empty'} caches: "
          f"{wall / 60:.1f} min for {metrics['points_computed']} points (target 40 min); "
          f"peak memory of the kernel {peak_gb:.1f} GB")
    print("seconds per point (mean over seeds):")
    print(per_point.round(1).to_string())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
