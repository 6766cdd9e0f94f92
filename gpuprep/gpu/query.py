"""Per-GPU health from NVML (nvidia-ml-py), else ``nvidia-smi``, each bounded by a deadline because NVML init
can hang with some drivers; and what each NVML return code (also nvidia-smi's exit code) means.

Parsers are pure functions of text (``parse_*``), tested on fixture output; ``query_*`` do the I/O. These
belong to the running system: with ``--root`` they are not consulted."""

from __future__ import annotations

import contextlib
import csv
import re
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from gpuprep import fixes
from gpuprep.errors import CommandError, GpuprepError
from gpuprep.gpu.devices import normalize_bus_id
from gpuprep.host import Host
from gpuprep.platform import Platform

NVML_DEADLINE_S = 3.0  # docs/testbed.md 7: NVML init takes ~10 ms with persistence on
SMI_TIMEOUT_S = 4.0  # docs/testbed.md 7: nvidia-smi -q ~100 ms, --query-gpu ~30 ms on a healthy H200
PER_GPU_INIT_S = 3.0  # without persistence mode each client start initialises every GPU: 1-3 s each (docs/domain.md)
MAX_INIT_S = 30.0  # beyond this NVML is not slow but stuck
# A check that asks NVML, or (when the binding cannot load) nvidia-smi's CSV and -q, each within the init allowance:
# its timeout, in whatever room the check is.
QUERY_TIMEOUT = 2 * MAX_INIT_S + 5


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
        "replaced the driver under the running module); then lock the driver's packages (versionlock) so a "
        "boot-time update cannot do it again (aws/amazon-ecs-ami 256)",
    ),
}


def module_not_loaded_fixes(host: Host) -> list[fixes.Fix]:
    """NVML code 9's fixes, for the host at hand: load the module; where it will not load, it was not built for
    the running kernel (dkms says which kernels it was built for)."""
    load = fixes.modprobe(host, "nvidia")
    return [load, fixes.Fix("if it will not load, it was not built for the running kernel (uname -r): list the "
                            "kernels it is built for, reinstall the driver for this one and reboot",
                            ("dkms", "status"), load.runs)]


def driver_mismatch_fixes(host: Host, platform: Platform) -> list[fixes.Fix]:
    """NVML code 18's fixes (NVRM API mismatch), for the host and its package manager: reboot into the module the
    userland belongs to, then lock the driver so a boot-time update cannot replace it again."""
    found = [fixes.reboot(host, "reboot to load the kernel module the installed driver userland belongs to (an "
                                "update replaced the driver under the running module)"),
             fixes.lock_driver(host, platform)]
    return [f for f in found if f is not None]


def cause_for_code(code: int | None, what: str = "NVML") -> Cause:
    if code is not None and code in NVML_CAUSES:
        return NVML_CAUSES[code]
    return Cause(
        f"{what} failed" + (f" with code {code}" if code is not None else ""),
        "run `nvidia-smi -q` as root and read its error; `journalctl -k -b | grep NVRM` shows the driver's view",
    )


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
    virtualization_mode: str | None = None  # "none", "pass-through", "vgpu", "host-vgpu", "host-vsga"
    memory_total_mib: int | None = None
    memory_reserved_mib: int | None = None  # the driver's own share (NVML memory v2, nvidia-smi -q)

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v not in ("", None) or k in ("index",)}

    @property
    def usable_memory_mib(self) -> int | None:
        """Total less reserved, as ecs-init counts a GPU's memory for MPS (aws/amazon-ecs-agent PR #5075)."""
        if self.memory_total_mib is None:
            return None
        return self.memory_total_mib - (self.memory_reserved_mib or 0)


# nvml.h nvmlGpuVirtualizationMode_t, named as nvidia-smi -q prints them ("Pass-Through", "VGPU", ...).
VIRTUALIZATION_MODES = {0: "none", 1: "pass-through", 2: "vgpu", 3: "host-vgpu", 4: "host-vsga"}
MIB = 1024 * 1024


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
    failure: str = ""  # how it failed where no code says: "stuck", "no-userland", "unreadable" (gpu/nvml_fixes.py)
    skipped: str = ""  # why nothing was asked (--root)
    notes: list[str] = field(default_factory=list)  # e.g. why NVML was not used
    duration_ms: float = 0.0
    fallback: bool = False  # NVML unusable here (no nvidia-ml-py / no library): try nvidia-smi

    @property
    def answered(self) -> bool:
        return not self.error and not self.skipped and bool(self.source)


# ---------------------------------------------------------------------------------------------
# NVML
# ---------------------------------------------------------------------------------------------
def _text(value: Any) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def _nvml_code(exc: Exception) -> int | None:
    return getattr(exc, "value", None)  # pynvml's NVMLError carries the nvmlReturn_t code


def _nvml_optional(nv: Any, fn: Callable[..., Any], *args: Any) -> tuple[Any, int | None]:
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
    # Both asked only of bindings that have them (nvidia-ml-py grew them over the years).
    get_mode = getattr(nv, "nvmlDeviceGetVirtualizationMode", None)
    mode = _nvml_optional(nv, get_mode, handle)[0] if get_mode is not None else None
    gpu.virtualization_mode = None if mode is None else VIRTUALIZATION_MODES.get(int(mode), str(mode))
    gpu.memory_total_mib, gpu.memory_reserved_mib = _nvml_memory(nv, handle)
    return gpu


def _nvml_memory(nv: Any, handle: Any) -> tuple[int | None, int | None]:
    """(total, reserved) MiB: NVML's memory v2 where the binding has it (reserved is its own field there), else v1."""
    v2 = getattr(nv, "nvmlMemory_v2", None)
    if v2 is not None:
        try:
            info = nv.nvmlDeviceGetMemoryInfo(handle, version=v2)
            return int(info.total) // MIB, int(info.reserved) // MIB
        except (nv.NVMLError, TypeError, AttributeError):
            pass
    get_memory = getattr(nv, "nvmlDeviceGetMemoryInfo", None)
    info, code = _nvml_optional(nv, get_memory, handle) if get_memory is not None else (None, None)
    return (None, None) if code is not None or info is None else (int(info.total) // MIB, None)


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
            import pynvml  # heavy, and absent on some hosts: imported where used
        except ImportError as exc:
            return GpuQuery(source="nvml", error=f"nvidia-ml-py is not importable ({exc})", fallback=True)
        nv = pynvml
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
            failure="stuck", hint="NVML init hangs while the driver is stuck: `journalctl -k -b | grep NVRM` for XIDs; "
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
    without one they are SMI_FIELDS in order, as ``query_smi`` asks. On an H200 (driver 580), ``noheader``:

    >>> [gpu] = _parse_smi_csv('''
    ... 0, NVIDIA H200, GPU-0e7d3af2-be49-affe-ae6c-f6fcf358f2ea, 00000000:00:06.0, 580.159.04, Enabled, 0
    ... ''')
    >>> gpu.name, gpu.pci_bus_id, gpu.driver_version, gpu.persistence_mode, gpu.ecc_uncorrected_volatile
    ('NVIDIA H200', '0000:00:06.0', '580.159.04', True, 0)
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

    >>> header, gpus = parse_smi_q_tree('''
    ... ==============NVSMI LOG==============
    ... Driver Version                            : 470.129.06
    ... Attached GPUs                             : 1
    ... GPU 00000000:00:1E.0
    ...     Product Name                          : Tesla T4
    ...     Clocks Event Reasons
    ...         HW Slowdown                       : Not Active
    ...             HW Thermal Slowdown           : Active
    ... ''')
    >>> header[("Driver Version",)]
    '470.129.06'
    >>> list(gpus)  # bus ids as sysfs writes them (normalize_bus_id)
    ['0000:00:1e.0']
    >>> gpus["0000:00:1e.0"][("Clocks Event Reasons", "HW Slowdown", "HW Thermal Slowdown")]
    'Active'
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
    """``nvidia-smi -q`` -> (driver version, GpuStatus per GPU in bus order). An H100 (driver 535) with an
    uncorrectable DRAM error since the driver loaded:

    >>> driver, [gpu] = parse_smi_q('''
    ... Driver Version                            : 535.183.01
    ... GPU 00000000:53:00.0
    ...     Product Name                          : NVIDIA H100 80GB HBM3
    ...     Persistence Mode                      : Enabled
    ...     GPU UUID                              : GPU-5a1c2f4e-0b7d-3e8a-9c61-2f0d4b7e8a10
    ...     Minor Number                          : 0
    ...     ECC Errors
    ...         Volatile
    ...             SRAM Uncorrectable SEC-DED    : 0
    ...             DRAM Uncorrectable            : 1
    ... ''')
    >>> driver, gpu.name, gpu.uuid, gpu.persistence_mode, gpu.ecc_uncorrected_volatile
    ('535.183.01', 'NVIDIA H100 80GB HBM3', 'GPU-5a1c2f4e-0b7d-3e8a-9c61-2f0d4b7e8a10', True, 1)
    """
    header, gpus = parse_smi_q_tree(text)
    driver = header.get(("Driver Version",), "")
    result = []
    for index, (bus_id, f) in enumerate(gpus.items()):
        minor = _smi_int(_smi_value(_q_find(f, ("Minor Number",), "Minor Number") or ""))
        remap_pending = _q_find(f, ("Remapped Rows",), "Pending")
        clocks = {name: _smi_bool(_smi_value(_q_find(f, CLOCK_SECTIONS, label) or "N/A"), ("Active",))
                  for name, label in CLOCK_EVENT_LABELS.items()}
        retired = next((v for p, v in f.items() if p[0] == "Retired Pages" and p[-1].startswith("Pending")), None)
        mode = _smi_value(f.get(("GPU Virtualization Mode", "Virtualization Mode"), "N/A"))
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
            virtualization_mode=mode.lower().replace(" ", "-") if mode else None,
            memory_total_mib=_mib(f.get(("FB Memory Usage", "Total"))),
            memory_reserved_mib=_mib(f.get(("FB Memory Usage", "Reserved"))),
        ))
    return driver, result


def _mib(value: str | None) -> int | None:
    """``81559 MiB`` -> 81559."""
    return _smi_int(_smi_value(value.split()[0])) if value and value.split() else None


def _merge_q(gpus: list[GpuStatus], details: list[GpuStatus]) -> None:
    """Add what only ``-q`` shows (row remapping, retired pages, clock events, virtualization, memory) to the CSV
    rows."""
    by_bus = {d.pci_bus_id: d for d in details}
    for gpu in gpus:
        d = by_bus.get(gpu.pci_bus_id)
        if d is None:
            continue
        gpu.remapped_rows_pending = d.remapped_rows_pending
        gpu.remapped_rows_failure = d.remapped_rows_failure
        gpu.retired_pages_pending = d.retired_pages_pending
        gpu.clock_events = d.clock_events
        gpu.virtualization_mode = d.virtualization_mode
        gpu.memory_total_mib, gpu.memory_reserved_mib = d.memory_total_mib, d.memory_reserved_mib


def smi_failure(returncode: int | None, output: str) -> GpuQuery:
    cause = cause_for_code(returncode, "nvidia-smi")
    said = next((line.strip() for line in output.splitlines() if line.strip()), "")
    error = f"nvidia-smi exited {returncode}: {cause.summary}" + (f" ({said})" if said else "")
    return GpuQuery(source="nvidia-smi", error=error, error_code=returncode, hint=cause.hint)


def query_smi(host: Host, timeout: float = SMI_TIMEOUT_S) -> GpuQuery:
    exe = host.which("nvidia-smi")
    if exe is None:
        return GpuQuery(source="nvidia-smi", error="nvidia-smi is not installed", failure="no-userland",
                        hint="install the NVIDIA driver's userland (it ships nvidia-smi and libnvidia-ml.so.1)")
    started = time.monotonic()
    argv = [exe, f"--query-gpu={','.join(SMI_FIELDS)}", "--format=csv,noheader,nounits"]
    try:
        done = host.run(argv, timeout=timeout, check=False)
    except CommandError as exc:
        return GpuQuery(source="nvidia-smi", error=exc.message, failure="stuck",
                        hint="the driver is stuck: `journalctl -k -b | grep NVRM`; reboot if it persists")
    if done.returncode != 0:
        return smi_failure(done.returncode, done.stdout + "\n" + done.stderr)
    try:
        gpus = parse_smi_csv(done.stdout)
    except ValueError as exc:
        return GpuQuery(source="nvidia-smi", error=f"cannot read nvidia-smi's output: {exc}", failure="unreadable",
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
