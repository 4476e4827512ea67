# Every target creates and uses .venv as needed.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

# This version's wheel, served by the hub to new agents (/agent/install.sh).
AGENT_WHEEL := data/agent/host_dashboard-$(shell sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)-py3-none-any.whl

.PHONY: help run agent-wheel test test-fast lint bench audit screenshot system-deps settings-table clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: $(STAMP) $(AGENT_WHEEL)  ## serve the dashboard at http://127.0.0.1:5000/
	$(PY) -m server

agent-wheel: $(AGENT_WHEEL)  ## build the wheel the hub serves to new agents, into data/agent/

$(AGENT_WHEEL): $(STAMP) pyproject.toml $(shell find server -name '*.py' -o -name '*.sh' -o -name '*.html' -o -name '*.js' -o -name '*.css' | grep -v __pycache__)
	rm -f data/agent/host_dashboard-*.whl
	# From a copy: setuptools leaves its build/ beside what it builds.
	tmp=$$(mktemp -d) && cp -r pyproject.toml README.md server $$tmp/ \
		&& $(PY) -m pip wheel --quiet --no-deps -w data/agent $$tmp; status=$$?; rm -rf $$tmp; exit $$status

system-deps:  ## install the Debian packages the tests drive (chromium, nginx, ...)
	./scripts/system-deps.sh

CODE := server tests bench testkit
AXE := tests/node/node_modules/axe-core/axe.min.js
LIGHTHOUSE := bench/audit/node_modules/.bin/lighthouse
ESLINT := tools/eslint/node_modules/.bin/eslint

# Browser-side tools from the npm registry, at the versions the lock files pin.
$(AXE): tests/node/package-lock.json
	npm ci --prefix tests/node --no-audit --no-fund --loglevel=error
	touch $(AXE)

$(LIGHTHOUSE): bench/audit/package-lock.json
	npm ci --prefix bench/audit --no-audit --no-fund --loglevel=error
	touch $(LIGHTHOUSE)

$(ESLINT): tools/eslint/package-lock.json
	npm ci --prefix tools/eslint --no-audit --no-fund --loglevel=error
	touch $(ESLINT)

test: $(STAMP) system-deps $(AXE) lint  ## lint, type-check and run every test
	$(PY) -m pytest --durations=30  # the slowest, to keep the whole under 45 minutes

test-fast: $(STAMP) lint  ## lint, type-check, unit and in-process tests (no subprocesses, no browser)
	$(PY) -m pytest -m "not e2e and not browser"

lint: $(STAMP) $(ESLINT)  ## ruff and mypy on the Python, ESLint on the page's scripts
	$(PY) -m ruff check $(CODE)
	$(PY) -m ruff format --check $(CODE)
	$(PY) -m mypy $(CODE)
	$(ESLINT) --config tools/eslint/eslint.config.mjs --max-warnings 0 server/static/*.js

settings-table: $(STAMP)  ## write docs/settings.md's settings table from the declarations
	$(PY) scripts/settings-table.py

bench: $(STAMP)  ## measure cost and fan-out; prints a table, writes bench/results/
	$(PY) -m bench

audit: $(STAMP) system-deps $(LIGHTHOUSE)  ## Lighthouse on desktop and mobile: scores and failed audits
	$(PY) -m bench.audit

screenshot: $(STAMP) system-deps  ## refresh the README's screenshots in docs/ from live servers
	$(PY) -m tests.screenshot docs

clean:  ## remove the venv and caches
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache tests/node/node_modules bench/audit/node_modules tools/eslint/node_modules
