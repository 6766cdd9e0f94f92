"""gpu check ``gpu-sources-listed`` (issue 28, item 10): on a GPU instance type, every source that must list GPUs lists
some (PCI, /dev, NVML, ecs-init's nvidia-gpu-info.json), fail closed. In the ECS room because one of the sources is
ecs-init's file (``ecs/config.py``); the others it reads from gpu/, which imports nothing of ecs/.
"""

from __future__ import annotations

import json

from gpuprep.ec2.instance_types import lookup
from gpuprep.ec2.probes import probe_instance_type
from gpuprep.ecs.config import GPU_INFO as ECS_GPU_INFO  # ecs-init's {"DriverVersion", "GPUIDs": [...]}
from gpuprep.ecs.config import rewrite_gpu_info
from gpuprep.fixes import follows
from gpuprep.gpu import inventory
from gpuprep.gpu.query import QUERY_TIMEOUT
from gpuprep.report import Status
from gpuprep.runner.checks import Check, NotApplicable, Probes, Verdict


def _gpu_info_count(probes: Probes) -> int | None:
    raw = probes.host.read_text(ECS_GPU_INFO)
    if raw is None:
        return None
    try:
        ids = json.loads(raw).get("GPUIDs")
    except (ValueError, AttributeError):
        return 0
    return len(ids) if isinstance(ids, list) else 0


def check_sources_listed(probes: Probes) -> Verdict:
    it = probe_instance_type(probes).value
    spec = lookup(it) if it else None
    pci = inventory.probe_pci(probes)
    if spec is None and not (pci.present and pci.gpus):
        raise NotApplicable("not a GPU instance type gpuprep's table lists, and no NVIDIA GPU on the PCI bus")
    counts: dict[str, int | None] = {"PCI": len(pci.gpus) if pci.present else None}
    nodes = inventory.probe_nodes(probes)
    counts["/dev"] = len(nodes.gpus) if nodes.present else None
    query = inventory.probe_query(probes)
    counts["NVML"] = len(query.gpus) if query.answered else None
    counts[ECS_GPU_INFO] = _gpu_info_count(probes)
    why = f"a {it}" if spec is not None else "a host with NVIDIA GPUs on its PCI bus"
    empty = [k for k, v in counts.items() if v == 0]
    unread = [k for k in ("PCI", "/dev") if counts[k] is None] if probes.host.live else []
    data = {"counts": counts, "instance_type": it, "empty": empty, "unread": unread}
    if empty or unread:
        said = ", ".join([f"{k} lists no GPU" for k in empty] + [f"{k} cannot be read" for k in unread])
        summary = f"{said} on {why}: fail closed, this host must not take GPU tasks"
        if empty == [ECS_GPU_INFO]:
            return Verdict(Status.CRITICAL, summary, data=data,
                           fixes=rewrite_gpu_info(probes.host, probes.platform))
        cause = inventory.module_not_loaded(probes)
        if cause:
            return Verdict(Status.CRITICAL, summary, follows(cause, "the nvidia module is not loaded"), data,
                           cause=cause)
        cause = inventory.nodes_missing(probes)
        if cause and empty == ["/dev"] and not unread:
            return Verdict(Status.CRITICAL, summary, follows(cause, "no /dev/nvidia[0-9]* device nodes"), data,
                           cause=cause)
        return Verdict(Status.CRITICAL, summary, data=data, fixes=inventory.driver_not_serving(probes))
    shown = ", ".join(f"{k} {v}" for k, v in counts.items() if v is not None)
    return Verdict(Status.OK, f"every source lists GPUs on {why}: {shown}", data=data)


CHECKS = [
    Check("gpu-sources-listed", "gpu", "on a GPU instance type, every source that must list GPUs lists some (PCI, "
          "/dev, NVML, ecs-init's nvidia-gpu-info.json): fail closed", check_sources_listed, timeout=QUERY_TIMEOUT,
          boot=True),
]
