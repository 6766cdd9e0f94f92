"""Hints are commands of the host they are for (gpuprep/hints.py; issue 16)."""

from __future__ import annotations

from pathlib import Path

import pytest

from gpuprep import hints
from gpuprep.host import Host
from gpuprep.platform import detect

DISTROS = Path(__file__).resolve().parent.parent / "fixtures" / "distros"


def platform(name: str):
    return detect(Host(DISTROS / name))


@pytest.mark.parametrize("text, wanted", [
    ("run `gpuprep install --only packages`", "run `gpuprep --root /img install --only packages`"),
    ("sudo gpuprep doctor", "sudo gpuprep --root /img doctor"),
    ("`gpuprep -v doctor` for the traceback", "`gpuprep --root /img -v doctor` for the traceback"),
    ("`gpuprep --root /img seal`", "`gpuprep --root /img seal`"),  # already there: not twice
    ("gpuprep-boot-check.service failed", "gpuprep-boot-check.service failed"),
    ("`chroot /img pip3 install gpuprep`", "`chroot /img pip3 install gpuprep`"),
    ("/usr/local/bin/gpuprep doctor --boot", "/usr/local/bin/gpuprep doctor --boot"),
])
def test_gpuprep_commands_keep_the_root(text, wanted):
    assert hints.for_target(Host("/img", env={}), text) == wanted
    assert hints.for_target(Host("/", env={}), text) == text


def test_services_are_started_by_this_platforms_init():
    live = Host("/", env={})
    assert hints.service(live, platform("amzn-2023"), "start", "docker") == "systemctl start docker.service"
    assert hints.service(live, platform("amzn-2018.03"), "start", "docker") == "service docker start"
    assert hints.service_log(live, platform("amzn-2018.03"), "ecs") == "/var/log/ecs/ecs-init.log"
    assert hints.service(Host("/", env={}, euid=1000), platform("amzn-2023"), "start", "ecs") == \
        "sudo systemctl start ecs.service"
