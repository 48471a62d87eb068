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

.PHONY: run test lint typecheck pytest bench clean venv

$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "bitcask needs Python 3.11+, found " + sys.version.split()[0])'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e '.[test]'
	@touch $@

$(BSTAMP): pyproject.toml $(STAMP)
	$(BIN)/python -m pip install -q -e '.[test,bench]' || $(BIN)/python -m pip install -q -e '.[test]' matplotlib
	@touch $@

venv: $(STAMP)

run: $(STAMP)
	$(BIN)/bitcask-server --data $(DATA) --host 127.0.0.1 --port $(PORT) --http-port $(HTTP_PORT)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy --strict bitcask protocol
	$(BIN)/mypy server client repl bench

pytest: $(STAMP)
	$(BIN)/python -m pytest

test: lint typecheck pytest

bench: $(BSTAMP)
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
