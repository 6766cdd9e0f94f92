"""The host GPU probe: what the PCI bus, /dev, the kernel module, NVML and the kernel log say.

Four independent views of the same GPUs (docs/domain.md "GPU health"):

- sysfs: NVIDIA PCI functions (vendor 0x10de, class display/3D), whatever the driver thinks;
- /dev/nvidia[0-9]*: one node per GPU the driver set up (ecs-init registers no GPU without them);
- /proc/driver/nvidia/version: the kernel module and its version; libnvidia-ml.so.1: the userland's;
- NVML (nvidia-ml-py), else ``nvidia-smi``: per-GPU health, bounded by a deadline because NVML init
  can hang with some drivers.

And the kernel log of this boot for ``NVRM: Xid`` lines, the only place XIDs are kept.

Parsers are pure functions of text (``parse_*``) so they are tested on fixture output; readers
(``read_*``, ``query_*``) do the I/O through a ``Host``. With ``--root`` the sysfs, /dev, /proc and
library reads happen inside the root; NVML, nvidia-smi and the kernel log belong to the running
system and are not consulted (the inventory says so).
"""

from __future__ import annotations

import contextlib
import csv
import os
import re
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gpuprep.errors import CommandError, GpuprepError
from gpuprep.host import Host

if TYPE_CHECKING:
    from gpuprep.runner.checks import Probes

NVIDIA_VENDOR = 0x10DE
# PCI base class 0x03 (display): subclass 0x00 VGA (a few boards, e.g. A10G on some hosts) and
# 0x02 3D controller (datacenter GPUs: T4, V100, A100, H100, H200). 0x0403 (HDMI audio of the same
# board) and 0x0680 (NVSwitch bridges) are NVIDIA functions that are not GPUs.
GPU_CLASSES = (0x0300, 0x0302)

NVML_DEADLINE_S = 3.0  # TESTBED 7: NVML init takes ~10 ms with persistence on
SMI_TIMEOUT_S = 4.0  # TESTBED 7: nvidia-smi -q ~100 ms, --query-gpu ~30 ms on a healthy H200
PER_GPU_INIT_S = 3.0  # without persistence mode each client start initialises every GPU: 1-3 s each (docs/domain.md)
MAX_INIT_S = 30.0  # beyond this NVML is not slow but stuck
KERNEL_LOG_TIMEOUT_S = 4.0
KERNEL_LOG_MAX_LINES = 200_000  # a boot's kernel log is far smaller; the bound guards a spamming driver
KMSG_DEADLINE_S = 2.0
XID_SAMPLES = 50  # events kept verbatim; the rest are only counted

# Where distributions put libnvidia-ml.so.1 (AL2/RHEL: lib64; Debian/Ubuntu: multiarch dirs).
LIB_DIRS = (
    "/usr/lib64", "/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib",
    "/lib64", "/lib/x86_64-linux-gnu", "/lib/aarch64-linux-gnu",
)

_VERSION = r"\d+\.\d+(?:\.\d+)?"


# ---------------------------------------------------------------------------------------------
# Causes: NVML return codes, which are also nvidia-smi's exit codes (docs/domain.md; nvml.h nvmlReturn_t)
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Cause:
    summary: str
    hint: str


# A stop and start (not a reboot) moves an EC2 instance to other hardware; IMDSv2 may need a token for the id.
MOVE_HARDWARE = ("on EC2 stop and start the instance to move to other hardware (`aws ec2 stop-instances "
                 "--instance-ids $(ec2-metadata -i | cut -d' ' -f2)`, then `aws ec2 start-instances` with the same id)")

NVML_CAUSES: dict[int, Cause] = {
    9: Cause(
        "the NVIDIA kernel module is not loaded (NVML: Driver Not Loaded)",
        "`modprobe nvidia`; if that fails the module was not built for the running kernel: "
        "`dkms status`, then reinstall the driver for `uname -r` and reboot",
    ),
    12: Cause(
        "the NVML library libnvidia-ml.so.1 is missing (the driver's userland is not installed)",
        "install the driver userland matching the kernel module (`cat /proc/driver/nvidia/version`), "
        "then `ldconfig`",
    ),
    14: Cause(
        "a GPU's InfoROM is corrupted",
        "`nvidia-smi -q | grep -i -A3 inforom` names the GPU; drain it and have it replaced ("
        + MOVE_HARDWARE + ")",
    ),
    15: Cause(
        "a GPU has fallen off the bus (NVML: GPU is lost)",
        "drain the host and `sudo reboot`; if it happens again the GPU or its slot is failing: " + MOVE_HARDWARE
        + ", elsewhere RMA the GPU",
    ),
    18: Cause(
        "the driver userland and the loaded kernel module differ in version (NVRM API mismatch)",
        "`sudo reboot` to load the kernel module the installed userland belongs to (a package update "
        "replaced the driver under the running module); then `sudo dnf versionlock add 'nvidia*' 'kmod*' "
        "'libnvidia*'` (yum on Amazon Linux 2) so a boot-time update cannot do it again (aws/amazon-ecs-ami 256)",
    ),
}


def cause_for_code(code: int | None, what: str = "NVML") -> Cause:
    if code is not None and code in NVML_CAUSES:
        return NVML_CAUSES[code]
    return Cause(
        f"{what} failed" + (f" with code {code}" if code is not None else ""),
        "run `nvidia-smi -q` as root and read its error; `journalctl -k -b | grep NVRM` shows the driver's view",
    )


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


@dataclass
class GpuStatus:
    index: int
    name: str = ""
    uuid: str = ""
    pci_bus_id: str = ""  # normalised, "0000:00:1e.0"
    persistence_mode: bool | None = None
    ecc_uncorrected_volatile: int | None = None  # None: ECC off or not supported
    remapped_rows_pending: bool | None = None  # None: no row remapping (pre-A100)
    remapped_rows_failure: bool | None = None
    retired_pages_pending: bool | None = None  # None: not supported (A100+ remap rows instead)
    clock_events: dict[str, bool] | None = None  # CLOCK_EVENTS names -> active
    driver_version: str = ""
    error: str = ""  # this GPU could not be read (e.g. lost), with the cause
    error_code: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v not in ("", None) or k in ("index",)}


# The clock event reasons worth a warning (nvml.h nvmlClocksEventReason*): hardware slowdown
# (thermal or external power brake) and the driver's own thermal slowdown.
CLOCK_EVENTS = ("hw_slowdown", "hw_thermal_slowdown", "hw_power_brake_slowdown", "sw_thermal_slowdown")
CLOCK_EVENT_BITS = {
    "hw_slowdown": 0x08,
    "sw_thermal_slowdown": 0x20,
    "hw_thermal_slowdown": 0x40,
    "hw_power_brake_slowdown": 0x80,
}


def clock_events_from_mask(mask: int) -> dict[str, bool]:
    return {name: bool(mask & bit) for name, bit in CLOCK_EVENT_BITS.items()}


@dataclass
class GpuQuery:
    """What NVML (or nvidia-smi) answered."""

    source: str = ""  # "nvml" | "nvidia-smi" | "" (nothing asked)
    gpus: list[GpuStatus] = field(default_factory=list)
    driver_version: str = ""
    error: str = ""  # why nothing answered
    error_code: int | None = None  # NVML return code / nvidia-smi exit code
    hint: str = ""
    skipped: str = ""  # why nothing was asked (--root)
    notes: list[str] = field(default_factory=list)  # e.g. why NVML was not used
    duration_ms: float = 0.0
    fallback: bool = False  # NVML unusable here (no nvidia-ml-py / no library): try nvidia-smi

    @property
    def answered(self) -> bool:
        return not self.error and not self.skipped and bool(self.source)


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


_MODULE_VERSION = re.compile(rf"Kernel Module(?:\s+for\s+\S+)?\s+({_VERSION})\b")


def parse_module_version(text: str) -> tuple[str | None, str | None]:
    """``/proc/driver/nvidia/version`` -> (version, "open" | "proprietary").

    ``NVRM version: NVIDIA UNIX x86_64 Kernel Module  535.183.01  Sun May 12 ...`` (proprietary) or
    ``NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  580.95.05  Release Build ...`` (open).
    """
    m = _MODULE_VERSION.search(text)
    if not m:
        return None, None
    return m.group(1), "open" if "Open Kernel Module" in text else "proprietary"


def read_kernel_module(host: Host) -> KernelModule:
    procfs = host.live or host.exists("/proc/modules") or host.exists("/proc/driver")
    if not procfs:
        return KernelModule(procfs=False)
    text = host.read_text("/proc/driver/nvidia/version")
    if text is None:
        modules = host.read_text("/proc/modules") or ""
        loaded = any(line.split(" ", 1)[0] == "nvidia" for line in modules.splitlines())
        return KernelModule(procfs=True, loaded=loaded)
    version, flavour = parse_module_version(text)
    first = text.strip().splitlines()[0] if text.strip() else ""
    return KernelModule(procfs=True, loaded=True, version=version, flavour=flavour, text=first)


_LIB_VERSION = re.compile(rf"^libnvidia-ml\.so\.({_VERSION})$")


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


# ---------------------------------------------------------------------------------------------
# NVML
# ---------------------------------------------------------------------------------------------
def _text(value: Any) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def _nvml_code(exc: Exception) -> int | None:
    return getattr(exc, "value", None)  # pynvml's NVMLError carries the nvmlReturn_t code


def _nvml_optional(nv: Any, fn: Callable, *args: Any) -> tuple[Any, int | None]:
    """(value, None) or (None, NVML code): optional fields raise NotSupported on some GPUs."""
    try:
        return fn(*args), None
    except nv.NVMLError as exc:
        return None, _nvml_code(exc)


def _nvml_clock_events(nv: Any, handle: Any) -> dict[str, bool] | None:
    # nvmlDeviceGetCurrentClocksEventReasons is the 535+ name; older drivers only have the
    # ...ThrottleReasons one (same bits).
    for name in ("nvmlDeviceGetCurrentClocksEventReasons", "nvmlDeviceGetCurrentClocksThrottleReasons"):
        fn = getattr(nv, name, None)
        if fn is None:
            continue
        mask, code = _nvml_optional(nv, fn, handle)
        if code is None:
            return clock_events_from_mask(int(mask))
    return None


def _nvml_gpu(nv: Any, index: int, driver: str) -> GpuStatus:
    gpu = GpuStatus(index=index, driver_version=driver)
    try:
        handle = nv.nvmlDeviceGetHandleByIndex(index)
        gpu.name = _text(nv.nvmlDeviceGetName(handle))
        gpu.uuid = _text(nv.nvmlDeviceGetUUID(handle))
        gpu.pci_bus_id = normalize_bus_id(_text(nv.nvmlDeviceGetPciInfo(handle).busId))
    except nv.NVMLError as exc:
        gpu.error_code = _nvml_code(exc)
        gpu.error = f"GPU {index}: {exc} ({cause_for_code(gpu.error_code).summary})"
        return gpu
    mode, _ = _nvml_optional(nv, nv.nvmlDeviceGetPersistenceMode, handle)
    gpu.persistence_mode = None if mode is None else mode == nv.NVML_FEATURE_ENABLED
    ecc, _ = _nvml_optional(nv, nv.nvmlDeviceGetTotalEccErrors, handle,
                            nv.NVML_MEMORY_ERROR_TYPE_UNCORRECTED, nv.NVML_VOLATILE_ECC)
    gpu.ecc_uncorrected_volatile = None if ecc is None else int(ecc)
    rows, _ = _nvml_optional(nv, nv.nvmlDeviceGetRemappedRows, handle)
    if rows is not None:
        _corr, _unc, pending, failure = rows
        gpu.remapped_rows_pending, gpu.remapped_rows_failure = bool(pending), bool(failure)
    else:
        # Row remapping is A100+; older GPUs retire pages instead and answer NotSupported above.
        pending, _ = _nvml_optional(nv, nv.nvmlDeviceGetRetiredPagesPendingStatus, handle)
        gpu.retired_pages_pending = None if pending is None else pending == nv.NVML_FEATURE_ENABLED
    gpu.clock_events = _nvml_clock_events(nv, handle)
    return gpu


def read_nvml(nv: Any) -> GpuQuery:
    """Ask NVML through the ``pynvml`` module ``nv`` (a parameter, so tests pass a fake one)."""
    started = time.monotonic()
    nv.nvmlInit()
    try:
        driver = _text(nv.nvmlSystemGetDriverVersion())
        gpus = [_nvml_gpu(nv, i, driver) for i in range(nv.nvmlDeviceGetCount())]
    finally:
        with contextlib.suppress(nv.NVMLError):
            nv.nvmlShutdown()
    return GpuQuery(source="nvml", gpus=gpus, driver_version=driver,
                    duration_ms=(time.monotonic() - started) * 1000)


# NVML_ERROR_LIBRARY_NOT_FOUND, NVML_ERROR_FUNCTION_NOT_FOUND: the Python binding cannot load or use
# libnvidia-ml here; nvidia-smi (linked its own way) may still answer. Every other code is the
# driver's answer, and nvidia-smi would give the same one.
NVML_FALLBACK_CODES = (12, 13)


def query_nvml(deadline_s: float = NVML_DEADLINE_S, nv: Any = None) -> GpuQuery:
    """NVML in a daemon thread with a deadline: NVML init can hang with some drivers (docs/domain.md)."""
    if nv is None:
        try:
            import pynvml as nv  # heavy, and absent on some hosts: imported where used
        except ImportError as exc:
            return GpuQuery(source="nvml", error=f"nvidia-ml-py is not importable ({exc})", fallback=True)
    box: dict[str, GpuQuery] = {}

    def ask() -> None:
        try:
            box["q"] = read_nvml(nv)
        except nv.NVMLError as exc:
            code = _nvml_code(exc)
            cause = cause_for_code(code)
            box["q"] = GpuQuery(source="nvml", error=f"NVML: {exc}: {cause.summary}", error_code=code,
                                hint=cause.hint, fallback=code in NVML_FALLBACK_CODES)
        except Exception as exc:  # a binding bug must not take doctor down
            box["q"] = GpuQuery(source="nvml", error=f"NVML: {type(exc).__name__}: {exc}", fallback=True)

    started = time.monotonic()
    t = threading.Thread(target=ask, name="nvml", daemon=True)
    t.start()
    t.join(deadline_s)
    if t.is_alive():
        return GpuQuery(
            source="nvml", error=f"NVML did not answer within {deadline_s:g}s",
            hint="NVML init hangs while the driver is stuck: `journalctl -k -b | grep NVRM` for XIDs; "
            "enable persistence mode (`systemctl enable --now nvidia-persistenced`); reboot if it persists",
            duration_ms=(time.monotonic() - started) * 1000,
        )
    return box["q"]


# ---------------------------------------------------------------------------------------------
# nvidia-smi
# ---------------------------------------------------------------------------------------------
SMI_FIELDS = (
    "index", "name", "uuid", "pci.bus_id", "driver_version", "persistence_mode",
    "ecc.errors.uncorrected.volatile.total",
)


def _smi_value(value: str) -> str | None:
    value = value.strip()
    return None if value.strip("[]") in ("N/A", "Not Supported", "Unknown Error", "Not Available") else value


def _smi_int(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def _smi_bool(value: str | None, yes: tuple[str, ...] = ("Enabled", "Yes", "Active")) -> bool | None:
    return None if value is None else value.strip() in yes


def parse_smi_csv(text: str) -> list[GpuStatus]:
    """``_parse_smi_csv``; output it cannot read is said as such (GpuprepError), not as a crash."""
    try:
        return _parse_smi_csv(text)
    except (csv.Error, ValueError) as exc:
        raise GpuprepError(f"cannot read nvidia-smi's CSV output: {str(exc)[:200]}",
                           "run nvidia-smi --query-gpu=index,name,uuid --format=csv by hand: a driver that "
                           "prints this is broken or mismatched (reinstall it, or reboot after an update)") from None


def _parse_smi_csv(text: str) -> list[GpuStatus]:
    """``nvidia-smi --query-gpu=... --format=csv[,noheader][,nounits]`` -> GpuStatus list.

    With a header line the columns are taken by name (``pci.bus_id``, ``persistence_mode [units]``);
    without one they are SMI_FIELDS in order, as ``query_smi`` asks.
    """
    gpus = []
    columns = list(SMI_FIELDS)
    for row in csv.reader(text.splitlines(), skipinitialspace=True):
        if not row or not row[0].strip():
            continue
        if row[0].strip() == "index":
            columns = [c.split(" [")[0].strip() for c in row]
            continue
        if len(row) < len(columns) or not set(SMI_FIELDS) <= set(columns):
            raise ValueError(f"nvidia-smi printed {row!r} for columns {columns!r}")
        v = {c: _smi_value(x) for c, x in zip(columns, row)}
        gpus.append(GpuStatus(
            index=int(v["index"] or 0), name=v["name"] or "", uuid=v["uuid"] or "",
            pci_bus_id=normalize_bus_id(v["pci.bus_id"] or ""), driver_version=v["driver_version"] or "",
            persistence_mode=_smi_bool(v["persistence_mode"]),
            ecc_uncorrected_volatile=_smi_int(v["ecc.errors.uncorrected.volatile.total"]),
        ))
    return gpus


_Q_GPU = re.compile(r"^GPU ([0-9A-Fa-f]+:[0-9A-Fa-f]{2}:[0-9A-Fa-f]{2}\.[0-9A-Fa-f])\s*$")


def parse_smi_q_tree(text: str) -> tuple[dict[tuple[str, ...], str], dict[str, dict[tuple[str, ...], str]]]:
    """``nvidia-smi -q`` -> (header fields, {bus id: fields}); a field's key is its section path.

    ``HW Thermal Slowdown`` nested under ``HW Slowdown`` is
    ``("Clocks Event Reasons", "HW Slowdown", "HW Thermal Slowdown")``.
    """
    header: dict[tuple[str, ...], str] = {}
    gpus: dict[str, dict[tuple[str, ...], str]] = {}
    fields = header
    stack: list[tuple[int, str]] = []
    for raw in text.splitlines():
        if not raw.strip() or raw.lstrip().startswith("="):
            continue
        m = _Q_GPU.match(raw)
        if m:
            fields = gpus.setdefault(normalize_bus_id(m.group(1)), {})
            stack = []
            continue
        indent = len(raw) - len(raw.lstrip(" "))
        key, sep, value = raw.strip().partition(":")
        key = key.strip()
        while stack and stack[-1][0] >= indent:
            stack.pop()
        if sep:
            fields[(*(k for _, k in stack), key)] = value.strip()
        stack.append((indent, key))
    return header, gpus


def _q_find(fields: dict[tuple[str, ...], str], sections: tuple[str, ...], leaf: str) -> str | None:
    for path, value in fields.items():
        if path[0] in sections and path[-1] == leaf:
            return value
    return None


def _q_ecc_uncorrected(fields: dict[tuple[str, ...], str]) -> int | None:
    """Volatile uncorrectable ECC: ``DRAM/SRAM Uncorrectable*`` (Ampere+) or ``Double Bit/Total``."""
    total, seen = 0, False
    for path, value in fields.items():
        if path[:2] != ("ECC Errors", "Volatile"):
            continue
        leaf = path[-1]
        if "Uncorrectable" in leaf or (path[-2:] == ("Double Bit", "Total")):
            n = _smi_int(_smi_value(value))
            if n is not None:
                total, seen = total + n, True
    return total if seen else None


CLOCK_SECTIONS = ("Clocks Event Reasons", "Clocks Throttle Reasons")  # renamed in driver 535
CLOCK_EVENT_LABELS = {
    "hw_slowdown": "HW Slowdown",
    "hw_thermal_slowdown": "HW Thermal Slowdown",
    "hw_power_brake_slowdown": "HW Power Brake Slowdown",
    "sw_thermal_slowdown": "SW Thermal Slowdown",
}


def parse_smi_q(text: str) -> tuple[str, list[GpuStatus]]:
    """``nvidia-smi -q`` -> (driver version, GpuStatus per GPU in bus order)."""
    header, gpus = parse_smi_q_tree(text)
    driver = header.get(("Driver Version",), "")
    result = []
    for index, (bus_id, f) in enumerate(gpus.items()):
        minor = _smi_int(_smi_value(_q_find(f, ("Minor Number",), "Minor Number") or ""))
        remap_pending = _q_find(f, ("Remapped Rows",), "Pending")
        clocks = {name: _smi_bool(_smi_value(_q_find(f, CLOCK_SECTIONS, label) or "N/A"), ("Active",))
                  for name, label in CLOCK_EVENT_LABELS.items()}
        retired = next((v for p, v in f.items() if p[0] == "Retired Pages" and p[-1].startswith("Pending")), None)
        result.append(GpuStatus(
            index=minor if minor is not None else index,
            name=f.get(("Product Name",), ""),
            uuid=f.get(("GPU UUID",), ""),
            pci_bus_id=bus_id,
            persistence_mode=_smi_bool(_smi_value(f.get(("Persistence Mode",), "N/A"))),
            ecc_uncorrected_volatile=_q_ecc_uncorrected(f),
            remapped_rows_pending=_smi_bool(_smi_value(remap_pending or "N/A")),
            remapped_rows_failure=_smi_bool(_smi_value(
                _q_find(f, ("Remapped Rows",), "Remapping Failure Occurred") or "N/A")),
            retired_pages_pending=_smi_bool(_smi_value(retired or "N/A")),
            clock_events=None if all(v is None for v in clocks.values()) else
            {k: bool(v) for k, v in clocks.items()},
            driver_version=driver,
        ))
    return driver, result


def _merge_q(gpus: list[GpuStatus], details: list[GpuStatus]) -> None:
    """Add what only ``-q`` shows (row remapping, retired pages, clock events) to the CSV rows."""
    by_bus = {d.pci_bus_id: d for d in details}
    for gpu in gpus:
        d = by_bus.get(gpu.pci_bus_id)
        if d is None:
            continue
        gpu.remapped_rows_pending = d.remapped_rows_pending
        gpu.remapped_rows_failure = d.remapped_rows_failure
        gpu.retired_pages_pending = d.retired_pages_pending
        gpu.clock_events = d.clock_events


def smi_failure(returncode: int | None, output: str) -> GpuQuery:
    cause = cause_for_code(returncode, "nvidia-smi")
    said = next((line.strip() for line in output.splitlines() if line.strip()), "")
    error = f"nvidia-smi exited {returncode}: {cause.summary}" + (f" ({said})" if said else "")
    return GpuQuery(source="nvidia-smi", error=error, error_code=returncode, hint=cause.hint)


def query_smi(host: Host, timeout: float = SMI_TIMEOUT_S) -> GpuQuery:
    exe = host.which("nvidia-smi")
    if exe is None:
        return GpuQuery(source="nvidia-smi", error="nvidia-smi is not installed",
                        hint="install the NVIDIA driver's userland (it ships nvidia-smi and libnvidia-ml.so.1)")
    started = time.monotonic()
    argv = [exe, f"--query-gpu={','.join(SMI_FIELDS)}", "--format=csv,noheader,nounits"]
    try:
        done = host.run(argv, timeout=timeout, check=False)
    except CommandError as exc:
        return GpuQuery(source="nvidia-smi", error=exc.message,
                        hint="the driver is stuck: `journalctl -k -b | grep NVRM`; reboot if it persists")
    if done.returncode != 0:
        return smi_failure(done.returncode, done.stdout + "\n" + done.stderr)
    try:
        gpus = parse_smi_csv(done.stdout)
    except ValueError as exc:
        return GpuQuery(source="nvidia-smi", error=f"cannot read nvidia-smi's output: {exc}",
                        hint="run the nvidia-smi command in data.argv and report its output")
    driver = next((g.driver_version for g in gpus if g.driver_version), "")
    query = GpuQuery(source="nvidia-smi", gpus=gpus, driver_version=driver)
    try:
        q = host.run([exe, "-q"], timeout=timeout, check=False)
        if q.returncode == 0:
            _merge_q(gpus, parse_smi_q(q.stdout)[1])
        else:
            query.notes.append(f"nvidia-smi -q exited {q.returncode}: no row remap, retired page or clock data")
    except CommandError as exc:
        query.notes.append(f"{exc.message}: no row remap, retired page or clock data")
    query.duration_ms = (time.monotonic() - started) * 1000
    return query


def init_allowance_s(n_gpus: int) -> float:
    """How long NVML (or one nvidia-smi) may take to answer on a host with ``n_gpus`` GPUs.

    With persistence mode on it answers in milliseconds; with it off every new client makes the driver
    initialise each GPU, 1-3 s apiece (NVIDIA/nvidia-docker 1279), so a p5's 8 GPUs may need ~24 s
    and that is slow, not hung.
    """
    return min(NVML_DEADLINE_S + PER_GPU_INIT_S * n_gpus, MAX_INIT_S)


def query_gpus(host: Host, n_gpus: int = 0) -> GpuQuery:
    """NVML, else nvidia-smi; nothing with --root (NVML answers for the running system only).

    ``n_gpus`` (the PCI count) sizes the deadlines: see ``init_allowance_s``.
    """
    if not host.live:
        return GpuQuery(skipped="NVML and nvidia-smi are not consulted with --root (they see the running system)")
    allowance = init_allowance_s(n_gpus)
    nvml = query_nvml(allowance)
    if not nvml.fallback:
        return nvml
    smi = query_smi(host, timeout=max(SMI_TIMEOUT_S, allowance))
    smi.notes.insert(0, f"NVML through nvidia-ml-py not used: {nvml.error}")
    return smi


# ---------------------------------------------------------------------------------------------
# The kernel log: XIDs and other NVRM errors of this boot
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class XidClass:
    severity: str  # "warning" | "critical"
    meaning: str
    action: str


_RESTART_APP = "restart the application; if it recurs with healthy code, reset the GPU (`nvidia-smi -r -i N`)"
_RESET = "drain the GPU, then reset it (`nvidia-smi -r -i N`) or reboot"
RMA_ADVICE = "drain it and have it replaced (" + MOVE_HARDWARE + ")"

# NVIDIA's Xid catalog (docs.nvidia.com/deploy/xid-errors: "Analyzing Xid Errors with the Xid
# Catalog", resolution buckets RESTART_APP / RESET_GPU / CONTACT_SUPPORT). Application-caused
# errors are warnings: the GPU is fine; hardware and driver faults are critical.
XID_CATALOG: dict[int, XidClass] = {
    8: XidClass("warning", "GPU stopped processing (channel idle timeout)", _RESTART_APP),
    13: XidClass("warning", "graphics engine exception (usually an application fault)", _RESTART_APP),
    31: XidClass("warning", "GPU memory page fault (usually an application fault)", _RESTART_APP),
    32: XidClass("warning", "invalid or corrupted push buffer stream", _RESTART_APP),
    43: XidClass("warning", "GPU stopped processing (an application's channel was reset)", _RESTART_APP),
    45: XidClass("warning", "preemptive cleanup after earlier errors", _RESTART_APP),
    68: XidClass("warning", "video decoder (NVDEC) exception", _RESTART_APP),
    69: XidClass("warning", "graphics engine class error", _RESTART_APP),
    48: XidClass("critical", "double-bit (uncorrectable) ECC error", _RESET + "; if DBEs recur, " + RMA_ADVICE),
    61: XidClass("critical", "internal micro-controller breakpoint/warning", _RESET),
    62: XidClass("critical", "internal micro-controller halt", _RESET),
    63: XidClass("critical", "row remapping / page retirement recorded: takes effect after a GPU reset", _RESET),
    64: XidClass("critical", "row remapping / page retirement failed", RMA_ADVICE),
    74: XidClass("critical", "NVLink error", _RESET + "; if it recurs, " + RMA_ADVICE),
    79: XidClass("critical", "GPU has fallen off the bus", "reboot; if it recurs, " + RMA_ADVICE),
    92: XidClass("critical", "high single-bit ECC error rate", _RESET + "; if it recurs, " + RMA_ADVICE),
    94: XidClass("critical", "contained ECC error (the application using the memory was stopped)", _RESET),
    95: XidClass("critical", "uncontained ECC error", _RESET + " now: every application on it is affected"),
    119: XidClass("critical", "GSP RPC timeout (the GPU's firmware stopped answering)",
                  _RESET + "; if it recurs, update the driver"),
    120: XidClass("critical", "GSP error (the GPU's firmware failed)", _RESET + "; if it recurs, update the driver"),
    140: XidClass("critical", "unrecovered ECC error", _RESET),
    154: XidClass("critical", "the driver set a GPU recovery action (reset or reboot required)",
                  "do the recovery action the line names (`nvidia-smi -q | grep -i recovery`): "
                  "reset the GPU or reboot"),
}
UNCLASSIFIED_XID = XidClass(
    "warning", "not classified by gpuprep",
    "look the code up in NVIDIA's Xid catalog (docs.nvidia.com/deploy/xid-errors)",
)


@dataclass
class KernelEvent:
    kind: str  # "xid" | "rm-init-failed" | "api-mismatch"
    severity: str
    pci: str = ""  # "0000:00:1e" as the driver prints it (no function number for XIDs)
    code: int | None = None
    pid: str = ""
    process: str = ""
    message: str = ""
    meaning: str = ""
    action: str = ""
    line: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v not in ("", None)}


# `NVRM: Xid (PCI:0000:00:1e): 79, pid=1234, name=python3, GPU has fallen off the bus.`; older
# drivers print no name (`pid=1896, Row Remapper: ...`) or no pid at all, newer ones pid='<unknown>'.
_XID = re.compile(r"NVRM: Xid \((?:PCI:)?(?P<pci>[0-9a-fA-F]{4,8}:[0-9a-fA-F]{2}:[0-9a-fA-F]{2}(?:\.\d)?)\):\s*"
                  r"(?P<code>\d+),\s*(?P<rest>.*)$")
_XID_PID = re.compile(r"^pid=(?P<pid>[^,]*),\s*")
_XID_NAME = re.compile(r"^name=(?P<name>[^,]*),\s*")
_RM_INIT = re.compile(r"NVRM: GPU (?P<pci>[0-9a-fA-F:.]+): RmInitAdapter failed!\s*(?P<rest>.*)$")
_API_MISMATCH = re.compile(
    rf"NVRM: API mismatch: the client has the version (?P<client>{_VERSION}), but.{{0,80}}?"
    rf"this kernel module has the version (?P<kernel>{_VERSION})", re.DOTALL)


def parse_xid_line(line: str) -> KernelEvent | None:
    m = _XID.search(line)
    if not m:
        return None
    code, rest = int(m.group("code")), m.group("rest").strip()
    pid = process = ""
    if pm := _XID_PID.match(rest):
        pid, rest = pm.group("pid").strip("'\""), rest[pm.end():]
    if nm := _XID_NAME.match(rest):
        process, rest = nm.group("name"), rest[nm.end():]
    klass = XID_CATALOG.get(code, UNCLASSIFIED_XID)
    return KernelEvent(
        "xid", klass.severity, pci=normalize_bus_id(m.group("pci")), code=code, pid=pid, process=process,
        message=rest.strip(), meaning=klass.meaning, action=klass.action, line=line.strip(),
    )


def parse_kernel_log(text: str) -> list[KernelEvent]:
    """XIDs, GPUs the driver failed to initialise, and userland/kernel version mismatches."""
    events: list[KernelEvent] = []
    for line in text.splitlines():
        if "NVRM" not in line:
            continue
        if (event := parse_xid_line(line)) is not None:
            events.append(event)
        elif m := _RM_INIT.search(line):
            events.append(KernelEvent(
                "rm-init-failed", "critical", pci=normalize_bus_id(m.group("pci")), message=m.group("rest"),
                meaning="the driver failed to initialise this GPU",
                action="reboot; if it recurs, " + RMA_ADVICE, line=line.strip(),
            ))
    for m in _API_MISMATCH.finditer(text):
        events.append(KernelEvent(
            "api-mismatch", "critical",
            message=f"userland {m.group('client')}, kernel module {m.group('kernel')}",
            meaning="the driver userland and the loaded kernel module differ in version",
            action=NVML_CAUSES[18].hint, line=m.group(0).splitlines()[0].strip(),
        ))
    return events


def parse_kmsg(text: str) -> str:
    """/dev/kmsg records (``6,1234,5678901,-;message`` and `` KEY=value`` continuations) -> messages."""
    lines = []
    for line in text.splitlines():
        if not line or line.startswith(" "):
            continue
        head, sep, message = line.partition(";")
        lines.append(message if sep and "," in head else line)
    return "\n".join(lines)


def read_kmsg(path: Path, max_records: int = KERNEL_LOG_MAX_LINES, deadline_s: float = KMSG_DEADLINE_S) -> str:
    """Read the kernel ring buffer from /dev/kmsg without blocking, bounded in records and time."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    chunks: list[bytes] = []
    try:
        end = time.monotonic() + deadline_s
        while len(chunks) < max_records and time.monotonic() < end:
            try:
                chunk = os.read(fd, 8192)  # /dev/kmsg returns one record per read
            except BlockingIOError:
                break  # EAGAIN: the end of the buffer
            except BrokenPipeError:
                continue  # EPIPE: the record was overwritten while we read; the next read resumes
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(fd)
    return parse_kmsg(b"".join(chunks).decode(errors="replace"))


@dataclass
class KernelLog:
    source: str = ""  # "journalctl" | "/dev/kmsg"
    events: list[KernelEvent] = field(default_factory=list)
    lines: int = 0
    error: str = ""
    hint: str = ""
    skipped: str = ""


# journalctl says this on stderr, and exits 0, when it may not read the system journal.
_JOURNAL_LIMITED = ("insufficient permissions", "not seeing messages")


def read_kernel_log(host: Host, timeout: float = KERNEL_LOG_TIMEOUT_S, kmsg: str = "/dev/kmsg") -> KernelLog:
    if not host.live:
        return KernelLog(skipped="the kernel log belongs to the running system, not --root")
    problems = []
    exe = host.which("journalctl")
    if exe is not None:
        argv = [exe, "-k", "-b", "-o", "cat", "--no-pager", "-n", str(KERNEL_LOG_MAX_LINES)]
        try:
            done = host.run(argv, timeout=timeout, check=False)
            limited = any(s in done.stderr for s in _JOURNAL_LIMITED)
            if done.returncode == 0 and done.stdout.strip() and not limited:
                return KernelLog("journalctl", parse_kernel_log(done.stdout), lines=done.stdout.count("\n"))
            problems.append("journalctl: " + (
                "not allowed to read the system journal" if limited else
                f"exited {done.returncode}" if done.returncode else "no kernel messages for this boot"))
        except CommandError as exc:
            problems.append(exc.message)
    try:
        text = read_kmsg(host.path(kmsg))
        return KernelLog(kmsg, parse_kernel_log(text), lines=text.count("\n") + bool(text))
    except OSError as exc:
        problems.append(f"{kmsg}: {exc.strerror or exc}")
    return KernelLog(
        error="cannot read this boot's kernel log (" + "; ".join(problems) + ")",
        hint="run as root (or as a member of group systemd-journal or adm): `sudo gpuprep doctor`; "
        "by hand: `sudo journalctl -k -b | grep -E 'NVRM: (Xid|API mismatch)'`",
    )


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
def probe_pci(probes: Probes) -> PciScan:
    return probes.get("gpu.pci", lambda p: read_pci(p.host))


def probe_nodes(probes: Probes) -> DeviceNodes:
    return probes.get("gpu.nodes", lambda p: read_device_nodes(p.host))


def probe_module(probes: Probes) -> KernelModule:
    return probes.get("gpu.module", lambda p: read_kernel_module(p.host))


def probe_userland(probes: Probes) -> Userland:
    return probes.get("gpu.userland", lambda p: read_userland(p.host))


def probe_query(probes: Probes) -> GpuQuery:
    return probes.get("gpu.query", lambda p: query_gpus(p.host, len(probe_pci(p).gpus)))


def probe_kernel_log(probes: Probes) -> KernelLog:
    return probes.get("gpu.kernel_log", lambda p: read_kernel_log(p.host))


def gpu_inventory(probes: Probes) -> GpuInventory:
    """The whole inventory, computed once per doctor run and shared with every check that asks."""
    return probes.get("gpu", lambda p: GpuInventory(
        live=p.host.live, pci=probe_pci(p), nodes=probe_nodes(p), module=probe_module(p),
        userland=probe_userland(p), query=probe_query(p), kernel_log=probe_kernel_log(p),
    ))
