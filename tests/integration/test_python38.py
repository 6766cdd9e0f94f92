"""gpuprep on the oldest Python it claims (3.8: Amazon Linux 2's `amazon-linux-extras install python3.8`).

Real: a CPython 3.8 interpreter (pyenv's, on these machines), pip installing gpuprep and its pinned
dependencies from the registry into a fresh venv, and the CLI run on a fixture host tree.
"""

from __future__ import annotations

import glob
import json
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def python38() -> str | None:
    """A working 3.8 interpreter: pyenv's own binary (its shim on PATH may point at no selected version)."""
    candidates = sorted(glob.glob("/root/.pyenv/versions/3.8*/bin/python3.8"))
    candidates += [p for p in [shutil.which("python3.8")] if p]
    for candidate in candidates:
        probe = subprocess.run([candidate, "-c", "import sys, venv; print(sys.version_info[:2])"],
                               capture_output=True, text=True)
        if probe.returncode == 0 and probe.stdout.strip() == "(3, 8)":
            return candidate
    return None


@pytest.fixture(scope="module")
def venv38(tmp_path_factory) -> Path:
    py = python38()
    if py is None:
        pytest.skip("needs a Python 3.8 interpreter (python3.8 on PATH or pyenv's)")
    venv = tmp_path_factory.mktemp("py38") / "venv"
    subprocess.run([py, "-m", "venv", str(venv)], check=True, timeout=120)
    subprocess.run([str(venv / "bin/python"), "-m", "pip", "install", "-q", str(REPO)], check=True, timeout=600,
                   capture_output=True)
    return venv


def test_cli_and_doctor_run_on_python_38(venv38, tmp_path):
    gpuprep = str(venv38 / "bin/gpuprep")
    assert subprocess.run([gpuprep, "--version"], capture_output=True, text=True).stdout.startswith("gpuprep ")
    assert "install" in subprocess.run([gpuprep, "--help"], capture_output=True, text=True).stdout
    root = tmp_path / "root"
    shutil.copytree(REPO / "tests/fixtures/distros/amzn-2", root)
    proc = subprocess.run([gpuprep, "--root", str(root), "--json", "doctor", "--no-container"],
                          capture_output=True, text=True, timeout=120)
    doc = json.loads(proc.stdout)
    assert doc["command"] == "doctor" and doc["platform"]["name"] == "Amazon Linux 2"
    assert proc.returncode == {"ok": 0, "warning": 1, "critical": 2, "unknown": 3}[doc["status"]]
    assert not any(c["summary"].startswith("check failed") for c in doc["checks"]), doc["checks"]
    proc = subprocess.run([gpuprep, "--root", str(root), "--json", "seal", "--dry-run", "--yes"],
                          capture_output=True, text=True, timeout=120)
    assert json.loads(proc.stdout)["command"] == "seal", proc.stderr
