# Two commands do all the set-up on a fresh machine (Python 3.11+, Debian):
#   make quickstart   -> creates .venv, installs the project, runs studies/quickstart.yaml, prints its table
#   make test         -> creates .venv, installs the project (+ PostgreSQL when missing), runs the test suite
VENV ?= .venv
PY := $(VENV)/bin/python
PYTHON ?= python3

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

.PHONY: install quickstart test postgres browser lint bench
install: $(VENV)/.installed

quickstart: $(VENV)/.installed
	$(VENV)/bin/iel submit studies/quickstart.yaml

postgres:
	bash .ci/install-postgres.sh

browser: $(VENV)/.installed
	bash .ci/install-browser.sh $(VENV)

test: $(VENV)/.installed postgres browser
	$(PY) -m pytest -q --timeout=900

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check ielcore workers orchestrator tests benchmarks
	$(VENV)/bin/ruff format --check ielcore workers orchestrator tests benchmarks
	$(VENV)/bin/mypy

bench: $(VENV)/.installed
	$(PY) benchmarks/bench_orchestration.py
