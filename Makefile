# annotate: the commands a new user needs. See README.md.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV      := .venv
PY        := $(VENV)/bin/python
UV        := $(VENV)/bin/uv
MANAGE    := $(PY) manage.py
PORT      ?= 8000
# Tests and benchmarks run against the real servers; these are the local defaults.
TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/annotate
TEST_REDIS_URL    ?= redis://127.0.0.1:6379/0
# The tests serve plain HTTP (HTTPS=false) and use a throwaway key; production takes both from its environment.
TEST_ENV := DATABASE_URL=$(TEST_DATABASE_URL) REDIS_URL=$(TEST_REDIS_URL) HTTPS=false \
	SECRET_KEY=test-only-$(shell printf '%050d' 0)-not-for-production
# The tests of the services that branch on the database (queue, submit, imports, exports, reports, samples, drift,
# throughput) run a second time on the embedded default of `make run`: SQLite and the file-system cache and Celery
# broker, under a throwaway VAR_DIR. Tests marked `postgres` need what only PostgreSQL has and are left out there.
SQLITE_TESTS := $(addprefix tests/annotate/,test_queue.py test_label_views.py test_imports.py test_exports.py \
	test_reports.py test_api.py test_samples.py test_drift.py test_dashboard.py test_tasks.py \
	test_reference_kinds.py test_people.py test_blind.py test_skips.py test_export_loaders.py test_export_options.py \
	test_history.py test_adjudication.py test_rubric_carry.py) tests/judges/test_production.py tests/judges/test_monitor.py \
	tests/annotate/test_review.py tests/judges/test_suggest.py \
	tests/judges/test_monitor_settings_api.py

# Django 6 needs Python 3.12 or newer: take the first one we can find.
BASE_PYTHON ?= $(shell for p in python3.13 python3.12 /root/.pyenv/versions/3.13*/bin/python /root/.pyenv/versions/3.12*/bin/python /usr/local/bin/python3 /usr/bin/python3; do \
	command -v $$p >/dev/null 2>&1 && $$p -c 'import sys; sys.exit(sys.version_info < (3, 12))' 2>/dev/null && { command -v $$p; break; }; done)

.PHONY: help install run test test-sqlite lint typecheck bench services-check clean

help:
	@echo "make run    install, migrate, load the demo and serve http://127.0.0.1:$(PORT) (SQLite + file-system Celery)"
	@echo "make test   install, lint, check migrations, run all tests against Postgres and Redis, then the"
	@echo "            database-dependent ones again on SQLite (make test-sqlite alone: SQLITE_PYTEST_ARGS=...)"
	@echo "make bench  run the benchmarks and write docs/benchmarks.md"
	@echo "make lint   ruff check, ruff format --check and mypy"

# The virtual environment is rebuilt from the lock file whenever the lock changes.
$(VENV)/.installed: uv.lock pyproject.toml
	@if [ -z "$(BASE_PYTHON)" ]; then echo "annotate needs Python >= 3.12 (Django 6); none was found on PATH." >&2; exit 1; fi
	@test -x $(PY) || $(BASE_PYTHON) -m venv $(VENV)
	@test -x $(UV) || $(PY) -m pip install --quiet --disable-pip-version-check "uv==$$(grep -A1 '^name = "uv"' uv.lock | sed -n 's/^version = "\(.*\)"/\1/p')"
	VIRTUAL_ENV=$(abspath $(VENV)) UV_PROJECT_ENVIRONMENT=$(abspath $(VENV)) $(UV) sync --frozen --inexact --python $(PY)
	@touch $@

install: $(VENV)/.installed

run: install
	DEBUG=true $(PY) manage.py rundemo --port $(PORT)

services-check: install
	@$(TEST_ENV) $(PY) -m tests.preflight

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(TEST_ENV) $(VENV)/bin/mypy

# The run ends with its 25 slowest tests (--durations), so a test that grows slow shows in CI's log.
test: install lint services-check
	$(TEST_ENV) $(MANAGE) makemigrations --check --dry-run
	$(TEST_ENV) $(VENV)/bin/pytest --durations=25 $(PYTEST_ARGS)
	@$(MAKE) --no-print-directory test-sqlite

test-sqlite: install
	@echo "Again on the embedded default (SQLite, file-system cache and Celery broker): $(SQLITE_TESTS)"
	@var=$$(mktemp -d) && trap 'rm -rf "$$var"' EXIT && \
	env -u DATABASE_URL -u REDIS_URL VAR_DIR="$$var" HTTPS=false \
		SECRET_KEY=test-only-$(shell printf '%050d' 0)-not-for-production \
		$(VENV)/bin/pytest -m "not postgres" $(SQLITE_TESTS) $(SQLITE_PYTEST_ARGS)

bench: install services-check
	$(TEST_ENV) $(PY) -m tests.bench.run

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
