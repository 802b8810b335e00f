"""What notebook 00 checks: the machine, the data and the offline models a preset needs."""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass
from pathlib import Path

import psutil
import torch

from ..data import load_movielens_small
from ..lm import TINY_MODELS, check_model
from ..packaged_models import PACKAGED_MODELS, locate_packaged_model
from .parameters import model_names


def cpu_flags() -> set[str]:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def system_report() -> dict:
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
    names = []
    for values in [preset.get("common") or {}, *(preset.get("notebooks") or {}).values()]:
        for _, name in model_names(values or {}):
            if name not in TINY_MODELS and name not in PACKAGED_MODELS and name not in names:
                names.append(name)
    return names
