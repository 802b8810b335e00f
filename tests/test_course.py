import ast
import json
import os
from pathlib import Path

import nbformat
import pytest
import yaml

from llmrec.course import parameters, runner
from llmrec.course.parameters import resolve_parameters
from llmrec.course.runner import select_notebooks
from llmrec.paths import notebooks_dir
from llmrec.presets import PresetError, load_preset


def _preset(tmp_path, body: dict) -> dict:
    path = tmp_path / "custom.yaml"
    path.write_text(yaml.safe_dump(body))
    return load_preset(str(path))


def test_shipped_presets_are_valid_and_laptop_equals_the_notebook_defaults():
    notebooks = select_notebooks(None)
    for name in ("smoke", "laptop", "paper"):
        resolve_parameters(load_preset(name), notebooks)
    plan = resolve_parameters(load_preset("laptop"), notebooks)
    for nb in notebooks:
        declared = parameters.notebook_parameters(nb)
        for name, value in plan[nb.stem].items():
            assert value == ast.literal_eval(declared[name]["default"]), (nb.stem, name)


def test_unknown_parameter_is_refused_with_notebook_and_name(tmp_path):
    preset = _preset(tmp_path, {"notebooks": {"02_baselines": {"EPOCHZ": 3}}})
    with pytest.raises(PresetError, match="02_baselines.EPOCHZ: 02_baselines.ipynb has no parameter EPOCHZ"):
        resolve_parameters(preset, select_notebooks(None))


def test_unknown_common_parameter_and_notebook_are_refused(tmp_path):
    preset = _preset(tmp_path, {"common": {"SEEDS": 1}, "notebooks": {"99_missing": {}}})
    with pytest.raises(PresetError) as err:
        resolve_parameters(preset, select_notebooks(None))
    assert "common.SEEDS" in str(err.value) and "notebooks.99_missing" in str(err.value)


def test_common_parameters_go_only_where_declared(tmp_path):
    preset = _preset(tmp_path, {"common": {"SEED": 7}})
    plan = resolve_parameters(preset, select_notebooks(None))
    assert "SEED" not in plan["00_setup_check"]
    assert plan["02_baselines"]["SEED"] == 7
    assert all(p["PRESET"] == "custom" for p in plan.values())


def test_bad_preset_files(tmp_path):
    with pytest.raises(PresetError, match="unknown preset 'fast'.*smoke"):
        load_preset("fast")
    with pytest.raises(PresetError, match="unknown top-level key"):
        _preset(tmp_path, {"parameters": {}})


def test_only_selects_by_number_or_name():
    assert [nb.stem for nb in select_notebooks(["02", "00_setup_check"])] == [
        "00_setup_check", "02_baselines"]
    with pytest.raises(PresetError, match="--only 42"):
        select_notebooks(["42"])


def test_unparseable_parameter_line_is_an_error(tmp_path, monkeypatch):
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(
        'PRESET = "laptop"\nSTEPS = 3  # a = b', metadata={"tags": ["parameters"]})])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    path = tmp_path / "09_x.ipynb"
    nbformat.write(nb, path)
    with pytest.raises(PresetError, match=r"cannot parse.*\['STEPS'\]"):
        parameters.notebook_parameters(path)


def test_every_notebook_is_committed_clean_and_follows_the_house_layout():
    for path in sorted(notebooks_dir().glob("*.ipynb")):
        nb = json.loads(path.read_text())
        code = [c for c in nb["cells"] if c["cell_type"] == "code"]
        assert all(not c.get("outputs") and c.get("execution_count") is None for c in code), path
        assert nb["cells"][0]["source"][0].startswith(f"# {path.stem[:2]} · "), path
        tags = [c.get("metadata", {}).get("tags", []) for c in nb["cells"]]
        assert sum("parameters" in t for t in tags) == 1, path
        assert "record_metrics(" in "".join(code[-1]["source"]), path


def test_main_reports_a_bad_preset_without_a_traceback(capsys):
    assert runner.main(["--preset", "nope"]) == 1
    assert "unknown preset 'nope'" in capsys.readouterr().err


def test_a_failing_notebook_stops_the_run_and_names_the_cell(tmp_path, monkeypatch):
    root = tmp_path / "kit"
    (root / "notebooks").mkdir(parents=True)
    (root / "presets").mkdir()
    (root / "presets" / "tiny.yaml").write_text("description: test\n")
    cells = [nbformat.v4.new_code_cell('PRESET = "tiny"', metadata={"tags": ["parameters"]}),
             nbformat.v4.new_code_cell("x = 1"),
             nbformat.v4.new_code_cell("raise ZeroDivisionError('boom')"),
             nbformat.v4.new_code_cell("open('should-not-run', 'w')")]
    for name in ("01_fails", "02_never_runs"):
        nb = nbformat.v4.new_notebook(cells=cells)
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                     "language": "python"}
        nbformat.write(nb, root / "notebooks" / f"{name}.ipynb")
    monkeypatch.setenv("LLMREC_ROOT", str(root))
    with pytest.raises(runner.NotebookFailed) as err:
        runner.run_course("tiny")
    message = str(err.value)
    # [4]: the executed copy's count, which includes the parameters cell papermill injects
    assert "01_fails.ipynb failed in cell [4] with ZeroDivisionError: boom" in message
    assert "The cell begins: raise ZeroDivisionError('boom')" in message
    assert str(root / "runs" / "tiny" / "01_fails.ipynb") in message
    assert not (root / "runs" / "tiny" / "02_never_runs.ipynb").exists()
    assert not (root / "notebooks" / "should-not-run").exists()


@pytest.mark.parametrize("values, message", [
    ({"EPOCHS": "ten"}, r"02_baselines.EPOCHS: 'ten' is a str; expected an int"),
    ({"EPOCHS": 0}, r"02_baselines.EPOCHS: 0 must be at least 1"),
    ({"EPOCHS": 2.5}, r"02_baselines.EPOCHS: 2.5 is a float; expected an int"),
    ({"N_BOOT": "all"}, r"02_baselines.N_BOOT: 'all' is a str; expected an int \(its default"),
    ({"EPOCHS": None}, r"02_baselines.EPOCHS: None is a NoneType; expected an int"),
])
def test_parameter_values_are_type_checked_before_any_run(tmp_path, values, message):
    preset = _preset(tmp_path, {"notebooks": {"02_baselines": values}})
    with pytest.raises(PresetError, match=message):
        resolve_parameters(preset, select_notebooks(None))


def test_good_values_of_other_types_pass():
    params = parameters.notebook_parameters(notebooks_dir() / "03_flan_t5_classification.ipynb")
    ok = {"N_TRAIN": None, "LR": 1, "TOP_LAYERS": None, "MODEL": "tiny-t5", "LORA": True,
          "N_SHOTS": 0, "SEED": 0}
    assert parameters.parameter_errors("03_flan_t5_classification", params, ok) == []


def test_a_notebook_checks_its_own_parameters(tmp_path, monkeypatch):
    # `papermill ... -p EPOCHS abc` bypasses the runner: the notebook's set-up cell checks
    monkeypatch.setattr(parameters, "runs_dir", lambda preset: tmp_path / "runs" / preset)
    monkeypatch.setattr(parameters, "results_dir", lambda preset: tmp_path / "results" / preset)
    namespace = {"EPOCHS": "abc", "SEED": 0, "PRESET": "smoke"}
    with pytest.raises(PresetError, match="02_baselines.EPOCHS: 'abc' is a str"):
        parameters.check_parameters("02_baselines", namespace)
    parameters.check_parameters("02_baselines", {"EPOCHS": 3, "SEED": 1})


@pytest.mark.parametrize("text, message", [
    ("common:\n  SEED: [1, 2\n", r"not valid YAML.*line"),
    ("- SEED: 1\n- EPOCHS: 2\n", r"must be a mapping .*found a list"),
    ("common: [SEED]\n", r"common must be a mapping"),
])
def test_malformed_preset_files_are_refused_clearly(tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(PresetError, match=message):
        load_preset(str(path))


def test_the_runner_checks_models_and_folders_before_it_starts(tmp_path, monkeypatch):
    started = []
    monkeypatch.setattr(runner, "_execute", lambda *a, **k: started.append(a))

    def missing(alias):
        raise FileNotFoundError(f"the packaged model {alias!r} is not installed")
    monkeypatch.setattr(runner, "locate_packaged_model", missing)
    with pytest.raises(PresetError, match="smollm2-135m.*not installed"):
        runner.run_course("laptop", only=["00"])
    assert started == []
    monkeypatch.undo()
    monkeypatch.setattr(runner, "_execute", lambda *a, **k: started.append(a))
    blocked = tmp_path / "a-file"  # a file where a folder should be: no user can write there
    blocked.write_text("")
    monkeypatch.setattr(parameters, "results_dir", lambda preset: blocked / "results")
    with pytest.raises(PresetError, match=r"a-file/results.*cannot be written"):
        runner.run_course("smoke", only=["00"])
    assert started == []


def test_the_runner_records_each_notebooks_wall_time(tmp_path, monkeypatch):
    from llmrec.course.record import load_metrics, record_metrics
    monkeypatch.setenv("LLMREC_ROOT", str(__import__("llmrec.paths", fromlist=["x"]).repo_root()))
    monkeypatch.setattr(runner, "results_dir", lambda preset: tmp_path / "results" / preset)
    monkeypatch.setattr(parameters, "results_dir", lambda preset: tmp_path / "results" / preset)
    monkeypatch.setattr("llmrec.course.record.results_dir", lambda preset: tmp_path / "results" / preset)
    monkeypatch.setattr(runner, "runs_dir", lambda preset: tmp_path / "runs" / preset)
    monkeypatch.setattr(parameters, "runs_dir", lambda preset: tmp_path / "runs" / preset)

    def fake(notebook, out, parameters, log_output):
        record_metrics(notebook.stem, parameters["PRESET"], {"rmse": 1.0})
    monkeypatch.setattr(runner, "_execute", fake)
    runner.run_course("smoke", only=["02"])
    record = load_metrics("02_baselines", "smoke")
    assert record["metrics"] == {"rmse": 1.0} and record["wall_s"] >= 0


def test_a_fresh_run_starts_from_empty_runs_results_and_stored_points(tmp_path, monkeypatch):
    # `make repro` must not pass on a stale figure, a stored 05 point or an old results file
    monkeypatch.setattr(runner, "results_dir", lambda preset: tmp_path / "results" / preset)
    monkeypatch.setattr(parameters, "results_dir", lambda preset: tmp_path / "results" / preset)
    monkeypatch.setattr(runner, "runs_dir", lambda preset: tmp_path / "runs" / preset)
    monkeypatch.setattr(parameters, "runs_dir", lambda preset: tmp_path / "runs" / preset)
    stale = [tmp_path / "runs" / "smoke" / "figures" / "02_baselines.csv",
             tmp_path / "runs" / "smoke" / "05_points" / "MF__f1__s0.json",
             tmp_path / "results" / "smoke" / "02_baselines.json"]
    for path in stale:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("old")
    seen = []
    monkeypatch.setattr(runner, "_execute", lambda nb, out, parameters, log_output: seen.append(
        [p.exists() for p in stale] + [out.parent.is_dir()]))  # papermill needs the folder to write into
    runner.run_course("smoke", only=["02"], fresh=True)
    assert seen == [[False, False, False, True]]


def test_readme_data_paths_command_is_accepted_as_papermill_passes_it(tmp_path, monkeypatch):
    # README's own custom-data command, its -p arguments parsed the way papermill's CLI parses them
    monkeypatch.setattr(parameters, "runs_dir", lambda preset: tmp_path / "runs" / preset)
    monkeypatch.setattr(parameters, "results_dir", lambda preset: tmp_path / "results" / preset)
    import re
    import shlex

    from papermill.cli import _resolve_type

    from llmrec.course.parameters import check_parameters, notebook_parameters
    from llmrec.paths import notebooks_dir, repo_root

    readme = (repo_root() / "README.md").read_text()
    block = re.search(r"```bash\n([^`]*-p DATA_PATHS[^`]*)```", readme).group(1)
    args = shlex.split(block.replace("\\\n", " "))
    given = {args[i + 1]: _resolve_type(args[i + 2]) for i, a in enumerate(args) if a == "-p"}
    assert isinstance(given["DATA_PATHS"], str)  # what the notebook receives from papermill
    declared = notebook_parameters(notebooks_dir() / "02_baselines.ipynb")
    namespace = {k: eval(v["default"]) for k, v in declared.items()} | given
    check_parameters("02_baselines", namespace)
    assert namespace["DATA_PATHS"] == {"ratings_path": "tests/fixtures/custom/ratings.tsv",
                                       "items_path": "tests/fixtures/custom/items.csv", "genre_sep": " "}


def test_a_dict_parameter_that_is_not_json_is_named_with_the_form_to_use():
    from llmrec.course.parameters import check_parameters
    from llmrec.presets import PresetError

    namespace = {"DATA_PATHS": "ratings_path=r.csv"}
    with pytest.raises(PresetError, match=r"DATA_PATHS: 'ratings_path=r.csv' is a str; expected a dict.*"
                                          r"-p DATA_PATHS '\{\"key\": \"value\"\}'"):
        check_parameters("02_baselines", namespace)


def test_a_preset_file_outside_presets_runs_and_one_named_like_a_shipped_preset_is_refused(tmp_path, monkeypatch):
    import shutil

    from llmrec.course.runner import run_course
    from llmrec.paths import presets_dir, results_dir, runs_dir
    from llmrec.presets import PresetError, load_preset

    copy = tmp_path / "laptop.yaml"
    shutil.copy(presets_dir() / "smoke.yaml", copy)
    with pytest.raises(PresetError, match="named like the shipped preset 'laptop'"):
        run_course(str(copy), only=["00"])
    mine = tmp_path / "zz-outside-presets.yaml"
    shutil.copy(presets_dir() / "smoke.yaml", mine)
    monkeypatch.setenv("LLMREC_DATA_DIR", str(tmp_path / "cache"))
    try:
        run_course(str(mine), only=["00"])  # 00 loads the preset by the name the runner gives it
        assert load_preset("zz-outside-presets")["name"] == "zz-outside-presets"
        mine.unlink()  # now its only copy is runs/<name>/preset.yaml, which --fresh empties
        run_course("zz-outside-presets", only=["00"], fresh=True)
        assert load_preset("zz-outside-presets")["name"] == "zz-outside-presets"
    finally:
        for folder in (runs_dir("zz-outside-presets"), results_dir("zz-outside-presets")):
            shutil.rmtree(folder, ignore_errors=True)


def test_a_notebooks_set_up_cell_checks_its_results_folder_before_the_work(tmp_path, monkeypatch):
    """Run directly with papermill (no runner), a notebook failed only in its last cell, after
    all the work, when results/ could not be written."""
    blocked = tmp_path / "a-file"
    blocked.write_text("")
    monkeypatch.setattr(parameters, "results_dir", lambda preset: blocked / "results" / preset)
    declared = parameters.notebook_parameters(parameters.notebooks_dir() / "02_baselines.ipynb")
    namespace = {name: eval(p["default"]) for name, p in declared.items()}
    namespace["PRESET"] = "laptop"  # the notebook's defaults are the laptop preset's: its own folders
    with pytest.raises(PresetError, match=r"a-file/results/laptop cannot be written"):
        parameters.check_parameters("02_baselines", namespace)
    monkeypatch.undo()
    parameters.check_parameters("02_baselines", namespace)  # and a writable one passes


def test_no_run_leaves_files_in_tmp(tmp_path, monkeypatch):
    """Every run left an empty torchinductor_<user> in /tmp (torch._dynamo makes it on import,
    which transformers triggers), and a killed run its kernel's tmp*.json connection file."""
    import subprocess
    import sys

    tmp = tmp_path / "tmp"
    tmp.mkdir()
    env = dict(os.environ, TMPDIR=str(tmp), LLMREC_DATA_DIR=str(tmp_path / "cache"))
    env.pop("TORCHINDUCTOR_CACHE_DIR", None)
    subprocess.run([sys.executable, "-c", "import llmrec.lm; import torch._dynamo"], env=env,
                   check=True)
    assert list(tmp.iterdir()) == []
    monkeypatch.setenv("LLMREC_DATA_DIR", str(tmp_path / "cache"))
    from llmrec.paths import scratch_dir
    assert (scratch_dir() / "torchinductor").is_dir()

    km = runner.kernel_manager_class()(kernel_name="python3")
    km.write_connection_file()
    assert Path(km.connection_file).parent == scratch_dir() / "kernels"
    dead = Path(km.connection_file).parent / "kernel-999999999-0.json"  # a killed run's
    dead.write_text("{}")
    runner.remove_stale_kernel_files()
    assert not dead.exists() and Path(km.connection_file).exists()  # this process's stays
    km.cleanup_connection_file()
