"""The kit's two layers (docs/ARCHITECTURE.md): the science a learner studies is llmrec's top level;
the course's machinery is llmrec.course. Imports go one way only, from the machinery to the
science, and nowhere in a circle, counting the imports inside functions too."""

import ast
import importlib
import re
import sys
from pathlib import Path

import pytest

import llmrec

PACKAGE = Path(llmrec.__file__).parent
MACHINERY = "llmrec.course"
# `python -m llmrec <command>` needs llmrec/__main__.py: it forwards to llmrec.course.cli and is
# never imported, so it is the one file of the top level that may name the machinery.
DOOR = "llmrec.__main__"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules(root: Path = PACKAGE) -> dict[str, Path]:
    return {module_name(p): p for p in sorted(root.rglob("*.py"))}


def imports(path: Path, known: set[str]) -> list[tuple[str, int, bool, str]]:
    """(imported kit module, line, inside a function?, the import's text) for each import of
    `path`; `from .x import name` counts as an import of x.name when that is a module, else of x."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    tree = ast.parse(path.read_text())
    inside = {id(n) for f in ast.walk(tree) if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))
              for n in ast.walk(f) if isinstance(n, (ast.Import, ast.ImportFrom))}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            targets = [f"{source}.{a.name}" if f"{source}.{a.name}" in known else source
                       for a in node.names]
        else:
            continue
        for target in dict.fromkeys(targets):
            found.append((target, node.lineno, id(node) in inside, ast.unparse(node)))
    return found


def graph(mods: dict[str, Path]) -> dict[str, set[str]]:
    known = set(mods)
    return {name: {t for t, *_ in imports(path, known) if t in known and t != name}
            for name, path in mods.items()}


def circles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected groups of more than one module (Tarjan's algorithm)."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                out.append(sorted(group))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def science_into_machinery(mods: dict[str, Path]) -> list[str]:
    known = set(mods)
    return [f"{name} line {line}: {text}"
            for name, path in mods.items()
            if not name.startswith(MACHINERY) and name != DOOR
            for target, line, _, text in imports(path, known)
            if target == MACHINERY or target.startswith(MACHINERY + ".")]


def _said_lazy(lines: list[str], line: int) -> bool:
    """A `# lazy:` comment on the import's line, or above it in its run of imports and comments."""
    i = line - 1
    while i >= 0:
        text = lines[i].strip()
        if "# lazy:" in text:
            return True
        if i < line - 1 and not text.startswith(("#", "import ", "from ")):
            return False
        i -= 1
    return False


def hidden_imports(mods: dict[str, Path]) -> list[str]:
    """Imports inside functions that are not a heavy third-party package kept lazy on purpose:
    every kit and standard-library import sits at the top of its module, and a lazy one says why
    in a `# lazy:` comment on its line or above it, in its run of imports."""
    known, problems = set(mods), []
    for name, path in mods.items():
        lines = path.read_text().splitlines()
        for target, line, inside, text in imports(path, known):
            if not inside:
                continue
            top = target.split(".")[0]
            if top == "llmrec" or top in sys.stdlib_module_names:
                problems.append(f"{name} line {line}: {text} (kit or standard library: move it to the top)")
            elif not _said_lazy(lines, line):
                problems.append(f"{name} line {line}: {text} (no '# lazy:' comment saying why)")
    return problems


def test_the_science_never_imports_the_machinery():
    assert science_into_machinery(modules()) == []


def test_no_import_circle():
    assert circles(graph(modules())) == []


def test_imports_inside_functions_are_lazy_on_purpose():
    assert hidden_imports(modules()) == []


def test_the_top_level_is_the_science_and_the_machinery_is_one_subpackage():
    subpackages = {p.parent.name for p in PACKAGE.rglob("__init__.py") if p.parent != PACKAGE}
    assert subpackages == {"course"}
    for name in ("runner", "record", "figures", "report", "papers", "site", "student", "workshop",
                 "system", "cli"):
        assert (PACKAGE / "course" / f"{name}.py").is_file(), name
        assert not (PACKAGE / f"{name}.py").exists(), f"{name}.py is machinery, in llmrec/course/"


# The checks themselves must be able to fail: each is fed a small package that breaks it.

def _fake_package(tmp_path, files: dict[str, str]) -> dict[str, Path]:
    root = tmp_path / "llmrec"
    for rel, text in {"__init__.py": "", "course/__init__.py": "", **files}.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


@pytest.fixture
def fake(tmp_path, monkeypatch):
    def make(files):
        root = _fake_package(tmp_path, files)
        monkeypatch.setattr(sys.modules[__name__], "PACKAGE", root)
        return modules(root)
    return make


def test_a_science_import_of_the_machinery_is_found(fake):
    mods = fake({"lm.py": "def f():\n    from .course.record import save_figure\n",
                 "data.py": "from llmrec.course import runner\n",
                 "course/record.py": "from ..lm import f\n"})
    found = science_into_machinery(mods)
    assert [f.split()[0] for f in found] == ["llmrec.data", "llmrec.lm"]


def test_a_circle_through_a_function_level_import_is_found(fake):
    mods = fake({"lm.py": "from .system import X\n",
                 "system.py": "def f():\n    from .lm import Y\n",
                 "data.py": "from . import lm\n"})
    assert circles(graph(mods)) == [["llmrec.lm", "llmrec.system"]]


def test_unexplained_imports_inside_functions_are_found(fake):
    mods = fake({"lm.py": ("def f():\n    import json\n    from .data import g\n"
                           "    import transformers\n"
                           "    # lazy: peft takes seconds to import\n    import peft\n"),
                 "data.py": "def g():\n    pass\n"})
    found = hidden_imports(mods)
    assert len(found) == 3
    assert "import json" in found[0] and "from .data import g" in found[1]
    assert "import transformers" in found[2] and "lazy" in found[2]


def test_the_architecture_page_names_every_module_of_each_layer():
    """docs/ARCHITECTURE.md has a table row per module: one added, moved or removed is seen."""
    text = (PACKAGE.parents[1] / "docs" / "ARCHITECTURE.md").read_text()
    science, machinery = text.split("## The machinery")
    rows = lambda part: {line.split("`")[1] for line in part.splitlines() if line.startswith("| `")}
    top = {p.stem for p in PACKAGE.glob("*.py") if not p.stem.startswith("__")}
    course = {p.stem for p in (PACKAGE / "course").glob("*.py") if not p.stem.startswith("__")}
    assert rows(science) == top
    assert rows(machinery) == course


def test_every_module_the_prose_names_exists():
    """README, docs/, benchmarks/README.md and the notebooks name modules and functions
    (`llmrec.course.report.verdict`): each name must still import after a move."""
    root = PACKAGE.parents[1]
    files = [root / "README.md", root / "benchmarks" / "README.md", *sorted((root / "docs").glob("*.md")),
             *sorted((root / "notebooks").glob("*.ipynb"))]
    stale = []
    for path in files:
        for name in sorted(set(re.findall(r"\bllmrec(?:\.[A-Za-z_]+)+", path.read_text()))):
            parts = name.split(".")
            for cut in range(len(parts), 0, -1):  # the longest importable module, then attributes
                try:
                    obj = importlib.import_module(".".join(parts[:cut]))
                    break
                except ModuleNotFoundError:
                    continue
            for attr in parts[cut:]:
                obj = getattr(obj, attr, None)
            if obj is None:
                stale.append(f"{path.name}: {name}")
    assert stale == []
