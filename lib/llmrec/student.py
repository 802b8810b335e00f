"""The student edition of the course: the notebooks without their solutions, and the solutions
collected per notebook for the instructor to hand out after class.

    python -m llmrec.student [--out student]      # or: make student

writes <out>/notebooks/NN_name.ipynb (every cell tagged `solution` removed, by nbconvert's
TagRemovePreprocessor; outputs cleared; no SOLUTIONS parameter), <out>/solutions/NN_name_solutions.ipynb
(a cell that runs the student notebook, then the exercises and their solutions, in order: it runs
on its own) and <out>/docs/diagrams/ (the images the notebooks show). The
folder is rebuilt from scratch each time; notebooks/ is never changed.
"""

from __future__ import annotations

import argparse
import copy
import shutil
import sys
from pathlib import Path

import nbformat

from .course import list_notebooks
from .io import OutputFolderError, atomic_path, output_folder
from .paths import notebooks_dir, repo_root

SOLUTION_TAG = "solution"


def is_solution(cell) -> bool:
    return SOLUTION_TAG in cell.get("metadata", {}).get("tags", [])


SOLUTIONS_PARAMETER = "SOLUTIONS"  # runs the longer solutions: meaningless once they are removed


def strip_solutions(nb):
    """The notebook without its solution cells, outputs cleared (nbconvert's preprocessors), and
    without the `SOLUTIONS` line of its parameters cell (the solutions notebook sets it)."""
    from nbconvert.preprocessors import ClearOutputPreprocessor, TagRemovePreprocessor

    nb = copy.deepcopy(nb)
    nb, _ = TagRemovePreprocessor(remove_cell_tags={SOLUTION_TAG}, enabled=True).preprocess(nb, {})
    nb, _ = ClearOutputPreprocessor().preprocess(nb, {})
    for cell in nb.cells:
        if "parameters" in cell.get("metadata", {}).get("tags", []):
            cell.source = "\n".join(line for line in cell.source.split("\n")
                                    if not line.startswith(f"{SOLUTIONS_PARAMETER} ="))
    return nb


def solutions_notebook(nb, name: str):
    """A notebook of `name`'s exercises and their solutions (shown, not folded)."""
    exercises = [c for c in nb.cells if c.cell_type == "markdown" and "## Exercises" in c.source]
    cells = [nbformat.v4.new_markdown_cell(
        f"# Solutions to {name}\n\n"
        f"The solutions use the variables of `{name}.ipynb`, so the next cell runs that notebook first "
        "(the student edition's copy, with its own parameters: it takes as long as running it, see "
        "the course map in README). If you have just run it yourself, paste the solutions at its end "
        "instead. The solutions that train something run only with `SOLUTIONS = True`."),
        nbformat.v4.new_code_cell(
            "SOLUTIONS = False  # True: also the solutions that train something (minutes each on the laptop preset)\n"
            f"%run -i ../notebooks/{name}.ipynb")]
    for c in exercises:
        cells.append(nbformat.v4.new_markdown_cell("## Exercises" + c.source.split("## Exercises", 1)[1]))
    for c in nb.cells:
        if is_solution(c):
            new = copy.deepcopy(c)
            new.metadata.pop("jupyter", None)  # unfolded: this notebook is the answers
            new.metadata["tags"] = [t for t in new.metadata.get("tags", []) if t != SOLUTION_TAG]
            if new.cell_type == "code":
                new.outputs, new.execution_count = [], None
            cells.append(new)
    out = nbformat.v4.new_notebook(cells=cells, metadata=copy.deepcopy(nb.metadata))
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
    parser = argparse.ArgumentParser(prog="python -m llmrec.student", description=__doc__,
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
