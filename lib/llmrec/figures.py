"""The reference figures in figures/: comparing a run with them, and refreshing them on purpose.

Each reference figure is <name>.png plus <name>.csv (the plotted numbers). A figure whose numbers
are checked also has <name>.tolerance.yaml beside it:

    key: [method]            # the columns that identify a row
    columns:                 # the numeric columns compared, each with its tolerance
      rmse: {abs: 0.01}
      auc: {abs: 0.01, rel: 0.0}

Same seed and preset on the same CPU give identical numbers; the tolerances allow for other
processors and library versions, not for a different result.

    python -m llmrec.figures --compare [--preset laptop]   # what `make repro` checks
    python -m llmrec.figures --refresh                     # copy runs/laptop/figures to figures/
"""

from __future__ import annotations

import argparse
import shutil
import sys

import numpy as np
import pandas as pd
import yaml

from .paths import reference_figures_dir, run_figures_dir

REFERENCE_PRESET = "laptop"


def compare_figure(name: str, preset: str = REFERENCE_PRESET) -> list[str]:
    """Differences between the run's <name>.csv and the reference, beyond the tolerances."""
    ref_dir, run_dir = reference_figures_dir(), run_figures_dir(preset)
    spec = yaml.safe_load((ref_dir / f"{name}.tolerance.yaml").read_text())
    run_csv = run_dir / f"{name}.csv"
    if not run_csv.is_file():
        return [f"{name}: {run_csv} is missing; run the {preset} preset first"]
    ref = pd.read_csv(ref_dir / f"{name}.csv").set_index(spec["key"])
    run = pd.read_csv(run_csv).set_index(spec["key"])
    problems = []
    if set(ref.index) != set(run.index):
        problems.append(f"{name}: rows differ: missing {sorted(set(ref.index) - set(run.index))}, "
                        f"extra {sorted(set(run.index) - set(ref.index))}")
    for col, tol in spec["columns"].items():
        both = ref.index.intersection(run.index)
        a, b = ref.loc[both, col].to_numpy(float), run.loc[both, col].to_numpy(float)
        allowed = tol.get("abs", 0.0) + tol.get("rel", 0.0) * np.abs(a)
        bad = ~(np.abs(a - b) <= allowed)
        for idx in np.flatnonzero(bad):
            problems.append(f"{name}: {both[idx]} {col}: run {b[idx]:.4f} vs reference "
                            f"{a[idx]:.4f} (allowed ±{allowed[idx]:.4f})")
    return problems


def checked_figures() -> list[str]:
    return sorted(p.name.removesuffix(".tolerance.yaml")
                  for p in reference_figures_dir().glob("*.tolerance.yaml"))


def refresh(preset: str = REFERENCE_PRESET) -> list[str]:
    """Copy the run's figures (PNG + CSV) into figures/; tolerance files are kept as they are."""
    run_dir = run_figures_dir(preset)
    copied = []
    for path in sorted(run_dir.glob("*.png")) + sorted(run_dir.glob("*.csv")):
        shutil.copy2(path, reference_figures_dir() / path.name)
        copied.append(path.name)
    if not copied:
        raise FileNotFoundError(f"no figures in {run_dir}: run `python -m llmrec.course "
                                f"--preset {preset}` first")
    return copied


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m llmrec.figures", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default=REFERENCE_PRESET)
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--compare", action="store_true")
    group.add_argument("--refresh", action="store_true")
    args = parser.parse_args(argv)
    if args.refresh:
        for name in refresh(args.preset):
            print(f"figures/{name} <- runs/{args.preset}/figures/{name}")
        return 0
    problems = [p for name in checked_figures() for p in compare_figure(name, args.preset)]
    print("\n".join(problems) or f"{len(checked_figures())} figures match the reference")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
