# make test: provision what the suite needs (Debian packages when run as root, a venv), run it all.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: test unit integration system lint bench demo provision venv clean dist lock

$(VENV)/.stamp: pyproject.toml setup.py
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip "setuptools>=77"
	$(PY) -m pip install -q -e '.[test]'
	touch $@

venv: $(VENV)/.stamp

provision:
	bash tests/provision.sh

test: provision venv lint
	$(PY) -m pytest -ra $(PYTEST_ARGS) tests

unit: venv
	$(PY) -m pytest -ra $(PYTEST_ARGS) tests/unit

integration: provision venv
	$(PY) -m pytest -ra $(PYTEST_ARGS) tests/integration

system: provision venv
	$(PY) -m pytest -ra $(PYTEST_ARGS) tests/system

lint: venv
	$(PY) -m ruff check gpuprep tests bench packaging integrations
	$(PY) -m mypy

bench: provision venv
	$(PY) bench/run_all.py

demo: provision venv
	$(PY) tests/system/demo.py

# make dist: a wheelhouse that installs gpuprep offline into a venv on the target (docs/packaging.md):
# dist/gpuprep-wheelhouse-py$(DIST_PYTHON)/ and its .tar.gz, the same bytes for the same commit: its dependencies
# are packaging/lock/py$(DIST_PYTHON).txt's (hash-checked). DIST_CACHE=DIR keeps the downloaded wheels there.
# make lock: resolve pyproject.toml's dependencies afresh into that lock (review and commit its diff).
DIST_PYTHON    ?= 3.9
DIST_PLATFORMS ?= manylinux2014_x86_64 manylinux2014_aarch64
DIST_DIR       ?= dist
DIST_CACHE     ?=

dist: venv
	$(PY) packaging/wheelhouse.py --python $(DIST_PYTHON) $(foreach p,$(DIST_PLATFORMS),--platform $(p)) \
		--out $(DIST_DIR) $(if $(DIST_CACHE),--cache $(DIST_CACHE))

lock: venv
	$(PY) packaging/wheelhouse.py --python $(DIST_PYTHON) $(foreach p,$(DIST_PLATFORMS),--platform $(p)) \
		--update-lock $(if $(DIST_CACHE),--cache $(DIST_CACHE))

clean:
	rm -rf $(VENV) .cache build dist *.egg-info
