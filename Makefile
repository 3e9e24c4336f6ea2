# Two entry points: `make run` (demo on SQLite) and `make test` (lint, types, tests).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint types unit bench clean

$(STAMP): pyproject.toml client/pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]' -e ./client
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/meterhub demo

lint: $(STAMP)
	$(BIN)/ruff check src tests bench client
	$(BIN)/ruff format --check src tests bench client

types: $(STAMP)
	$(BIN)/mypy

test: lint types
	$(BIN)/pytest

bench: $(STAMP)
	$(BIN)/python bench/poll_sweep.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
