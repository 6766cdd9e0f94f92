"""packaging/wheelhouse.py's pure parts: the hash lock install.sh installs with, and the requirements it ships."""

from __future__ import annotations

import hashlib
import importlib.util
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("wheelhouse", REPO / "packaging/wheelhouse.py")
wheelhouse = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(wheelhouse)


def _wheel(d: Path, name: str, body: bytes = b"") -> Path:
    path = d / name
    path.write_bytes(body or name.encode())
    return path


def test_lock_pins_each_distribution_once_with_every_platforms_hash(tmp_path):
    x86 = _wheel(tmp_path, "psutil-7.2.2-cp36-abi3-manylinux2010_x86_64.whl")
    arm = _wheel(tmp_path, "psutil-7.2.2-cp36-abi3-manylinux2014_aarch64.whl")
    pure = _wheel(tmp_path, "Markdown_It_Py-3.0.0-py3-none-any.whl")
    text = wheelhouse.lock([pure, x86, arm])
    lines = [line for line in text.splitlines() if not line.startswith("#")]
    digest = {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in (x86, arm, pure)}
    assert lines[0] == f"markdown-it-py==3.0.0 --hash=sha256:{digest[pure]}"  # PEP 503 name
    assert lines[1] == "psutil==7.2.2 " + " ".join(f"--hash=sha256:{h}" for h in sorted([digest[x86], digest[arm]]))


def test_lock_refuses_two_versions_of_one_distribution(tmp_path):
    wheels = [_wheel(tmp_path, "psutil-7.2.2-cp36-abi3-manylinux2010_x86_64.whl"),
              _wheel(tmp_path, "psutil-7.1.0-cp36-abi3-manylinux2014_aarch64.whl")]
    with pytest.raises(wheelhouse.DistError, match="psutil resolved to different versions"):
        wheelhouse.lock(wheels)


def test_runtime_requirements_leave_the_test_extra_out(tmp_path):
    wheel = tmp_path / "gpuprep-0.1.0-py3-none-any.whl"
    metadata = ("Metadata-Version: 2.4\nName: gpuprep\nVersion: 0.1.0\nRequires-Dist: docker>=7.1\n"
                "Requires-Dist: typer<0.29,>=0.12\nRequires-Dist: pytest>=7.4; extra == \"test\"\n")
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr("gpuprep-0.1.0.dist-info/METADATA", metadata)
    assert wheelhouse.runtime_requirements(wheel) == ["docker>=7.1", "typer<0.29,>=0.12"]


def test_a_python_version_other_than_x_y_is_refused(tmp_path):
    with pytest.raises(wheelhouse.DistError, match="give a Python version as X.Y"):
        wheelhouse.build("3", ["manylinux2014_x86_64"], tmp_path, None)


def _locked(python: str = "3.9") -> dict[str, str]:
    """packaging/lock/pyX.Y.txt as {name: version}, every line hash-pinned."""
    pins = {}
    for line in wheelhouse.lock_file(python).read_text().splitlines():
        if not line or line.startswith("#"):
            continue
        pin, *hashes = line.split()
        assert hashes and all(h.startswith("--hash=sha256:") for h in hashes), line
        name, version = pin.split("==")
        pins[name] = version
    return pins


def test_the_committed_lock_satisfies_pyprojects_dependencies():
    """Each runtime dependency pyproject.toml declares is in the lock, at a version its specifier allows: a
    changed dependency (a new floor, a cap) without `--update-lock` fails here."""
    import tomllib
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    pins = _locked()
    declared = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    assert declared
    for text in declared:
        req = Requirement(text)
        name = canonicalize_name(req.name)
        assert name in pins, f"{name} ({text}) is not in {wheelhouse.lock_file('3.9')}: run --update-lock"
        assert req.specifier.contains(pins[name], prereleases=True), (text, pins[name])
    assert "pip" in pins  # install.sh runs pip from its wheel
    assert "gpuprep" not in pins  # gpuprep's own wheel is built, not locked


def test_a_build_without_a_lock_for_its_python_says_how_to_write_one(tmp_path):
    with pytest.raises(wheelhouse.DistError, match=r"no lock for Python 3\.42 .*--update-lock"):
        wheelhouse.build("3.42", ["manylinux2014_x86_64"], tmp_path, None)
