# `make run` and `make test` set up what is missing (a virtual environment in .venv with the
# package, its dependencies, the test tools and the timm extra the tests use), then run the
# workflow or the tests.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: setup run test lint

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --editable '.[test,timm]'
	touch $@

run: setup
	PATH="$(abspath $(BIN)):$$PATH" snakemake --cores all --workflow-profile workflow/profiles/default

test: setup
	PATH="$(abspath $(BIN)):$$PATH" pytest

lint: setup
	PATH="$(abspath $(BIN)):$$PATH" sh -c 'ruff check . && snakefmt --check . && snakemake --lint'
