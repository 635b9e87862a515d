# `make run` and `make test` set up what is missing (a virtual environment in .venv with the
# package, its dependencies, the test tools and the extras the tests use: timm, docs, lightning,
# transformers, tensorboard, mlflow), then run the workflow or the tests; `make docs` builds the
# documentation site into site/.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: setup run test lint docs

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --editable '.[test,timm,docs,lightning,transformers,tensorboard,mlflow]'
	touch $@

run: setup
	PATH="$(abspath $(BIN)):$$PATH" snakemake --cores all --workflow-profile workflow/profiles/default

test: setup
	PATH="$(abspath $(BIN)):$$PATH" pytest

# ruff (lint and format), snakefmt, lint-imports and snakemake --lint, as tests/unit/test_style.py
# checks them (snakemake --lint exits 1 on its one documented lint; the test knows which it is).
lint: setup
	PATH="$(abspath $(BIN)):$$PATH" pytest -p no:xdist -o addopts= -q tests/unit/test_style.py

# The documentation site (mkdocs.yml, docs/) into site/; `mkdocs serve` shows it while editing.
docs: setup
	PATH="$(abspath $(BIN)):$$PATH" mkdocs build --strict
