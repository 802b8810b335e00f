"""What the papers report and how they trained, as data (data/papers/), and how a preset follows it.

    numbers.csv     every number the kit quotes from a paper: paper, table, dataset, row, column,
                    metric, value (as printed, in %), note
    settings.yaml   the papers' training settings, each mapped to the preset parameters that carry
                    it, and their findings as statements the kit can test

A preset that claims to follow the papers (presets/paper.yaml) sets each setting's parameters to
the paper's value, or lists the setting under `deviations:` with the reason; a setting the kit has
no parameter for is listed under `deviations:` or `follows:` (with how it is followed).
`fidelity()` checks that both ways — a listed deviation that no longer differs is stale too.
"""

from __future__ import annotations

import ast
from functools import lru_cache

import pandas as pd
import yaml

from ..paths import data_dir, list_notebooks
from ..presets import load_preset
from .parameters import notebook_parameters, resolve_parameters

_MISSING = object()


def papers_dir():
    return data_dir() / "papers"


@lru_cache(maxsize=1)
def _numbers_file() -> pd.DataFrame:
    return pd.read_csv(papers_dir() / "numbers.csv", dtype={"value": float}, keep_default_na=False,
                       na_values={"value": [""]})


def paper_numbers() -> pd.DataFrame:
    """numbers.csv: one row per reported number; `value` is empty where it could not be read.
    Read once per process (claims() looks numbers up several times); a copy each call."""
    return _numbers_file().copy()


@lru_cache(maxsize=1)
def _settings_file() -> dict:
    return yaml.safe_load((papers_dir() / "settings.yaml").read_text())


def paper_settings() -> dict[str, dict]:
    return _settings_file()["settings"]


def paper_findings() -> dict[str, dict]:
    return _settings_file()["findings"]


def once_table2(dataset: str = "MIND") -> pd.DataFrame:
    """ONCE's Table 2 for one data set, wide: one row per (row, column), metrics as fractions."""
    t = paper_numbers()
    t = t[(t.paper == "once2024") & (t.table == "Table 2") & (t.dataset == dataset)]
    wide = t.pivot_table(index=["row", "column"], columns="metric", values="value", sort=False)
    return (wide / 100).reset_index()


def parameter_value(plan: dict[str, dict], path: str):
    """The value a resolved preset plan gives "notebook.NAME" or "notebook.NAME.key"."""
    notebook, name, *key = path.split(".", 2)
    if notebook not in plan:
        raise KeyError(f"{path}: no notebook {notebook!r} in the plan")
    value = plan[notebook].get(name, _MISSING)
    if value is not _MISSING and key:
        value = value.get(key[0], _MISSING) if isinstance(value, dict) else _MISSING
    return value


def _same(a, b) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return abs(a - b) <= 1e-12 * max(abs(a), abs(b), 1)
    return a == b


def fidelity(preset: str = "paper") -> tuple[pd.DataFrame, list[str]]:
    """Every paper setting against the preset: a table (setting, paper, preset, status, why) and
    the problems — a difference nobody explains, a stale deviation, an unknown setting id."""
    cfg = load_preset(preset)
    plan = resolve_parameters(cfg, list_notebooks())
    # a parameter the preset leaves out has the notebook's default
    for nb in list_notebooks():
        for name, spec in notebook_parameters(nb).items():
            if name not in plan[nb.stem]:
                plan[nb.stem][name] = ast.literal_eval(spec["default"])
    deviations, follows = cfg.get("deviations") or {}, cfg.get("follows") or {}
    settings = paper_settings()
    rows, problems = [], []
    for sid in sorted(set(deviations) | set(follows)):
        if sid not in settings:
            problems.append(f"{cfg['path']}: {sid!r} is not a setting of data/papers/settings.yaml")
    for sid in set(deviations) & set(follows):
        problems.append(f"{cfg['path']}: {sid!r} is under both deviations and follows")
    for sid, s in settings.items():
        values = {p: parameter_value(plan, p) for p in s.get("parameters") or []}
        shown = ", ".join(f"{p[:2]}.{p.split('.', 1)[1]}={'(unset)' if v is _MISSING else v!r}"
                          for p, v in values.items()) or "(no parameter)"
        differs = [p for p, v in values.items() if v is _MISSING or not _same(v, s["kit"])]
        if not values:
            status = "deviation" if sid in deviations else "follows" if sid in follows else None
            if status is None:
                problems.append(f"{sid}: the kit has no parameter for it; list it under "
                                f"`deviations:` or `follows:` in {cfg['path']}")
        elif differs:
            status = "deviation" if sid in deviations else None
            if status is None:
                problems.append(f"{sid}: the paper has {s['kit']!r}, {cfg['path']} has "
                                + ", ".join(f"{p}={values[p]!r}" for p in differs)
                                + "; set it, or list it under `deviations:` with the reason")
        else:
            status = "as the paper"
            if sid in deviations or sid in follows:
                problems.append(f"{sid}: listed in {cfg['path']} but the preset already has the "
                                f"paper's value {s['kit']!r}: remove the stale entry")
        rows.append({"setting": sid, "paper": s["paper"], "source": s["source"], "preset": shown,
                     "status": status or "UNEXPLAINED",
                     "why": deviations.get(sid) or follows.get(sid) or ""})
    return pd.DataFrame(rows), problems
