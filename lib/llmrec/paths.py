"""Where the kit reads and writes: resolved from the repository root or environment variables,
never from the working directory (notebooks run from notebooks/, tests from the root). A user's
own data files are the exception: a relative path is read from where the user ran the command
(`data_path_candidates`)."""

from __future__ import annotations

import getpass
import os
import stat
import tempfile
from pathlib import Path

ENV_ROOT = "LLMREC_ROOT"
ENV_DATA = "LLMREC_DATA_DIR"


def repo_root() -> Path:
    """The kit's root folder: $LLMREC_ROOT, else the checkout this package was installed from."""
    if os.environ.get(ENV_ROOT):
        return Path(os.environ[ENV_ROOT]).expanduser().resolve()
    here = Path(__file__).resolve()
    for parent in here.parents:
        if (parent / "pyproject.toml").is_file() and (parent / "lib" / "llmrec").is_dir():
            return parent
    raise RuntimeError(
        f"Cannot find the kit's root folder above {here}. Install the kit in editable mode "
        f"(`pip install -e .` in the checkout) or set {ENV_ROOT} to the checkout's path.")


def data_dir() -> Path:
    """The embedded data sets live here; $LLMREC_DATA_DIR moves the download/processed caches."""
    return repo_root() / "data"


def cache_dir() -> Path:
    """Downloads (raw/) and processed splits (processed/): $LLMREC_DATA_DIR or data/."""
    if os.environ.get(ENV_DATA):
        return Path(os.environ[ENV_DATA]).expanduser().resolve()
    return data_dir()


def scratch_dir() -> Path:
    """The kit's own scratch space (the compiler cache torch makes on import, the kernels'
    connection files): inside the data cache, never loose in /tmp; one per user, so that users
    sharing a data folder do not write into each other's. When the data cache is read-only (a
    classroom's prebuilt caches, shared), a per-user folder in the system's temporary folder."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (a container)
        user = str(os.getuid()) if hasattr(os, "getuid") else "user"
    inside = cache_dir() / "tmp" / user
    if _can_write(inside):
        return inside
    return _private_temp(user)


_PRIVATE: dict[str, Path] = {}  # a fresh private folder, when the usual one is not safely ours


def _private_temp(user: str) -> Path:
    """llmrec-<user> in the system's temporary folder, made private (0700); one that another
    user made or can write (a shared machine: the kernels' keys and torch's compiled code go
    there) is not used: this process gets a fresh private folder instead."""
    folder = Path(tempfile.gettempdir()) / f"llmrec-{user}"
    try:
        folder.mkdir(mode=0o700, exist_ok=True)
        st = folder.lstat()
        if stat.S_ISDIR(st.st_mode) and not st.st_mode & 0o022 and (
                not hasattr(os, "getuid") or st.st_uid == os.getuid()):
            return folder
    except OSError:
        pass
    if user not in _PRIVATE:
        _PRIVATE[user] = Path(tempfile.mkdtemp(prefix=f"llmrec-{user}-"))
    return _PRIVATE[user]


def _can_write(path: Path) -> bool:
    """Whether `path` (or, when it does not exist yet, the folder that would hold it) can be
    written, without making anything: access() answers EROFS on a read-only mount, even to root."""
    for folder in (path, *path.parents):
        if folder.exists():
            return folder.is_dir() and os.access(folder, os.W_OK | os.X_OK)
    return False


def model_dir() -> Path:
    """Converted packaged models: $LLMREC_MODEL_DIR or models/ in the checkout."""
    if os.environ.get("LLMREC_MODEL_DIR"):
        return Path(os.environ["LLMREC_MODEL_DIR"]).expanduser()
    return repo_root() / "models"


def raw_dir() -> Path:
    return cache_dir() / "raw"


def processed_dir() -> Path:
    return cache_dir() / "processed"


def runs_dir(preset: str) -> Path:
    """Executed notebooks of one preset."""
    return repo_root() / "runs" / preset


def run_figures_dir(preset: str) -> Path:
    return runs_dir(preset) / "figures"


def results_dir(preset: str) -> Path:
    return repo_root() / "results" / preset


def reference_figures_dir() -> Path:
    """figures/ in git: the laptop preset's reference figures (PNG + CSV + tolerances)."""
    return repo_root() / "figures"


def presets_dir() -> Path:
    return repo_root() / "presets"


def notebooks_dir() -> Path:
    return repo_root() / "notebooks"


ENV_RUN_FROM = "LLMREC_RUN_FROM"  # set by `python -m llmrec`: the folder the user ran it from


def data_path_candidates(path: str | os.PathLike) -> list[Path]:
    """Where a user's relative data path is looked for, in order: the folder the course command
    (`python -m llmrec course` or `python -m llmrec.course`) was run from — its steps run in the
    kit's root, its notebooks in notebooks/ —, the working directory, the kit's root (a path
    written from the root, as in README's papermill call)."""
    p = Path(path).expanduser()
    if p.is_absolute():
        return [p]
    # the folder the user ran the command from comes first: the working directory is the kit's
    # choice then (its root for a step, notebooks/ for a kernel)
    bases = [*([Path(os.environ[ENV_RUN_FROM])] if os.environ.get(ENV_RUN_FROM) else []), Path.cwd(),
             repo_root()]
    return list(dict.fromkeys(base / p for base in bases))


def resolve_data_path(path: str | os.PathLike) -> Path:
    """A user's data file: the first of data_path_candidates that exists (else as given)."""
    found = [c for c in data_path_candidates(path) if c.exists()]
    return found[0] if found else Path(path).expanduser()


def list_notebooks() -> list[Path]:
    """The course's notebooks, in order: notebooks/NN_name.ipynb."""
    return sorted(notebooks_dir().glob("[0-9][0-9]_*.ipynb"))
