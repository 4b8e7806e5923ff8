# Two commands: `make run` (set up on first use, serve on the embedded default) and
# `make test` (set up on first use, lint, run the whole suite). Only Python 3.11+ is needed.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run demo test lint bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/doorstep serve

# A hub with simulated technicians, and the links to watch them (Ctrl-C stops it).
demo: $(STAMP)
	$(BIN)/doorstep demo

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: lint
	$(BIN)/pytest

bench: $(STAMP)
	$(BIN)/python -m loadtest.codec_bench

clean:
	rm -rf $(VENV) doorstep-data .pytest_cache .ruff_cache
