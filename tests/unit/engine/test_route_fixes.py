"""The fixes of a failed GPU container route as values (engine/route_fixes.py; issue 26 item 3, issue 27 item 5):
built for the platform and the target where gpu-container and toolkit-gpu-routes make the finding.

Nothing runs here (tests/integration/test_cdi_route.py runs the cdi-off fix against a real dockerd and sees both
routes pass); the platforms are the os-release fixtures of tests/fixtures/distros.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from gpuprep import fixes
from gpuprep.engine import gpu_container as gc
from gpuprep.engine.route_fixes import route_fixes
from gpuprep.host import Host
from gpuprep.options import DoctorOptions
from gpuprep.platform import detect
from gpuprep.runner.checks import Probes

DISTROS = Path(__file__).resolve().parents[2] / "fixtures" / "distros"
GENERATE = ("nvidia-ctk", "cdi", "generate", "--output=/var/run/cdi/nvidia.yaml")


def probes(distro: str, root: str = "/") -> Probes:
    return Probes(Host(root, env={}, euid=0), detect(Host(DISTROS / distro)), DoctorOptions())


def failed(link: str, route: str = gc.CDI_ROUTE, output: str = "") -> gc.ProbeResult:
    return gc.ProbeResult(False, link, "it failed", image="tiny:latest", route=route, output=output)


@pytest.mark.parametrize("link", [gc.CDI_UNRESOLVABLE, gc.CDI_INJECTION, gc.CDI_NO_SMI])
def test_a_stale_or_missing_spec_is_written_by_nvidias_generator_on_the_running_host(link):
    live = route_fixes(probes("amzn-2023"), failed(link))
    assert live[0].argv == GENERATE and live[0].runs == fixes.HERE
    assert live[1].argv == ("gpuprep", "install", "--only", "cdi-spec")
    # Under --root it asks NVML, which only an instance booted from the image has; /var/run is not in an image.
    image = route_fixes(probes("amzn-2023", "/img"), failed(link))
    assert image[0].argv == ("sudo", *GENERATE) and image[0].runs == fixes.BOOTED
    assert image[1].argv == ("gpuprep", "--root", "/img", "install", "--only", "cdi-spec")
    # gpuprep install exits 3 on Ubuntu: not offered there
    assert [f.argv for f in route_fixes(probes("ubuntu-22.04"), failed(link))] == [GENERATE]


def test_cdi_off_turns_it_on_or_restarts_dockerd_where_daemon_json_has_it():
    on = route_fixes(probes("amzn-2023"), failed(gc.CDI_OFF))
    assert [f.argv for f in on] == [("gpuprep", "install", "--only", "docker-runtime,docker-reload", "--docker-cdi")]
    restart = route_fixes(probes("amzn-2023"), failed(gc.CDI_OFF), cdi_restart=True)
    assert [f.argv for f in restart] == [("gpuprep", "install", "--only", "docker-reload")]
    assert [f.argv for f in route_fixes(probes("ubuntu-22.04"), failed(gc.CDI_OFF), cdi_restart=True)] == \
        [("systemctl", "restart", "docker.service")]


def test_legacy_mode_without_nvidia_container_cli_installs_the_toolkit_whole():
    message = 'OCI runtime create failed: exec: "nvidia-container-cli": executable file not found in $PATH'
    found = route_fixes(probes("ubuntu-22.04"), failed(gc.RUNTIME_INJECT, gc.DEFAULT_ROUTE, message))
    assert [f.argv for f in found] == [("apt-get", "install", "-y", "nvidia-container-toolkit")]


def test_no_fix_is_a_shell_string():
    for link in (gc.CDI_OFF, gc.CDI_UNRESOLVABLE, gc.RUNTIME_INJECT, gc.GPUS, gc.GPUS_UNSERVED, gc.NO_SMI,
                 gc.TIMEOUT, gc.DRIVER, gc.RUNTIME_BINARY, gc.IMAGE, gc.ENGINE):
        for route in (gc.DEFAULT_ROUTE, gc.CDI_ROUTE):
            for f in route_fixes(probes("amzn-2023"), failed(link, route)):
                assert not any(word in ("|", ">", "&&", ";") for word in f.argv), f
                assert not (f.argv and f.argv[0] in ("sh", "bash")), f
