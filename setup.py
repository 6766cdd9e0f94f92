"""A shim: gpuprep's metadata lives in pyproject.toml (PEP 621). Kept for tools that still run setup.py, and for
the one dynamic field: the version, from git (gpuprep/version.py), written into the wheel as gpuprep/_version.py."""

import importlib.util
import sys
from pathlib import Path

import setuptools
from setuptools.command.build_py import build_py

# pyproject.toml gives the license as an expression (PEP 639), which setuptools reads from 77 on;
# an older one fails on it with a schema dump. Say what to do instead.
if int(setuptools.__version__.split(".")[0]) < 77:
    sys.exit(f"gpuprep: setup.py needs setuptools>=77 (this is {setuptools.__version__}): "
             "`pip install -U setuptools`, or build with pip (`pip wheel --no-deps .`), which fetches it")

HERE = Path(__file__).resolve().parent
_spec = importlib.util.spec_from_file_location("gpuprep_version", HERE / "gpuprep/version.py")
_version = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_version)


def _built_version() -> str:
    """A copy without git (packaging/wheelhouse.py's) carries the version in gpuprep/_version.py; else git."""
    built = HERE / "gpuprep/_version.py"
    if built.is_file():
        scope: dict = {}
        exec(built.read_text(), scope)  # noqa: S102 - our own generated one-liner (gpuprep/version.py build_file)
        return scope["__version__"]
    return _version.from_git(HERE) or _version.FALLBACK


VERSION = _built_version()


class BuildPyWithVersion(build_py):
    """Writes gpuprep/_version.py into the build, so the installed gpuprep never asks git."""

    def run(self):
        super().run()
        if not self.editable_mode:
            target = Path(self.build_lib) / "gpuprep/_version.py"
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(_version.build_file(VERSION))


setuptools.setup(version=VERSION, cmdclass={"build_py": BuildPyWithVersion})
