"""The models' code shown in the notebooks is the library's code: a cell that begins
"# shown from llmrec.<module>" may only define classes (and functions) whose every method shown
is identical, as syntax, to the library's (docstrings included). Nothing shown can drift."""

import ast
import importlib
import inspect
import json
import textwrap

import pytest

from llmrec.paths import notebooks_dir

# where the course shows which models; a cell removed or renamed fails here
EXPECTED = {
    "02_baselines": {"BiasedMF", "TransformerMLP"},
    "03_flan_t5_classification": {"RatingModel", "PackedRatingModel"},
    "04_flan_t5_regression": {"RatingModel"},
    "06_once_dire": {"NAMLEncoder", "NRMSEncoder", "LMEncoder", "ClickModel"},
}


def shown_cells():
    for path in sorted(notebooks_dir().glob("[0-9][0-9]_*.ipynb")):
        for cell in json.loads(path.read_text())["cells"]:
            source = "".join(cell["source"])
            if cell["cell_type"] == "code" and source.startswith("# shown from "):
                module = source.split()[3].rstrip(":")
                yield path.stem, module, source


def _same(shown_node, library_obj) -> bool:
    library = ast.parse(textwrap.dedent(inspect.getsource(library_obj))).body[0]
    return ast.dump(shown_node) == ast.dump(library)


def compare(module_name: str, source: str) -> list[str]:
    """What in `source` differs from the library module's code."""
    module = importlib.import_module(module_name)
    problems = []
    for node in ast.parse(source).body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            continue
        if isinstance(node, ast.FunctionDef):
            if not _same(node, getattr(module, node.name)):
                problems.append(f"{module_name}.{node.name} differs")
        elif isinstance(node, ast.ClassDef):
            cls = getattr(module, node.name, None)
            if cls is None:
                problems.append(f"{module_name} has no class {node.name}")
                continue
            library = ast.parse(textwrap.dedent(inspect.getsource(cls))).body[0]
            if ast.dump(ast.Module(node.bases, [])) != ast.dump(ast.Module(library.bases, [])):
                problems.append(f"{node.name}: other base classes")
            for item in node.body:
                if isinstance(item, ast.FunctionDef):
                    if not _same(item, getattr(cls, item.name)):
                        problems.append(f"{node.name}.{item.name} differs from the library's")
                elif not (isinstance(item, ast.Expr) and isinstance(item.value, ast.Constant)):
                    problems.append(f"{node.name}: only methods and the docstring may be shown")
                elif ast.get_docstring(node) != ast.get_docstring(library):
                    problems.append(f"{node.name}: its docstring differs from the library's")
        else:
            problems.append(f"line {node.lineno}: a shown-code cell may only import and define")
    return problems


@pytest.mark.parametrize("notebook, module, source", list(shown_cells()),
                         ids=lambda v: v if isinstance(v, str) and len(v) < 40 else "")
def test_shown_code_is_the_librarys(notebook, module, source):
    assert compare(module, source) == []


def test_every_model_the_course_teaches_is_shown():
    found = {}
    for notebook, _, source in shown_cells():
        found.setdefault(notebook, set()).update(
            n.name for n in ast.parse(source).body if isinstance(n, ast.ClassDef))
    assert found == EXPECTED


def test_a_changed_line_is_caught():
    _, module, source = next(c for c in shown_cells() if c[0] == "02_baselines")
    assert compare(module, source.replace("std=0.05", "std=0.1")) == ["BiasedMF.__init__ differs from the library's"]
    assert compare(module, source.replace('"""rating ≈', '"""the rating ≈')) == [
        "BiasedMF: its docstring differs from the library's"]
