# `make run` and `make test` set up a local virtual environment (.venv) on first use. In an environment of your
# own where the project is installed (a GPU machine's torch for its CUDA), name its Python: `make gpu-check PY=python`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
SETUP := $(if $(filter $(VENV)/bin/python,$(PY)),$(VENV)/.installed)

.PHONY: run test test-all lint bench gpu-check clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install -e ".[dev]"
	touch $@

run: $(SETUP)  ## the demo: a small Fourier sweep of LeNet and logistic regression, with a heat-map panel
	$(PY) run.py experiment=fourier_demo $(ARGS)

test: lint  ## lint, then the test suite (slow tests excluded)
	$(PY) -m pytest $(ARGS)

lint: $(SETUP)  ## ruff: the linter and the formatter's check (settings in pyproject.toml)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

test-all: $(SETUP)  ## every test, the slow ones included
	$(PY) -m pytest -m "" $(ARGS)

bench: $(SETUP)  ## benchmarks: data paths, NAD estimators, hyperplane statistics, sweep cells vs reference-style loops
	$(PY) benchmarks/data_path.py
	$(PY) benchmarks/data_path.py --dataset cifar10
	$(PY) benchmarks/nads.py
	$(PY) benchmarks/nads_per_arch.py
	$(PY) benchmarks/hyperplanes.py
	$(PY) benchmarks/class_density.py
	$(PY) benchmarks/sweep.py
	$(PY) benchmarks/startup.py

gpu-check: $(SETUP)  ## on a machine with CUDA: tests/test_gpu.py and timed GPU runs, one table (without CUDA: says so, exits 0)
	$(PY) benchmarks/gpu_check.py $(ARGS)

clean:
	rm -rf $(VENV) .pytest_cache
