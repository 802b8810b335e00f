"""The course runner: every notebook in order, through papermill, with one preset.

    python -m llmrec.course --preset laptop            # the whole course
    python -m llmrec.course --preset smoke --only 02   # one notebook (by number or name)
    python -m llmrec.course --list                     # notebooks, presets, parameters

Executed copies go to runs/<preset>/, figures to runs/<preset>/figures/, metrics to
results/<preset>/<notebook>.json (with the notebook's wall time, `wall_s`, as the runner saw it). A preset (presets/<name>.yaml) looks like this:

    description: one line
    requires_models: [smollm2-135m]      # packaged offline models the notebooks load
    common:                              # set in every notebook that declares the name
      SEED: 0
    notebooks:
      02_baselines:                      # set in this notebook, which must declare the name
        MF_EPOCHS: 30

Before anything runs, every name is checked against the notebooks' `parameters` cells: a name no
notebook declares (or that the named notebook does not declare) is refused with the notebook and
the name, so a typo never silently runs the defaults.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import yaml

from .io import atomic_path
from .paths import notebooks_dir, presets_dir, results_dir, runs_dir, scratch_dir

PRESET_PARAMETER = "PRESET"  # every notebook declares it; the runner always sets it


class PresetError(ValueError):
    """A preset that names a notebook or a parameter that does not exist."""


class NotebookFailed(RuntimeError):
    """A notebook raised: names the notebook, the cell and where the executed copy is."""


def list_notebooks() -> list[Path]:
    """The course's notebooks, in order: notebooks/NN_name.ipynb."""
    return sorted(notebooks_dir().glob("[0-9][0-9]_*.ipynb"))


def list_presets() -> list[str]:
    return sorted(p.stem for p in presets_dir().glob("*.yaml"))


def load_preset(name_or_path: str) -> dict:
    """A shipped preset by name, or a preset file by path. A file preset run by the course runner
    is found again by its name (as notebooks receive it) through the copy the runner keeps in
    runs/<name>/preset.yaml."""
    path = Path(name_or_path)
    name = path.stem
    if path.suffix not in (".yaml", ".yml"):
        name, path = name_or_path, presets_dir() / f"{name_or_path}.yaml"
        if not path.is_file() and (runs_dir(name_or_path) / "preset.yaml").is_file():
            path = runs_dir(name_or_path) / "preset.yaml"
    if not path.is_file():
        raise PresetError(f"unknown preset {name_or_path!r}: {path} does not exist. "
                          f"Presets: {', '.join(list_presets())}")
    try:
        preset = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise PresetError(f"{path} is not valid YAML{where}: "
                          f"{getattr(e, 'problem', None) or e}") from None
    if not isinstance(preset, dict):
        raise PresetError(f"{path}: a preset must be a mapping (description, requires_models, "
                          f"common, notebooks), found a {type(preset).__name__}")
    allowed = ("description", "requires_models", "common", "notebooks", "deviations", "follows")
    unknown = set(preset) - set(allowed)
    if unknown:
        raise PresetError(f"{path}: unknown top-level key(s) {sorted(unknown)}; allowed: "
                          + ", ".join(allowed))
    for key, kind in (("common", dict), ("notebooks", dict), ("requires_models", list),
                      ("deviations", dict), ("follows", dict)):
        value = preset.get(key)
        if value is not None and not isinstance(value, kind):
            shape = ("a list of model names" if kind is list else "a mapping of setting: reason"
                     if key in ("deviations", "follows") else "a mapping of NAME: value")
            raise PresetError(f"{path}: {key} must be {shape}, found {value!r}")
    preset["common"] = preset.get("common") or {}
    preset["notebooks"] = preset.get("notebooks") or {}
    preset["requires_models"] = preset.get("requires_models") or []
    preset["name"] = name
    preset["path"] = str(path)
    return preset


def notebook_parameters(notebook: Path) -> dict[str, dict]:
    """The names declared in the notebook's `parameters` cell (papermill's own parser).

    Papermill skips lines it cannot parse (a second "=" in a comment, say) with only a log line;
    here such a line is an error, so that a preset can never silently miss a parameter.
    """
    import ast

    import nbformat
    import papermill as pm

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


def parameter_errors(stem: str, declared: dict[str, dict], values: dict) -> list[str]:
    """What is wrong with `values` for the notebook `stem`, judged by the type of each
    parameter's default in its parameters cell (and None where the default or its comment
    allows it); counts that default to a positive number must stay positive."""
    import ast

    errors = []
    for name, value in values.items():
        if name not in declared:
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
    import ast
    import json

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
    blocked = unwritable_folders(str(namespace.get(PRESET_PARAMETER, "laptop")))
    if blocked:
        raise PresetError("\n  - ".join(blocked))


def unwritable_folders(preset: str) -> list[str]:
    """What a run of `preset` writes to (runs/<preset>/, results/<preset>/) and cannot: checked
    before the work, by the runner and by each notebook's set-up cell (a notebook run directly
    with papermill failed only in its last cell, after all the work)."""
    errors = []
    for folder in (runs_dir(preset), results_dir(preset)):
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
        params = {k: v for k, v in preset["common"].items() if k in names}
        params.update(preset["notebooks"].get(stem) or {})
        params[PRESET_PARAMETER] = preset["name"]
        errors += parameter_errors(stem, names, params)
        plan[stem] = params
    if errors:
        raise PresetError(f"preset {preset['name']!r} ({preset['path']}) is refused:\n  - "
                          + "\n  - ".join(errors))
    return {nb.stem: plan[nb.stem] for nb in notebooks}


def select_notebooks(only: list[str] | None) -> list[Path]:
    notebooks = list_notebooks()
    if not only:
        return notebooks
    chosen = []
    for key in only:
        match = [nb for nb in notebooks if nb.stem == key or nb.stem.split("_")[0] == key]
        if not match:
            raise PresetError(f"--only {key}: no such notebook; notebooks: "
                              + ", ".join(nb.stem for nb in notebooks))
        chosen.extend(m for m in match if m not in chosen)
    return sorted(chosen)


def preflight(cfg: dict) -> None:
    """Before any notebook runs: the preset's packaged models are installed, and the folders
    the run writes to (runs/, results/) can be written. Raises PresetError saying what to do."""
    from . import system

    errors = []
    for alias in cfg["requires_models"]:
        try:
            system.locate_packaged_model(alias)
        except (FileNotFoundError, ValueError) as e:
            errors.append(str(e))
    errors += unwritable_folders(cfg["name"])
    if errors:
        raise PresetError(f"preset {cfg['name']!r} cannot run yet:\n  - " + "\n  - ".join(errors))


def _record_wall_time(stem: str, preset: str, seconds: float) -> None:
    """Add the notebook's wall time, as the runner measured it (kernel start included), to the
    results file it wrote: results/<preset>/<notebook>.json gets `wall_s`."""
    import json

    from .io import write_json

    path = results_dir(preset) / f"{stem}.json"
    if path.is_file():
        record = json.loads(path.read_text())
        record["wall_s"] = round(seconds, 1)
        write_json(path, record)


def kernels_dir() -> Path:
    return scratch_dir() / "kernels"


def kernel_manager_class():
    """nbclient's kernel manager, writing the kernel's connection file in kernels_dir() under a
    name that carries this process's id (jupyter_client puts it in /tmp as tmp*.json, where a
    killed run leaves it), so that the next run can tell a dead run's file and remove it."""
    import uuid

    from jupyter_client.manager import AsyncKernelManager

    class KitKernelManager(AsyncKernelManager):
        def __init__(self, **kwargs):
            folder = kernels_dir()
            folder.mkdir(parents=True, exist_ok=True)
            kwargs.setdefault("connection_file",
                              str(folder / f"kernel-{os.getpid()}-{uuid.uuid4().hex[:8]}.json"))
            super().__init__(**kwargs)

        async def start_kernel(self, **kw):
            # The kernel's own stderr (its start-up warning; after a Ctrl-C, which reaches it
            # too, a 20-line ZMQError traceback) goes to a log beside the connection file; the
            # notebook's errors still come back through papermill.
            log_path = Path(self.connection_file).with_suffix(".log")
            with open(log_path, "ab") as log:  # noqa: ASYNC230 - once per kernel start, local
                kw.setdefault("stderr", log)
                return await super().start_kernel(**kw)

    return KitKernelManager


def _kernel_log_tail(lines: int = 12) -> str:
    """The end of this run's latest kernel log (the kernel's own stderr), for an error message."""
    logs = sorted(kernels_dir().glob(f"kernel-{os.getpid()}-*.log"), key=lambda p: p.stat().st_mtime)
    if not logs:
        return ""
    tail = logs[-1].read_text(errors="replace").strip().splitlines()[-lines:]
    return (f" The kernel's own output ({logs[-1]}) ends with:\n    " + "\n    ".join(tail)
            if tail else f" Its own output ({logs[-1]}) is empty.")


def remove_stale_kernel_files() -> None:
    """Connection files and kernel logs of runs that ended or were killed (their process is gone)."""
    import psutil

    for path in [*kernels_dir().glob("kernel-*-*.json"), *kernels_dir().glob("kernel-*-*.log")]:
        try:
            pid = int(path.name.split("-")[1])
        except ValueError:
            continue
        if not psutil.pid_exists(pid):  # (os.kill(pid, 0) is no liveness test on Windows)
            try:
                path.unlink()
            except OSError:
                pass  # gone already, or not ours to remove


def _execute(notebook: Path, out: Path, parameters: dict, log_output: bool) -> None:
    import papermill as pm

    pm.execute_notebook(str(notebook), str(out), parameters=parameters,
                        cwd=str(notebooks_dir()), progress_bar=False, log_output=log_output,
                        kernel_name="python3", kernel_manager_class=kernel_manager_class())


def run_course(preset: str = "laptop", only: list[str] | None = None,
               log_output: bool = False, fresh: bool = False) -> list[Path]:
    """Run the selected notebooks in order; stop at the first failure with a clear error.
    `fresh` first removes the preset's executed notebooks, figures, stored points and results,
    so that nothing of an earlier run can stand in for this one (the reproduction check)."""
    import shutil

    import papermill as pm
    from nbclient.exceptions import DeadKernelError
    from tqdm.auto import tqdm

    cfg = load_preset(preset)
    shipped = presets_dir() / f"{cfg['name']}.yaml"
    if shipped.is_file() and Path(cfg["path"]).resolve() != shipped.resolve():
        raise PresetError(f"{cfg['path']} is named like the shipped preset {cfg['name']!r}: its runs and results "
                          f"would mix with that preset's (runs/{cfg['name']}/). Rename the file.")
    notebooks = select_notebooks(only)
    plan = resolve_parameters(cfg, notebooks)
    preset_text = Path(cfg["path"]).read_text()  # before --fresh: it may be runs/<name>/preset.yaml
    if fresh:
        for folder in (runs_dir(cfg["name"]), results_dir(cfg["name"])):
            if folder.exists():
                print(f"fresh run: removing {folder}")
                shutil.rmtree(folder)
    preflight(cfg)
    remove_stale_kernel_files()
    out_dir = runs_dir(cfg["name"])
    kept = out_dir / "preset.yaml"
    if not shipped.is_file() and not (kept.is_file() and kept.read_text() == preset_text):
        # the notebooks get the preset by its name: keep the file where load_preset finds it again
        out_dir.mkdir(parents=True, exist_ok=True)
        with atomic_path(kept) as tmp:
            tmp.write_text(preset_text)
    executed = []
    bar = tqdm(notebooks, desc=f"course [{cfg['name']}]", unit="notebook")
    for nb in bar:
        bar.set_postfix_str(nb.stem)
        out = out_dir / nb.name
        start = time.perf_counter()
        try:
            _execute(nb, out, plan[nb.stem], log_output)
        except pm.PapermillExecutionError as e:
            first_line = (e.source or "").strip().splitlines()[:1]
            raise NotebookFailed(
                f"{nb.name} failed in cell [{e.exec_count}] with {e.ename}: {e.evalue}\n"
                f"The cell begins: {first_line[0] if first_line else '(empty)'}\n"
                f"The executed copy, with the traceback, is {out}") from None
        except DeadKernelError as e:  # killed (out of memory?) or crashed: its log says why
            raise NotebookFailed(f"{nb.name}: the kernel died ({e}).{_kernel_log_tail()}\n"
                                 f"The executed copy, as far as it got, is {out}") from None
        seconds = time.perf_counter() - start
        _record_wall_time(nb.stem, cfg["name"], seconds)
        bar.write(f"{nb.stem}: done in {seconds:.0f} s -> {out}")
        executed.append(out)
    return executed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m llmrec.course", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="laptop",
                        help="smoke | laptop (default) | paper, or a path to a preset .yaml")
    parser.add_argument("--only", action="append", metavar="NN",
                        help="run only this notebook (number or name); repeatable")
    parser.add_argument("--list", action="store_true", help="list notebooks and presets, then exit")
    parser.add_argument("--log-output", action="store_true", help="stream the notebooks' output")
    parser.add_argument("--fresh", action="store_true",
                        help="first remove runs/<preset> and results/<preset> (stored points too)")
    args = parser.parse_args(argv)
    try:
        if args.list:
            for nb in list_notebooks():
                print(f"{nb.stem}: {', '.join(notebook_parameters(nb))}")
            print("presets:", ", ".join(list_presets()))
            return 0
        run_course(args.preset, args.only, args.log_output, fresh=args.fresh)
    except (PresetError, NotebookFailed) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted: notebooks that finished are kept in runs/; rerun the same command to "
              "go on", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
