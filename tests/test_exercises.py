"""Every exercise has a worked solution that says what it costs on the laptop preset."""

import json
import re

from llmrec.paths import notebooks_dir


def _exercises_and_solutions(path):
    cells = json.loads(path.read_text())["cells"]
    exercises, solutions = set(), {}
    for cell in cells:
        source = "".join(cell["source"])
        if cell["cell_type"] == "markdown" and "## Exercises" in source:
            section = source.split("## Exercises", 1)[1].split("\n#", 1)[0]
            exercises |= {int(n) for n in re.findall(r"^(\d+)\. ", section, flags=re.MULTILINE)}
        for n in re.findall(r"^#{1,3} Solution (\d+)", source, flags=re.MULTILINE):
            solutions[int(n)] = (cell, source)
    return exercises, solutions


def test_every_exercise_has_a_solution_that_states_its_cost():
    checked = 0
    for path in sorted(notebooks_dir().glob("[0-9][0-9]_*.ipynb")):
        exercises, solutions = _exercises_and_solutions(path)
        assert exercises <= set(solutions), f"{path.name}: exercises {sorted(exercises - set(solutions))} have no solution"
        for n, (cell, source) in solutions.items():
            if cell["cell_type"] == "code":
                assert "solution" in cell["metadata"].get("tags", []), f"{path.name} solution {n}: tag it 'solution'"
                first = source.split("\n", 3)[:3]
                assert any(w in " ".join(first) for w in ("seconds", "laptop preset", "minute")), \
                    f"{path.name} solution {n}: say in its first lines what it costs on the laptop preset"
        checked += len(exercises)
    assert checked >= 19


def test_a_missing_solution_is_caught(tmp_path):
    nb = {"cells": [{"cell_type": "markdown", "metadata": {}, "source": ["## Exercises\n\n1. a\n2. b\n"]},
                    {"cell_type": "code", "metadata": {"tags": ["solution"]}, "source": ["# Solution 1 (seconds)\n"]}]}
    path = tmp_path / "99_x.ipynb"
    path.write_text(json.dumps(nb))
    exercises, solutions = _exercises_and_solutions(path)
    assert exercises == {1, 2} and set(solutions) == {1}
