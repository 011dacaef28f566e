# The two commands a new machine needs:
#   make run    install bigupload in .venv and start it on its embedded defaults
#   make test   install what the tests need (PostgreSQL, the strict S3 server) and run them all

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: run test test-deps install dev lint format typecheck bench bench-upload clean web

$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "bigupload needs Python 3.11 or newer (set PYTHON=...)")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e .
	@touch $@

$(VENV)/.dev-installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[dev]'
	@touch $@ $(VENV)/.installed

install: $(VENV)/.installed

dev: $(VENV)/.dev-installed

run: install
	$(BIN)/bigupload serve

test-deps:
	scripts/install-postgres.sh
	scripts/install-localstack.sh
	scripts/install-chromium.sh
	scripts/install-tools.sh curl jq tini redis-server caddy
	scripts/build-uppy-harness.sh

test: dev test-deps
	$(BIN)/pytest

lint: dev
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy

format: dev
	$(BIN)/ruff format src tests bench
	$(BIN)/ruff check --fix src tests bench

bench: install
	$(BIN)/python bench/create_upload.py

bench-upload: install
	$(BIN)/pip install -q 'nanio>=0.1.7'
	$(BIN)/python bench/upload_throughput.py --rounds 5

# The web page: sources in web/, built into src/bigupload/web/static/ (committed, so installing
# bigupload needs no Node.js). Needs Node.js >= 20.19 and npm.
web:
	cd web && npm ci && npm run build

clean:
	rm -rf $(VENV) .venv-localstack .pytest_cache .mypy_cache .ruff_cache
