# The two commands a newcomer types: `make run` and `make test`.
# Both create .venv on first use (only Python 3.11+, make and git needed).

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-test
BSTAMP := $(VENV)/.installed-bench
DATA   ?= ./data
PORT   ?= 7379
HTTP_PORT ?= 7380
# pytest workers (pytest-xdist). A quarter of a worker's time is spent waiting (on
# servers, child processes, timeouts), so a third worker fills 2 cores: one run each on
# this 2-core machine, same tree, 782 s of CPU in both: 518 s with two workers, 464 s
# with three. TEST_JOBS=0 runs it in-process.
TEST_JOBS ?= 3

.PHONY: help run test lint typecheck pytest bench clean venv
.DEFAULT_GOAL := help

# `make` alone, or `make help`: the targets, from the `## ` comments beside them.
help:  ## this list
	@echo 'bitcask: make TARGET'
	@echo
	@sed -n 's/^\([a-z]*\):.*## \(.*\)$$/  \1\t\2/p' $(MAKEFILE_LIST) | expand -t 14
	@echo
	@echo 'Variables: PYTHON=$(PYTHON) DATA=$(DATA) PORT=$(PORT) HTTP_PORT=$(HTTP_PORT) TEST_JOBS=$(TEST_JOBS)'
	@echo '(make run DATA=/tmp/db PORT=7400 HTTP_PORT=7401). The first target run creates .venv.'

$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "bitcask needs Python 3.11+, $(PYTHON) is " + sys.version.split()[0] + ": name a newer one, e.g. make $(or $(MAKECMDGOALS),run) PYTHON=python3.12")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e '.[test]'
	@touch $@

$(BSTAMP): pyproject.toml $(STAMP)
	$(BIN)/python -m pip install -q -e '.[test,bench]' || $(BIN)/python -m pip install -q -e '.[test]' matplotlib
	@touch $@

venv: $(STAMP)  ## create .venv with the project and its test tools

run: $(STAMP)  ## start bitcask-server in the foreground (DATA, PORT, HTTP_PORT below)
	$(BIN)/bitcask-server --data $(DATA) --host 127.0.0.1 --port $(PORT) --http-port $(HTTP_PORT)

lint: $(STAMP)  ## ruff check and ruff format --check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# (the engine and the protocol never import matplotlib: its override is unused there)
typecheck: $(STAMP)  ## mypy (strict on bitcask/ and protocol/)
	$(BIN)/mypy --strict --no-warn-unused-configs bitcask protocol
	$(BIN)/mypy server client repl bench

# The suite starts thousands of Python processes (servers, the CLI, the shell): with
# PYTHONDONTWRITEBYTECODE set, as in this project's CI environment, every one of them
# compiled the whole project again (a CLI run 0.45 s instead of 0.27 s). Their bytecode
# is kept under .venv/pycache instead of beside the sources. --dist loadgroup: tests
# marked xdist_group run on one worker (tests/test_packaging.py builds its wheel once).
pytest: $(STAMP)  ## the test suite (TEST_JOBS workers, default 3)
	env -u PYTHONDONTWRITEBYTECODE PYTHONPYCACHEPREFIX=$(abspath $(VENV))/pycache \
		$(BIN)/python -m pytest -n $(TEST_JOBS) --dist loadgroup

test: lint typecheck pytest  ## lint + typecheck + pytest: what CI runs

# The same bytecode cache as pytest's: with PYTHONDONTWRITEBYTECODE set every server and
# CLI the benchmarks start compiled the project again (bitcask get: 290 ms, not ~140).
bench: $(BSTAMP)  ## the benchmarks (minutes; results in bench/results/)
	env -u PYTHONDONTWRITEBYTECODE PYTHONPYCACHEPREFIX=$(abspath $(VENV))/pycache \
		$(BIN)/python -m bench

clean:  ## remove .venv and the caches
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
