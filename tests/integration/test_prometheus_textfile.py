"""doctor's Prometheus textfile passes Prometheus' own linter; the doctor timer's units pass systemd's.

Real: ``promtool check metrics`` (Debian's prometheus package, the linter Prometheus ships: text-format
parse errors exit 1, lint problems such as a counter without ``_total`` exit 3) and ``systemd-analyze
verify`` (systemd 252). Simulated: the GPU hosts (``tests/hosttree.py`` trees; no GPU here). node_exporter
reading the file on a booted host is tests/system/test_fleet_prometheus.py.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import hosttree
import pytest
from conftest import REPO, require

from gpuprep import __version__
from gpuprep.doctor_timer import SERVICE_NAME, TIMER_NAME, render_service, render_timer


@pytest.mark.parametrize("name", ["healthy-p5-h100x8", "missing-node-g5", "no-gpu", "unknown-distro"])
def test_promtool_accepts_the_textfile(name: str, tmp_path: Path):
    require("promtool")
    text = hosttree.doctor_textfile(name, tmp_path)
    assert f'gpuprep_build_info{{version="{__version__}"}} 1\n' in text
    assert "gpuprep_doctor_last_run_timestamp_seconds " in text
    lint = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True, timeout=30)
    assert lint.returncode == 0 and not lint.stdout.strip() and not lint.stderr.strip(), lint.stdout + lint.stderr


def test_promtool_is_not_a_rubber_stamp():
    """The linter fails what it should: the test above would see a broken file."""
    require("promtool")
    bad = subprocess.run(["promtool", "check", "metrics"], input="# TYPE x counter\nx 1\n",
                         capture_output=True, text=True, timeout=30)
    assert bad.returncode != 0 and "_total" in bad.stdout + bad.stderr


def test_systemd_analyze_verifies_the_doctor_units(tmp_path: Path):
    require("systemd-analyze")
    program = REPO / ".venv/bin/gpuprep"
    if not program.exists():
        pytest.skip(f"needs the venv's console script {program} (make venv)")
    (tmp_path / SERVICE_NAME).write_text(render_service(str(program), "/var/lib/prometheus/node-exporter"))
    (tmp_path / TIMER_NAME).write_text(render_timer())
    proc = subprocess.run(["systemd-analyze", "verify", str(tmp_path / SERVICE_NAME), str(tmp_path / TIMER_NAME)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and not proc.stderr.strip(), proc.stderr
