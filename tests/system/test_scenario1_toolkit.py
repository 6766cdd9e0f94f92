"""Scenario 1: the user-data flow with the toolkit stack, proven across a reboot into a "new instance".

`pip install gpuprep && gpuprep install && gpuprep seal` on a booted AL2023-like host, then the
instance is powered off and booted as a new instance launched from the image: the boot check
passes, ecs.service starts, the agent registers fresh (no checkpoint from the build instance),
and `gpuprep doctor` is all ok and shows the seal stamp. Seal's stop-ecs meets ECS as it runs: ecs.service
under systemd, ecs-init running the agent as the container `ecs-agent` (the stand-in does as the real
one does), so its wait for both to stop and the removal of the agent's container are real.

Real: systemd, docker.service (Engine 20.10), dnf/rpm against real repositories, the installed
unit. SIMULATED (see tests/system/simfixtures.py): GPU, driver, NVIDIA runtime, ECS agent, EC2 identity.
"""

from __future__ import annotations

import json

from sim import IMAGE, checks_by_id, explain, steps_by_id
from simfixtures import *  # noqa: F403  (pytest fixtures)
from testbed import DEFAULT_GPUS

from gpuprep.bootcheck import UNIT_NAME

PROM = "/var/lib/node_exporter/textfile_collector/gpuprep.prom"


def test_user_data_flow_toolkit(instance):
    inst = instance
    doc = inst.build_image()
    sealed = inst.sealed
    # seal stopped ecs-init and its agent container through systemd and left ecs enabled for the
    # instances launched from the image (build_image saw the container run before seal).
    stop = steps_by_id(sealed)["stop-ecs"]
    assert stop["status"] == "changed", explain(sealed)
    assert stop["commands"][0] == ["systemctl", "stop", "ecs.service"], stop
    # The report lists what the run executed: under systemd `systemctl stop` alone, since ecs.service's
    # ExecStop (`amazon-ecs-init stop`) stops the agent container itself.
    assert stop["commands"] == [["systemctl", "stop", "ecs.service"]], stop["commands"]
    assert inst.run(["systemctl", "show", "ecs", "-p", "UnitFileState", "--value"]).stdout.strip() == "enabled"
    assert not inst.run(["pgrep", "-f", "amazon-ecs-init"], check=False).stdout.strip()
    removed = [c["name"] for c in steps_by_id(sealed)["containers"]["data"]["remove"]]
    assert "ecs-agent" in removed, steps_by_id(sealed)["containers"]
    assert inst.containers() == [], inst.containers()

    selection = doc["selection"]
    assert selection["nvidia-container-toolkit"].startswith("nvidia-container-toolkit-1.19.1-1"), selection
    assert selection["ecs-init"].startswith("ecs-init-1.99.0-1"), selection
    assert inst.run(["docker", "info", "--format", "{{.DefaultRuntime}}"]).stdout.strip() == "nvidia"
    assert steps_by_id(doc)["gpu-check"]["status"] == "ok", explain(doc)

    # Monitoring reads the boot check's verdict from node_exporter's textfile collector.
    inst.write("/etc/gpuprep/boot-check.env", f"GPUPREP_BOOT_ARGS=--prom {PROM}\n")
    inst.path(PROM).parent.mkdir(parents=True)
    inst.launch_from_image()

    check = inst.unit_state(UNIT_NAME)
    assert (check["ActiveState"], check["ExecMainStatus"]) == ("active", "0"), check
    assert "ok" in inst.journal(UNIT_NAME).lower()
    prom = inst.path(PROM).read_text()
    assert "gpuprep" in prom and not list(inst.path(PROM).parent.glob("*.prom.*")), prom
    ecs = inst.unit_state("ecs.service")
    assert ecs["ActiveState"] == "active", (ecs, inst.journal("ecs.service"))
    inst.wait_agent_registered()
    assert f"no checkpoint: registering {inst.instance_id}" in inst.journal("ecs.service")
    gpu_info = json.loads(inst.path("/var/lib/ecs/gpu/nvidia-gpu-info.json").read_text())
    assert gpu_info["GPUIDs"] == [g["uuid"] for g in DEFAULT_GPUS]

    # doctor shows the seal stamp: when this image was sealed (seal's /etc/gpuprep/seal.json).
    sealed_at = json.loads(inst.path("/etc/gpuprep/seal.json").read_text())["sealed_at"]
    proc = inst.gpuprep("doctor", "--image", IMAGE)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.startswith("GPUPREP OK - "), proc.stdout
    proc = inst.gpuprep("doctor", "-v", "--image", IMAGE)  # every check's line, the healthy ones too
    assert sealed_at in proc.stdout, proc.stdout
    rc, report, _ = inst.doctor()
    assert rc == 0 and report["status"] == "ok", explain(report)
    assert any(sealed_at in json.dumps(c) for c in checks_by_id(report).values()), explain(report)
    # A new instance from the image, known by its boot, not by clocks (this one rebooted within a second).
    stamp = checks_by_id(report)["seal-stamp"]
    assert stamp["data"]["booted_from_image"] is True, stamp
    assert stamp["summary"].startswith(f"booted from an image sealed {sealed_at}"), stamp

