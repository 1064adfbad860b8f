# Two commands matter for a newcomer: `make run` and `make test` (see README.md).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PG_ADMIN_URL ?= postgresql://postgres@127.0.0.1:5432/postgres
# Exact versions of everything installed (app, tests, browser, lint), made by `make lock` from
# pyproject.toml. Installs take it as constraints: `make run` gets the app's packages only, at
# the versions the tests ran with.
LOCK := requirements.lock
FLOORS := .venv-floors
# The part of the suite run on the lowest versions pyproject.toml allows (make test-floors): what
# touches each direct dependency (Litestar, Piccolo on SQLite, aiosmtplib and aiosmtpd, icalendar,
# css-inline, dkimpy, redis, argon2, the wheel build), about 90 seconds.
FLOOR_TESTS ?= tests/test_db.py tests/test_cli.py tests/mail tests/inbound tests/calendars tests/web \
	tests/security/test_limits.py tests/domain/test_registrations.py tests/domain/test_invite_lifecycle.py \
	--deselect tests/mail/test_email_layout.py::test_every_email_in_chromium_at_390_has_no_sideways_scroll_and_no_axe_violation

.PHONY: run test test-sqlite test-postgres test-floors lint lock install install-test bench screenshots clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml $(LOCK) | $(BIN)/python
	$(BIN)/pip install --quiet -c $(LOCK) -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml $(LOCK) | $(BIN)/python
	$(BIN)/pip install --quiet -c $(LOCK) -e ".[test,browser,lint]"
	touch $(VENV)/.installed $@

install: $(VENV)/.installed
install-test: $(VENV)/.installed-test

## make run: install, migrate, load the demo content if missing, serve on http://127.0.0.1:$(PORT)
## (PORT=8000 by default; links in emails follow it unless EVENTS_BASE_URL says otherwise)
PORT ?= 8000
run: install
	$(BIN)/events-app migrate
	$(BIN)/events-app demo
	EVENTS_BASE_URL="$${EVENTS_BASE_URL:-http://127.0.0.1:$(PORT)}" $(BIN)/events-app serve --port $(PORT)

## make test: lint (ruff and mypy), the floors check (below), then the whole suite on SQLite, then
## again on a throwaway PostgreSQL database
test: install-test
	$(MAKE) --no-print-directory lint
	$(MAKE) --no-print-directory test-floors
	$(MAKE) --no-print-directory test-sqlite
	$(MAKE) --no-print-directory test-postgres

test-sqlite: install-test
	env -u EVENTS_DATABASE_URL $(BIN)/python -m pytest $(PYTEST_ARGS)

test-postgres: install-test
	$(BIN)/python tests/with_postgres.py --admin-url "$(PG_ADMIN_URL)" -- $(PYTEST_ARGS)

## make lint: ruff (lint and format) and mypy on events_app/
lint: install-test
	$(BIN)/ruff check events_app
	$(BIN)/ruff format --check events_app
	$(BIN)/mypy

## make lock: recompute requirements.lock after changing a dependency in pyproject.toml
lock: install-test
	$(BIN)/uv pip compile pyproject.toml --universal --python-version 3.11 \
		--extra test --extra browser --extra lint --no-header --quiet -o $(LOCK)

## make test-floors: a second venv (.venv-floors) with the lowest versions pyproject.toml allows for
## every direct dependency (uv's lowest-direct resolution; what they pull in is the newest), and
## FLOOR_TESTS on SQLite in it, so the floors stay true (about two minutes)
test-floors: install-test
	rm -rf $(FLOORS)
	$(BIN)/uv venv --quiet --seed --python $(BIN)/python $(FLOORS)
	$(BIN)/uv pip install --quiet --python $(FLOORS)/bin/python --resolution lowest-direct -e ".[test]"
	env -u EVENTS_DATABASE_URL $(FLOORS)/bin/python -m pytest -q -p no:cacheprovider $(FLOOR_TESTS)

## make bench: every benchmark (bench/*.py --json), one table of ratios (about 15 minutes)
bench: install-test
	$(BIN)/python bench/run_all.py $(BENCH_ARGS)

## make screenshots: the README's gallery, docs/screenshots/<page>-<1280|390>.png and its table
## (docs/screenshots/README.md): the demo on a real server and a throwaway SQLite database, whole
## pages in Chromium at desktop and phone widths (under a minute)
screenshots: install-test
	env -u EVENTS_DATABASE_URL $(BIN)/python tests/screenshots.py

clean:
	rm -rf $(VENV) $(FLOORS) build dist *.egg-info .pytest_cache
