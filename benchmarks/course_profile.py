"""Where a course run spends its time: every notebook's wall time, and its slowest stages.

    python benchmarks/course_profile.py [--preset laptop] [--top 6]

Reads what a run left behind, so it costs nothing: the runner's `wall_s` in
results/<preset>/<notebook>.json and papermill's per-cell durations in the executed notebooks
runs/<preset>/<notebook>.ipynb. A stage is a code cell, named by its first line. Writes
benchmarks/out/course_profile_<preset>.csv (one row per cell) and prints the table that goes in
benchmarks/README.md. Run the course with `python -m llmrec.course --preset laptop --fresh` (and an
empty LLMREC_DATA_DIR) to profile it from empty caches.
"""

from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path

import pandas as pd

from llmrec.paths import results_dir, runs_dir

OUT = Path(__file__).resolve().parent / "out"


def cell_times(notebook: Path) -> pd.DataFrame:
    """One row per executed code cell: its index, first source line and seconds."""
    nb = json.loads(notebook.read_text())
    rows = []
    for i, cell in enumerate(nb["cells"]):
        seconds = cell.get("metadata", {}).get("papermill", {}).get("duration")
        if cell["cell_type"] != "code" or seconds is None:
            continue
        source = "".join(cell["source"]).strip().splitlines()
        tags = cell.get("metadata", {}).get("tags", [])
        first = "(parameters)" if "injected-parameters" in tags else (source[0] if source else "")
        rows.append({"notebook": notebook.stem, "cell": i, "stage": first[:60], "seconds": seconds})
    return pd.DataFrame(rows)


def profile(preset: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    notebooks = sorted(runs_dir(preset).glob("[0-9][0-9]_*.ipynb"))
    if not notebooks:
        raise SystemExit(f"no executed notebooks in {runs_dir(preset)}: run "
                         f"`python -m llmrec.course --preset {preset}` first")
    cells = pd.concat([cell_times(nb) for nb in notebooks], ignore_index=True)
    totals = []
    for nb in notebooks:
        record = results_dir(preset) / f"{nb.stem}.json"
        wall = json.loads(record.read_text()).get("wall_s") if record.is_file() else None
        totals.append({"notebook": nb.stem, "wall_s": wall,
                       "cells_s": cells.loc[cells.notebook == nb.stem, "seconds"].sum()})
    return cells, pd.DataFrame(totals)


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="laptop")
    parser.add_argument("--top", type=int, default=6, help="slowest stages listed")
    args = parser.parse_args()
    cells, totals = profile(args.preset)
    OUT.mkdir(exist_ok=True)
    cells.to_csv(OUT / f"course_profile_{args.preset}.csv", index=False)
    total = totals.wall_s.fillna(totals.cells_s).sum()
    print(f"{args.preset} course on {cpu_name()}: "
          f"{total / 60:.1f} min in all")
    print("| notebook | wall time | share |\n|---|---|---|")
    for row in totals.itertuples():
        seconds = row.wall_s if row.wall_s is not None else row.cells_s
        print(f"| {row.notebook} | {seconds:.0f} s | {seconds / total:.0%} |")
    print(f"\nslowest {args.top} stages:\n| notebook | cell | stage | seconds |\n|---|---|---|---|")
    for row in cells.nlargest(args.top, "seconds").itertuples():
        print(f"| {row.notebook} | {row.cell} | `{row.stage}` | {row.seconds:.0f} |")


if __name__ == "__main__":
    main()
