"""The notebooks' parameters: what each notebook declares in its `parameters` cell, and the checks
every value passes before work starts, by the runner for a whole preset and by each notebook's
set-up cell for values set another way (papermill's -p, an edited cell).

Every name is checked against the notebooks' `parameters` cells: a name no notebook declares (or
that the named notebook does not declare) is refused with the notebook and the name, so a typo
never silently runs the defaults.
"""

from __future__ import annotations

import ast
import hashlib
import json
import math
import os
from pathlib import Path

import nbformat
import papermill as pm

from ..efficiency import check_fractions
from ..paths import list_notebooks, notebooks_dir, results_dir, runs_dir
from ..precision import check_precision
from ..presets import PresetError, load_preset
from .lock import check_not_in_use

PRESET_PARAMETER = "PRESET"  # every notebook declares it; the runner always sets it


def notebook_parameters(notebook: Path) -> dict[str, dict]:
    """The names declared in the notebook's `parameters` cell (papermill's own parser).

    Papermill skips lines it cannot parse (a second "=" in a comment, say) with only a log line;
    here such a line is an error, so that a preset can never silently miss a parameter.
    """
    params = pm.inspect_notebook(str(notebook))
    if not params:
        raise PresetError(f"{notebook.name} has no cell tagged 'parameters'")
    cells = [c for c in nbformat.read(notebook, as_version=4).cells
             if "parameters" in c.get("metadata", {}).get("tags", [])]
    assigned = {t.id for node in ast.parse(cells[0].source).body
                if isinstance(node, (ast.Assign, ast.AnnAssign))
                for t in (node.targets if isinstance(node, ast.Assign) else [node.target])
                if isinstance(t, ast.Name)}
    unparsed = assigned - set(params)
    if unparsed:
        raise PresetError(f"{notebook.name}: papermill cannot parse the parameter line(s) of "
                          f"{sorted(unparsed)}; keep one assignment per line and no '=' in "
                          f"its comment")
    return params


# Integer parameters whose default is positive must stay >= 1, except these, where 0 means
# something (no demonstrations; no trained layer; no minimum number of steps; no context).
ZERO_ALLOWED = {"N_SHOTS", "TOP_LAYERS", "BASELINE_MIN_STEPS", "LM_MIN_STEPS", "MIN_CONTEXT"}
_TYPE_NAMES = {bool: "a bool (True/False)", int: "an int", float: "a float (or an int)",
               str: "a str", list: "a list", dict: "a dict"}


def _type_ok(value, kind: type) -> bool:
    """`value` fits a parameter whose default is of type `kind` (an int where a float is
    expected; never a bool for a number, or a number for a bool)."""
    if isinstance(value, bool) or kind is bool:
        return isinstance(value, bool) and kind is bool
    return isinstance(value, (int, float) if kind is float else kind)


SEED_RANGE = (0, 2**32 - 1000)  # numpy's seeds are below 2**32; notebooks add the seed's index


def _numbers(value) -> list[tuple]:
    """(key, number) for every number in a value: itself (key None), a list's items (their
    index), a dict's values (their key)."""
    pairs = (value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list)
             else [(None, value)])
    return [(k, v) for k, v in pairs if isinstance(v, (int, float)) and not isinstance(v, bool)]


def value_errors(stem: str, name: str, value) -> list[str]:
    """What a value of the right type still cannot be, by what its parameter means: a learning
    rate (a name with the word LR) is a number > 0 wherever it sits; a seed lies in numpy's range;
    MAX_USERS is a positive whole number or None; PRECISION one of llmrec.precision's; FRACTIONS lie in (0, 1] and hold 1.0 (the
    full-data point every curve is read against)."""
    where = f"{stem}.{name}"
    if name == "MAX_USERS" and value is not None and (
            isinstance(value, bool) or not isinstance(value, int) or value < 1):
        return [(f"{where}: {value!r} must be a positive int (a number of users) or None (every "
                 f"user); on papermill's command line: -p MAX_USERS 40")]
    if "LR" in name.split("_"):
        bad = [(k, v) for k, v in _numbers(value) if not (v > 0 and math.isfinite(v))]
        return [f"{where}: {v!r}" + (f" (for {k!r})" if isinstance(k, str) else "")
                + " must be greater than 0 (a learning rate)" for k, v in bad]
    if name == "PRECISION":
        try:
            check_precision(value)  # llmrec.precision's own rule and message
        except ValueError as e:
            return [f"{stem}.{e}"]  # "<notebook>.PRECISION: …"
    if name == "SEED" and isinstance(value, int) and not SEED_RANGE[0] <= value <= SEED_RANGE[1]:
        return [f"{where}: {value!r} must lie between 0 and {SEED_RANGE[1]} (numpy's seeds)"]
    if name in ("FRACTIONS", "LM_FRACTIONS") and isinstance(value, list):
        try:
            numbers = check_fractions(value)  # 05's own rule: numbers in (0, 1]
        except ValueError as e:
            return [f"{where}: {e}"]
        if name == "FRACTIONS" and 1.0 not in numbers:
            return [(f"{where}: {value!r} must hold 1.0: the full-data point every curve is read "
                     f"against; add it, e.g. {sorted({*numbers, 1.0})}")]
    return []


def model_names(values: dict) -> list[tuple[str, str]]:
    """(parameter, model name) for each model that `values` name: every *MODEL or *MODELS
    parameter, as a name, a list of names or a dict keyed by name."""
    out = []
    for key, value in values.items():
        if not key.endswith(("MODEL", "MODELS")) or value is None:
            continue
        for name in value if isinstance(value, (list, dict)) else [value]:
            out.append((key, str(name)))
    return out


def with_defaults(declared: dict[str, dict], values: dict) -> dict:
    """Every declared parameter as a run gets it: its default, unless `values` sets it."""
    return {**{k: ast.literal_eval(v["default"]) for k, v in declared.items()}, **values}


def preset_values(preset: dict, stem: str, declared: dict[str, dict]) -> dict:
    """What `preset` sets in the notebook `stem`: its `common` values the notebook declares, then
    the notebook's own."""
    return {**{k: v for k, v in preset["common"].items() if k in declared},
            **(preset["notebooks"].get(stem) or {})}


def notebook_values(notebook: Path, values: dict) -> dict:
    """Every parameter of `notebook` as a run of it gets them: its defaults, then `values`."""
    return with_defaults(notebook_parameters(notebook), values)


def parameter_errors(stem: str, declared: dict[str, dict], values: dict) -> list[str]:
    """What is wrong with `values` for the notebook `stem`, judged by the type of each
    parameter's default in its parameters cell (and None where the default or its comment
    allows it), then by what it means (`value_errors`); counts that default to a positive number
    must stay positive."""
    errors = []
    for name, value in values.items():
        if name not in declared:
            continue
        meaning = value_errors(stem, name, value)
        if meaning:
            errors += meaning
            continue
        default = ast.literal_eval(declared[name]["default"])
        if default is None:
            continue  # the cell does not say what else it takes
        kind = type(default)
        allow_none = "None" in (declared[name].get("help") or "")
        if not ((value is None and allow_none) or _type_ok(value, kind)):
            expected = _TYPE_NAMES.get(kind, kind.__name__) + (" or None" if allow_none else "")
            hint = (f"; on papermill's command line write it as JSON: -p {name} "
                    + ("'{\"key\": \"value\"}'" if kind is dict else "'[1, 2]'")
                    if kind in (dict, list) and isinstance(value, str) else "")
            errors.append(f"{stem}.{name}: {value!r} is a {type(value).__name__}; expected "
                          f"{expected} (its default is {default!r}){hint}")
            continue
        if value is None or kind is bool or not isinstance(default, (int, float)) or default <= 0:
            continue
        if kind is int and name not in ZERO_ALLOWED and value < 1:
            errors.append(f"{stem}.{name}: {value!r} must be at least 1")
        elif kind is float and value <= 0:
            errors.append(f"{stem}.{name}: {value!r} must be greater than 0")
        elif name in ZERO_ALLOWED and value < 0:
            errors.append(f"{stem}.{name}: {value!r} must be 0 or more")
    return errors


def parse_text_parameters(declared: dict[str, dict], namespace: dict) -> None:
    """papermill's `-p NAME VALUE` passes a dict or a list as the text of one (`-p DATA_PATHS
    '{"ratings_path": "r.csv"}'`): where the parameter's default is a dict or a list and its value
    is a str, read the str as JSON (or a Python literal) in place. A str that does not read as
    one is left for parameter_errors to name."""
    for name, spec in declared.items():
        value = namespace.get(name)
        if not isinstance(value, str):
            continue
        try:
            kind = type(ast.literal_eval(spec["default"]))
        except (ValueError, SyntaxError):
            continue
        if kind not in (dict, list):
            continue
        for parse in (json.loads, ast.literal_eval):
            try:
                parsed = parse(value)
            except (ValueError, SyntaxError):
                continue
            if isinstance(parsed, kind):
                namespace[name] = parsed
                break


def own_folder(notebook: str, declared: dict[str, dict], namespace: dict) -> None:
    """A run whose values differ from its preset's (papermill's `-p DATASET custom`, an edited
    parameters cell) never writes into that preset's records: its PRESET becomes
    `<preset>-own-<digest>`, named for what differs, so its results, figures and stored points go
    to results/ and runs/ folders of their own (the same for every notebook run with the same
    differences, so that 04 still finds 03's records), and the course's own are left as they
    were. A PRESET that names no preset is the user's own folder already."""
    name = str(namespace.get(PRESET_PARAMETER, "laptop"))
    try:
        preset = load_preset(name)
    except PresetError:
        return
    expected = with_defaults(declared, preset_values(preset, notebook, declared))
    differs = {k: namespace[k] for k in sorted(expected)
               if k != PRESET_PARAMETER and k in namespace and namespace[k] != expected[k]}
    if not differs:
        return
    digest = hashlib.sha256(json.dumps(differs, sort_keys=True, default=str).encode()).hexdigest()[:8]
    namespace[PRESET_PARAMETER] = own = f"{name}-own-{digest}"
    print(f"These values differ from the {name} preset's ({', '.join(differs)}): this run records "
          f"under results/{own}/ and runs/{own}/, leaving the {name} preset's records as they are. "
          f"Notebooks run with the same values share that folder (07: -p PRESET {own}).")


def check_parameters(notebook: str, namespace: dict) -> None:
    """Called by each notebook's set-up cell: the same checks as the runner's, for values set
    another way (`papermill -p EPOCHS abc`, or an edited parameters cell). A dict or list given as
    its text (papermill's `-p`) is read first (`parse_text_parameters`). Raises PresetError."""
    declared = notebook_parameters(notebooks_dir() / f"{notebook}.ipynb")
    parse_text_parameters(declared, namespace)
    errors = parameter_errors(notebook, declared,
                              {k: namespace[k] for k in declared if k in namespace})
    if errors:
        raise PresetError("bad parameter value(s):\n  - " + "\n  - ".join(errors))
    own_folder(notebook, declared, namespace)
    preset = str(namespace.get(PRESET_PARAMETER, "laptop"))
    check_not_in_use(runs_dir(preset))
    blocked = unwritable_folders(preset)
    if blocked:
        raise PresetError("\n  - ".join(blocked))


def unwritable_folders(preset: str) -> list[str]:
    """What a run of `preset` writes to (runs/<preset>/ and its figures/, results/<preset>/) and
    cannot: checked before the work, by the runner and by each notebook's set-up cell (a notebook
    run directly with papermill failed only in its last cell, after all the work)."""
    errors = []
    for folder in (runs_dir(preset), runs_dir(preset) / "figures", results_dir(preset)):
        try:
            folder.mkdir(parents=True, exist_ok=True)
            writable = os.access(folder, os.W_OK)
        except OSError:
            writable = False
        if not writable:
            errors.append(f"{folder} cannot be written: the run records its notebooks and "
                          f"results there. Make it writable, or run from a writable copy of "
                          f"the kit")
    return errors


def resolve_parameters(preset: dict, notebooks: list[Path]) -> dict[str, dict]:
    """The parameters each notebook gets from `preset`; refuses unknown names before any run."""
    declared = {nb.stem: notebook_parameters(nb) for nb in list_notebooks()}
    errors = []
    for key in preset["notebooks"]:
        if key not in declared:
            errors.append(f"notebooks.{key}: no notebook notebooks/{key}.ipynb "
                          f"(notebooks: {', '.join(declared)})")
    for key, values in preset["notebooks"].items():
        for name in (values or {}) if key in declared else ():
            if name not in declared[key]:
                errors.append(f"notebooks.{key}.{name}: {key}.ipynb has no parameter {name} "
                              f"(it has: {', '.join(declared[key])})")
    for name in preset["common"]:
        if not any(name in params for params in declared.values()):
            errors.append(f"common.{name}: no notebook declares the parameter {name}")
    for stem, params in declared.items():
        if PRESET_PARAMETER not in params:
            errors.append(f"{stem}.ipynb: its parameters cell must declare {PRESET_PARAMETER}")
    if errors:
        raise PresetError(f"preset {preset['name']!r} ({preset['path']}) is refused:\n  - "
                          + "\n  - ".join(errors))
    plan = {}
    for stem, names in declared.items():
        params = {**preset_values(preset, stem, names), PRESET_PARAMETER: preset["name"]}
        errors += parameter_errors(stem, names, params)
        plan[stem] = params
    if errors:
        raise PresetError(f"preset {preset['name']!r} ({preset['path']}) is refused:\n  - "
                          + "\n  - ".join(errors))
    return {nb.stem: plan[nb.stem] for nb in notebooks}
