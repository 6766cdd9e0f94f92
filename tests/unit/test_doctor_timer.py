"""install's step doctor-timer (``--prom-dir DIR``) on an Amazon Linux 2023 image tree (``--root``).

Real: the CLI (typer's CliRunner), the step runner, ``systemctl --root`` making the enable link (systemd 252).
Simulated: the image (``tests/fixtures/distros/amzn-2023`` plus a gpuprep script where pip puts it; nothing
runs it). The timer running on a booted host and node_exporter reading its file are
tests/system/test_fleet_prometheus.py.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from contract import json_output
from typer.testing import CliRunner

from gpuprep.cli import app
from gpuprep.doctor_timer import SERVICE_PATH, TIMER_LINK, TIMER_PATH, render_service

pytestmark = pytest.mark.allow_subp("systemctl")

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
PROM_DIR = "/var/lib/prometheus/node-exporter"


def image(tmp_path: Path) -> Path:
    root = tmp_path / "image"
    shutil.copytree(FIXTURES / "distros/amzn-2023", root)
    # gpuprep as the wheelhouse's install.sh leaves it in an image (docs/packaging.md): the venv's script, linked
    # as /usr/sbin/gpuprep. A stand-in script, never run.
    program = root / "opt/gpuprep/bin/gpuprep"
    program.parent.mkdir(parents=True)
    program.write_text("#!/bin/sh\n# stands in for the venv's gpuprep script; never run\n")
    program.chmod(0o755)
    (root / "usr/sbin").mkdir(parents=True, exist_ok=True)
    (root / "usr/sbin/gpuprep").symlink_to("/opt/gpuprep/bin/gpuprep")
    (root / PROM_DIR.lstrip("/")).mkdir(parents=True)
    return root


def install(root: Path, *args: str) -> tuple[int, dict]:
    result = CliRunner().invoke(app, ["--root", str(root), "--json", "install", "--only", "doctor-timer", *args],
                                env={"DOCKER_HOST": None})
    return result.exit_code, json_output(result.stdout)


def step(doc: dict) -> dict:
    return next(s for s in doc["steps"] if s["id"] == "doctor-timer")


def test_off_without_prom_dir(tmp_path):
    code, doc = install(image(tmp_path))
    assert code == 0 and step(doc)["status"] == "skipped", doc
    assert "--prom-dir" in step(doc)["summary"]


def test_dry_run_then_install_then_converged(tmp_path):
    root = image(tmp_path)
    code, doc = install(root, "--prom-dir", PROM_DIR, "--dry-run")
    planned = step(doc)
    assert code == 0 and planned["status"] == "planned", doc
    assert f"+ExecStart=/usr/sbin/gpuprep doctor --no-container --prom {PROM_DIR}/gpuprep.prom" in planned["diff"]
    assert "+OnUnitActiveSec=5min" in planned["diff"]
    assert not (root / SERVICE_PATH.lstrip("/")).exists()  # a dry run writes nothing

    code, doc = install(root, "--prom-dir", PROM_DIR)
    assert code == 0 and step(doc)["status"] == "changed", doc
    service = (root / SERVICE_PATH.lstrip("/")).read_text()
    assert service == render_service("/usr/sbin/gpuprep", PROM_DIR)
    assert "SuccessExitStatus=1 2\n" in service
    assert (root / TIMER_PATH.lstrip("/")).read_text().count("[Install]") == 1
    link = root / TIMER_LINK.lstrip("/")
    assert link.is_symlink() and link.name == "gpuprep-doctor.timer"
    # Inside --root no systemd runs: nothing is started or reloaded.
    assert ["systemctl", f"--root={root}", "enable", "gpuprep-doctor.timer"] in step(doc)["commands"]
    assert not any("start" in argv or "daemon-reload" in argv for argv in step(doc)["commands"])

    code, doc = install(root, "--prom-dir", PROM_DIR)
    assert code == 0 and step(doc)["status"] == "ok", doc

    # Another directory is a change of the service only.
    other = "/srv/textfile dir"
    (root / other.lstrip("/")).mkdir(parents=True)
    code, doc = install(root, "--prom-dir", other)
    assert code == 0 and step(doc)["status"] == "changed", doc
    assert f'--prom "{other}/gpuprep.prom"' in (root / SERVICE_PATH.lstrip("/")).read_text()
    assert TIMER_PATH not in step(doc)["diff"]


def test_a_missing_directory_is_not_created(tmp_path):
    root = image(tmp_path)
    code, doc = install(root, "--prom-dir", "/var/lib/prometheus/node_exporter")  # misspelt: _ for -
    assert code == 1 and step(doc)["status"] == "failed", doc
    assert "no such directory" in step(doc)["summary"] and "mkdir -p" in step(doc)["hint"]
    assert not (root / "var/lib/prometheus/node_exporter").exists()
    assert not (root / SERVICE_PATH.lstrip("/")).exists()


def test_relative_prom_dir_is_bad_usage(tmp_path):
    result = CliRunner().invoke(app, ["--root", str(image(tmp_path)), "install", "--only", "doctor-timer",
                                      "--prom-dir", "var/lib/prometheus/node-exporter"])
    assert result.exit_code == 2 and "--prom-dir" in result.stderr


def test_systemd_dir_and_package_data_are_one_file():
    from gpuprep.doctor_timer import DATA, SERVICE_NAME, TIMER_NAME

    repo = FIXTURES.parent.parent
    for name in (SERVICE_NAME, TIMER_NAME):
        assert (repo / "systemd" / name).resolve() == (DATA / name).resolve()
