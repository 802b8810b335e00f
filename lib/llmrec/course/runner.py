"""The course runner: every notebook in order, through papermill, with one preset.

    python -m llmrec.course --preset laptop            # the whole course
    python -m llmrec.course --preset smoke --only 02   # one notebook (by number or name)
    python -m llmrec.course --list                     # notebooks, presets, parameters

Executed copies go to runs/<preset>/, figures to runs/<preset>/figures/, metrics to
results/<preset>/<notebook>.json (with the notebook's wall time, `wall_s`, as the runner saw it).
A preset (presets/<name>.yaml; its format: llmrec.presets) is checked whole before anything runs
(llmrec.course.parameters): a name no notebook declares, or a value of the wrong type, is refused
with the notebook and the name, so a typo never silently runs the defaults.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import json
import logging
import os
import shutil
import signal
import sys
import time
import uuid
from pathlib import Path

import papermill as pm
import psutil
from jupyter_client.manager import AsyncKernelManager
from nbclient.exceptions import DeadKernelError
from tqdm.auto import tqdm

from ..io import atomic_path, write_json
from ..lm import check_model
from ..packaged_models import locate_packaged_model, verify_packaged_file
from ..paths import (
    ENV_RUN_FROM,
    list_notebooks,
    notebooks_dir,
    presets_dir,
    results_dir,
    runs_dir,
    scratch_dir,
)
from ..presets import PresetError, list_presets, load_preset
from .lock import one_run
from .parameters import (
    model_names,
    notebook_parameters,
    notebook_values,
    resolve_parameters,
    unwritable_folders,
)


class NotebookFailed(RuntimeError):
    """A notebook raised: names the notebook, the cell and where the executed copy is."""


class Stopped(KeyboardInterrupt):
    """The run was told to stop (SIGTERM: an IDE's stop button, a scheduler; SIGHUP: the
    terminal closed): it ends as after a Ctrl-C, its kernel shut down, nothing left running."""


def _quiet_cut_off_cell() -> None:
    """The kernel's cell task, cut off by a stop, would print "Task exception was never
    retrieved" and a DeadKernelError traceback when it is collected: it is this stop."""
    logging.getLogger("asyncio").setLevel(logging.CRITICAL)


@contextlib.contextmanager
def stop_on_signals():
    """Within it, SIGTERM and SIGHUP end the run the way Ctrl-C does (papermill shuts the kernel
    down); without it they killed the runner alone, and its kernel wrote results after the stop."""
    names = [n for n in ("SIGTERM", "SIGHUP") if hasattr(signal, n)]

    def stop(signum, frame):
        for n in names:  # once: a second signal must not break the kernel's shutdown
            signal.signal(getattr(signal, n), signal.SIG_IGN)
        _quiet_cut_off_cell()
        raise Stopped(signal.Signals(signum).name)

    previous = {n: signal.signal(getattr(signal, n), stop) for n in names}
    try:
        yield
    finally:
        for n, handler in previous.items():
            signal.signal(getattr(signal, n), handler)


def select_notebooks(only: list[str] | None) -> list[Path]:
    notebooks = list_notebooks()
    if not only:
        return notebooks
    chosen = []
    for key in only:
        match = [nb for nb in notebooks if nb.stem == key or nb.stem.split("_")[0] == key]
        if not match:
            raise PresetError(f"--only {key}: no such notebook; notebooks: "
                              + ", ".join(nb.stem for nb in notebooks))
        chosen.extend(m for m in match if m not in chosen)
    return sorted(chosen)


def preflight(cfg: dict, plan: dict[str, dict], notebooks: list[Path]) -> None:
    """Before any notebook runs: the preset's packaged models are installed, every model the
    selected notebooks will load exists (`lm.check_model`: seconds, no download), and the
    folders the run writes to (runs/, results/) can be written. Raises PresetError saying what
    to do, naming the notebook and parameter."""
    errors = []
    for alias in cfg["requires_models"]:
        try:
            verify_packaged_file(alias, locate_packaged_model(alias))  # its bytes: 0.1-0.2 s
        except (FileNotFoundError, ValueError) as e:
            errors.append(str(e))
    problems = {}  # model name: what is wrong with it (None: fine), each checked once
    for nb in notebooks:
        for param, name in model_names(notebook_values(nb, plan[nb.stem])):
            if name not in problems:
                try:
                    check_model(name)
                    problems[name] = None
                except (OSError, ValueError) as e:
                    problems[name] = str(e)
            if problems[name]:
                errors.append(f"{nb.stem}.{param}: {name!r}: {problems[name]}")
    errors += unwritable_folders(cfg["name"])
    if errors:
        raise PresetError(f"preset {cfg['name']!r} cannot run yet:\n  - " + "\n  - ".join(errors))


def _record_wall_time(stem: str, preset: str, seconds: float) -> None:
    """Add the notebook's wall time, as the runner measured it (kernel start included), to the
    results file it wrote: results/<preset>/<notebook>.json gets `wall_s`."""
    path = results_dir(preset) / f"{stem}.json"
    if path.is_file():
        record = json.loads(path.read_text())
        record["wall_s"] = round(seconds, 1)
        write_json(path, record)


def kernels_dir() -> Path:
    return scratch_dir() / "kernels"


def kernel_manager_class():
    """nbclient's kernel manager, writing the kernel's connection file in kernels_dir() under a
    name that carries this process's id (jupyter_client puts it in /tmp as tmp*.json, where a
    killed run leaves it), so that the next run can tell a dead run's file and remove it."""
    class KitKernelManager(AsyncKernelManager):
        def __init__(self, **kwargs):
            folder = kernels_dir()
            folder.mkdir(parents=True, exist_ok=True)
            kwargs.setdefault("connection_file",
                              str(folder / f"kernel-{os.getpid()}-{uuid.uuid4().hex[:8]}.json"))
            super().__init__(**kwargs)

        async def start_kernel(self, **kw):
            # The kernel's own stderr (its start-up warning; after a Ctrl-C, which reaches it
            # too, a 20-line ZMQError traceback) goes to a log beside the connection file; the
            # notebook's errors still come back through papermill.
            log_path = Path(self.connection_file).with_suffix(".log")
            with open(log_path, "ab") as log:  # noqa: ASYNC230 - once per kernel start, local
                kw.setdefault("stderr", log)
                return await super().start_kernel(**kw)

    return KitKernelManager


def _kernel_log_tail(lines: int = 12) -> str:
    """The end of this run's latest kernel log (the kernel's own stderr), for an error message."""
    logs = sorted(kernels_dir().glob(f"kernel-{os.getpid()}-*.log"), key=lambda p: p.stat().st_mtime)
    if not logs:
        return ""
    tail = logs[-1].read_text(errors="replace").strip().splitlines()[-lines:]
    return (f" The kernel's own output ({logs[-1]}) ends with:\n    " + "\n    ".join(tail)
            if tail else f" Its own output ({logs[-1]}) is empty.")


def remove_stale_kernel_files() -> None:
    """Connection files and kernel logs of runs that ended or were killed (their process is gone)."""
    for path in [*kernels_dir().glob("kernel-*-*.json"), *kernels_dir().glob("kernel-*-*.log")]:
        try:
            pid = int(path.name.split("-")[1])
        except ValueError:
            continue
        if not psutil.pid_exists(pid):  # (os.kill(pid, 0) is no liveness test on Windows)
            try:
                path.unlink()
            except OSError:
                pass  # gone already, or not ours to remove


def _execute(notebook: Path, out: Path, parameters: dict, log_output: bool) -> None:
    pm.execute_notebook(str(notebook), str(out), parameters=parameters,
                        cwd=str(notebooks_dir()), progress_bar=False, log_output=log_output,
                        kernel_name="python3", kernel_manager_class=kernel_manager_class())


def run_course(preset: str = "laptop", only: list[str] | None = None,
               log_output: bool = False, fresh: bool = False) -> list[Path]:
    """Run the selected notebooks in order; stop at the first failure with a clear error.
    `fresh` first removes the preset's executed notebooks, figures, stored points and results,
    so that nothing of an earlier run can stand in for this one (the reproduction check)."""
    cfg = load_preset(preset)
    shipped = presets_dir() / f"{cfg['name']}.yaml"
    if shipped.is_file() and Path(cfg["path"]).resolve() != shipped.resolve():
        raise PresetError(f"{cfg['path']} is named like the shipped preset {cfg['name']!r}: its runs and results "
                          f"would mix with that preset's (runs/{cfg['name']}/). Rename the file.")
    notebooks = select_notebooks(only)
    plan = resolve_parameters(cfg, notebooks)
    preset_text = Path(cfg["path"]).read_text()  # before --fresh: it may be runs/<name>/preset.yaml
    with one_run(runs_dir(cfg["name"])):  # the folders are this run's alone, before anything is checked or removed
        preflight(cfg, plan, notebooks)  # every refusal before --fresh removes anything
        return _run_notebooks(cfg, notebooks, plan, preset_text, shipped, log_output, fresh)


def _run_notebooks(cfg: dict, notebooks: list[Path], plan: dict, preset_text: str, shipped: Path,
                   log_output: bool, fresh: bool) -> list[Path]:
    """The run itself, once its folders are this run's alone (`one_run`)."""
    if fresh:
        for folder in (runs_dir(cfg["name"]), results_dir(cfg["name"])):
            if folder.exists():
                print(f"fresh run: removing {folder}")
                shutil.rmtree(folder)
    remove_stale_kernel_files()
    out_dir = runs_dir(cfg["name"])
    out_dir.mkdir(parents=True, exist_ok=True)  # papermill writes each executed notebook there
    kept = out_dir / "preset.yaml"
    if not shipped.is_file() and not (kept.is_file() and kept.read_text() == preset_text):
        # the notebooks get the preset by its name: keep the file where load_preset finds it again
        with atomic_path(kept) as tmp:
            tmp.write_text(preset_text)
    executed = []
    bar = tqdm(notebooks, desc=f"course [{cfg['name']}]", unit="notebook")
    for nb in bar:
        bar.set_postfix_str(nb.stem)
        out = out_dir / nb.name
        start = time.perf_counter()
        try:
            _execute(nb, out, plan[nb.stem], log_output)
        except OSError as e:  # papermill saving the executed copy: what it left is cut JSON
            if e.errno not in (errno.ENOSPC, errno.EDQUOT):
                raise
            out.unlink(missing_ok=True)
            where = Path(e.filename).parent if getattr(e, "filename", None) else out.parent
            full = (f"your disk quota on {where} is used up" if e.errno == errno.EDQUOT else
                    f"the disk holding {where} is full ({shutil.disk_usage(where).free >> 20} MB free)")
            raise NotebookFailed(
                f"{nb.name}: {full} while the run wrote {e.filename or out}; the cut copy of the "
                f"executed notebook was removed. Free space there, then run the same command again.") from None
        except pm.PapermillExecutionError as e:
            first_line = (e.source or "").strip().splitlines()[:1]
            raise NotebookFailed(
                f"{nb.name} failed in cell [{e.exec_count}] with {e.ename}: {e.evalue}\n"
                f"The cell begins: {first_line[0] if first_line else '(empty)'}\n"
                f"The executed copy, with the traceback, is {out}") from None
        except DeadKernelError as e:  # killed (out of memory?) or crashed: its log says why
            raise NotebookFailed(f"{nb.name}: the kernel died ({e}).{_kernel_log_tail()}\n"
                                 f"The executed copy, as far as it got, is {out}") from None
        seconds = time.perf_counter() - start
        _record_wall_time(nb.stem, cfg["name"], seconds)
        bar.write(f"{nb.stem}: done in {seconds:.0f} s -> {out}")
        executed.append(out)
    return executed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m llmrec.course", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="laptop",
                        help="smoke | laptop (default) | paper, or a path to a preset .yaml")
    parser.add_argument("--only", action="append", metavar="NN",
                        help="run only this notebook (number or name); repeatable")
    parser.add_argument("--list", action="store_true", help="list notebooks and presets, then exit")
    parser.add_argument("--log-output", action="store_true", help="stream the notebooks' output")
    parser.add_argument("--fresh", action="store_true",
                        help="first remove runs/<preset> and results/<preset> (stored points too)")
    args = parser.parse_args(argv)
    # a relative data path in the preset is read from here, where the user runs the course
    # (`python -m llmrec course` has set it already); the kernels inherit it
    os.environ.setdefault(ENV_RUN_FROM, os.getcwd())
    try:
        if args.list:
            for nb in list_notebooks():
                print(f"{nb.stem}: {', '.join(notebook_parameters(nb))}")
            print("presets:", ", ".join(list_presets()))
            return 0
        with stop_on_signals():
            run_course(args.preset, args.only, args.log_output, fresh=args.fresh)
    except (PresetError, NotebookFailed) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as e:
        _quiet_cut_off_cell()
        how = f"stopped ({e})" if isinstance(e, Stopped) else "interrupted"
        print(f"{how}: notebooks that finished are kept in runs/; rerun the same command to "
              "go on", file=sys.stderr)
        return 143 if isinstance(e, Stopped) else 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
