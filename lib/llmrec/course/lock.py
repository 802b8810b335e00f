"""One run owns a preset's folders: runs/<preset>/ and results/<preset>/ belong to one run of the
course at a time, and a notebook run by hand (papermill, Jupyter) does not write into them while
a run of the course does. The lock is runs/.<preset>.lock, outside the folders --fresh removes.
The guard is one way: a notebook started by hand before a course run is not seen by that run."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path

import psutil

try:
    import fcntl
except ImportError:  # not POSIX (Windows): no guard
    fcntl = None

from ..presets import PresetError


def lock_file(runs: Path) -> Path:
    """The lock of the preset whose executed notebooks go to `runs` (runs/<preset>/)."""
    return runs.parent / f".{runs.name}.lock"


def lock_holder(runs: Path) -> int | None:
    """The pid of the live run that holds the lock of `runs`, or None (no lock, a damaged one, a
    lock of a run that ended, or of a process that reused its pid)."""
    try:
        held = json.loads(lock_file(runs).read_text())
        pid, started = int(held["pid"]), float(held["started"])
        alive = psutil.pid_exists(pid) and abs(psutil.Process(pid).create_time() - started) < 1
    except (OSError, ValueError, TypeError, KeyError, psutil.Error):
        return None
    return pid if alive and pid != os.getpid() else None


def _in_use_message(runs: Path, holder: int) -> str:
    return (f"runs/{runs.name}/ is in use by a run of the course (pid {holder}); two runs would write "
            f"into one folder. Wait for it to end, or stop it (kill {holder}), then run again")


@contextlib.contextmanager
def _takeover_guard(lock: Path) -> Iterator[None]:
    """An exclusive OS lock while the run lock is examined and taken (POSIX; elsewhere none)."""
    if fcntl is None:
        yield
        return
    with open(lock.with_name(lock.name + ".guard"), "a") as guard:
        fcntl.flock(guard, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(guard, fcntl.LOCK_UN)


@contextlib.contextmanager
def one_run(runs: Path) -> Iterator[None]:
    """The folders of `runs`' preset are this run's alone within the block: a second run is
    refused with the first's pid, before it writes or removes anything (--fresh included). A
    lock left by a run that was killed, or damaged, is taken over."""
    lock = lock_file(runs)
    lock.parent.mkdir(parents=True, exist_ok=True)
    me = {"pid": os.getpid(), "started": psutil.Process().create_time()}
    mine = lock.with_name(f"{lock.name}.{os.getpid()}")
    mine.write_text(json.dumps(me))
    try:
        with _takeover_guard(lock):  # two runs never both judge the same lock stale and remove it
            while True:
                try:
                    os.link(mine, lock)  # appears whole, and only if no other run holds it
                    break
                except FileExistsError:
                    holder = lock_holder(runs)
                    if holder is not None:
                        raise PresetError(_in_use_message(runs, holder)) from None
                    lock.unlink(missing_ok=True)  # left by a run that ended without removing it
    finally:
        mine.unlink(missing_ok=True)
    try:
        yield
    finally:
        with contextlib.suppress(OSError, ValueError, AttributeError):
            if json.loads(lock.read_text()).get("pid") == me["pid"]:
                lock.unlink()


def check_not_in_use(runs: Path) -> None:
    """For a notebook's own set-up cell: refuse to write into a preset's folders that a run of the
    course holds, unless this kernel is that run's (the holder is one of its parents)."""
    holder = lock_holder(runs)
    if holder is None:
        return
    with contextlib.suppress(psutil.Error):
        if holder in {p.pid for p in psutil.Process().parents()}:
            return
    raise PresetError(_in_use_message(runs, holder) + "; or run this notebook with another -p PRESET")
