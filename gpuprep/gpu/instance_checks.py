"""gpu checks that know the instance type: does the host have every GPU its EC2 type has, and, where a cold GPU
init times out, is persistence mode on?

PCI, /dev and NVML may agree with each other and all be short: an instance that registers with fewer GPUs than
its type has (aws/amazon-ecs-agent #4254, #4786) passes gpu-count. Only the instance type tells what "all" is.
The type comes from the instance metadata service (``ec2/imds.py``), asked once per run and within a second;
a machine that is not an EC2 instance is not asked, and these checks are skipped there. In the GPU's room: they
judge the GPUs, and the instance type is a fact they read from ec2/ (which imports nothing of gpu/).
"""

from __future__ import annotations

from typing import Any

from gpuprep import fixes
from gpuprep.ec2.imds import InstanceType
from gpuprep.ec2.instance_types import InstanceGpus, lookup
from gpuprep.ec2.probes import probe_instance_type
from gpuprep.gpu import inventory
from gpuprep.gpu.checks import QUERY_TIMEOUT
from gpuprep.gpu.inventory import persistence_fixes
from gpuprep.gpu.query import MOVE_HARDWARE
from gpuprep.report import Status
from gpuprep.runner.checks import Check, NotApplicable, Probes, Verdict
from gpuprep.runner.needs import LIVE

VIEW_NAMES = {"pci": "PCI", "dev": "/dev", "nvml": "NVML"}


def _instance_gpus(probes: Probes) -> tuple[InstanceType, InstanceGpus]:
    it = probe_instance_type(probes)
    if it.value is None:
        raise NotApplicable(it.skipped)
    spec = lookup(it.value)
    if spec is None:
        raise NotApplicable(f"{it.value} is not a GPU instance type gpuprep's table lists "
                            "(gpuprep/ec2/instance_types.py): no expected GPU count")
    return it, spec


def _views(probes: Probes) -> dict[str, int]:
    """Each view's GPU count, where the view could be read."""
    counts: dict[str, int] = {}
    pci = inventory.probe_pci(probes)
    if pci.present:
        counts["pci"] = len(pci.gpus)
    nodes = inventory.probe_nodes(probes)
    if nodes.present:
        counts["dev"] = len(nodes.gpus)
    query = inventory.probe_query(probes)  # with --root it answers at once that it was not asked
    if query.answered:
        counts["nvml"] = len(query.gpus)
    return counts


def check_instance_gpus(probes: Probes) -> Verdict:
    it, spec = _instance_gpus(probes)
    counts = _views(probes)
    if not counts:
        raise NotApplicable(f"{it.value}: no view of the GPUs to count (no sysfs, /dev or NVML)")
    expected = spec.gpus
    short = {k: v for k, v in counts.items() if v < expected}
    shown = ", ".join(f"{VIEW_NAMES[k]} {v}" for k, v in counts.items())
    data: dict[str, Any] = {**spec.as_dict(), "counts": counts, "short": sorted(short), "imds": it.as_dict()}
    has = f"{it.value} has {expected} {spec.model} GPU" + ("" if expected == 1 else "s")
    if short:
        if "pci" in short:
            # Missing from the bus: nothing on this host can bring it back; other hardware can.
            found = [fixes.kernel_log(probes.host, "a GPU of this instance is not on the PCI bus: the kernel log's "
                                                   "NVRM lines say what the driver saw"),
                     fixes.Fix("it does not come back on this host: " + MOVE_HARDWARE)]
        else:  # every GPU on the bus, not all served by the driver
            found = inventory.driver_not_serving(probes)
        return Verdict(Status.CRITICAL, f"{has}; this host sees {shown}: ECS would register it with too few GPUs",
                       data=data, fixes=found)
    more = {k: v for k, v in counts.items() if v > expected}
    note = (f" (more than gpuprep's table says for {it.value}: {spec.source} lists the sizes)" if more else "")
    return Verdict(Status.OK, f"{has}; every view sees them: {shown}{note}", data=data)


def check_persistence_required(probes: Probes) -> Verdict:
    it, spec = _instance_gpus(probes)
    if not spec.persistence_required:
        raise NotApplicable(f"{it.value}: a cold GPU init starts containers in time here; persistence mode is "
                            "advised, not required (gpu-persistence)")
    query = inventory.probe_query(probes)
    if not query.answered:
        raise NotApplicable(query.skipped or "NVML did not answer (see gpu-nvml)")
    gpus = [g for g in query.gpus if not g.error]
    off = [g for g in gpus if g.persistence_mode is False]
    data = {**spec.as_dict(), "gpus": {str(g.index): g.persistence_mode for g in gpus}}
    if off:
        return Verdict(
            Status.CRITICAL,
            f"persistence mode off on {len(off)} of {len(gpus)} GPUs of a {it.value}: the first container "
            "initialises them all and outlasts nvidia-container-cli's driver RPC timeout (`driver rpc error: "
            "timed out`; bottlerocket-os/bottlerocket #3960, NVIDIA/nvidia-container-toolkit #202)",
            data=data, fixes=persistence_fixes(probes))
    return Verdict(Status.OK, f"persistence mode on for all {len(gpus)} GPUs, as a {it.value} needs", data=data)


CHECKS = [
    Check("gpu-instance-count", "gpu", "every GPU the EC2 instance type has is seen by PCI, /dev and NVML "
          "(instance metadata, within 1 s)", check_instance_gpus, timeout=QUERY_TIMEOUT, boot=True),
    Check("gpu-persistence-required", "gpu", "persistence mode is on where a cold GPU init times out "
          "(p4d, p5, p6 and other 8-GPU P types)", check_persistence_required, timeout=QUERY_TIMEOUT,
          needs=(LIVE,), boot=True),
]
