"""Recording what a notebook produced: metrics to results/<preset>/<notebook>.json and figures to
runs/<preset>/figures/ (PNG + the CSV of the plotted numbers). Tests, the reproduction check and
later notebooks read these files back (notebook 02's baselines in 03 and 04: `baseline_table`,
`recorded_predictions`); nothing else is needed (no scrapbook)."""

from __future__ import annotations

import json
import math
import platform
import subprocess
import time
from importlib import metadata

import numpy as np
import pandas as pd

from ..baselines import run_baselines
from ..io import atomic_path, write_json
from ..paths import repo_root, results_dir, run_figures_dir
from ..splits import Processed

PACKAGES = ("llmrec", "torch", "transformers", "peft", "accelerate", "numpy", "pandas",
            "scikit-learn", "matplotlib", "seaborn", "papermill")


def package_versions(names=PACKAGES) -> dict[str, str | None]:
    out = {"python": platform.python_version()}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def versions_line(names) -> str:
    """"python 3.11.7, torch 2.13.0, …": the line each notebook prints in its set-up."""
    return ", ".join(f"{k} {v}" for k, v in package_versions(names).items())


def git_commit() -> str | None:
    """The checkout's commit, with "-dirty" when tracked files have uncommitted changes."""
    try:
        root = repo_root()
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True,
                             text=True, timeout=10, check=False).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=10, check=False).stdout.strip()
    except (OSError, subprocess.SubprocessError, RuntimeError):
        return None
    return (sha + ("-dirty" if dirty else "")) if sha else None


def _clean(value):
    """JSON-safe numbers: NaN/inf become None, numpy scalars become Python ones."""
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def record_metrics(notebook: str, preset: str, metrics: dict, parameters: dict | None = None,
                   seed: int | None = None) -> None:
    """Write results/<preset>/<notebook>.json (atomically) and say where, in one line relative to
    the kit (a notebook's last cell would otherwise show a PosixPath)."""
    path = results_dir(preset) / f"{notebook}.json"
    write_json(path, {
        "notebook": notebook,
        "preset": preset,
        "seed": seed,
        "parameters": _clean(parameters or {}),
        "metrics": _clean(metrics),
        "git_commit": git_commit(),
        "versions": package_versions(),
        "recorded": time.strftime("%Y-%m-%dT%H:%M:%S"),
    })
    try:
        shown = path.relative_to(repo_root())
    except ValueError:
        shown = path
    print(f"results recorded in {shown}")


class RecordError(ValueError):
    """A results file that exists but cannot be used: names the file and the command that
    writes it again."""


def load_metrics(notebook: str, preset: str) -> dict:
    """results/<preset>/<notebook>.json, read and checked: a record with its metrics. A missing
    file is FileNotFoundError, a damaged one RecordError, each naming the run that writes it."""
    path = results_dir(preset) / f"{notebook}.json"
    rerun = f"`python -m llmrec.course --preset {preset} --only {notebook[:2]}`"
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: run the notebook first, e.g. {rerun}")
    try:
        record = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise RecordError(f"{path} is not valid JSON ({type(e).__name__}: {e}); a run stopped "
                          f"while writing it, or it was edited. Write it again: {rerun}") from None
    why = ("not a record (it holds " + type(record).__name__ + ")" if not isinstance(record, dict)
           else "no metrics" if not isinstance(record.get("metrics"), dict)
           else "no parameters" if not isinstance(record.get("parameters", {}), dict) else None)
    if why:
        raise RecordError(f"{path} is damaged: {why}. Write it again: {rerun}")
    return record


def load_matching(notebook: str, preset: str, parameters: dict) -> dict | None:
    """The notebook's record if it ran with these parameter values (SEED is compared with the
    record's seed), else None: lets a notebook reuse another's results only when they apply. A
    damaged record is said in one line and not reused."""
    try:
        record = load_metrics(notebook, preset)
    except FileNotFoundError:
        return None
    except RecordError as e:
        print(f"not reused: {e}")
        return None
    recorded = dict(record.get("parameters") or {}, SEED=record.get("seed"))
    return record if all(recorded.get(k) == v for k, v in parameters.items()) else None


def same_test_rows(record: dict | None, examples: pd.DataFrame) -> bool:
    """Whether a record's stored test predictions are for exactly these examples (same rows, same
    order): what pairing another notebook's predictions with this one's needs."""
    return bool(record) and record["metrics"].get("test_index") == examples.index.tolist()


def save_figure(fig, name: str, data: pd.DataFrame, preset: str, dpi: int = 150) -> None:
    """Save `fig` as runs/<preset>/figures/<name>.png and the plotted numbers as <name>.csv.
    Returns nothing, so that a notebook cell ending with it shows the figure, not a path."""
    folder = run_figures_dir(preset)
    png = folder / f"{name}.png"
    with atomic_path(png) as tmp:
        fig.savefig(tmp, dpi=dpi, bbox_inches="tight", format="png")
    with atomic_path(folder / f"{name}.csv") as tmp:
        data.to_csv(tmp, index=False, float_format="%.6g")


# Another notebook's results, reused where they apply: notebook 02's baselines in 03 and 04.

def baseline_table(processed: Processed, preset: str, parameters: dict, **run_kwargs):
    """The baseline rows for the results table: read from notebook 02's record when it was run
    with the same data parameters, else computed now (about 2 minutes on the embedded data)."""
    record = load_matching("02_baselines", preset, parameters)
    if record and "table" in record["metrics"]:
        print("Baselines: read from notebook 02's results")
        return pd.DataFrame(record["metrics"]["table"])
    print("Baselines: notebook 02 has not been run with these parameters; training them now")
    rows, _, _ = run_baselines(processed, processed.split("test"), **run_kwargs)
    return rows


def recorded_predictions(preset: str, parameters: dict, examples: pd.DataFrame) -> dict[str, np.ndarray]:
    """The trained baselines' test predictions that notebook 02 recorded, when it ran with the same
    data parameters on exactly these test examples (same rows, same order); else {}."""
    record = load_matching("02_baselines", preset, parameters)
    if not same_test_rows(record, examples):
        return {}
    return {name: np.asarray(p, dtype=float) for name, p in record["metrics"].get("test_predictions", {}).items()}
