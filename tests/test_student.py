"""The student edition: no solution survives in the students' notebooks, every exercise's
solution is in the instructor's, and the course's notebooks are left as they are."""

import json
import re

import nbformat
import pytest

from llmrec.course import student
from llmrec.paths import notebooks_dir


@pytest.fixture(scope="module")
def edition(tmp_path_factory):
    out = tmp_path_factory.mktemp("edition") / "student"
    return out, student.build(out)


def test_no_solution_survives_and_nothing_else_is_lost(edition):
    out, written = edition
    originals = sorted(notebooks_dir().glob("[0-9][0-9]_*.ipynb"))
    assert [p.name for p in written["notebooks"]] == [p.name for p in originals]
    for original, path in zip(originals, written["notebooks"]):
        nb = nbformat.read(path, as_version=4)
        nbformat.validate(nb)
        assert not any(student.is_solution(c) for c in nb.cells), path.name
        assert not any(re.match(r"#{1,3} Solution \d", c.source) for c in nb.cells), path.name
        kept = [c.source for c in nbformat.read(original, as_version=4).cells if not student.is_solution(c)]
        without_switch = ["\n".join(line for line in source.split("\n") if not line.startswith("SOLUTIONS ="))
                          for source in kept]  # the parameters cell loses its SOLUTIONS line, nothing else
        assert [c.source for c in nb.cells] == without_switch, path.name
        assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code")
    assert (out / "docs" / "diagrams" / "frozen_cached_tuned.svg").is_file()  # the images resolve


def test_every_exercise_has_its_solution_in_the_instructors_notebook(edition):
    _, written = edition
    by_name = {p.name.removesuffix("_solutions.ipynb"): p for p in written["solutions"]}
    for original in sorted(notebooks_dir().glob("[0-9][0-9]_*.ipynb")):
        text = "".join("".join(c["source"]) for c in json.loads(original.read_text())["cells"]
                       if c["cell_type"] == "markdown" and "## Exercises" in "".join(c["source"]))
        exercises = set(re.findall(r"^(\d+)\. ", text.split("## Exercises", 1)[-1], flags=re.MULTILINE))
        if not exercises:
            continue
        solutions = nbformat.read(by_name[original.stem], as_version=4)
        numbers = {n for c in solutions.cells for n in re.findall(r"^#{1,3} Solution (\d+)", c.source, flags=re.MULTILINE)}
        assert exercises <= numbers, f"{original.stem}: {sorted(exercises - numbers)} missing"
        assert not any(c.metadata.get("jupyter", {}).get("source_hidden") for c in solutions.cells)


def test_the_course_itself_cannot_be_overwritten():
    with pytest.raises(ValueError, match="would overwrite the course"):
        student.build(notebooks_dir())


def _first_code_cell(path):
    return next(c for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code")


def test_a_notebook_on_its_own_says_how_to_install_the_kit(edition, tmp_path):
    """Downloaded alone (here: run by a Python that cannot see the kit: -S drops site-packages,
    -I the working folder), the first cell fails with the install steps, not a bare ImportError."""
    import subprocess
    import sys

    from llmrec.paths import repo_root

    _, written = edition
    firsts = {_first_code_cell(p).source for p in [*sorted(notebooks_dir().glob("[0-9][0-9]_*.ipynb")),
                                                   *written["notebooks"]]}
    assert len(firsts) == 1, "every notebook, course and student edition, starts with the same check"
    source = firsts.pop()
    script = tmp_path / "first_cell.py"
    script.write_text(source)
    done = subprocess.run([sys.executable, "-S", "-I", str(script)], cwd=tmp_path, check=False,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    err = done.stderr.splitlines()
    assert any(line.startswith("ModuleNotFoundError: This notebook is part of the llmrec course kit")
               for line in err), err
    steps = [line.strip() for line in err if line.startswith("    python -m ")]
    readme = (repo_root() / "README.md").read_text()
    assert len(steps) == 3 and all(step.split("  ")[0] in readme for step in steps), steps
    # inside the kit the same cell is silent
    done = subprocess.run([sys.executable, str(script)], cwd=tmp_path, check=False,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and not done.stdout and not done.stderr


def test_out_never_deletes_what_the_tool_did_not_write(tmp_path):
    from llmrec.io import OutputFolderError

    notes = tmp_path / "mine" / "notes.txt"  # a folder of the user's own
    notes.parent.mkdir()
    notes.write_text("my notes")
    with pytest.raises(OutputFolderError, match=r"already holds files the kit did not write \(notes.txt\)"):
        student.build(notes.parent)
    assert notes.read_text() == "my notes" and [p.name for p in notes.parent.iterdir()] == ["notes.txt"]
    # its own folder: rebuilt in place, a student's extra file kept, a student's edit refused
    out = tmp_path / "edition"
    written = student.build(out)
    (out / "my_answers.md").write_text("kept")
    again = student.build(out)
    assert again == written and (out / "my_answers.md").read_text() == "kept"
    first = written["notebooks"][0]
    edited = first.read_text().replace('"cells": [', '"cells": [\n', 1)  # a student's edit, still a notebook
    first.write_text(edited)
    with pytest.raises(OutputFolderError, match=rf"{first.name} changed since the student edition wrote"):
        student.build(out)
    assert first.read_text() == edited
    assert student.main(["--out", str(notes.parent)]) == 1


def test_the_student_notebooks_have_no_solutions_switch(edition):
    _, written = edition
    for path in written["notebooks"]:
        params = [c for c in nbformat.read(path, as_version=4).cells if "parameters" in c.metadata.get("tags", [])]
        assert params and "SOLUTIONS =" not in params[0].source, path.name
        assert "PRESET =" in params[0].source  # the rest of the cell is kept


def test_a_solutions_notebook_runs_on_its_own(edition):
    """The whole notebook with its solutions: papermill runs it with its own parameters cell (01,
    seconds; under a preset name of its own, so no run of the course is overwritten)."""
    import shutil

    import papermill as pm

    from llmrec.paths import results_dir, runs_dir

    _, written = edition
    path = next(p for p in written["solutions"] if p.name.startswith("01_"))
    out = path.with_name("executed.ipynb")
    try:
        pm.execute_notebook(str(path), str(out), parameters={"PRESET": "solutions-check"}, cwd=str(path.parent),
                            kernel_name="python3", progress_bar=False)
    finally:
        for folder in (runs_dir("solutions-check"), results_dir("solutions-check")):
            shutil.rmtree(folder, ignore_errors=True)
    text = out.read_text()
    assert "words with 10 items vs" in text and "test examples per user" in text
