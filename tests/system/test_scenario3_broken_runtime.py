"""Scenario 3: a GPU host goes wrong in the ways doctor names, and each hint it gives, run as written inside the
booted host, clears its finding (issue 16). One booted AL2023 host, provoked in sequence:

- the runtime binary deleted from the sealed image: the boot gate keeps ECS out of the cluster; docker-runtime-binary
  and gpu-container say `dnf reinstall -y` of the package `rpm -qf` names (`gpuprep install --only packages` would
  report ok and change nothing); ecs-service names the gate's failing checks, and its `systemctl start` runs the
  gate again;
- legacy mode's /dev/char links removed (as after a boot where nothing ran the udev rule): toolkit-dev-char's command;
- daemon.json with a trailing comma and docker restarted: install stops at docker-service (exit 2) naming the file,
  line and column before any start; docker-engine names the same first, then the start; the edit made, it starts;
- dockerd stopped (service and socket): docker-engine's start.

Real: systemd (the RequiredBy= gate, docker.service and its socket and start limit), dockerd, dnf reinstall, rpm -qf,
the journal, NVIDIA's nvidia-ctk 1.17.8 making the /dev/char links (docs/testbed.md 12). SIMULATED: see simfixtures.py
(the removed binary is the simulated runtime shim: NVIDIA's runtime in legacy mode needs the driver).
"""

from __future__ import annotations

import json
import re

from sim import checks_by_id, explain, steps_by_id
from simfixtures import *  # noqa: F403  (pytest fixtures)

from gpuprep.bootcheck import UNIT_NAME

RUNTIME = "/usr/bin/nvidia-container-runtime"
DAEMON_JSON = "/etc/docker/daemon.json"
# The checks whose hints this test runs, each until its finding is gone.
HINTS_RUN = ("docker-runtime-binary", "gpu-container", "ecs-service", "toolkit-dev-char", "docker-daemon-json",
             "docker-engine")


def commands(hint: str) -> list[str]:
    """The commands a hint names, in its order: its `backticked` parts."""
    return re.findall(r"`([^`]+)`", hint)


def problems(inst) -> dict[str, dict]:
    _, report, _ = inst.doctor()
    return {i: c for i, c in checks_by_id(report).items() if c["status"] not in ("ok", "skipped")}


def test_each_hint_doctor_gives_clears_its_finding(instance):
    inst = instance
    inst.build_image()
    cleared: list[str] = []

    # -- the runtime binary gone from the image: the gate holds ECS ----------------------------------------------
    inst.path(RUNTIME).unlink()  # e.g. a bad package update in a later image layer
    inst.launch_from_image()
    check = inst.unit_state(UNIT_NAME)
    assert (check["ActiveState"], check["ExecMainStatus"]) == ("failed", "1"), (check, inst.journal(UNIT_NAME))
    assert "nvidia-container-runtime" in inst.journal(UNIT_NAME)
    ecs = inst.unit_state("ecs.service")
    assert ecs["ActiveState"] == "inactive" and ecs["MainPID"] == "0", ecs
    assert inst.agent_db() is None, "the agent must not have started"
    # The unit recommends `journalctl -p warning`: there the problem comes with its fix, the command on its own line
    # (journald reads each line's <N> as its priority; issue 26).
    warned = inst.run(["journalctl", "-u", UNIT_NAME, "-b", "-p", "warning", "-o", "cat", "--no-pager"]).stdout
    assert "docker-runtime-binary" in warned and "fix: reinstall nvidia-container-toolkit-base" in warned, warned
    assert any(line.strip() == "dnf reinstall -y nvidia-container-toolkit-base" for line in warned.splitlines())
    text = inst.gpuprep("doctor", "--image", "gpuprep-sim/tiny:latest").stdout
    assert "nvidia-container-runtime" in text and "fix:" in text, text

    found = problems(inst)
    owner = inst.run(["rpm", "-qf", "--qf", "%{NAME}\n", RUNTIME]).stdout.strip()
    assert owner == "nvidia-container-toolkit-base"
    for check_id in ("docker-runtime-binary", "gpu-container"):
        assert found[check_id]["status"] == "critical", found[check_id]
        assert commands(found[check_id]["hint"])[0] == f"dnf reinstall -y {owner}", found[check_id]["hint"]
    held = found["ecs-service"]
    assert held["status"] == "critical" and "held by the boot gate" in held["summary"], held
    assert "docker-runtime-binary" in held["summary"] and "systemctl start ecs" not in held["summary"]

    inst.run(["sh", "-c", commands(found["docker-runtime-binary"]["hint"])[0]], timeout=300)
    now = problems(inst)
    cleared += [c for c in ("docker-runtime-binary", "gpu-container") if c not in now]
    inst.run(["sh", "-c", commands(held["hint"])[-1]], timeout=120)  # `systemctl start ecs.service`: the gate again
    assert inst.unit_state(UNIT_NAME)["ActiveState"] == "active", inst.journal(UNIT_NAME)
    inst.wait_agent_registered()
    now = problems(inst)
    cleared += [c for c in ("ecs-service",) if c not in now]
    assert not now, explain({"checks": list(now.values())})

    # -- legacy mode's /dev/char links gone (as after a boot where nothing ran the udev rule) ------------------------
    inst.run(["sh", "-c", "rm -f /dev/char/195:*"])
    links = problems(inst)["toolkit-dev-char"]
    assert links["status"] == "warning" and "dev-char-links" in links["hint"], links
    # NVIDIA's own nvidia-ctk makes them (its version line has the build's commit; the stand-in's has none), with the
    # simulated driver's majors and PCI functions; its links name the nodes by absolute path.
    version = inst.run(["nvidia-ctk", "--version"]).stdout
    assert version.startswith("NVIDIA Container Toolkit CLI version 1.19.1\ncommit:"), version  # the floor
    inst.run(["sh", "-c", commands(links["hint"])[0]], timeout=300)
    assert inst.run(["readlink", "/dev/char/195:255"]).stdout.strip() == "/dev/nvidiactl"
    cleared += [c for c in ("toolkit-dev-char",) if c not in problems(inst)]

    # -- a trailing comma in daemon.json stops dockerd -------------------------------------------------------------
    good = inst.path(DAEMON_JSON).read_text()
    config = json.loads(good)
    inst.path(DAEMON_JSON).write_text(good.rstrip().rstrip("}").rstrip() + ",\n}\n")
    assert inst.run(["systemctl", "restart", "docker.service"], check=False, timeout=120).returncode != 0

    rc, doc, err = inst.install()
    steps = steps_by_id(doc)
    assert rc == 2 and steps["docker-service"]["status"] == "failed", explain(doc) + err
    assert f"{DAEMON_JSON}: invalid JSON: a trailing comma at line" in steps["docker-service"]["summary"]
    assert steps["packages"]["status"] == "ok" and steps["docker-runtime"]["status"] == "skipped"

    found = problems(inst)
    engine, daemon = found["docker-engine"], found["docker-daemon-json"]
    # The parser's words once on the screen, in docker-daemon-json's finding; docker-engine follows from it.
    assert engine["summary"].endswith("dockerd cannot start with /etc/docker/daemon.json"), engine["summary"]
    assert daemon["status"] == "critical" and "a trailing comma at line" in daemon["summary"]
    for dependent in ("docker-nvidia-runtime", "docker-runtime-binary", "docker-default-runtime", "gpu-container"):
        assert dependent not in found, found[dependent]  # skipped, pointing at docker-engine: one cause, said once
    assert engine["cause"] == "docker-daemon-json" and "trailing comma" not in engine["summary"] + engine["hint"]
    shown, *start = [fix["argv"] for fix in engine["fixes"] if fix["argv"]]  # the fixes as values, in their order
    where = inst.run(shown, check=False)  # `python3 -m json.tool FILE` points at it
    assert shown[:3] == ["python3", "-m", "json.tool"] and where.returncode != 0 and "line" in where.stderr, where
    # The edit the fix names, as a user makes it: the comma goes.
    inst.path(DAEMON_JSON).write_text(json.dumps(config, indent=2) + "\n")
    for argv in start:  # (reset-failed,) start, and the journal that would say why it did not stay up
        inst.run(argv, timeout=120)
    now = problems(inst)
    cleared += [c for c in ("docker-daemon-json", "docker-engine") if c not in now]

    # -- dockerd stopped ---------------------------------------------------------------------------------------------
    inst.run(["systemctl", "stop", "docker.socket", "docker.service"], timeout=120)
    down = problems(inst)["docker-engine"]
    assert commands(down["hint"])[0] == "systemctl start docker.service", down
    inst.run(["sh", "-c", commands(down["hint"])[0]], timeout=120)
    assert "docker-engine" not in problems(inst)

    assert tuple(cleared) == HINTS_RUN, cleared
