"""A shim: gpuprep's metadata lives in pyproject.toml (PEP 621). Kept for tools that still run setup.py."""

import sys

import setuptools

# pyproject.toml gives the license as an expression (PEP 639), which setuptools reads from 77 on;
# an older one fails on it with a schema dump. Say what to do instead.
if int(setuptools.__version__.split(".")[0]) < 77:
    sys.exit(f"gpuprep: setup.py needs setuptools>=77 (this is {setuptools.__version__}): "
             "`pip install -U setuptools`, or build with pip (`pip wheel --no-deps .`), which fetches it")

setuptools.setup()
