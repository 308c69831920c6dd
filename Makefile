# `make run` and `make test` set up a local virtual environment (.venv) on first use.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: run test test-all lint bench gpu-check clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install -e ".[dev]"
	touch $@

run: $(VENV)/.installed  ## the demo: a small Fourier sweep of LeNet and logistic regression, with a heat-map panel
	$(PY) run.py experiment=fourier_demo $(ARGS)

test: lint  ## lint, then the test suite (slow tests excluded)
	$(PY) -m pytest $(ARGS)

lint: $(VENV)/.installed  ## ruff: the linter and the formatter's check (settings in pyproject.toml)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

test-all: $(VENV)/.installed  ## every test, the slow ones included
	$(PY) -m pytest -m "" $(ARGS)

bench: $(VENV)/.installed  ## benchmarks: data paths, NAD estimators, hyperplane statistics, sweep cells vs reference-style loops
	$(PY) benchmarks/data_path.py
	$(PY) benchmarks/data_path.py --dataset cifar10
	$(PY) benchmarks/nads.py
	$(PY) benchmarks/nads_per_arch.py
	$(PY) benchmarks/hyperplanes.py
	$(PY) benchmarks/class_density.py
	$(PY) benchmarks/sweep.py
	$(PY) benchmarks/startup.py

gpu-check: $(VENV)/.installed  ## on a machine with CUDA: tests/test_gpu.py and timed GPU runs, one table (without CUDA: says so, exits 0)
	$(PY) benchmarks/gpu_check.py $(ARGS)

clean:
	rm -rf $(VENV) .pytest_cache
