"""Atomic file writing and checksums: an interrupted run never leaves a half-written file that a
later run trusts."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from .paths import cache_dir


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _check_writable(folder: Path) -> None:
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


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path`; it replaces `path` only if the block succeeds."""
    path = Path(path)
    _check_writable(path.parent)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    tmp.chmod(0o666 & ~_umask())  # mkstemp makes 0600: give what open() would have
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary folder beside `path`; it becomes `path` only if the block succeeds."""
    path = Path(path)
    _check_writable(path.parent)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent))
    tmp.chmod(0o777 & ~_umask())  # mkdtemp makes 0700: give what mkdir() would have
    try:
        yield tmp
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
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
