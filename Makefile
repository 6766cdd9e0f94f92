# make test: provision what the suite needs (Debian packages when run as root, a venv), run it all.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: test unit integration system lint bench demo provision venv clean

$(VENV)/.stamp: pyproject.toml setup.py
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip "setuptools>=77"
	$(PY) -m pip install -q -e '.[test]'
	touch $@

venv: $(VENV)/.stamp

provision:
	bash tests/provision.sh

test: provision venv
	$(PY) -m pytest -ra $(PYTEST_ARGS) tests

unit: venv
	$(PY) -m pytest -ra $(PYTEST_ARGS) tests/unit

integration: provision venv
	$(PY) -m pytest -ra $(PYTEST_ARGS) tests/integration

system: provision venv
	$(PY) -m pytest -ra $(PYTEST_ARGS) tests/system

lint: venv
	$(PY) -m ruff check gpuprep tests bench

bench: provision venv
	$(PY) bench/run_all.py

demo: provision venv
	$(PY) tests/system/demo.py

clean:
	rm -rf $(VENV) .cache build *.egg-info
