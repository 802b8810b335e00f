"""Atomic file writing and checksums: an interrupted run never leaves a half-written file that a
later run trusts."""

from __future__ import annotations

import contextlib
import errno
import glob
import hashlib
import json
import os
import shutil
import socket
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psutil

from .paths import cache_dir, model_dir


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _check_writable(folder: Path, fix: str | None = None) -> None:
    """Refuse, naming the folder and `fix` (by default: which variable moves it), a folder that
    cannot be made or written: a read-only mount, another user's folder, a file in its place."""
    if fix is None:
        inside_cache = folder.resolve().is_relative_to(cache_dir().resolve())
        fix = ("Point the data cache elsewhere with LLMREC_DATA_DIR=/a/writable/path, or fix the "
               "folder's permissions." if inside_cache else
               "Fix the folder's permissions, or run from a writable copy of the kit (runs/ and "
               "results/ live in the kit's folder).")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise PermissionError(f"Cannot create the folder {folder} ({e.strerror}). {fix}") from e
    if not os.access(folder, os.W_OK):
        raise PermissionError(f"The folder {folder} is not writable. {fix}")


def _umask() -> int:
    mask = os.umask(0)  # reading the umask means setting it: put it straight back
    os.umask(mask)
    return mask


FULL_BELOW = 16 << 20  # bytes free under which a failed write is blamed on a full disk


class DiskFullError(OSError):
    """A write that failed because the disk is full: names the folder and the fix."""


@contextlib.contextmanager
def _say_a_full_disk(path: Path, partial: Path) -> Iterator[None]:
    """Re-raise a failed write as DiskFullError when the disk is full: torch.save then says only
    "[enforce fail at inline_container.cc] unexpected pos", parquet and safetensors other things.
    Asked before the partial file is removed, while it still fills the disk."""
    try:
        yield
    except Exception as e:
        chain, seen = [], e
        while seen is not None and len(chain) < 8:
            chain.append(seen)
            seen = seen.__cause__ or seen.__context__
        oserrors = [x for x in chain if isinstance(x, OSError)]
        nospace = [x for x in oserrors if x.errno in (errno.ENOSPC, errno.EDQUOT)]
        try:
            free = shutil.disk_usage(partial if partial.exists() else path.parent).free
        except OSError:
            free = None
        # ENOSPC says so; without any OSError (torch's message), a nearly full disk is the cause
        if not (nospace or not oserrors and free is not None and free < FULL_BELOW):
            raise
        if nospace and getattr(nospace[0], "filename", None):  # the disk that was full
            where_full = Path(nospace[0].filename).parent
        else:
            where_full = path.parent
        where = _move_advice(path)
        raise DiskFullError(
            errno.ENOSPC,
            f"the disk holding {where_full} is full ({'?' if free is None else free >> 20} MB "
            f"free there) while writing {path.name}; nothing was kept of it. Free space there"
            f"{where}, then run again.") from e


def _move_advice(path: Path) -> str:
    """Which variable moves the folder `path` is in, as advice ('' when none does)."""
    path = path.resolve()
    if path.is_relative_to(model_dir().resolve()):
        return f", or set LLMREC_MODEL_DIR to a folder on a disk with room (the models are in {model_dir()})"
    if path.is_relative_to(cache_dir().resolve()):
        return f", or set LLMREC_DATA_DIR to a folder on a disk with room (the data cache is {cache_dir()})"
    return ""


STALE_UNOWNED_S = 6 * 3600  # a leftover without an owner's pid (an older kit's) is swept after this


def _host() -> str:
    """This machine's name, as it stands in temporary names (no '-' or '.')."""
    return socket.gethostname().replace("-", "_").replace(".", "_") or "host"


def _owner_alive(leftover: Path, name: str) -> bool:
    """Whether the process that made `leftover` (.NAME.<host>-<pid>-<random>.part) still runs.
    Only this machine's processes can be asked: one of another machine sharing the folder, or
    without an owner in its name, counts as alive while it is younger than STALE_UNOWNED_S."""
    host, _, rest = leftover.name[len(name) + 2:].partition("-")
    pid = rest.split("-", 1)[0]
    if host == _host() and pid.isdigit():
        return psutil.pid_exists(int(pid))
    try:
        return time.time() - leftover.stat().st_mtime < STALE_UNOWNED_S
    except OSError:
        return True


def sweep_leftovers(folder: Path, name: str) -> None:
    """Remove what killed writes of `name` left in `folder` (.NAME.*.part files and folders,
    .NAME.*.old trash) whose process has ended: a killed model conversion or split build left
    hundreds of MB there, forever. A live process's leftovers are its work in progress."""
    for leftover in [*folder.glob(f".{glob.escape(name)}.*.part"), *folder.glob(f".{glob.escape(name)}.*.old")]:
        if _owner_alive(leftover, name):
            continue
        if leftover.is_dir() and not leftover.is_symlink():
            shutil.rmtree(leftover, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                leftover.unlink()


def _temporary(path: Path, kind: str, suffix: str = ".part") -> Path:
    """A temporary file or folder beside `path`, named for its owner
    (.NAME.<host>-<pid>-<random>.part), after sweeping what killed writes of the same name left."""
    sweep_leftovers(path.parent, path.name)
    prefix = f".{path.name}.{_host()}-{os.getpid()}-"
    if kind == "dir":
        return Path(tempfile.mkdtemp(prefix=prefix, suffix=suffix, dir=path.parent))
    fd, tmp = tempfile.mkstemp(prefix=prefix, suffix=suffix, dir=path.parent)
    os.close(fd)
    return Path(tmp)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path`; it replaces `path` only if the block succeeds."""
    path = Path(path)
    _check_writable(path.parent)
    tmp = _temporary(path, "file")
    tmp.chmod(0o666 & ~_umask())  # mkstemp makes 0600: give what open() would have
    try:
        with _say_a_full_disk(path, tmp):
            yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return st.st_dev, st.st_ino


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike, shared: bool = False) -> Iterator[Path]:
    """Yield a temporary folder beside `path`; it becomes `path` only if the block succeeds.

    shared: `path` is named by its content (a processed split, a layer cache, a converted model),
    so when another process installs the same folder while this one builds it — two notebooks or
    two users on one data folder — this one keeps the other's and drops its own, instead of failing
    with "Directory not empty". Without it, a folder that appears meanwhile is replaced."""
    path = Path(path)
    _check_writable(path.parent)
    tmp = _temporary(path, "dir")
    tmp.chmod(0o777 & ~_umask())  # mkdtemp makes 0700: give what mkdir() would have
    stale = _identity(path)  # there before this build: to be replaced (a damaged or outdated folder)
    try:
        with _say_a_full_disk(path, tmp):
            yield tmp
        for attempt in range(5):
            # shared: replace only the very folder that was there before (the same inode), never
            # a fresh one that another process installed meanwhile and may be reading
            if path.exists() and (not shared or attempt == 0 and stale and _identity(path) == stale):
                trash = Path(tempfile.mkdtemp(prefix=f".{path.name}.{_host()}-{os.getpid()}-", suffix=".old",
                                              dir=path.parent))
                try:
                    os.replace(path, trash / path.name)  # moved aside in one step, then deleted
                except FileNotFoundError:
                    pass  # another process moved it first
                shutil.rmtree(trash, ignore_errors=True)
            try:
                os.replace(tmp, path)
                break
            except OSError as e:
                if e.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                    raise
                if shared:
                    break  # another process installed the same content first: it stands
        else:
            raise OSError(errno.EEXIST, f"could not install {path}: other processes kept replacing it")
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


MARKER = ".llmrec-made.json"  # in a folder a kit tool wrote: which files it wrote, with their sha256


class OutputFolderError(ValueError):
    """An --out folder the kit must not write over: names the folder, the files and the fix."""


def _files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file() and p.name != MARKER)


def _check_output_folder(out: Path, tool: str) -> dict[str, str]:
    """What `out` holds that `tool` wrote before ({relative path: sha256}); refuses a folder that
    holds anything else the tool would overwrite, or whose written files were changed since."""
    if not out.exists():
        return {}
    if not out.is_dir():
        raise OutputFolderError(f"--out {out} is a file, not a folder: choose a folder")
    marker = out / MARKER
    if not marker.is_file():
        present = _files(out)
        entries = present or sorted(p.name + "/" for p in out.iterdir())
        if not entries:
            return {}
        raise OutputFolderError(
            f"--out {out} already holds files the kit did not write (" + ", ".join(entries[:3])
            + (", …" if len(entries) > 3 else "") + f"): {tool} writes only into a new or empty folder, "
            "or one it wrote itself. Choose another folder; nothing was changed. (A folder that an "
            f"earlier version of the kit built has no {MARKER}: delete it and build again.)")
    try:
        record = json.loads(marker.read_text())
        made, wrote = dict(record["files"]), record["tool"]
    except (ValueError, KeyError, TypeError) as e:
        raise OutputFolderError(f"--out {out}: its record {marker} is damaged ({e}): delete the "
                                "folder and build again, or choose another; nothing was changed.") from None
    if wrote != tool:
        raise OutputFolderError(f"--out {out} holds what {wrote} wrote, not {tool}: choose another "
                                "folder; nothing was changed.")

    def edited(f: str) -> bool:
        digests = made[f] if isinstance(made[f], list) else [made[f]]  # a list: mid-install
        return (out / f).is_file() and sha256_file(out / f) not in digests

    changed = [f for f in made if edited(f)]
    if changed:
        raise OutputFolderError(
            f"--out {out}: {', '.join(changed[:3])}{', …' if len(changed) > 3 else ''} changed since {tool} "
            "wrote them (your work?): copy them elsewhere, or choose another folder; nothing was changed.")
    return made


@contextlib.contextmanager
def output_folder(out: str | os.PathLike, tool: str) -> Iterator[Path]:
    """Yield an empty temporary folder to build `tool`'s output in; when the block succeeds its
    files replace the ones `tool` wrote into `out` before. Files in `out` that the tool did not
    write are never deleted: a folder that holds some where the tool would write is refused before
    any work, and so is one whose written files were edited since. A failed build changes nothing."""
    out = Path(out)
    previous = _check_output_folder(out, tool)
    try:
        for folder in [out.parent, *([out] if out.is_dir() else [])]:
            _check_writable(folder, fix="Choose another folder with --out; nothing was written.")
    except PermissionError as e:
        raise OutputFolderError(f"--out {out}: {e}") from e
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".part", dir=out.parent))
    try:
        yield tmp
        new = _files(tmp)
        foreign = [f for f in new if (out / f).exists() and f not in previous]
        if foreign:
            raise OutputFolderError(f"--out {out}: {', '.join(foreign[:3])} exist(s) and were not written by "
                                    f"{tool}: move them, or choose another folder; nothing was changed.")
        out.mkdir(parents=True, exist_ok=True)
        digests = {f: sha256_file(tmp / f) for f in new}
        # Recorded first, each file with its old and its new digest: an install cut short (Ctrl-C,
        # a full disk) leaves a folder the next build still recognises as its own.
        during = {f: [d for d in (previous.get(f), digests.get(f)) if d]
                  for f in set(previous) | set(new)}
        write_json(out / MARKER, {"tool": tool, "files": during})
        gone = [f for f in previous if f not in new]
        for f in gone:
            (out / f).unlink(missing_ok=True)
        for f in new:
            (out / f).parent.mkdir(parents=True, exist_ok=True)
            os.replace(tmp / f, out / f)
        for f in gone:  # folders left empty by files the tool no longer writes, and only those
            d = (out / f).parent
            while d != out and d.is_dir() and not any(d.iterdir()):
                d.rmdir()
                d = d.parent
        write_json(out / MARKER, {"tool": tool, "files": digests})
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def write_json(path: str | os.PathLike, obj) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")


def replace_section(path, start: str, end: str, content: str, check: bool = False) -> bool:
    """Put `content` (which begins with `start` and ends with `end`) between the markers of the
    file at `path`; with check, only compare. Returns whether the file was already up to date."""
    text = path.read_text()
    if start not in text or end not in text:
        raise ValueError(f"{path} has no generated section: put the lines\n{start}\n{end}\n"
                         "where it belongs")
    head, rest = text.split(start, 1)
    new = head + content + rest.split(end, 1)[1]
    if new == text:
        return True
    if not check:
        with atomic_path(path) as tmp:
            tmp.write_text(new)
    return False
