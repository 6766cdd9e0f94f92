"""boot-check on an image tree (--root) with the real `systemctl --root`: write, enable, converge, toggle the gate.

Real component: systemd's systemctl editing enable links offline, as Packer's chroot builder needs.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from conftest import FIXTURES, require, require_root

from gpuprep.bootcheck import REQUIRES_LINK, UNIT_PATH, WANTS_LINK, BootCheckStep
from gpuprep.host import Host
from gpuprep.options import InstallOptions
from gpuprep.platform import detect
from gpuprep.report import StepStatus
from gpuprep.runner.steps import Context, run_steps


@pytest.fixture
def image(tmp_path: Path) -> Path:
    require("systemctl")
    require_root()
    root = tmp_path / "image"
    (root / "etc/systemd/system").mkdir(parents=True)
    (root / "etc/os-release").write_text((FIXTURES / "distros/amzn-2023/etc/os-release").read_text())
    script = root / "usr/local/bin/gpuprep"
    script.parent.mkdir(parents=True)
    script.write_text("#!/bin/sh\n")
    script.chmod(0o755)
    return root


def _run(root: Path, **opts):
    host = Host(root)
    ctx = Context(host, detect(host), InstallOptions(**opts))
    return run_steps(ctx, "install", [BootCheckStep()]).steps[0]


def test_dry_run_then_apply_then_converged(image: Path):
    planned = _run(image, dry_run=True)
    assert planned.status is StepStatus.PLANNED, planned.summary
    assert "+RequiredBy=ecs.service" in planned.diff
    assert ["systemctl", f"--root={image}", "enable", "gpuprep-boot-check.service"] in planned.commands
    assert not (image / UNIT_PATH.lstrip("/")).exists()

    changed = _run(image)
    assert changed.status is StepStatus.CHANGED, changed.summary
    unit = image / UNIT_PATH.lstrip("/")
    assert "ExecStart=/usr/local/bin/gpuprep doctor --boot" in unit.read_text()
    assert oct(unit.stat().st_mode & 0o777) == "0o644"
    assert os.readlink(image / WANTS_LINK.lstrip("/")).endswith(UNIT_PATH)
    assert (image / REQUIRES_LINK.lstrip("/")).is_symlink()

    again = _run(image)
    assert again.status is StepStatus.OK, again.summary


def test_gate_off_removes_the_requires_link_and_back(image: Path):
    _run(image)
    off = _run(image, gate=False)
    assert off.status is StepStatus.CHANGED
    assert not (image / REQUIRES_LINK.lstrip("/")).is_symlink()
    assert (image / WANTS_LINK.lstrip("/")).is_symlink()
    assert "RequiredBy" not in (image / UNIT_PATH.lstrip("/")).read_text().split("[Install]")[1]
    assert _run(image, gate=False).status is StepStatus.OK
    assert _run(image).status is StepStatus.CHANGED
    assert (image / REQUIRES_LINK.lstrip("/")).is_symlink()


def test_image_without_gpuprep_fails_with_a_hint(image: Path):
    (image / "usr/local/bin/gpuprep").unlink()
    failed = _run(image)
    assert failed.status is StepStatus.FAILED
    assert "not installed inside" in failed.summary and "install.sh" in failed.hint
    assert not (image / UNIT_PATH.lstrip("/")).exists()


def test_upstart_platform_skips(image: Path):
    (image / "etc/os-release").write_text((FIXTURES / "distros/amzn-2018.03/etc/os-release").read_text())
    skipped = _run(image)
    assert skipped.status is StepStatus.SKIPPED and "upstart" in skipped.summary
