"""Scenario 2: the legacy stack (nvidia-docker2 + nvidia-container-runtime) with a Docker pin.

The fixture nvidia-docker2 2.4.0 pins one Docker release exactly, which the newest ecs-init
(1.99.0) does not allow; 2.5.0 pins a release no longer offered (fixture_repo.py cites the real
cases). The resolver must pick ecs-init 1.97.1 and say why. nvidia-docker2 2.4.0 ships
/etc/docker/daemon.json as a plain file, so installing it replaces the instance's file: gpuprep
must merge the user's keys back. Here losing them is fatal, observably: without "bridge": "none"
and "iptables": false, dockerd cannot start inside the container.

Real: systemd, docker.service, dnf/rpm and rpm's file replacement. SIMULATED: see simfixtures.py.
"""

from __future__ import annotations

import json

from sim import IMAGE, explain, steps_by_id
from simfixtures import *  # noqa: F403  (pytest fixtures)

from gpuprep.bootcheck import UNIT_NAME


def test_legacy_stack_with_docker_pin(instance):
    inst = instance
    doc = inst.build_image("--runtime", "legacy")
    selection = doc["selection"]
    assert selection["nvidia-docker2"].startswith("nvidia-docker2-2.4.0-1"), selection
    assert selection["nvidia-container-runtime"].startswith("nvidia-container-runtime-3.4.0-1"), selection
    assert selection["docker"].startswith("docker-20.10.24-1.amzn2023.0.1"), selection
    assert selection["ecs-init"].startswith("ecs-init-1.97.1-1"), selection
    # The resolver explains why not the newest ecs-init: its Docker floor excludes the pinned release.
    packages = json.dumps(steps_by_id(doc)["packages"])
    assert "1.99.0" in packages, explain(doc)

    installed = inst.run(["rpm", "-q", "nvidia-docker2", "ecs-init", "docker"]).stdout.split()
    assert installed == ["nvidia-docker2-2.4.0-1.noarch", "ecs-init-1.97.1-1.amzn2023.x86_64",
                         "docker-20.10.24-1.amzn2023.0.1.x86_64"], installed

    daemon = json.loads(inst.path("/etc/docker/daemon.json").read_text())
    assert (daemon["bridge"], daemon["iptables"], daemon["storage-driver"]) == ("none", False, "vfs"), daemon
    assert daemon["default-runtime"] == "nvidia" and "nvidia" in daemon["runtimes"], daemon
    assert inst.run(["docker", "info", "--format", "{{.DefaultRuntime}}"]).stdout.strip() == "nvidia"

    inst.launch_from_image()
    assert inst.unit_state(UNIT_NAME)["ActiveState"] == "active", inst.journal(UNIT_NAME)
    assert inst.unit_state("ecs.service")["ActiveState"] == "active", inst.journal("ecs.service")
    inst.wait_agent_registered()
    proc = inst.gpuprep("doctor", "--image", IMAGE)
    assert proc.returncode == 0, proc.stdout + proc.stderr
