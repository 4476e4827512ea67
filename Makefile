# Every target creates and uses .venv as needed.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: help run test lint bench screenshot system-deps clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)  ## serve the dashboard at http://127.0.0.1:5000/
	$(PY) -m server

system-deps:  ## install the Debian packages the tests drive (chromium, nginx, ...)
	./scripts/system-deps.sh

test: $(STAMP) system-deps  ## lint, type-check and run every test
	$(PY) -m ruff check server tests bench
	$(PY) -m ruff format --check server tests bench
	$(PY) -m mypy server
	$(PY) -m pytest

lint: $(STAMP)  ## ruff and mypy only
	$(PY) -m ruff check server tests bench
	$(PY) -m ruff format --check server tests bench
	$(PY) -m mypy server

bench: $(STAMP)  ## measure cost and fan-out; prints a table, writes bench/results/
	$(PY) -m bench

screenshot: $(STAMP) system-deps  ## refresh docs/screenshot.png from a live server
	$(PY) -m tests.screenshot docs/screenshot.png

clean:  ## remove the venv and caches
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
