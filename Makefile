# Every target creates and uses .venv as needed.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: help run test test-fast lint bench screenshot system-deps settings-table clean

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

CODE := server tests bench testkit

test: $(STAMP) system-deps lint  ## lint, type-check and run every test
	$(PY) -m pytest

test-fast: $(STAMP) lint  ## lint, type-check, unit and in-process tests (no subprocesses, no browser)
	$(PY) -m pytest -m "not e2e and not browser"

lint: $(STAMP)  ## ruff and mypy only
	$(PY) -m ruff check $(CODE)
	$(PY) -m ruff format --check $(CODE)
	$(PY) -m mypy $(CODE)

settings-table: $(STAMP)  ## write the README's settings table from the declarations
	$(PY) scripts/settings-table.py

bench: $(STAMP)  ## measure cost and fan-out; prints a table, writes bench/results/
	$(PY) -m bench

screenshot: $(STAMP) system-deps  ## refresh docs/screenshot.png from a live server
	$(PY) -m tests.screenshot docs/screenshot.png

clean:  ## remove the venv and caches
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
