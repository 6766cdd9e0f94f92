"""Scenario 3: the runtime binary goes missing after sealing; the boot gate keeps ECS down; a fix recovers.

Real: systemd's RequiredBy= gate, docker.service, dnf reinstall. SIMULATED: see simfixtures.py
(the runtime binary removed is the simulated runtime shim; its absence is as real as it gets).
"""

from __future__ import annotations

from sim import checks_by_id, explain
from simfixtures import *  # noqa: F403  (pytest fixtures)

from gpuprep.bootcheck import UNIT_NAME

RUNTIME = "/usr/bin/nvidia-container-runtime"


def test_broken_runtime_is_held_out_of_the_cluster(instance):
    inst = instance
    inst.build_image()
    inst.path(RUNTIME).unlink()  # e.g. a bad package update in a later image layer

    inst.launch_from_image()
    check = inst.unit_state(UNIT_NAME)
    assert (check["ActiveState"], check["ExecMainStatus"]) == ("failed", "1"), (check, inst.journal(UNIT_NAME))
    assert "nvidia-container-runtime" in inst.journal(UNIT_NAME)
    ecs = inst.unit_state("ecs.service")
    assert ecs["ActiveState"] == "inactive" and ecs["MainPID"] == "0", ecs
    assert inst.agent_db() is None, "the agent must not have started"

    rc, report, _ = inst.doctor()
    assert rc == 2 and report["status"] == "critical", explain(report)
    critical = [c for c in checks_by_id(report).values() if c["status"] == "critical"]
    named = [c for c in critical if RUNTIME in c["summary"] or "nvidia-container-runtime" in c["summary"]]
    assert named and all(c["hint"] for c in named), explain(report)
    text = inst.gpuprep("doctor").stdout
    assert "nvidia-container-runtime" in text and "fix:" in text, text

    # The fix: reinstall the package that owns the runtime (what the hint says, in some words).
    owner = inst.run(["rpm", "-qf", "--qf", "%{NAME}\n", RUNTIME]).stdout.strip()
    assert owner == "nvidia-container-toolkit-base"
    inst.run(["dnf", "-y", "-q", "reinstall", owner], timeout=300)
    inst.poweroff()
    inst.boot()
    assert inst.unit_state(UNIT_NAME)["ActiveState"] == "active", inst.journal(UNIT_NAME)
    assert inst.unit_state("ecs.service")["ActiveState"] == "active", inst.journal("ecs.service")
    inst.wait_agent_registered()
