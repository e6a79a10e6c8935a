# Two entry points: `make run` (install, then the main job) and `make test`
# (install, then lint and the test suite). Both create .venv on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
ARGS ?=

.PHONY: run test lint bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e ".[dev]"
	touch $@

run: $(VENV)/.installed
	$(BIN)/python -m vidur_search $(ARGS)

lint: $(VENV)/.installed
	$(BIN)/ruff check .

test: lint
	$(BIN)/pytest -q -n 2

bench: $(VENV)/.installed
	$(BIN)/python experiments/benchmarks/sim_speed.py

clean:
	rm -rf $(VENV) outputs .pytest_cache .ruff_cache
