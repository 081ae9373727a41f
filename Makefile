# Two commands for a fresh clone:  `make demo` (the demo shop) and `make test` (the test suite).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
HOST ?= 127.0.0.1:8000

.PHONY: install demo test lint

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch first, pinned: an unpinned torch would pull a multi-GB CUDA build.
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[dev]"
	touch $@

install: $(VENV)/.installed

demo: install
	$(PY) manage.py migrate --no-input
	$(PY) manage.py demo_setup
	$(PY) manage.py runserver $(HOST)

test: install
	bash scripts/test.sh

lint: install
	$(VENV)/bin/ruff check .
