"""docker-reload under real systemd: restart when SIGHUP is not enough, roll back when dockerd refuses.

On one converged instance, in order (each test carries on from the state the previous one left):
1. docker.service changed on disk (an `Environment=` line added to the unit file): gpuprep runs
   `systemctl daemon-reload` then `systemctl restart docker.service`; systemd no longer says the
   unit needs a reload and the new dockerd runs with the unit's new environment. --dry-run
   lists the same two commands and changes nothing.
2. default-runtime removed from daemon.json while dockerd runs with nvidia as the default: SIGHUP
   cannot unset a default (docs/testbed.md 3), so a restart; a second run leaves dockerd alone.
3. dockerd refuses the new daemon.json at restart: the unit now pins runc by flag
   (`--default-runtime=runc`, as an AMI's DOCKER_OPTS/OPTIONS may), and gpuprep writes
   `"default-runtime": "nvidia"`; Engine 20.10 refuses a directive given both as a flag and in
   the file. gpuprep restores the old daemon.json, restarts through systemd, exits 1 with dockerd's error.

Real: systemd (PID 1), docker.service (Debian's Engine 20.10 with its own unit, StartLimitBurst=3 per
60 s), journald. SIMULATED (see simfixtures.py): the GPU, driver and NVIDIA runtime.
"""

from __future__ import annotations

import json

import pytest
from sim import explain, steps_by_id
from simfixtures import *  # noqa: F403  (pytest fixtures)

DAEMON_JSON = "/etc/docker/daemon.json"
# Debian's docker.io unit (a package update replacing it is how this meets users: the docker RPM
# ships /usr/lib/systemd/system/docker.service). systemd 252 flags an edited unit file as
# NeedDaemonReload, not a drop-in directory created after the unit was loaded.
UNIT_FILE = "/usr/lib/systemd/system/docker.service"
RESTART = ["systemctl", "restart", "docker.service"]
# Engine 20.10's words when a directive is both a flag and in daemon.json (daemon/config.go).
BOTH_FLAG_AND_FILE = "specified both as a flag and in the configuration file"


@pytest.fixture(scope="module")
def converged(module_instance):
    """An instance after user-data's `gpuprep install`: nvidia registered and Docker's default."""
    inst = module_instance
    inst.install_gpuprep()
    rc, doc, err = inst.install()
    assert rc == 0 and doc["status"] == "changed", explain(doc) + err
    assert _default_runtime(inst) == "nvidia"
    return inst


def _reload_only(inst, *extra: str) -> tuple[int, dict, str]:
    return inst.install("--only", "docker-runtime,docker-reload", *extra)


def _show(inst, prop: str) -> str:
    return inst.run(["systemctl", "show", "docker", "-p", prop, "--value"]).stdout.strip()


def _default_runtime(inst) -> str:
    return inst.run(["docker", "info", "--format", "{{.DefaultRuntime}}"]).stdout.strip()


def _environ(inst, pid: int) -> list[str]:
    return inst.run(["cat", f"/proc/{pid}/environ"]).stdout.split("\0")


def _daemon_json(inst) -> dict:
    return json.loads(inst.path(DAEMON_JSON).read_text())


def _edit_unit(inst, line: str) -> None:
    """Add ``line`` to docker.service's [Service] section, on disk only (no daemon-reload)."""
    unit = inst.path(UNIT_FILE)
    unit.write_text(unit.read_text().replace("[Service]\n", f"[Service]\n{line}\n", 1))
    assert _show(inst, "NeedDaemonReload") == "yes", "systemd did not notice the unit file changed"


def test_unit_change_restarts_after_daemon_reload(converged):
    inst = converged
    pid = inst.service_pid("docker.service")
    _edit_unit(inst, "Environment=GPUPREP_TEST_MARK=unit-changed")

    rc, planned, err = _reload_only(inst, "--dry-run")
    assert rc == 0 and steps_by_id(planned)["docker-reload"]["commands"] == [["systemctl", "daemon-reload"], RESTART], \
        explain(planned) + err
    assert inst.service_pid("docker.service") == pid and _show(inst, "NeedDaemonReload") == "yes"

    rc, doc, err = _reload_only(inst)
    step = steps_by_id(doc)["docker-reload"]
    assert rc == 0 and step["status"] == "changed", explain(doc) + err
    assert step["data"]["done"] == "restart" and RESTART in step["commands"], step
    assert step["commands"] == [["systemctl", "daemon-reload"], RESTART], step["commands"]
    assert _show(inst, "NeedDaemonReload") == "no"
    new = inst.service_pid("docker.service")
    assert new not in (0, pid), (pid, new)
    # The new dockerd has the unit's new environment: the restart came after a daemon-reload.
    assert "GPUPREP_TEST_MARK=unit-changed" in _environ(inst, new)
    assert _default_runtime(inst) == "nvidia"

    rc, again, err = _reload_only(inst)
    assert rc == 0 and steps_by_id(again)["docker-reload"]["status"] == "ok", explain(again) + err
    assert inst.service_pid("docker.service") == new


def test_default_runtime_removed_needs_a_restart(converged):
    inst = converged
    daemon = _daemon_json(inst)
    assert daemon.pop("default-runtime") == "nvidia"
    inst.write(DAEMON_JSON, json.dumps(daemon, indent=4) + "\n")  # the admin goes back to runc by default
    pid = inst.service_pid("docker.service")
    assert _default_runtime(inst) == "nvidia"

    rc, doc, err = _reload_only(inst, "--no-default-runtime")
    step = steps_by_id(doc)["docker-reload"]
    assert rc == 0 and step["status"] == "changed", explain(doc) + err
    assert step["data"]["done"] == "restart" and RESTART in step["commands"], step
    new = inst.service_pid("docker.service")
    assert new not in (0, pid), (pid, new)
    assert _default_runtime(inst) == "runc"
    assert "nvidia" in json.loads(inst.run(["docker", "info", "--format", "{{json .Runtimes}}"]).stdout)
    assert "default-runtime" not in _daemon_json(inst)

    rc, again, err = _reload_only(inst, "--no-default-runtime")
    assert rc == 0 and again["status"] == "ok", explain(again) + err
    assert inst.service_pid("docker.service") == new


def test_config_dockerd_refuses_is_rolled_back(converged):
    inst = converged
    if "default-runtime" in _daemon_json(inst):  # run alone: put it in the previous test's end state
        daemon = _daemon_json(inst)
        del daemon["default-runtime"]
        inst.write(DAEMON_JSON, json.dumps(daemon, indent=4) + "\n")
        inst.run(["systemctl", "restart", "docker.service"], timeout=120)
    before = inst.path(DAEMON_JSON).read_bytes()
    # An AMI that pins runc by flag (AL2023's unit passes $OPTIONS from /etc/sysconfig/docker; this
    # Debian unit passes $DOCKER_OPTS): a unit change too, so gpuprep restarts.
    _edit_unit(inst, "Environment=DOCKER_OPTS=--default-runtime=runc")

    rc, doc, err = _reload_only(inst)
    steps = steps_by_id(doc)
    assert rc == 1 and doc["status"] == "failed", explain(doc) + err
    assert steps["docker-runtime"]["status"] == "changed", explain(doc)
    failed = steps["docker-reload"]
    assert failed["status"] == "failed", explain(doc)
    # dockerd's own words (from the journal) are in the message, and what gpuprep did about it.
    assert BOTH_FLAG_AND_FILE in failed["summary"] and "default-runtime" in failed["summary"], failed
    assert "restored" in failed["summary"] and failed["hint"], failed
    assert inst.path(DAEMON_JSON).read_bytes() == before
    state = inst.unit_state("docker.service")
    assert state["ActiveState"] == "active" and int(state["MainPID"]) > 0, (state, inst.journal("docker.service"))
    assert _default_runtime(inst) == "runc"
