"""The reference figures in figures/: comparing a run with them, and refreshing them on purpose.

Each reference figure is <name>.png plus <name>.csv (the plotted numbers). A figure whose numbers
are checked also has <name>.tolerance.yaml beside it:

    key: [method]            # the columns that identify a row
    columns:                 # the numeric columns compared, each with its tolerance
      rmse: {abs: 0.01, abs_by: {method: {MLP: 0.05}}}  # another abs for the rows whose key
                                                        # column `method` is MLP
      auc: {abs: 0.01, rel: 0.0}
      verdict: {equal: true}  # a text column: must be the same
      of theory: {at_least: 0.5}  # a one-sided claim, whatever the reference says: for ratios
                                  # of timings, which move with the processor
    ignored:                 # every other numeric column, each with the reason it is not compared
      step_s: seconds, which depend on the processor
    rows: {differ: 1, per: [method]}  # optional: this many rows may be missing or extra (default
                             # 0), in each group of `per` (default: in all), e.g. an epoch more or
                             # less of early stopping on another CPU
    rows_not_compared:       # optional: rows not compared at all, each with its reason (what
      cache claim: a timing  # must hold for them is checked where it holds on any processor)
    checks:                  # optional: claims the run's own numbers must satisfy, whatever the
                             # reference says: orderings a model that learns must pass
      - {row: LM, column: vs_global_high, below: 0, why: beats the global average by its interval}
      - {row: LM, column: rmse, below_row: zero-shot, why: beats zero-shot}  # same column there

Every CSV in figures/ must have a tolerance file, and every figure a run makes must be in
figures/ (`compare_all`): a figure nobody checks, or one the reference lacks, fails.

Same seed and preset on the same CPU give identical numbers; the tolerances allow for other
processors and library versions, not for a different result.

    python -m llmrec.course.figures --compare [--preset laptop]   # what `make repro` checks
    python -m llmrec.course.figures --refresh                     # copy runs/laptop/figures to figures/
"""

from __future__ import annotations

import argparse
import difflib
import shutil
import sys

import numpy as np
import pandas as pd
import yaml

from ..paths import reference_figures_dir, run_figures_dir

REFERENCE_PRESET = "laptop"


# What a tolerance file may say; anything else is a misspelling, named before any run.
SPEC_KEYS = {"key", "columns", "rows", "checks", "rows_not_compared", "ignored"}
COLUMN_KEYS = {"abs", "rel", "equal", "at_least", "abs_by"}
ROWS_KEYS = {"differ", "per"}
CHECK_KEYS = {"row", "column", "below", "below_row", "below_column", "why"}


def _unknown(where: str, found, allowed: set[str]) -> list[str]:
    out = []
    for k in sorted(set(found) - allowed, key=str):
        close = difflib.get_close_matches(str(k), sorted(allowed), n=1)
        out.append(f"{where}unknown key {k!r}" + (f" (did you mean {close[0]!r}?)" if close else "")
                   + f"; allowed: {', '.join(sorted(allowed))}")
    return out


def load_spec(name: str) -> tuple[dict | None, list[str]]:
    """figures/<name>.tolerance.yaml and what is wrong with its form: unreadable YAML, a
    misspelt or missing key, a malformed check (each named with the file and where in it)."""
    file = f"{name}.tolerance.yaml"
    try:
        spec = yaml.safe_load((reference_figures_dir() / file).read_text())
    except yaml.YAMLError as e:
        return None, [(f"{file} is not valid YAML ({getattr(e, 'problem', None) or e}): fix it, or take "
                       "it back from git (git checkout figures/)")]
    if not isinstance(spec, dict):
        return None, [f"{file}: a tolerance file is a mapping (key, columns, …), not {type(spec).__name__}"]
    out = [f"{file}: {p}" for p in _unknown("", spec, SPEC_KEYS)]
    if "key" not in spec:
        out.append(f"{file}: no `key` (the column(s) that name a row, e.g. key: [method])")
    if not isinstance(spec.get("columns"), dict):
        out.append(f"{file}: no `columns` mapping (each compared column and its tolerance)")
    for col, tol in (spec.get("columns") or {}).items() if isinstance(spec.get("columns"), dict) else ():
        out += ([f"{file}: {p}" for p in _unknown(f"columns.{col}: ", tol, COLUMN_KEYS)]
                if isinstance(tol, dict) else [f"{file}: columns.{col} must be a mapping, e.g. {{abs: 0.01}}"])
    if isinstance(spec.get("rows"), dict):
        out += [f"{file}: {p}" for p in _unknown("rows: ", spec["rows"], ROWS_KEYS)]
    for i, check in enumerate(spec.get("checks") or []):
        if not isinstance(check, dict):
            out.append(f"{file}: checks[{i}] must be a mapping (row, column, below or below_row, why)")
            continue
        out += [f"{file}: {p}" for p in _unknown(f"checks[{i}]: ", check, CHECK_KEYS)]
        if not {"row", "column"} <= set(check) or not {"below", "below_row"} & set(check):
            out.append(f"{file}: checks[{i}] needs row, column, and below or below_row")
    if out:
        return None, out
    return spec, _spec_problems(name, spec)


def tolerance_file_problems() -> list[str]:
    """Every tolerance file's problems of form: checked before the course runs (`make repro`)."""
    return [p for name in checked_figures() for p in load_spec(name)[1]]


def compare_figure(name: str, preset: str = REFERENCE_PRESET) -> list[str]:
    """Differences between the run's <name>.csv and the reference, beyond the tolerances."""
    ref_dir, run_dir = reference_figures_dir(), run_figures_dir(preset)
    spec, problems = load_spec(name)
    if problems:  # the file itself is wrong: say so before using it
        return problems
    run_csv = run_dir / f"{name}.csv"
    if not run_csv.is_file():
        return [f"{name}: {run_csv} is missing; run the {preset} preset first"]
    if not (ref_dir / f"{name}.csv").is_file():
        return [(f"{name}: figures/{name}.tolerance.yaml has no reference {name}.csv beside it: refresh "
                 "figures/ from a run (python -m llmrec.course.figures --refresh)")]
    ref = pd.read_csv(ref_dir / f"{name}.csv").set_index(spec["key"])
    run = pd.read_csv(run_csv).set_index(spec["key"])
    problems = [f"{name}: the {which} {name}.csv has the key {spec['key']} twice or more for "
                f"{sorted(set(frame.index[frame.index.duplicated()]))}: each row must have its own key"
                for which, frame in (("reference's", ref), ("run's", run)) if frame.index.has_duplicates]
    if problems:  # rows cannot be paired: say which key, instead of failing in the comparison
        return problems
    problems += _row_differences(name, ref, run, spec)
    problems += _unlisted_columns(name, ref, spec)
    problems += _checks(name, run, spec)
    both = ref.index.intersection(run.index)
    both = both[~both.isin(list(spec.get("rows_not_compared") or {}))]  # e.g. a timing's row
    for col, tol in spec["columns"].items():
        if col not in run.columns:
            problems.append(f"{name}: column {col} is missing from {run_csv}")
            continue
        if col not in ref.columns:
            problems.append(f"{name}: column {col} is missing from the reference {name}.csv (refresh "
                            "figures/ on purpose, or drop it from the tolerance file)")
            continue
        if tol.get("equal"):
            a, b = ref.loc[both, col].astype(str), run.loc[both, col].astype(str)
            for idx in np.flatnonzero((a != b).to_numpy()):
                problems.append(f"{name}: {both[idx]} {col}: run {b.iloc[idx]!r} vs reference {a.iloc[idx]!r}")
            continue
        a, b, rows_ = ref.loc[both, col].to_numpy(float), run.loc[both, col].to_numpy(float), both
        if "at_least" in tol:
            floor = float(tol["at_least"])
            for idx in np.flatnonzero(~(b >= floor)):  # NaN is below every floor
                problems.append(f"{name}: {rows_[idx]} {col}: run {b[idx]:.4f}, below its floor {floor:.4f}")
            continue
        allowed = tol.get("abs", 0.0) + tol.get("rel", 0.0) * np.abs(a)
        for key_col, by_value in (tol.get("abs_by") or {}).items():  # another abs for some rows
            values = rows_.get_level_values(key_col)
            allowed = np.where(values.isin(list(by_value)), values.map(lambda v: by_value.get(v, 0.0)), allowed)
        allowed = np.asarray(allowed, dtype=float)
        bad = ~((np.abs(a - b) <= allowed) | (np.isnan(a) & np.isnan(b)))  # both empty: same
        for idx in np.flatnonzero(bad):
            problems.append(f"{name}: {rows_[idx]} {col}: run {b[idx]:.4f} vs reference "
                            f"{a[idx]:.4f} (allowed ±{allowed[idx]:.4f})")
    return problems


def _spec_problems(name: str, spec: dict) -> list[str]:
    """A tolerance file that names what its key cannot address: said, not a KeyError later."""
    key, out = spec["key"], []
    for col, tol in spec["columns"].items():
        out += [f"{name}.tolerance.yaml: {col}'s abs_by names {k!r}, which is not a key column {key}"
                for k in (tol.get("abs_by") or {}) if k not in key]
    out += [f"{name}.tolerance.yaml: rows.per names {c!r}, which is not a key column {key}"
            for c in (spec.get("rows") or {}).get("per", []) if c not in key]
    for check in spec.get("checks") or []:
        for field in ("row", "below_row"):
            row = check.get(field)
            if row is not None and len(row if isinstance(row, list) else [row]) != len(key):
                out.append(f"{name}.tolerance.yaml: a check's {field} {row!r} must give one value per key "
                           f"column {key}")
    for row in spec.get("rows_not_compared") or {}:
        if len(key) != 1:
            out.append(f"{name}.tolerance.yaml: rows_not_compared needs a one-column key, not {key}")
    return out


def _row_differences(name: str, ref: pd.DataFrame, run: pd.DataFrame, spec: dict) -> list[str]:
    """Missing and extra rows, beyond `rows: {differ: n}` — counted per group of `per` when given
    (an epoch more or less per method, never three epochs of one method)."""
    rows = spec.get("rows") or {}
    allowed, per = int(rows.get("differ", 0)), list(rows.get("per", []))
    missing, extra = sorted(set(ref.index) - set(run.index)), sorted(set(run.index) - set(ref.index))
    if not per:
        groups = {(): missing + extra} if missing or extra else {}
    else:
        levels = [spec["key"].index(c) for c in per]
        groups = {}
        for key in missing + extra:
            key = key if isinstance(key, tuple) else (key,)
            groups.setdefault(tuple(key[i] for i in levels), []).append(key)
    over = {g: keys for g, keys in groups.items() if len(keys) > allowed}
    if not over:
        return []
    where = "" if not per else f" in {', '.join(f'{per}={list(g)}' for g in over)}"
    return [f"{name}: rows differ{where}: missing {missing}, extra {extra}"
            + (f" (at most {allowed} may{' per ' + str(per) if per else ''})" if allowed else "")]


def _unlisted_columns(name: str, ref: pd.DataFrame, spec: dict) -> list[str]:
    """A numeric column of the reference that is neither compared nor listed under `ignored`
    with its reason: README may print it, so it must not drift unchecked."""
    listed = set(spec["columns"]) | set(spec.get("ignored") or {})
    numeric = [c for c in ref.columns if pd.api.types.is_numeric_dtype(ref[c]) and c not in listed]
    return [f"{name}: column {c} is neither compared nor listed under `ignored` (with the reason) in "
            f"{name}.tolerance.yaml" for c in numeric]


def _checks(name: str, run: pd.DataFrame, spec: dict) -> list[str]:
    """The run's own orderings (`checks`): a row's value below a number or below another row's."""
    problems = []
    for check in spec.get("checks") or []:
        row, col = check["row"], check["column"]
        single = run.index.nlevels == 1  # a one-column key: the row is its value, not a 1-tuple
        row = row[0] if single and isinstance(row, list) else tuple(row) if isinstance(row, list) else row
        other = check.get("below_row")
        other = other[0] if single and isinstance(other, list) else tuple(other) if isinstance(other, list) else other
        missing = [r for r in (row, other) if r is not None and r not in run.index]
        if missing or col not in run.columns:
            problems.append(f"{name}: check '{check.get('why', '')}' needs row(s) {missing} and column {col}, "
                            "which the run lacks")
            continue
        value = float(run.loc[row, col])
        if other is None:
            limit, what = float(check["below"]), f"{check['below']}"
        else:
            other_col = check.get("below_column", col)
            limit, what = float(run.loc[other, other_col]), f"{other} {other_col} ({float(run.loc[other, other_col]):.4f})"
        if not value < limit:  # NaN fails
            problems.append(f"{name}: {row} {col} is {value:.4f}, not below {what}: {check.get('why', 'ordering')}")
    return problems


def compare_all(preset: str = REFERENCE_PRESET) -> list[str]:
    """compare_figure for every checked figure, plus: a reference CSV without a tolerance file
    (nothing would check it) and a run figure that figures/ does not have (nothing to compare
    with: refresh figures/ on purpose)."""
    ref_dir, run_dir = reference_figures_dir(), run_figures_dir(preset)
    names = checked_figures()
    problems = [f"figures/{p.name} has no {p.stem}.tolerance.yaml: nothing checks it"
                for p in sorted(ref_dir.glob("*.csv")) if p.stem not in names]
    problems += [f"{p.stem}: the run made {p} but it is not in the reference figures/ "
                 "(`make figures` adds it, on purpose)"
                 for p in sorted(run_dir.glob("*.csv")) if not (ref_dir / p.name).is_file()]
    return problems + [p for name in names for p in compare_figure(name, preset)]


def checked_figures() -> list[str]:
    return sorted(p.name.removesuffix(".tolerance.yaml")
                  for p in reference_figures_dir().glob("*.tolerance.yaml"))


def changes(name: str, preset: str = REFERENCE_PRESET) -> list[str]:
    """Every checked number (the columns of its tolerance file) that a refresh would change:
    `name: row column old -> new (difference)`, plus rows that appear or disappear."""
    ref_dir, run_dir = reference_figures_dir(), run_figures_dir(preset)
    spec, problems = load_spec(name)
    if problems:
        return problems
    if not (run_dir / f"{name}.csv").is_file() or not (ref_dir / f"{name}.csv").is_file():
        return []
    ref = pd.read_csv(ref_dir / f"{name}.csv")
    run = pd.read_csv(run_dir / f"{name}.csv").set_index(spec["key"])
    if not set(spec["key"]) <= set(ref.columns):
        return [(f"{name}: rows are now keyed by {spec['key']}, which the old reference lacks: "
                 f"every row is new ({len(run)} rows)")]
    ref = ref.set_index(spec["key"])
    out = [f"{name}: row {i} is new" for i in run.index.difference(ref.index)]
    out += [f"{name}: row {i} goes" for i in ref.index.difference(run.index)]
    both = ref.index.intersection(run.index)
    for col in [c for c in spec["columns"] if c in ref.columns and c in run.columns]:
        if spec["columns"][col].get("equal"):
            out += [f"{name}: {i} {col} {ref.loc[i, col]!r} -> {run.loc[i, col]!r}"
                    for i in both if str(ref.loc[i, col]) != str(run.loc[i, col])]
            continue
        a, b = ref.loc[both, col].astype(float), run.loc[both, col].astype(float)
        same = (np.abs(a - b) < 5e-5) | (a.isna() & b.isna())  # equal at the printed digits
        for i in both[~same.to_numpy()]:
            old, new = float(a[i]), float(b[i])
            out.append(f"{name}: {i} {col} {old:.4f} -> {new:.4f} ({new - old:+.4f})")
    return out


def refresh(preset: str = REFERENCE_PRESET) -> list[str]:
    """Copy the run's figures (PNG + CSV) into figures/; tolerance files are kept as they are.
    First it prints every checked number that moves, for the note that explains them."""
    run_dir = run_figures_dir(preset)
    damaged = tolerance_file_problems()
    if damaged:  # they would be listed as moves, and the figures copied all the same
        raise ValueError("figures/ has damaged tolerance files; mend them before a refresh:\n  - "
                         + "\n  - ".join(damaged))
    moved = [c for name in checked_figures() for c in changes(name, preset)]
    print("\n".join(["Numbers that move:", *moved]) if moved else "No checked number moves.")
    copied = []
    for path in sorted(run_dir.glob("*.png")) + sorted(run_dir.glob("*.csv")):
        shutil.copy2(path, reference_figures_dir() / path.name)
        copied.append(path.name)
    if not copied:
        raise FileNotFoundError(f"no figures in {run_dir}: run `python -m llmrec.course "
                                f"--preset {preset}` first")
    return copied


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m llmrec.course.figures", description=__doc__,
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
    problems = compare_all(args.preset)
    print("\n".join(problems) or f"{len(checked_figures())} figures match the reference")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
