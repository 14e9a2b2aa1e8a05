# The two commands of the README: `make demo` and `make test` set up everything they need.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: demo test lint format serve bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/barkeeper demo
	@echo "The command lives in $(BIN): run 'source $(BIN)/activate' once per shell, or call $(BIN)/barkeeper."

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# The local Prefect server (`barkeeper server start`: home ./.prefect, port $(PORT)) that every
# command then uses, the deployments of prefect.yaml and a worker; Ctrl-C stops what it started.
PORT ?= 4200
serve: $(STAMP)
	PORT=$(PORT) scripts/serve.sh

bench: $(STAMP)
	$(BIN)/barkeeper bench

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis barkeeper_reports barkeeper.db*
