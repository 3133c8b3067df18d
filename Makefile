# Two entry points (see README):  make demo   |   make test
# TORCH_SPEC lets you choose the torch build: e.g. make test TORCH_SPEC="torch==2.13.0" (CPU wheel).
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch>=2.2
EXTRAS ?= llm,judge,dev,bench,fast
PY := $(VENV)/bin/python
STAMP := $(VENV)/.dualgap-installed

.PHONY: venv demo test lint bench clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "$(TORCH_SPEC)"
	$(PY) -m pip install --quiet -e ".[$(EXTRAS)]"
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/dualgap demo

test: $(STAMP)
	HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 $(PY) -m pytest -n 2 tests

lint: $(STAMP)
	$(VENV)/bin/ruff check dualgap tests benchmarks

bench: $(STAMP)
	$(PY) benchmarks/exact_solver.py

clean:
	rm -rf $(VENV) build *.egg-info
