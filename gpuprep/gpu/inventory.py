"""The four views of the same GPUs gathered (sysfs, /dev, the module, NVML or nvidia-smi) with the kernel log,
and doctor's probes of each: one per view, so a check that needs only sysfs never waits on a hanging NVML."""

from __future__ import annotations

from dataclasses import dataclass

from gpuprep import fixes
from gpuprep.gpu.devices import (
    DeviceNodes,
    KernelModule,
    PciScan,
    Userland,
    read_device_nodes,
    read_kernel_module,
    read_pci,
    read_userland,
)
from gpuprep.gpu.kernel_log import KernelLog, read_kernel_log
from gpuprep.gpu.query import MOVE_HARDWARE, GpuQuery, GpuStatus, query_gpus
from gpuprep.host import Host
from gpuprep.runner.checks import Probes, probe


# ---------------------------------------------------------------------------------------------
# The inventory
# ---------------------------------------------------------------------------------------------
@dataclass
class GpuInventory:
    live: bool
    pci: PciScan
    nodes: DeviceNodes
    module: KernelModule
    userland: Userland
    query: GpuQuery
    kernel_log: KernelLog

    @property
    def gpus(self) -> list[GpuStatus]:
        return self.query.gpus if self.query.answered else []

    @property
    def uuids(self) -> list[str]:
        """GPU UUIDs as NVML gives them (``GPU-0e7d3af2-...``), in index order; [] without NVML."""
        return [g.uuid for g in sorted(self.gpus, key=lambda g: g.index) if g.uuid]

    @property
    def count(self) -> int:
        """GPUs NVML reports when it answered, else the NVIDIA GPU functions on the PCI bus."""
        return len(self.gpus) if self.query.answered else len(self.pci.gpus)

    @property
    def driver_version(self) -> str | None:
        """NVML's driver version, else the loaded kernel module's."""
        return self.query.driver_version or self.module.version or None


def gather(host: Host) -> GpuInventory:
    pci = read_pci(host)
    return GpuInventory(
        live=host.live, pci=pci, nodes=read_device_nodes(host), module=read_kernel_module(host),
        userland=read_userland(host), query=query_gpus(host, len(pci.gpus)), kernel_log=read_kernel_log(host),
    )


# Each view is its own probe so a check that needs only sysfs never waits on a hanging NVML.
@probe
def probe_pci(p: Probes) -> PciScan:
    return read_pci(p.host)


@probe
def probe_nodes(p: Probes) -> DeviceNodes:
    return read_device_nodes(p.host)


@probe
def probe_module(p: Probes) -> KernelModule:
    return read_kernel_module(p.host)


@probe
def probe_userland(p: Probes) -> Userland:
    return read_userland(p.host)


@probe
def probe_query(p: Probes) -> GpuQuery:
    return query_gpus(p.host, len(probe_pci(p).gpus))


@probe
def probe_kernel_log(p: Probes) -> KernelLog:
    return read_kernel_log(p.host)


@probe
def gpu_inventory(p: Probes) -> GpuInventory:
    """The whole inventory, computed once per doctor run and shared with every check that asks."""
    return GpuInventory(
        live=p.host.live, pci=probe_pci(p), nodes=probe_nodes(p), module=probe_module(p),
        userland=probe_userland(p), query=probe_query(p), kernel_log=probe_kernel_log(p),
    )


# -- what a finding of a GPU the driver does not serve shares: its cause and its fixes (gpu/ and ecs/ checks) ---
MODULE_CHECK = "gpu-kernel-module"


def module_not_loaded(probes: Probes) -> str:
    """gpu-kernel-module's id where the nvidia module is known not to be loaded: the cause of every finding of a
    GPU the driver does not serve (no device nodes, counts that disagree), whose own fixes would not work."""
    module = probe_module(probes)
    return MODULE_CHECK if module.procfs and not module.loaded else ""


NODES_CHECK = "gpu-device-nodes"


def nodes_missing(probes: Probes) -> str:
    """gpu-device-nodes' id where the loaded module has made no /dev/nvidia[0-9]* node: the cause of a count or a
    source that sees none in /dev alone, whose fixes (the nodes made) clear it; a reboot would not be the fix."""
    module, nodes = probe_module(probes), probe_nodes(probes)
    return NODES_CHECK if module.loaded and nodes.present and not nodes.gpus else ""


def driver_not_serving(probes: Probes) -> list[fixes.Fix]:
    """A GPU on the bus the loaded driver does not serve: the kernel log says why, a reboot retries it, and one that
    recurs is the hardware's (gpu-pci's unbound GPUs, gpu-count's and gpu-sources-listed's missing ones)."""
    return [fixes.kernel_log(probes.host, "the kernel log says why: NVRM lines such as RmInitAdapter failed or "
                                          "fallen off the bus"),
            fixes.reboot(probes.host, "reboot"),
            fixes.Fix("if it recurs, the GPU or its slot is failing: " + MOVE_HARDWARE)]


def persistence_fixes(probes: Probes) -> list[fixes.Fix]:
    """Persistence on, now and at every boot (nvidia-persistenced; without systemd, nvidia-smi -pm 1 to the next)."""
    why = ("without persistence the driver tears a GPU down when its last client exits and re-initialises it on the "
           "next: 1-3 s per GPU, and docker run --gpus took 25 s instead of 0.8 s (NVIDIA/nvidia-docker 1279)")
    if probes.platform.init == "systemd":
        return [fixes.Fix(f"turn it on now and at every boot (the AMI should ship nvidia-persistenced enabled); {why}",
                          fixes.as_user(probes.host, ["systemctl", "enable", "--now", "nvidia-persistenced"]))]
    return [fixes.Fix(f"turn it on until the next boot; {why}", fixes.as_user(probes.host, ["nvidia-smi", "-pm", "1"]))]
