# `make test` is the README's test command and what .ci/run calls: it builds the virtual environment from this
# repository's own files (offline-fast: torch 2.14.1 / torchvision 0.29.1 are pinned to the releases on disk)
# and runs the test suite.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.dfx-installed

.PHONY: setup test test-gpu demo lint clean

setup: $(STAMP)

$(STAMP): setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip setuptools wheel
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

test: setup
	$(PY) -m pytest -q -m "not slow"

test-gpu: setup
	$(PY) -m pytest -q -m gpu

lint: setup
	$(VENV)/bin/ruff check .

DIR ?= ../shared/weights/mesonet/test_images
ARGS ?= --recursive

demo: setup
	$(VENV)/bin/dfx-infer $(DIR) $(ARGS)

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache
