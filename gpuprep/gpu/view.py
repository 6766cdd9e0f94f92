"""The host's GPUs as one named view: NVML's answer when it names the GPUs, else the host's nvidia-smi.

Doctor's container checks, install's GPU proof and seal's CDI check all compare what a container sees with this one
view, so "NVML, else nvidia-smi" is written here once (``gpu/query.py`` is how NVML and nvidia-smi are asked).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from gpuprep.errors import CommandError
from gpuprep.gpu.query import GpuQuery, query_gpus
from gpuprep.host import Host

log = logging.getLogger("gpuprep")


@dataclass
class HostGpus:
    """The host's own view of its GPUs, to compare the container's with."""

    uuids: list[str]
    source: str  # "gpuprep.gpu (nvml)" | "gpuprep.gpu (nvidia-smi)" | "nvidia-smi"
    driver_version: str = ""

    @property
    def count(self) -> int:
        return len(self.uuids)


def host_gpus(host: Host, query: GpuQuery | None = None) -> HostGpus | None:
    """The host's GPUs: ``query`` (gpuprep.gpu's answer: NVML, else nvidia-smi, live system only; asked now when
    not given) when it names them, else the host's nvidia-smi (inside --root: the root's, which is how tests give a
    simulated host its GPUs); None when neither answers."""
    if query is None:
        try:
            # query_gpus asks NVML (or nvidia-smi) only; inventory.gather would also read sysfs and the kernel log.
            query = query_gpus(host)
        except Exception:  # the gpu checks report the query's own failures; nvidia-smi may still answer
            log.debug("gpuprep.gpu could not list the GPUs; asking nvidia-smi", exc_info=True)
    uuids = [g.uuid for g in query.gpus if g.uuid] if query is not None else []
    if uuids and query is not None:
        return HostGpus(uuids, f"gpuprep.gpu ({query.source})", query.driver_version)
    return _from_nvidia_smi(host)


def _from_nvidia_smi(host: Host) -> HostGpus | None:
    smi = host.which("nvidia-smi")
    if smi is None:
        return None
    try:
        done = host.run([str(host.path(smi)), "--query-gpu=uuid,driver_version", "--format=csv,noheader"],
                        timeout=20, check=False)
    except CommandError:
        return None
    return parse_uuids(done.stdout) if done.returncode == 0 else None


def parse_uuids(text: str) -> HostGpus:
    """``nvidia-smi --query-gpu=uuid,driver_version --format=csv,noheader`` -> the GPUs' UUIDs and the driver.

    >>> view = parse_uuids('''GPU-5a1c2f4e-0b7d-3e8a-9c61-2f0d4b7e8a10, 580.95.05
    ... GPU-5a1c2f4e-0b7d-3e8a-9c61-2f0d4b7e8a11, 580.95.05
    ... ''')
    >>> view.uuids
    ['GPU-5a1c2f4e-0b7d-3e8a-9c61-2f0d4b7e8a10', 'GPU-5a1c2f4e-0b7d-3e8a-9c61-2f0d4b7e8a11']
    >>> view.source, view.driver_version, view.count
    ('nvidia-smi', '580.95.05', 2)
    """
    rows = [[c.strip() for c in line.split(",")] for line in text.splitlines() if line.strip()]
    return HostGpus([r[0] for r in rows], "nvidia-smi", rows[0][1] if rows and len(rows[0]) > 1 else "")
