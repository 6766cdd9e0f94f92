"""The kernel log of this boot: ``NVRM: Xid`` lines (the only place XIDs are kept), RmInitAdapter failures and
API mismatches, classified with what to do about each. From journald, else /dev/kmsg, each bounded."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from gpuprep.errors import CommandError
from gpuprep.gpu.devices import VERSION_PATTERN, normalize_bus_id
from gpuprep.gpu.query import MOVE_HARDWARE, NVML_CAUSES
from gpuprep.host import Host

if TYPE_CHECKING:
    pass

KERNEL_LOG_TIMEOUT_S = 4.0
KERNEL_LOG_MAX_LINES = 200_000  # a boot's kernel log is far smaller; the bound guards a spamming driver
KMSG_DEADLINE_S = 2.0
XID_SAMPLES = 50  # events kept verbatim; the rest are only counted


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
    rf"NVRM: API mismatch: the client has the version (?P<client>{VERSION_PATTERN}), but.{{0,80}}?"
    rf"this kernel module has the version (?P<kernel>{VERSION_PATTERN})", re.DOTALL)


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
            # Streamed, keeping the driver's lines only: a kernel log of hundreds of megabytes (a spamming
            # driver, a long boot) read whole took doctor to 685 MB (issue 23).
            done, count = host.run_filtered(argv, timeout=timeout, keep=lambda line: "NVRM" in line)
            limited = any(s in done.stderr for s in _JOURNAL_LIMITED)
            if done.returncode == 0 and count and not limited:
                return KernelLog("journalctl", parse_kernel_log(done.stdout), lines=count)
            problems.append("journalctl: " + (
                "not allowed to read the system journal" if limited else
                f"exited {done.returncode}" if done.returncode else "no kernel messages for this boot"))
        except CommandError as exc:
            problems.append(exc.message)
    try:
        raw = host.read_records(kmsg, max_records=KERNEL_LOG_MAX_LINES, deadline_s=KMSG_DEADLINE_S)
        text = parse_kmsg(raw.decode(errors="replace"))
        return KernelLog(kmsg, parse_kernel_log(text), lines=text.count("\n") + bool(text))
    except OSError as exc:
        problems.append(f"{kmsg}: {exc.strerror or exc}")
    return KernelLog(
        error="cannot read this boot's kernel log (" + "; ".join(problems) + ")",
        hint="run as root (or as a member of group systemd-journal or adm): `sudo gpuprep doctor`; "
        "by hand: `sudo journalctl -k -b | grep -E 'NVRM: (Xid|API mismatch)'`",
    )
