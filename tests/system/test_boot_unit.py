"""The boot-check unit under real systemd: it lints, and at boot it holds ecs.service back on failure.

Real: systemd-analyze, systemd as PID 1 in a booted tree (systemd-nspawn), docker.service, the
install step writing and enabling the unit (systemctl --root, then live). Stand-ins, said where
used: ecs.service is a stub agent (no ecs-init RPM needed for systemd's semantics), and in the
gate tests the unit's program is a script that exits with the verdict the test sets, as
`gpuprep doctor --boot` would (2 = critical); the whole flow with the real doctor is scenario 3.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from conftest import require
from simfixtures import *  # noqa: F403  (pytest fixtures)

from gpuprep.bootcheck import UNIT_NAME, BootCheckStep, render_unit
from gpuprep.host import Host
from gpuprep.options import InstallOptions
from gpuprep.platform import detect
from gpuprep.report import StepStatus
from gpuprep.runner.steps import Context, run_steps

STUB_ECS = """[Unit]
Description=stand-in ECS agent (test stub)
Requires=docker.service
After=docker.service

[Service]
ExecStart=/bin/sleep infinity

[Install]
WantedBy=multi-user.target
"""
VERDICT = "/etc/gpuprep-sim/verdict"
STUB_DOCTOR = f"""#!/bin/sh
# Stands in for `gpuprep doctor --boot`: exits with the verdict the test wrote (0 ok, 2 critical).
echo "stub doctor $*: verdict $(cat {VERDICT})"
exit $(cat {VERDICT})
"""


def test_unit_passes_systemd_analyze_verify(tmp_path: Path):
    require("systemd-analyze")
    program = tmp_path / "gpuprep"
    program.write_text("#!/bin/sh\nexit 0\n")
    program.chmod(0o755)
    for name in ("docker.service", "ecs.service", "nvidia-persistenced.service"):
        (tmp_path / name).write_text(f"[Unit]\nDescription=stub {name}\n[Service]\nExecStart=/bin/true\n")
    for gate in (True, False):
        unit = tmp_path / UNIT_NAME
        unit.write_text(render_unit(str(program), gate=gate))
        proc = subprocess.run(["systemd-analyze", "verify", "--man=no", str(unit)], capture_output=True,
                              text=True, timeout=60)
        complaints = [line for line in (proc.stdout + proc.stderr).splitlines() if UNIT_NAME in line]
        assert proc.returncode == 0 and not complaints, proc.stdout + proc.stderr


def _install_unit(machine, gate: bool) -> None:
    """The real boot-check step against the powered-off tree (--root): writes and enables the unit."""
    host = Host(machine.root)
    report = run_steps(Context(host, detect(host), InstallOptions(gate=gate)), "install", [BootCheckStep()])
    assert report.steps[0].status in (StepStatus.CHANGED, StepStatus.OK), report.steps[0].summary


def _monotonic(machine, unit: str, prop: str) -> int:
    out = machine.run(["systemctl", "show", unit, f"--property={prop}", "--value"]).stdout.strip()
    return int(out or 0)


@pytest.fixture
def gate_machine(base_tree: Path):
    from nspawn import Machine

    m = Machine(base_tree, name="gpuprep-gate")
    try:
        m.mount()
        m.write("/etc/systemd/system/ecs.service", STUB_ECS)
        link = m.path("/etc/systemd/system/multi-user.target.wants/ecs.service")
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to("/etc/systemd/system/ecs.service")
        m.write("/usr/local/bin/gpuprep", STUB_DOCTOR, mode=0o755)
        yield m
    finally:
        m.close()


def test_failed_check_keeps_ecs_from_starting_and_passing_lets_it(gate_machine):
    m = gate_machine
    _install_unit(m, gate=True)
    m.write(VERDICT, "1\n")  # what gpuprep doctor --boot exits with on a critical finding
    m.boot()
    check = m.unit_state(UNIT_NAME)
    assert (check["ActiveState"], check["Result"], check["ExecMainStatus"]) == ("failed", "exit-code", "1"), check
    ecs = m.unit_state("ecs.service")
    assert ecs["ActiveState"] == "inactive" and ecs["MainPID"] == "0", ecs
    assert "Dependency failed for" in m.run(["journalctl", "-b", "--no-pager", "-o", "cat"]).stdout
    assert "stub doctor doctor --boot" in m.journal(UNIT_NAME)
    # Ordered after docker: the check started once dockerd was up.
    assert _monotonic(m, UNIT_NAME, "ExecMainStartTimestampMonotonic") >= \
        _monotonic(m, "docker.service", "ActiveEnterTimestampMonotonic") > 0

    m.write(VERDICT, "0\n")
    m.reboot()
    check = m.unit_state(UNIT_NAME)
    assert (check["ActiveState"], check["SubState"]) == ("active", "exited"), check  # RemainAfterExit
    assert m.unit_state("ecs.service")["ActiveState"] == "active"
    assert _monotonic(m, "ecs.service", "ExecMainStartTimestampMonotonic") >= \
        _monotonic(m, UNIT_NAME, "ExecMainExitTimestampMonotonic") > 0


def test_no_gate_reports_but_lets_ecs_start(gate_machine):
    m = gate_machine
    _install_unit(m, gate=False)
    m.write(VERDICT, "1\n")  # what gpuprep doctor --boot exits with on a critical finding
    m.boot()
    assert m.unit_state(UNIT_NAME)["ActiveState"] == "failed"
    assert m.unit_state("ecs.service")["ActiveState"] == "active"


def test_after_a_fix_starting_ecs_reruns_the_check(gate_machine):
    """The hint doctor gives after a failed boot: fix it, `systemctl start ecs` runs the check again."""
    m = gate_machine
    _install_unit(m, gate=True)
    m.write(VERDICT, "1\n")  # what gpuprep doctor --boot exits with on a critical finding
    m.boot()
    assert m.unit_state("ecs.service")["ActiveState"] == "inactive"
    m.write(VERDICT, "0\n")  # host-side write into the overlay: the machine sees it
    m.run(["systemctl", "start", "ecs.service"], timeout=60)
    assert m.unit_state(UNIT_NAME)["ActiveState"] == "active"
    assert m.unit_state("ecs.service")["ActiveState"] == "active"


def test_a_machine_never_writes_the_cached_base(base_tree: Path):
    """Scenarios run on an overlay: what one writes (here a file and a package database) stays in it."""
    from nspawn import Machine

    with Machine(base_tree, name="gpuprep-overlay") as m:
        m.boot()
        m.run(["sh", "-c", "echo scratch > /etc/gpuprep-overlay-probe && systemctl enable docker"])
        assert m.path("/etc/gpuprep-overlay-probe").exists()
    assert not (base_tree / "etc/gpuprep-overlay-probe").exists()
