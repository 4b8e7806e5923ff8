# Two commands: `make run` (set up on first use, serve on the embedded default) and
# `make test` (set up on first use, lint, run the whole suite). Only Python 3.11+ is needed.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run demo test test-redis lint bench clean

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
	$(BIN)/lint-imports --no-cache

test: lint
	$(BIN)/pytest -n auto

# The whole hub suite again with every hub on the Redis backend (needs Redis on 127.0.0.1:6379;
# each test uses its own key prefix, deleted at the end). `make test` already runs the Redis
# contract, multi-process and outage tests.
test-redis: $(STAMP)
	DOORSTEP_TEST_BACKEND=redis $(BIN)/pytest tests/realtime tests/clients

bench: $(STAMP)
	$(BIN)/python -m loadtest.codec_bench

clean:
	rm -rf $(VENV) doorstep-data .pytest_cache .ruff_cache
