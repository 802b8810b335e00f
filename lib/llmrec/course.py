"""The course runner: every notebook in order, through papermill, with one preset.

    python -m llmrec.course --preset laptop            # the whole course
    python -m llmrec.course --preset smoke --only 02   # one notebook (by number or name)
    python -m llmrec.course --list                     # notebooks, presets, parameters

Executed copies go to runs/<preset>/, figures to runs/<preset>/figures/, metrics to
results/<preset>/<notebook>.json. A preset (presets/<name>.yaml) looks like this:

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
import sys
import time
from pathlib import Path

import yaml

from .paths import notebooks_dir, presets_dir, runs_dir

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
    path = Path(name_or_path)
    if path.suffix not in (".yaml", ".yml"):
        path = presets_dir() / f"{name_or_path}.yaml"
    if not path.is_file():
        raise PresetError(f"unknown preset {name_or_path!r}: {path} does not exist. "
                          f"Presets: {', '.join(list_presets())}")
    preset = yaml.safe_load(path.read_text()) or {}
    unknown = set(preset) - {"description", "requires_models", "common", "notebooks"}
    if unknown:
        raise PresetError(f"{path}: unknown top-level key(s) {sorted(unknown)}; allowed: "
                          "description, requires_models, common, notebooks")
    preset.setdefault("common", {})
    preset.setdefault("notebooks", {})
    preset["name"] = path.stem
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
    for nb in notebooks:
        params = {k: v for k, v in preset["common"].items() if k in declared[nb.stem]}
        params.update(preset["notebooks"].get(nb.stem) or {})
        params[PRESET_PARAMETER] = preset["name"]
        plan[nb.stem] = params
    return plan


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


def run_course(preset: str = "laptop", only: list[str] | None = None,
               log_output: bool = False) -> list[Path]:
    """Run the selected notebooks in order; stop at the first failure with a clear error."""
    import papermill as pm
    from tqdm.auto import tqdm

    cfg = load_preset(preset)
    notebooks = select_notebooks(only)
    plan = resolve_parameters(cfg, notebooks)
    out_dir = runs_dir(cfg["name"])
    out_dir.mkdir(parents=True, exist_ok=True)
    executed = []
    bar = tqdm(notebooks, desc=f"course [{cfg['name']}]", unit="notebook")
    for nb in bar:
        bar.set_postfix_str(nb.stem)
        out = out_dir / nb.name
        start = time.perf_counter()
        try:
            pm.execute_notebook(str(nb), str(out), parameters=plan[nb.stem],
                                cwd=str(notebooks_dir()), progress_bar=False,
                                log_output=log_output, kernel_name="python3")
        except pm.PapermillExecutionError as e:
            first_line = (e.source or "").strip().splitlines()[:1]
            raise NotebookFailed(
                f"{nb.name} failed in cell [{e.exec_count}] with {e.ename}: {e.evalue}\n"
                f"The cell begins: {first_line[0] if first_line else '(empty)'}\n"
                f"The executed copy, with the traceback, is {out}") from None
        bar.write(f"{nb.stem}: done in {time.perf_counter() - start:.0f} s -> {out}")
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
    args = parser.parse_args(argv)
    try:
        if args.list:
            for nb in list_notebooks():
                print(f"{nb.stem}: {', '.join(notebook_parameters(nb))}")
            print("presets:", ", ".join(list_presets()))
            return 0
        run_course(args.preset, args.only, args.log_output)
    except (PresetError, NotebookFailed) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
