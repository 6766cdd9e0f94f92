"""The kernel log of this boot: ``NVRM: Xid`` lines (the only place XIDs are kept), RmInitAdapter failures and
API mismatches, classified with what to do about each. From journald, else /dev/kmsg, each bounded."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Any

from gpuprep.errors import CommandError
from gpuprep.gpu.devices import VERSION_PATTERN, normalize_bus_id
from gpuprep.gpu.query import MOVE_HARDWARE, NVML_CAUSES
from gpuprep.host import Host

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


_RESET = "drain the GPU, then reset it or reboot"
RMA_ADVICE = "drain it and have it replaced (" + MOVE_HARDWARE + ")"
# NVIDIA's resolution buckets (the knowledge table ``xid`` names one per code) as what to do on this host.
RESOLUTIONS = {
    "restart-app": "restart the application; if it recurs with healthy code, reset the GPU",
    "reset-gpu": _RESET,
    "reboot": "reboot",
    "replace": RMA_ADVICE,
    "update-driver": "update the driver",
    "drain-p2p": "drain the GPU's peer-to-peer (NVLink) work, then reset the GPU",
    "recovery-action": "do the recovery action the line names (nvidia-smi -q shows it): reset the GPU or reboot",
    "look-up": "look the code up in NVIDIA's Xid catalog (docs.nvidia.com/deploy/xid-errors)",
    "none": "nothing: the driver says no recovery is needed",
}


def _advice(row: dict[str, Any]) -> str:
    text = RESOLUTIONS[row["resolution"]]
    if row.get("note"):
        text += f" {row['note']}"
    if row.get("if_recurs"):
        text += f"; if it recurs, {RESOLUTIONS[row['if_recurs']]}"
    return text


def _klass(row: dict[str, Any]) -> XidClass:
    return XidClass(row["severity"], row["meaning"], _advice(row))


def xid_class(code: int) -> XidClass:
    """What Xid ``code`` means and what to do, from the knowledge table ``xid`` (NVIDIA's Xid catalog and the
    codes the ECS agent and the EKS node monitoring agent treat as fatal); a code it lacks is not guessed at."""
    from gpuprep import knowledge

    doc = knowledge.table("xid").doc
    row = next((r for r in doc["rows"] if r["code"] == code), None)
    return _klass(row if row is not None else doc["unclassified"])


def fatal_to_instance(code: int) -> bool:
    from gpuprep import knowledge

    return any(r["code"] == code and r["fatal_to_instance"] for r in knowledge.table("xid").rows)


# Xid 154: `GPU recovery action changed from 0x0 (None) to 0x1 (GPU Reset Required)`: the action is the last
# parenthesised name; an older text names it without the codes.
_RECOVERY_TO = re.compile(r"\bto\s+(?:0x[0-9a-fA-F]+\s*)?\(([^)]+)\)")


def recovery_action(message: str) -> dict[str, Any] | None:
    """The recovery action Xid 154's text names, as the ``xid`` table's ``recovery_actions`` row; None when the
    text names none the table knows."""
    from gpuprep import knowledge

    actions: list[dict[str, Any]] = knowledge.table("xid").doc["recovery_actions"]  # as the table's schema says
    m = _RECOVERY_TO.search(message)
    named = m.group(1).strip().lower() if m else None
    for row in actions:
        if named == row["text"].lower():
            return row
    if named is None:
        found = [row for row in actions if row["text"].lower() in message.lower() and row["text"] != "None"]
        return found[0] if found else None
    return None


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
    fatal_to_instance: bool | None = None  # the ECS agent / EKS node monitoring agent take the instance out


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
    """One kernel log line -> its XID event (code, GPU, process, what it means and what to do), else None.

    >>> event = parse_xid_line("[ 1234.567890] NVRM: Xid (PCI:0000:00:1e): 79, pid=1234, name=python3, "
    ...                        "GPU has fallen off the bus.")
    >>> event.code, event.pci, event.pid, event.process, event.message, event.severity
    (79, '0000:00:1e', '1234', 'python3', 'GPU has fallen off the bus.', 'critical')
    >>> parse_xid_line("[ 1234.567890] nvidia-uvm: Loaded the UVM driver, major device number 510.") is None
    True
    """
    m = _XID.search(line)
    if not m:
        return None
    code, rest = int(m.group("code")), m.group("rest").strip()
    pid = process = ""
    if pm := _XID_PID.match(rest):
        pid, rest = pm.group("pid").strip("'\""), rest[pm.end():]
    if nm := _XID_NAME.match(rest):
        process, rest = nm.group("name"), rest[nm.end():]
    klass = xid_class(code)
    severity, meaning, action = klass.severity, klass.meaning, klass.action
    if code == 154 and (recovery := recovery_action(rest)) is not None:
        severity = recovery["severity"]
        meaning = f"{meaning}: {recovery['text']}"
        action = RESOLUTIONS[recovery["resolution"]]
    return KernelEvent(
        "xid", severity, pci=normalize_bus_id(m.group("pci")), code=code, pid=pid, process=process,
        message=rest.strip(), meaning=meaning, action=action, line=line.strip(),
        fatal_to_instance=fatal_to_instance(code) or None,
    )


def parse_kernel_log(text: str) -> list[KernelEvent]:
    """XIDs, GPUs the driver failed to initialise, and userland/kernel version mismatches.

    >>> events = parse_kernel_log('''[   12.345678] NVRM: GPU 0000:00:1e.0: RmInitAdapter failed! (0x26:0x56:1474)
    ... [   13.000001] NVRM: API mismatch: the client has the version 580.95.05, but
    ... NVRM: this kernel module has the version 570.172.08.  Please
    ... ''')
    >>> for e in events:
    ...     print(e.kind, e.pci, e.message)
    rm-init-failed 0000:00:1e.0 (0x26:0x56:1474)
    api-mismatch  userland 580.95.05, kernel module 570.172.08
    """
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
    """/dev/kmsg records (``6,1234,5678901,-;message`` and `` KEY=value`` continuations) -> messages.

    >>> print(parse_kmsg('''4,1021,23456789,-;NVRM: Xid (PCI:0000:00:1e): 48, pid=\'<unknown>\', DBE (0x1,0x2)
    ...  SUBSYSTEM=pci
    ...  DEVICE=+pci:0000:00:1e.0
    ... 6,1022,23456800,-;nvidia-modeset: Loading NVIDIA Kernel Mode Setting Driver'''))
    NVRM: Xid (PCI:0000:00:1e): 48, pid='<unknown>', DBE (0x1,0x2)
    nvidia-modeset: Loading NVIDIA Kernel Mode Setting Driver
    """
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
        hint="run as root (or as a member of group systemd-journal or adm)",
    )
