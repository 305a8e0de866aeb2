# Two commands from a bare machine: `make run` and `make test`.
# Everything installs from PyPI and npm into this folder (.venv, node_modules).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
APE := $(VENV)/bin/ape
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
export SOLCX_BINARY_PATH := $(CURDIR)/$(VENV)/solcx
export TF_CPP_MIN_LOG_LEVEL := 2
export PYTHONUNBUFFERED := 1

# Extra arguments: make test ARGS="-k submit", make run ARGS="--rounds 5"
ARGS ?=
# Test workers (pytest-xdist): the suite's tests are independent; JOBS=0 runs them in this process.
JOBS ?= 2

.PHONY: setup test test-contracts run deploy bench notebook clean

setup: $(VENV)/.deps-stamp node_modules/.deps-stamp $(VENV)/.solc-stamp ## install everything (idempotent)

$(VENV)/.deps-stamp: requirements.lock pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.lock
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps -e .
	@touch $@

node_modules/.deps-stamp: package.json package-lock.json
	npm ci --ignore-scripts --no-audit --no-fund --loglevel=error
	@touch $@

$(VENV)/.solc-stamp: $(VENV)/.deps-stamp node_modules/.deps-stamp tools/install-solc.sh tools/solc-wrapper.js
	./tools/install-solc.sh
	@touch $@

test: setup ## run the whole suite (contracts, ml, end-to-end, several chains)
	$(APE) test tests -n $(JOBS) $(ARGS)

test-contracts: setup
	$(APE) test tests/contracts $(ARGS)

run: setup ## the main job on an Anvil it starts (ape run federated_round's default chain)
	$(APE) run federated_round $(ARGS)

deploy: setup
	$(APE) run deploy $(ARGS)

bench: setup
	$(PY) -m bench $(ARGS)

notebook: setup
	$(VENV)/bin/jupyter notebook notebooks/

clean: ## remove everything that setup and runs create
	rm -rf $(VENV) node_modules .build .cache out bench/results/*.tmp
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
