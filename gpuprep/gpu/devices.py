"""The devices as the system sees them, whatever the driver thinks: NVIDIA functions on the PCI bus (sysfs),
the /dev/nvidia* nodes, the loaded kernel module and the userland's libnvidia-ml (docs/domain.md "GPU health").

The one PCI reader: install's preflight and doctor count GPUs through ``read_pci`` alike. With ``--root``
every read happens inside the root."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from gpuprep.host import Host

NVIDIA_VENDOR = 0x10DE
# PCI base class 0x03 (display): subclass 0x00 VGA (a few boards, e.g. A10G on some hosts) and
# 0x02 3D controller (datacenter GPUs: T4, V100, A100, H100, H200). 0x0403 (HDMI audio of the same
# board) and 0x0680 (NVSwitch bridges) are NVIDIA functions that are not GPUs.
GPU_CLASSES = (0x0300, 0x0302)
# Where distributions put libnvidia-ml.so.1 (AL2/RHEL: lib64; Debian/Ubuntu: multiarch dirs).
LIB_DIRS = (
    "/usr/lib64", "/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib",
    "/lib64", "/lib/x86_64-linux-gnu", "/lib/aarch64-linux-gnu",
)
VERSION_PATTERN = r"\d+\.\d+(?:\.\d+)?"


# ---------------------------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------------------------
def normalize_bus_id(bus_id: str) -> str:
    """``00000000:00:1E.0`` (NVML, nvidia-smi) and ``0000:00:1e.0`` (sysfs) -> ``0000:00:1e.0``."""
    bus_id = bus_id.strip().lower()
    if bus_id.startswith("pci:"):
        bus_id = bus_id[4:]
    parts = bus_id.split(":")
    if len(parts) == 3:
        domain = parts[0][-4:].rjust(4, "0")
        return f"{domain}:{parts[1]}:{parts[2]}"
    return bus_id


@dataclass(frozen=True)
class PciFunction:
    bus_id: str  # sysfs name, "0000:00:1e.0"
    device_id: str  # "0x2330"
    class_code: str  # "0x030200"
    driver: str | None  # the bound kernel driver ("nvidia", "nouveau", "vfio-pci"), None when unbound


@dataclass
class PciScan:
    present: bool  # /sys/bus/pci/devices exists (sysfs is mounted in --root)
    gpus: list[PciFunction] = field(default_factory=list)


@dataclass
class DeviceNodes:
    present: bool  # /dev looks populated (devtmpfs bound into --root)
    gpus: list[str] = field(default_factory=list)  # /dev/nvidia0, /dev/nvidia1, ...
    nvidiactl: bool = False
    nvidia_uvm: bool = False


@dataclass
class KernelModule:
    procfs: bool  # /proc is mounted (or laid out) in the root
    loaded: bool = False
    version: str | None = None
    flavour: str | None = None  # "open" | "proprietary"
    text: str = ""  # the first line of /proc/driver/nvidia/version


@dataclass
class Userland:
    """The driver's user-space side, from libnvidia-ml's file names (works inside --root)."""

    nvml_lib: str | None = None  # host path of libnvidia-ml.so.1
    version: str | None = None  # what libnvidia-ml.so.1 resolves to: libnvidia-ml.so.<version>
    installed: list[str] = field(default_factory=list)  # every libnvidia-ml.so.<version> found




# ---------------------------------------------------------------------------------------------
# sysfs, /dev, /proc, libraries
# ---------------------------------------------------------------------------------------------
def _read_hex(path: Path) -> int | None:
    try:
        return int(path.read_text().strip(), 16)
    except (OSError, ValueError):
        return None


def is_gpu_function(vendor: int | None, class_code: int | None) -> bool:
    return vendor == NVIDIA_VENDOR and class_code is not None and (class_code >> 8) in GPU_CLASSES


def read_pci(host: Host) -> PciScan:
    devices = host.path("/sys/bus/pci/devices")
    if not devices.is_dir():
        return PciScan(present=False)
    gpus = []
    for dev in sorted(devices.iterdir()):
        vendor, klass = _read_hex(dev / "vendor"), _read_hex(dev / "class")
        if not is_gpu_function(vendor, klass):
            continue
        device = _read_hex(dev / "device")
        try:
            driver: str | None = os.path.basename(os.readlink(dev / "driver"))
        except OSError:
            driver = None
        gpus.append(PciFunction(
            dev.name.lower(), f"0x{device:04x}" if device is not None else "", f"0x{klass:06x}", driver,
        ))
    return PciScan(present=True, gpus=gpus)


_GPU_NODE = re.compile(r"^nvidia(\d+)$")


def read_device_nodes(host: Host) -> DeviceNodes:
    dev = host.path("/dev")
    # An image's /dev without devtmpfs bound in has no /dev/null: then /dev tells nothing.
    if not host.live and not host.path("/dev/null").exists():
        return DeviceNodes(present=False)
    try:
        names = os.listdir(dev)
    except OSError:
        return DeviceNodes(present=False)
    nodes = sorted((m for m in map(_GPU_NODE.match, names) if m), key=lambda m: int(m.group(1)))
    return DeviceNodes(
        present=True,
        gpus=[f"/dev/{m.group(0)}" for m in nodes],
        nvidiactl="nvidiactl" in names,
        nvidia_uvm="nvidia-uvm" in names,
    )


_MODULE_VERSION = re.compile(rf"Kernel Module(?:\s+for\s+\S+)?\s+({VERSION_PATTERN})\b")


def parse_module_version(text: str) -> tuple[str | None, str | None]:
    """``/proc/driver/nvidia/version`` -> (version, "open" | "proprietary").

    ``NVRM version: NVIDIA UNIX x86_64 Kernel Module  535.183.01  Sun May 12 ...`` (proprietary) or
    ``NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  580.95.05  Release Build ...`` (open).

    >>> parse_module_version('''NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  580.95.05  Release Build
    ... GCC version:  gcc version 11.5.0 20240719 (Red Hat 11.5.0-5) (GCC)''')
    ('580.95.05', 'open')
    >>> parse_module_version("NVRM version: NVIDIA UNIX x86_64 Kernel Module  535.183.01  Sun May 12 19:39:15 UTC 2024")
    ('535.183.01', 'proprietary')
    """
    m = _MODULE_VERSION.search(text)
    if not m:
        return None, None
    return m.group(1), "open" if "Open Kernel Module" in text else "proprietary"


def parse_modules(text: str) -> set[str]:
    """``/proc/modules`` (what ``lsmod`` prints, less its header) -> the names of the loaded modules.

    >>> sorted(parse_modules('''nvidia_uvm 1851392 0 - Live 0x0000000000000000 (POE)
    ... nvidia_drm 126976 0 - Live 0x0000000000000000 (POE)
    ... nvidia 9797632 2 nvidia_uvm,nvidia_drm, Live 0x0000000000000000 (POE)
    ... efa 139264 0 - Live 0x0000000000000000 (OE)
    ... '''))
    ['efa', 'nvidia', 'nvidia_drm', 'nvidia_uvm']
    """
    return {line.split()[0] for line in text.splitlines() if line.split()}


def read_kernel_module(host: Host) -> KernelModule:
    procfs = host.live or host.exists("/proc/modules") or host.exists("/proc/driver")
    if not procfs:
        return KernelModule(procfs=False)
    text = host.read_text("/proc/driver/nvidia/version")
    if text is None:
        return KernelModule(procfs=True, loaded="nvidia" in parse_modules(host.read_text("/proc/modules") or ""))
    version, flavour = parse_module_version(text)
    first = text.strip().splitlines()[0] if text.strip() else ""
    return KernelModule(procfs=True, loaded=True, version=version, flavour=flavour, text=first)


_LIB_VERSION = re.compile(rf"^libnvidia-ml\.so\.({VERSION_PATTERN})$")


def library_version(name: str) -> str | None:
    m = _LIB_VERSION.match(os.path.basename(name))
    return m.group(1) if m else None


def read_userland(host: Host) -> Userland:
    found: dict[str, str] = {}
    nvml_lib = version = None
    for d in LIB_DIRS:
        real = host.path(d)
        try:
            names = os.listdir(real)
        except OSError:
            continue
        for name in names:
            v = library_version(name)
            if v:
                found.setdefault(v, f"{d}/{name}")
        if nvml_lib is None and "libnvidia-ml.so.1" in names:
            nvml_lib = f"{d}/libnvidia-ml.so.1"
            version = library_version(host.resolve(nvml_lib))
    return Userland(nvml_lib=nvml_lib, version=version, installed=sorted(found))
