"""Result types and their renderers: text (rich on a tty, plain otherwise), JSON, Prometheus textfile."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any, TextIO

from gpuprep.fixes import Fix
from gpuprep.host import write_atomic


def _gpuprep_version() -> str:
    import gpuprep  # lazy: a source checkout asks git (gpuprep/version.py)

    return gpuprep.__version__


class Status(str, Enum):
    """A check's verdict. ``exit_code`` is Nagios'; ``severity`` orders "worst wins".

    CRITICAL outranks WARNING, which outranks UNKNOWN: a host with a dead GPU and one check that
    could not run is CRITICAL, not UNKNOWN (Icinga and check_multi rank them so). SKIPPED never
    counts.
    """

    OK = "ok"
    WARNING = "warning"
    CRITICAL = "critical"
    UNKNOWN = "unknown"
    SKIPPED = "skipped"

    @property
    def exit_code(self) -> int:
        return {"ok": 0, "warning": 1, "critical": 2, "unknown": 3, "skipped": 0}[self.value]

    @property
    def severity(self) -> int:
        return {"skipped": -1, "ok": 0, "unknown": 1, "warning": 2, "critical": 3}[self.value]

    @staticmethod
    def worst(statuses: Iterable[Status]) -> Status:
        result = Status.OK
        for s in statuses:
            if s.severity > result.severity:
                result = s
        return result


class StepStatus(str, Enum):
    OK = "ok"  # already converged, nothing to do
    CHANGED = "changed"
    FAILED = "failed"
    SKIPPED = "skipped"
    PLANNED = "planned"  # --dry-run: would change


@dataclass
class CheckResult:
    id: str
    group: str
    status: Status
    summary: str
    hint: str = ""
    duration_ms: float = 0.0
    data: dict[str, Any] = field(default_factory=dict)
    fixes: list[Fix] = field(default_factory=list)  # the hint as values (gpuprep/fixes.py)
    cause: str = ""  # the id of the check whose finding this one follows from

    def as_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "id": self.id,
            "group": self.group,
            "status": self.status.value,
            "summary": self.summary,
            "hint": self.hint,
            "duration_ms": round(self.duration_ms, 1),
            "data": self.data,
        }
        # Only where there are any (docs/contract.md): a healthy 8-GPU report stays inside SSM's 24,000 characters.
        if self.fixes:
            d["fixes"] = [f.as_dict() for f in self.fixes]
        if self.cause:
            d["cause"] = self.cause
        return d


@dataclass
class StepResult:
    id: str
    status: StepStatus
    summary: str
    duration_ms: float = 0.0
    hint: str = ""
    diff: str = ""  # unified diff of a file change (dry-run and real)
    commands: list[list[str]] = field(default_factory=list)  # what it runs / would run
    data: dict[str, Any] = field(default_factory=dict)
    changes: bool = True  # False for a step that only proves something (gpu-check): planned is no change
    # Printed under the step line, the table first; in --json they are data["table"] and data["lines"].
    table: list[str] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)
    reference: str = ""  # a failed step: its error's stable kebab-case reference (errors.GpuprepError.reference)

    def as_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "id": self.id,
            "status": self.status.value,
            "summary": self.summary,
            "duration_ms": round(self.duration_ms, 1),
        }
        if self.hint:
            d["hint"] = self.hint
        if self.diff:
            d["diff"] = self.diff
        if self.commands:
            d["commands"] = self.commands
        data = {**({"table": self.table} if self.table else {}), **self.data,
                **({"lines": self.lines} if self.lines else {})}
        if data:
            d["data"] = data
        if self.reference:
            d["reference"] = self.reference
        return d


@dataclass
class DoctorReport:
    platform: dict[str, Any]
    checks: list[CheckResult]

    @property
    def status(self) -> Status:
        return Status.worst(c.status for c in self.checks)

    @property
    def exit_code(self) -> int:
        return self.status.exit_code

    def as_dict(self) -> dict[str, Any]:
        return {
            "command": "doctor",
            "version": _gpuprep_version(),
            "status": self.status.value,
            "platform": self.platform,
            "checks": [c.as_dict() for c in self.checks],
        }


@dataclass
class RunReport:
    """The outcome of install or seal."""

    command: str
    platform: dict[str, Any]
    steps: list[StepResult]
    exit_code: int = 0
    error: str = ""
    hint: str = ""
    reference: str = ""  # the error's stable reference (errors.GpuprepError.reference), with ``error``
    extra: dict[str, Any] = field(default_factory=dict)  # install: {"selection": {...}}
    exc: BaseException | None = None  # an unexpected crash, shown with -v
    dry_run: bool = False

    @property
    def status(self) -> str:
        """failed, changed, ok; a dry run that would change something is ``planned``: it changed nothing."""
        if self.exit_code != 0 or any(s.status is StepStatus.FAILED for s in self.steps):
            return "failed"
        if any(s.status is StepStatus.CHANGED for s in self.steps):
            return "changed"
        if any(s.status is StepStatus.PLANNED and s.changes for s in self.steps):
            return "planned"
        return "ok"

    def as_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "command": self.command,
            "version": _gpuprep_version(),
            "dry_run": self.dry_run,
            "status": self.status,
            "platform": self.platform,
            "steps": [s.as_dict() for s in self.steps],
        }
        d.update(self.extra)
        if self.error:
            d["error"] = self.error
            d["hint"] = self.hint
            d["reference"] = self.reference or "error"
        return d


def _json_text(doc: dict[str, Any], pretty: bool | None) -> str:
    """Indented for a person at a terminal; one compact line otherwise (docs/contract.md): SSM Run Command keeps
    only the first 24,000 characters of a command's stdout, and an 8-GPU host's doctor report indented is past
    that (29,268 on the simulated p5), compact well inside it. ``pretty`` None: stdout decides."""
    if pretty is None:
        pretty = sys.stdout.isatty()
    if pretty:
        return json.dumps(doc, indent=2, default=str)
    return json.dumps(doc, separators=(",", ":"), default=str)


def to_json(obj: DoctorReport | RunReport, pretty: bool | None = None) -> str:
    return _json_text(obj.as_dict(), pretty)


def error_json(command: str, message: str, hint: str, exit_code: int, pretty: bool | None = None, *,
               reference: str = "error") -> str:
    """The one JSON object of a command that ended before its report (bad usage, a precondition): the same
    ``status`` words as its report would use (doctor's Nagios ``unknown``, install's and seal's ``failed``), and the
    error's stable ``reference`` (errors.GpuprepError.reference)."""
    doc = {"command": command or None, "version": _gpuprep_version(),
           "status": "unknown" if command == "doctor" else "failed",
           "error": message, "hint": hint, "exit_code": exit_code, "reference": reference}
    return _json_text(doc, pretty)


# -- text ---------------------------------------------------------------------------------
MARKS = {
    "ok": ("ok", "green"),
    "changed": ("changed", "cyan"),
    "planned": ("plan", "cyan"),
    "warning": ("WARN", "yellow"),
    "critical": ("CRIT", "bold red"),
    "failed": ("FAIL", "bold red"),
    "unknown": ("UNKN", "magenta"),
    "skipped": ("skip", "dim"),
}


class _Out:
    """Lines of (text, style) parts: styled by rich on a terminal, plain text anywhere else.

    A pipe, a file or a user-data log never needs rich, and importing it costs about 13 ms, which seal
    used to pay before its first removal. ``FORCE_COLOR`` asks for rich's styles off a terminal too.
    Parts are plain text, never markup: nothing to escape. Every line is flushed as it is written, so
    a log shows each step as it finishes.
    """

    def __init__(self, stream: TextIO | None) -> None:
        self.stream = stream or sys.stdout
        self.journal = _to_journal(self.stream)
        self.con = None
        self.width = _width(self.stream)
        if self.stream.isatty() or os.environ.get("FORCE_COLOR"):
            from rich.console import Console  # heavy: only for a terminal

            self.con = Console(file=self.stream, highlight=False, soft_wrap=True, emoji=False)

    def line(self, *parts: str | tuple[str, str], style: str = "", priority: int | None = None) -> None:
        """``priority``: the syslog level of a line that says a problem; where the stream is the journal, the
        line starts with ``<N>``, which journald reads as the line's priority (systemd.exec(5),
        SyslogLevelPrefix=), so `journalctl -p warning` shows the problems of the boot gate."""
        if self.journal and priority is not None:
            parts = (f"<{priority}>", *parts)
        if self.con is None:
            self.stream.write("".join(p if isinstance(p, str) else p[0] for p in parts) + "\n")
            self.stream.flush()
            return
        from rich.text import Text

        self.con.print(Text.assemble(*parts, style=style))


def _width(stream: TextIO) -> int | None:
    """The columns long lines are cut to: a terminal's width, or COLUMNS where the user set it; None elsewhere (a
    log, a pipe, the journal keep one line per finding, for grep)."""
    columns = os.environ.get("COLUMNS", "")
    if columns.isdigit() and int(columns) > 0:
        return int(columns)
    try:
        return os.get_terminal_size(stream.fileno()).columns if stream.isatty() else None
    except (OSError, ValueError, AttributeError):
        return None


def _to_journal(stream: TextIO) -> bool:
    """Whether ``stream`` is the journal: systemd sets JOURNAL_STREAM to the device and inode of the stream it
    connects (systemd.exec(5)); a pipe or a terminal the unit's output was redirected to does not match."""
    want = os.environ.get("JOURNAL_STREAM", "")
    if not want:
        return False
    try:
        st = os.fstat(stream.fileno())
    except (OSError, ValueError, AttributeError):  # a StringIO, a closed stream
        return False
    return want == f"{st.st_dev}:{st.st_ino}"


# syslog levels (sd-daemon.h): what a problem of each status is in the journal.
PRIORITY = {"critical": 3, "failed": 3, "warning": 4, "unknown": 4}


def mark(status: str, width: int = 9) -> tuple[str, str]:
    label, style = MARKS.get(status, (status, ""))
    return f"[{label}]".ljust(width), style


PROBLEMS = (Status.CRITICAL, Status.WARNING, Status.UNKNOWN)
COUNT_ORDER = ("ok", "warning", "critical", "unknown", "skipped")


def plural(n: int, word: str, many: str | None = None) -> str:
    """``1 check``, ``2 checks``; ``many`` where the plural is not word + s."""
    return f"{n} {word if n == 1 else (many or word + 's')}"


def status_line(report: DoctorReport) -> str:
    """The first line, as Nagios plugins write it (``SERVICE STATUS - text | perfdata``): a monitor that reads
    one line of output reads the verdict, the checks behind it (worst first) and every count."""
    problems = sorted((c for c in report.checks if c.status in PROBLEMS), key=lambda c: -c.status.severity)
    counts = {k: sum(c.status.value == k for c in report.checks) for k in COUNT_ORDER}
    text = ", ".join(c.id for c in problems) if problems else f"{plural(counts['ok'], 'check')} ok"
    perf = " ".join(f"{k}={v}" for k, v in counts.items())
    return f"GPUPREP {report.status.value.upper()} - {text} | {perf}"


@dataclass
class FixEntry:
    """One distinct fix of a report's problems: a value (``fix``) or a prose hint (``text``), the findings it is
    for (``ids``), the findings that follow from those (``follow``), and the journal priority of the worst."""

    fix: Fix | None
    text: str
    ids: list[str] = field(default_factory=list)
    follow: list[str] = field(default_factory=list)
    priority: int = 4


def _root(check: CheckResult, problems: dict[str, CheckResult]) -> CheckResult:
    """The finding ``check`` follows from, through its ``cause`` chain among this report's problems."""
    seen = {check.id}
    while check.cause in problems and check.cause not in seen:
        check = problems[check.cause]
        seen.add(check.id)
    return check


def fix_entries(checks: list[CheckResult]) -> list[FixEntry]:
    """Each distinct fix of the problems once, root causes first (worst first, then check order), each followed
    by the fixes of the findings that follow from it. A finding whose cause is among the problems offers only its
    own fixes as values, never its prose: it points at the cause (module not loaded -> device nodes missing)."""
    problems = {c.id: c for c in checks if c.status in PROBLEMS}
    roots: dict[str, list[CheckResult]] = {}
    for c in problems.values():
        roots.setdefault(_root(c, problems).id, []).append(c)
    order = sorted(roots.values(), key=lambda group: -max(c.status.severity for c in group))
    entries: dict[Hashable, FixEntry] = {}
    for group in order:
        root = _root(group[0], problems)
        for c in sorted(group, key=lambda c: c is not root):
            items: list[Fix | str] = list(c.fixes) or ([c.hint] if c.hint and c is root else [])
            for item in items:
                key = _fix_key(item)
                entry = entries.setdefault(key, FixEntry(item if isinstance(item, Fix) else None,
                                                         item if isinstance(item, str) else ""))
                if isinstance(item, Fix) and item.last:  # a reboot loads every change before it: it moves last
                    entries[key] = entries.pop(key)
                if c.id not in entry.ids:
                    entry.ids.append(c.id)
                entry.priority = min(entry.priority, PRIORITY.get(c.status.value, 4))
                if c is root:
                    entry.follow.extend(d.id for d in group if d is not root and d.id not in entry.follow)
    return sorted(entries.values(), key=lambda e: e.fix is not None and e.fix.last)  # stable: the rest keep order


def _fix_key(item: Fix | str) -> Hashable:
    """What makes two fixes one: the same command run by the same one (whatever each finding says it is for); an
    action that is no command, by its words."""
    if isinstance(item, Fix) and item.argv:
        return (item.argv, item.runs)
    return item


def fixes(checks: list[CheckResult]) -> list[tuple[str, list[str]]]:
    """(hint text, the checks it clears) of each distinct fix, in fix_entries' order."""
    return [(e.fix.text() if e.fix else e.text, e.ids + e.follow) for e in fix_entries(checks)]


def _words_to_width(words: list[str], width: int, first: int | None = None) -> list[str]:
    """Words joined into lines of at most ``width`` (the first line ``first``; a longer word stands alone): never a
    word cut in two."""
    lines: list[str] = []
    for word in words:
        room = first if first is not None and len(lines) == 1 else width
        if lines and len(lines[-1]) + 1 + len(word) <= room:
            lines[-1] += " " + word
        else:
            lines.append(word)
    return lines or [""]


def wrap(text: str, width: int | None, indent: int, first: int | None = None) -> list[str]:
    """``text`` cut at word boundaries to ``width`` columns, its lines starting at column ``indent`` (the first at
    ``first``, default ``indent``); None: as it is, one line per line of text."""
    start = indent if first is None else first
    if width is None or start + max(map(len, text.splitlines() or [""])) <= width:
        return text.splitlines() or [""]
    return [line for part in text.splitlines()
            for line in _words_to_width(part.split(" "), max(width - indent, 20), max(width - start, 20))]


def wrap_command(argv: tuple[str, ...], width: int | None, indent: int) -> list[str]:
    """A command cut between its words, each line but the last ending in ` \\` so it pastes as one command."""
    import shlex

    words = [shlex.quote(a) for a in argv]
    if width is None or indent + len(" ".join(words)) <= width:
        return [" ".join(words)]
    lines = _words_to_width(words, max(width - indent - 4, 20))
    return [("  " if i else "") + line + (" \\" if i < len(lines) - 1 else "") for i, line in enumerate(lines)]


def _render_fixes(out: _Out, checks: list[CheckResult]) -> None:
    """The fix list: each fix's why, its command on a line of its own, the findings it clears; every line at the
    journal priority of the worst of those findings, so `journalctl -p warning` shows the fixes with them."""
    found = fix_entries(checks)
    if not found:
        return
    out.line("")
    out.line(f"To fix ({plural(len(found), 'fix', 'fixes')}, root causes first):", style="bold")
    for n, e in enumerate(found):
        why = e.fix.why if e.fix else e.text
        if e.fix and e.fix.where:
            why += f" ({e.fix.where})"
        if e.fix and e.fix.argv:
            why += ":"
        for i, line in enumerate(wrap(why, out.width, 7)):
            out.line(f"  {'fix: ' if i == 0 else '     '}{line}", priority=e.priority)
        for line in wrap_command(e.fix.argv, out.width, 9) if e.fix and e.fix.argv else []:
            out.line(f"         {line}", priority=e.priority)
        after = found[n + 1] if n + 1 < len(found) else None
        if after is not None and (after.ids, after.follow) == (e.ids, e.follow):
            continue  # the next fix is for the same findings: said once, after the last of them
        said = ", ".join(i for i in e.ids if i not in e.follow)
        if e.follow:
            said += f" ({', '.join(e.follow)} follow{'s' if len(e.follow) == 1 else ''} from it)"
        for i, line in enumerate(wrap(said, out.width, 12)):
            out.line(f"       {'for: ' if i == 0 else '     '}{line}", style="dim", priority=e.priority)


def render_doctor_text(report: DoctorReport, stream: TextIO | None = None, *, verbose: bool = False) -> None:
    """The verdict first, then a line per group: a healthy group is one line, a problem is shown in full.
    Each distinct fix is listed once at the end. ``verbose``: every check on its own line, with its time."""
    out = _Out(stream)
    out.line((status_line(report), mark(report.status.value)[1]), priority=PRIORITY.get(report.status.value))
    out.line(f"gpuprep doctor on {report.platform.get('name', 'unknown')}", style="bold")
    groups: dict[str, list[CheckResult]] = {}
    for c in report.checks:
        groups.setdefault(c.group, []).append(c)
    width = max((len(c.id) for c in report.checks), default=0) + 2
    problems = {c.id for c in report.checks if c.status in PROBLEMS}
    for group, checks in groups.items():
        if verbose:
            out.line("")
        shown = checks if verbose else [c for c in checks if c.status in PROBLEMS]
        rest = [c for c in checks if c not in shown]
        head = f"{group:<10} "
        for c in shown:
            took = f"  ({c.duration_ms:.0f} ms)" if verbose and c.duration_ms >= 100 else ""
            after = f" (follows from {c.cause})" if c.cause in problems and c.status in PROBLEMS else ""
            # Continued under the summary where 40 columns are left there, else under the id; never at column 0.
            hang = 20 + width if out.width is None or out.width - 20 - width >= 40 else 22
            said = wrap(f"{c.summary}{took}{after}", out.width, hang, first=20 + width)
            out.line(head, mark(c.status.value), f"{c.id:<{width}}{said[0]}", priority=PRIORITY.get(c.status.value))
            for more in said[1:]:
                out.line(" " * hang + more, priority=PRIORITY.get(c.status.value))
            head = " " * 11
        if rest:
            ok = sum(c.status is Status.OK for c in rest)
            skipped = len(rest) - ok
            what = ([plural(ok, "check") + " ok"] if ok else []) + ([f"{skipped} skipped"] if skipped else [])
            more = "more " if shown else ""
            out.line(head, mark("ok" if ok else "skipped"), f"{', '.join(what).replace('check', more + 'check', 1)}"
                     + ("" if verbose or not skipped else " (-v says why)"))
    _render_fixes(out, report.checks)
    counts: dict[str, int] = {}
    for c in report.checks:
        counts[c.status.value] = counts.get(c.status.value, 0) + 1
    parts = ", ".join(f"{counts[k]} {k}" for k in COUNT_ORDER if k in counts)
    out.line("")
    out.line((report.status.value.upper(), mark(report.status.value)[1]), f": {parts} (exit {report.exit_code})",
             priority=PRIORITY.get(report.status.value))


def render_step_line(step: StepResult, stream: TextIO | None = None) -> None:
    """One line per step, printed as it finishes (user-data logs read well line by line)."""
    out = _Out(stream)
    took = f" ({step.duration_ms / 1000:.1f}s)" if step.duration_ms >= 100 else ""
    out.line(mark(step.status.value), f" {step.id:<15} {step.summary}{took}")
    if step.diff:
        out.line(step.diff.rstrip("\n"), style="dim")
    for argv in step.commands:
        out.line(f"{'':10}{'':15} $ {' '.join(argv)}")
    for line in step.table + step.lines:
        out.line(f"{'':10}{'':15} {line}")
    if step.hint and step.status is StepStatus.FAILED:
        out.line(f"{'':10}{'':15} fix: {step.hint}")


def render_run_summary(report: RunReport, stream: TextIO | None = None) -> None:
    # A fixed order, whatever order the steps ended in: a log compared with yesterday's reads the same.
    counts = {k.value: sum(s.status is k for s in report.steps) for k in StepStatus}
    parts = ", ".join(f"{n} {k}" for k, n in counts.items() if n)
    _Out(stream).line((f"{report.command} {report.status}", mark(report.status)[1]),
                      f": {parts} (exit {report.exit_code})")


# -- Prometheus textfile ------------------------------------------------------------------
def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def prometheus_text(report: DoctorReport, now: float | None = None) -> str:
    """node_exporter textfile format; no sample timestamps (the collector stamps the scrape).

    ``gpuprep_doctor_last_run_timestamp_seconds`` is a value, not a sample timestamp: when this run
    finished (``now``, default the clock), so an alert can fire on a file that stopped being refreshed
    (``time() - gpuprep_doctor_last_run_timestamp_seconds > 3600``). ``gpuprep_build_info`` carries the
    version as a label with the value 1, the usual shape of build information in Prometheus.
    """
    import time

    from gpuprep import __version__

    lines = [
        "# HELP gpuprep_build_info The gpuprep that wrote this file; the value is always 1.",
        "# TYPE gpuprep_build_info gauge",
        f'gpuprep_build_info{{version="{_label(__version__)}"}} 1',
        "# HELP gpuprep_doctor_last_run_timestamp_seconds When the doctor run that wrote this file finished.",
        "# TYPE gpuprep_doctor_last_run_timestamp_seconds gauge",
        f"gpuprep_doctor_last_run_timestamp_seconds {time.time() if now is None else now:.3f}",
        "# HELP gpuprep_doctor_status Worst check status as a Nagios code (0 ok, 1 warning, 2 critical, 3 unknown).",
        "# TYPE gpuprep_doctor_status gauge",
        f"gpuprep_doctor_status {report.exit_code}",
    ]

    def per_check(name: str, text: str, value: Callable[[CheckResult], object],
                  checks: list[CheckResult] = report.checks) -> None:
        lines.extend([f"# HELP {name} {text}", f"# TYPE {name} gauge"])
        for c in checks:
            lines.append(f'{name}{{check="{_label(c.id)}",group="{_label(c.group)}"}} {value(c)}')

    per_check("gpuprep_check_status", "Check status as a Nagios code; skipped checks are absent.",
              lambda c: c.status.exit_code, [c for c in report.checks if c.status is not Status.SKIPPED])
    # Skipped checks are exported too: a check that stopped running (its tool gone, its data unreadable) is then
    # seen, not silently absent from gpuprep_check_status.
    per_check("gpuprep_check_skipped", "1 when the check did not run on this host (why: gpuprep doctor -v), else 0.",
              lambda c: 1 if c.status is Status.SKIPPED else 0)
    per_check("gpuprep_check_duration_seconds", "How long each check took.", lambda c: f"{c.duration_ms / 1000:.6f}")
    return "\n".join(lines) + "\n"


def write_prometheus(report: DoctorReport, path: str) -> None:
    """Write the textfile atomically: temp file in the same directory, then rename.

    node_exporter only reads ``*.prom``; the temp file from write_atomic is ``.NAME.XXXX.tmp``, so a
    half-written file is never collected.
    """
    # No directories made: a misspelt textfile directory would be created and never scraped, a metric
    # silently lost (node_exporter reads only the directory it was given).
    write_atomic(Path(path), prometheus_text(report), parents=False)
