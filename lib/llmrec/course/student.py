"""The student edition of the course: the notebooks without their solutions, and the solutions
collected per notebook for the instructor to hand out after class.

    python -m llmrec.course.student [--out student]      # or: make student

writes <out>/notebooks/NN_name.ipynb (every cell tagged `solution` removed, by nbconvert's
TagRemovePreprocessor; outputs cleared; no SOLUTIONS parameter), <out>/solutions/NN_name_solutions.ipynb
(the whole notebook, its solutions unfolded: it runs on its own) and <out>/docs/diagrams/ (the images the notebooks show). The
folder is rebuilt from scratch each time; notebooks/ is never changed.
"""

from __future__ import annotations

import argparse
import copy
import shutil
import sys
from pathlib import Path

import nbformat
from nbconvert.preprocessors import ClearOutputPreprocessor, TagRemovePreprocessor

from ..io import OutputFolderError, atomic_path, output_folder
from ..paths import list_notebooks, notebooks_dir, repo_root

SOLUTION_TAG = "solution"


def is_solution(cell) -> bool:
    return SOLUTION_TAG in cell.get("metadata", {}).get("tags", [])


SOLUTIONS_PARAMETER = "SOLUTIONS"  # runs the longer solutions: meaningless once they are removed


def strip_solutions(nb):
    """The notebook without its solution cells, outputs cleared (nbconvert's preprocessors), and
    without the `SOLUTIONS` line of its parameters cell (the solutions notebook sets it)."""
    nb = copy.deepcopy(nb)
    nb, _ = TagRemovePreprocessor(remove_cell_tags={SOLUTION_TAG}, enabled=True).preprocess(nb, {})
    nb, _ = ClearOutputPreprocessor().preprocess(nb, {})
    for cell in nb.cells:
        if "parameters" in cell.get("metadata", {}).get("tags", []):
            cell.source = "\n".join(line for line in cell.source.split("\n")
                                    if not line.startswith(f"{SOLUTIONS_PARAMETER} ="))
    return nb


def solutions_notebook(nb, name: str):
    """The whole notebook with its solutions unfolded, outputs cleared: it runs on its own (*Run
    all*, or papermill with the notebook's own parameters cell), because the solutions need the
    variables the notebook computes. The instructor hands it out after class."""
    out = copy.deepcopy(nb)
    for cell in out.cells:
        cell.metadata.pop("jupyter", None)  # unfolded: this notebook is the answers
        if is_solution(cell):
            cell.metadata["tags"] = [t for t in cell.metadata.get("tags", []) if t != SOLUTION_TAG]
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    out.cells.insert(0, nbformat.v4.new_markdown_cell(
        f"# Solutions to {name}\n\n"
        f"`{name}.ipynb` with the solutions of its exercises unfolded at its end. They use the "
        "variables the notebook computes, so *Run all* runs the whole notebook first: as long as "
        "running it (see the course map in README). `SOLUTIONS = True` in the parameters cell also "
        "runs the solutions that train something."))
    for k, cell in enumerate(out.cells):
        cell["id"] = f"solution-{k:02d}"
    return out


def _write(nb, path: Path) -> None:
    nbformat.validate(nb)
    with atomic_path(path) as tmp:
        nbformat.write(nb, str(tmp))


def build(out: str | Path = "student") -> dict[str, list[Path]]:
    """Write the student edition under `out` (relative to the kit's root); returns the files."""
    out = Path(out)
    out = out if out.is_absolute() else repo_root() / out
    if out.resolve() in (repo_root().resolve(), notebooks_dir().resolve()):
        raise ValueError(f"--out {out} would overwrite the course itself; choose an empty folder")
    written = {"notebooks": [], "solutions": []}
    with output_folder(out, "the student edition") as tmp:  # never deletes what it did not write
        for path in list_notebooks():
            nb = nbformat.read(path, as_version=4)
            target = tmp / "notebooks" / path.name
            target.parent.mkdir(parents=True, exist_ok=True)
            _write(strip_solutions(nb), target)
            written["notebooks"].append(out / target.relative_to(tmp))
            if any(is_solution(c) for c in nb.cells):
                target = tmp / "solutions" / f"{path.stem}_solutions.ipynb"
                target.parent.mkdir(parents=True, exist_ok=True)
                _write(solutions_notebook(nb, path.stem), target)
                written["solutions"].append(out / target.relative_to(tmp))
        diagrams = repo_root() / "docs" / "diagrams"
        if diagrams.is_dir():
            shutil.copytree(diagrams, tmp / "docs" / "diagrams")
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m llmrec.course.student", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="student",
                        help="folder to (re)build: new, empty, or one it wrote (default: student/)")
    args = parser.parse_args(argv)
    try:
        written = build(args.out)
    except OutputFolderError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"{len(written['notebooks'])} student notebooks and {len(written['solutions'])} solution "
          f"notebooks written under {Path(written['notebooks'][0]).parent.parent}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
