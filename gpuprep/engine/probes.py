"""The Engine's probes: ``docker info``, the dockerd process, the daemon.json it reads, and the host's GPUs a
container's are compared with; each asked once per doctor run (``runner.checks.probe``).

Checks of any room ask the Engine through these, never through a checks module (tests/unit/test_layout.py).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from gpuprep.engine import daemon_config
from gpuprep.host import Host
from gpuprep.runner.checks import Probes, probe

if TYPE_CHECKING:
    from gpuprep.engine.dockerd import EngineProcess
    from gpuprep.gpu.view import HostGpus

INFO_TIMEOUT = 5.0  # a local dockerd answers /info in tens of ms; one that takes seconds is stuck


@probe
def docker_info(p: Probes) -> dict[str, Any]:
    return engine_info(p.host, timeout=INFO_TIMEOUT)


def engine_info(host: Host, timeout: float = INFO_TIMEOUT) -> dict[str, Any]:
    """``docker info`` through docker-py (explicit base_url, no context lookup, bounded by ``timeout``)."""
    from gpuprep.engine.dockerd import docker_info

    return docker_info(host, timeout=timeout)


@probe
def engine_process(p: Probes) -> EngineProcess | None:
    from gpuprep.engine.dockerd import find_engine_process

    return find_engine_process(p.host) if engine_is_local(p) else None


def engine_is_local(probes: Probes) -> bool:
    """The Engine runs on this machine, so its process and its runtime binaries can be looked at."""
    # The live system without DOCKER_HOST asks the default socket, a unix:// URL too.
    return (probes.host.docker_url or "").startswith("unix://")


def daemon_json_path(probes: Probes) -> str:
    """The host path of the daemon.json the Engine reads: its --config-file on the live system."""
    if probes.host.live:
        proc = process_or_none(probes)
        if proc is not None and proc.config_file:
            return proc.config_file
    return probes.platform.daemon_json


@probe
def daemon_json(p: Probes) -> tuple[str | None, dict[str, Any]]:
    return daemon_config.read_config(p.host, daemon_json_path(p))


def process_or_none(probes: Probes) -> EngineProcess | None:
    try:
        return engine_process(probes)
    except Exception:  # psutil denied, a process gone mid-scan: checks work without it
        return None


@probe
def host_view(p: Probes) -> HostGpus | None:
    """The host's GPUs to compare with (gpu/view.py: NVML's answer when it names them, else nvidia-smi)."""
    from gpuprep.gpu import inventory
    from gpuprep.gpu.view import host_gpus

    return host_gpus(p.host, inventory.probe_query(p))
