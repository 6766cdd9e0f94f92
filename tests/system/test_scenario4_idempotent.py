"""Scenario 4: a second install on a converged host changes nothing: no dnf transaction, dockerd keeps its pid.

Real: dnf's transaction history, docker.service under systemd. SIMULATED: see simfixtures.py.
"""

from __future__ import annotations

from sim import explain
from simfixtures import *  # noqa: F403  (pytest fixtures)


def _history(inst) -> str:
    return inst.run(["dnf", "-q", "history", "list"], check=False).stdout


def test_second_install_is_a_no_op(instance):
    inst = instance
    inst.install_gpuprep()
    rc, first, err = inst.install()
    assert rc == 0 and first["status"] == "changed", explain(first) + err
    history = _history(inst)
    assert history.strip(), "the first install ran no dnf transaction?"
    rpms = inst.run(["rpm", "-qa", "--qf", "%{NAME}-%{VERSION}-%{RELEASE} %{INSTALLTIME}\n"]).stdout
    dockerd = inst.service_pid("docker.service")
    assert dockerd > 0

    rc, second, err = inst.install()
    assert rc == 0 and second["status"] == "ok", explain(second) + err
    assert {s["status"] for s in second["steps"]} <= {"ok", "skipped"}, explain(second)
    assert _history(inst) == history
    assert inst.run(["rpm", "-qa", "--qf", "%{NAME}-%{VERSION}-%{RELEASE} %{INSTALLTIME}\n"]).stdout == rpms
    assert inst.service_pid("docker.service") == dockerd
