"""gpuprep's doctor units are hardened to the exposure docs/contract.md states, by systemd's own measure.

Real: `systemd-analyze security --offline=true` (systemd 252) scoring the unit files as installed (the doctor
timer's service rendered for a textfile directory, as the step doctor-timer writes it), and `systemd-analyze
verify`. That the hardened units still do their work on a booted systemd is tests/system/test_boot_unit.py (the
gate holding ECS) and tests/system/test_fleet_pipelines.py (the real doctor, at boot and from the timer, writing
its textfile under ProtectSystem=strict).
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
from conftest import REPO, require

from gpuprep.bootcheck import render_unit
from gpuprep.doctor_timer import render_service

# docs/contract.md: "systemd-analyze security rates gpuprep-boot-check.service and gpuprep-doctor.service 4.9 OK".
STATED = 4.9
SCORE = re.compile(r"Overall exposure level for \S+: (\d+\.\d+) (\w+)")


def exposure(unit: Path) -> tuple[float, str, str]:
    require("systemd-analyze")
    proc = subprocess.run(["systemd-analyze", "security", "--offline=true", "--no-pager", str(unit)],
                          capture_output=True, text=True, timeout=60)
    m = SCORE.search(proc.stdout + proc.stderr)
    assert m, proc.stdout + proc.stderr
    return float(m.group(1)), m.group(2), proc.stdout


@pytest.fixture(params=["boot-check", "doctor"])
def unit(request, tmp_path) -> Path:
    program = str(REPO / ".venv/bin/gpuprep")
    if request.param == "boot-check":
        path, text = tmp_path / "gpuprep-boot-check.service", render_unit(program, gate=True)
    else:
        path, text = tmp_path / "gpuprep-doctor.service", render_service(program, str(tmp_path / "textfiles"))
    path.write_text(text)
    return path


def test_exposure_is_what_the_contract_states(unit):
    score, word, table = exposure(unit)
    assert (score, word) == (STATED, "OK"), table
    contract = (REPO / "docs/contract.md").read_text()
    assert f"{STATED} OK" in contract


def test_the_units_keep_what_doctor_needs(unit):
    text = unit.read_text()
    assert "ProtectSystem=strict" in text and "NoNewPrivileges=yes" in text
    # /dev/nvidia* and /dev/kmsg (gpu-xid) stay visible; the Docker socket and the network stay reachable.
    for absent in ("PrivateDevices=", "ProtectKernelLogs=", "PrivateNetwork=", "IPAddressDeny="):
        assert absent not in text, absent
    assert re.search(r"^RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6 AF_NETLINK$", text, re.M)
    if unit.name == "gpuprep-doctor.service":
        # The one place it writes is the directory its --prom names.
        prom = re.search(r"--prom (\S+)/gpuprep\.prom", text).group(1)
        assert re.findall(r"^ReadWritePaths=(.*)$", text, re.M) == [prom]
    verify = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60)
    problems = [line for line in verify.stderr.splitlines() if "ecs.service" not in line]
    assert not problems, verify.stderr


def test_the_unhardened_unit_scored_unsafe(tmp_path):
    """The measure is no rubber stamp: the same unit without its hardening lines scores 9.6 UNSAFE, as the boot
    check did before issue 26."""
    text = render_unit(str(REPO / ".venv/bin/gpuprep"), gate=True)
    start = text.index("# Hardening (systemd.exec(5))")
    end = text.index("ReadWritePaths=")
    bare = text[:start] + text[text.index("\n", end) + 1:]
    unit = tmp_path / "gpuprep-boot-check.service"
    unit.write_text(bare)
    score, word, _ = exposure(unit)
    assert (score, word) == (9.6, "UNSAFE")
