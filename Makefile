# Two commands matter: `make demo` and `make test`. Everything else supports them.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
BICEP_TYPES_DIR ?= $(if $(wildcard ../shared/bicep-types),$(abspath ../shared/bicep-types),)
export BICEP_TYPES_DIR

.PHONY: setup demo test lint bench start serve clean services-check

setup: $(VENV)/.installed node_modules/.installed services-check

# The venv is made anew when it is not Python 3.13 (docs/running.md, "Python version and the worker").
$(VENV)/.installed: requirements.txt requirements-dev.txt
	@$(PY) -c 'import sys; assert sys.version_info[:2] == (3, 13)' 2>/dev/null || \
	  { python=$$(tools/python.sh) && rm -rf $(VENV) && $$python -m venv $(VENV); }
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	@touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	@touch $@

# Mosquitto comes from the system's packages; install it when we are root.
services-check:
	@command -v mosquitto >/dev/null || test -x /usr/sbin/mosquitto || \
	  { if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mosquitto >/dev/null; \
	    else echo "Mosquitto is missing: sudo apt-get install -y mosquitto" >&2; exit 1; fi; }

demo: setup
	$(PY) -m tools.demo

test: setup
	$(PY) -m pytest

lint: setup
	$(PY) -m ruff check .
	$(PY) -m mypy

# A simulated fleet against the app (python -m tools.simulate --help): make simulate ARGS="--devices 50"
simulate: setup
	$(PY) -m tools.simulate $(ARGS)

bench: setup
	$(PY) -m tools.bench

# Azurite on its standard ports and the Functions host, where Core Tools are installed.
start: setup
	tools/start.sh

# Without Core Tools: a stand-in for the host serving the HTTP API, against Azurite and Mosquitto.
serve: setup
	$(PY) -m tools.serve --port 7071 --data .demo

clean:
	rm -rf $(VENV) node_modules .pytest_cache .mypy_cache .ruff_cache .hypothesis
