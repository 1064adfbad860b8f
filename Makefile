# Two commands matter for a newcomer: `make run` and `make test` (see README.md).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PG_ADMIN_URL ?= postgresql://postgres@127.0.0.1:5432/postgres

.PHONY: run test test-sqlite test-postgres install install-test bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e ".[test]"
	touch $(VENV)/.installed $@

install: $(VENV)/.installed
install-test: $(VENV)/.installed-test

## make run: install, migrate, load the demo content if missing, serve on http://127.0.0.1:8000
run: install
	$(BIN)/events-app migrate
	$(BIN)/events-app demo
	$(BIN)/events-app serve

## make test: the whole suite on SQLite, then again on a throwaway PostgreSQL database
test: install-test
	$(MAKE) --no-print-directory test-sqlite
	$(MAKE) --no-print-directory test-postgres

test-sqlite: install-test
	env -u EVENTS_DATABASE_URL $(BIN)/python -m pytest $(PYTEST_ARGS)

test-postgres: install-test
	$(BIN)/python tests/with_postgres.py --admin-url "$(PG_ADMIN_URL)" -- $(PYTEST_ARGS)

## make bench: every benchmark (bench/*.py --json), one table of ratios (about 15 minutes)
bench: install-test
	$(BIN)/python bench/run_all.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache
