"""Presets: named sets of notebook parameters (presets/<name>.yaml), read by the course runner and
by the fine-tuning script alike. A preset looks like this:

    description: one line
    requires_models: [smollm2-135m]      # packaged offline models the notebooks load
    common:                              # set in every notebook that declares the name
      SEED: 0
    notebooks:
      02_baselines:                      # set in this notebook, which must declare the name
        MF_EPOCHS: 30

Reading a file is all this module does; checking each name and value against the notebooks'
`parameters` cells is the course runner's (llmrec.course.parameters).
"""

from __future__ import annotations

from pathlib import Path

import yaml

from .paths import presets_dir, runs_dir


class PresetError(ValueError):
    """A preset that names a notebook or a parameter that does not exist."""


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
        raise PresetError(f"{path} is not valid YAML{where}: {getattr(e, 'problem', None) or e}. "
                          "Correct the file there (an unclosed bracket or quote, a tab for indenting, "
                          "a missing space after ':'), then run again") from None
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
