# Two commands matter: `make demo` and `make test`. Both set up what they need first.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# The Azurite storage emulator (package.json), for the Azure adapter contract tests only:
# `make test` installs it, `make demo` never needs Node.
AZURITE := node_modules/.bin/azurite
NODE_STAMP := node_modules/.installed

.PHONY: setup demo test test-fast lint lock bench bench-venv clean azurite system-packages worker-venv FORCE

# requirements-dev.txt pulls in requirements-local.txt (duckdb: what only the local host
# needs), which pulls in requirements.txt (what runs on Azure, pinned).
setup: $(STAMP)

$(STAMP): requirements.txt requirements-local.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $(STAMP)

demo: setup
	$(PY) -m shared.cli demo

# requirements.txt is what the Flex Consumption remote build installs: every package it needs,
# transitive ones included, pinned with ==. It is compiled from requirements.in for the app's
# Python (3.11, infra/bicep/modules/functionapp.bicep) on Linux by uv, in a venv of its own.
# Pins already in requirements.txt are kept; `make lock LOCK_ARGS=--upgrade` takes the newest.
LOCK_VENV := .venv-lock
UV_VERSION := 0.13.9
LOCK_ARGS ?=
LOCK_COMMAND := requirements.in --python-version 3.11 --python-platform linux -o requirements.txt
lock:
	@test -x $(LOCK_VENV)/bin/uv || { $(PYTHON) -m venv $(LOCK_VENV) && \
		$(LOCK_VENV)/bin/python -m pip install --quiet uv==$(UV_VERSION); }
	$(LOCK_VENV)/bin/uv pip compile $(LOCK_COMMAND) --quiet $(LOCK_ARGS) \
		--custom-compile-command "make lock, which runs: uv pip compile $(LOCK_COMMAND)"

# Style, formatting, types, and the layers: what may import what (pyproject.toml
# [tool.importlinter]) and what import-linter cannot see (tests/architecture: the domain is
# standard library only, function_app.py and functions/ load nothing local, a wrong import
# breaks the contracts), and azure-functions-doctor on the project (tests/infra/test_doctor.py).
lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports --no-cache
	$(PY) -m pytest -q -p no:cacheprovider tests/architecture tests/infra/test_doctor.py

azurite: $(NODE_STAMP)

# Reinstalled when the lock file changes or the emulator is missing. Without npm the Azurite
# tests are skipped, except under CI=true, where they must run.
$(NODE_STAMP): package.json package-lock.json $(if $(wildcard $(AZURITE)),,FORCE)
	@if command -v npm >/dev/null 2>&1; then \
		echo "npm ci --no-audit --no-fund"; npm ci --no-audit --no-fund && touch $(NODE_STAMP); \
	elif [ "$$CI" = "true" ]; then \
		echo "npm not found: CI needs Node.js 20+ and npm for the Azurite tests" >&2; exit 1; \
	else \
		echo "npm not found: the Azurite contract tests will be skipped" >&2; \
	fi

FORCE:

# Debian packages some tests need: headless Chromium (the report), unixODBC and the SQLite ODBC
# driver (the Azure SQL adapter's real pyodbc bindings), shellcheck (the azd hook). Installed
# when missing and we are root (CI containers); otherwise those tests skip, except under
# CI=true, where they fail: then this target fails first, naming what is missing. apt-get waits
# up to 5 minutes for the dpkg lock another install holds (it used to give up at once, "Could
# not get lock", and the tests went on without the packages, silently).
SYSTEM_PACKAGES := chromium unixodbc libsqliteodbc shellcheck
APT_GET := apt-get -o DPkg::Lock::Timeout=300
system-packages:
	@missing=$$(for p in $(SYSTEM_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ] && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "apt-get install" $$missing; \
		$(APT_GET) install -y -qq $$missing >/dev/null 2>&1 || { $(APT_GET) update -qq && $(APT_GET) install -y -qq $$missing >/dev/null; }; \
		missing=$$(for p in $$missing; do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	fi; \
	if [ -n "$$missing" ] && [ "$$CI" = "true" ]; then \
		echo "error: system packages missing, and CI=true needs them:" $$missing >&2; exit 1; \
	elif [ -n "$$missing" ]; then \
		echo "note: system packages missing, so their tests will be skipped:" $$missing >&2; \
	fi

# The Functions Python worker's own indexing (PyPI azure-functions-runtime, Python 3.13 only)
# runs over function_app.py in tests/functions/test_worker_indexing.py, in a venv of its own,
# when a Python 3.13 is on the machine (on PATH, or installed by pyenv). It installs the ranges
# of requirements.in, not the lock: the lock is for the app's Python (3.11), and some of its pins
# (azure-functions 1.26.0) do not install on 3.13.
PYTHON_WORKER ?= $(shell for p in $$(command -v python3.13) $$HOME/.pyenv/versions/3.13*/bin/python3.13; do \
	"$$p" -c 'import sys; assert sys.version_info[:2] == (3, 13)' 2>/dev/null && echo "$$p" && break; done)
WORKER_VENV := .venv-worker
WORKER_STAMP := $(WORKER_VENV)/.installed

worker-venv: $(if $(PYTHON_WORKER),$(WORKER_STAMP),)

$(WORKER_STAMP): requirements.in
	$(PYTHON_WORKER) -m venv $(WORKER_VENV)
	$(WORKER_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(WORKER_VENV)/bin/python -m pip install --quiet -r requirements.in azure-functions-runtime==1.3.0
	touch $@

test: setup lint azurite system-packages worker-venv
	$(PY) -m pytest

# The inner loop: everything but the tests marked `slow` (the property test, the million-row file).
test-fast: setup azurite system-packages worker-venv
	$(PY) -m pytest -m "not slow"

# Speed lives here, not in `make test`: each script compares against a baseline in the same
# run and writes benchmarks/results/<name>.json (see docs/performance.md).
# A script exits non-zero when a target of its own is not met; the rest still run ("-").
bench: setup bench-venv
	-$(PY) benchmarks/bench_fetch.py
	-$(PY) benchmarks/bench_staging.py
	-$(PY) benchmarks/bench_run.py
	-$(PY) benchmarks/bench_build.py
	-$(PY) benchmarks/bench_crm_memory.py
	-$(PY) benchmarks/bench_startup.py
	-$(PY) benchmarks/bench_peer_dlt.py
	-$(PY) benchmarks/bench_scale.py

# The peer benchmark's own venv: dlt (benchmarks/peer/requirements.txt), never in .venv.
BENCH_VENV := .venv-bench
BENCH_STAMP := $(BENCH_VENV)/.installed

bench-venv: $(BENCH_STAMP)

$(BENCH_STAMP): benchmarks/peer/requirements.txt
	$(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(BENCH_VENV)/bin/python -m pip install --quiet -r benchmarks/peer/requirements.txt
	touch $@

clean:
	rm -rf .local .pytest_cache .ruff_cache .hypothesis .mypy_cache $(LOCK_VENV)
