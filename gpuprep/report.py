"""Result types and their renderers: text (rich on a tty, plain otherwise), JSON, Prometheus textfile."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any, TextIO

from gpuprep.host import write_atomic


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
    def worst(statuses) -> Status:
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

    def as_dict(self) -> dict:
        return {
            "id": self.id,
            "group": self.group,
            "status": self.status.value,
            "summary": self.summary,
            "hint": self.hint,
            "duration_ms": round(self.duration_ms, 1),
            "data": self.data,
        }


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

    def as_dict(self) -> dict:
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
        if self.data:
            d["data"] = self.data
        return d


@dataclass
class DoctorReport:
    platform: dict
    checks: list[CheckResult]

    @property
    def status(self) -> Status:
        return Status.worst(c.status for c in self.checks)

    @property
    def exit_code(self) -> int:
        return self.status.exit_code

    def as_dict(self) -> dict:
        return {
            "command": "doctor",
            "status": self.status.value,
            "platform": self.platform,
            "checks": [c.as_dict() for c in self.checks],
        }


@dataclass
class RunReport:
    """The outcome of install or seal."""

    command: str
    platform: dict
    steps: list[StepResult]
    exit_code: int = 0
    error: str = ""
    hint: str = ""
    extra: dict[str, Any] = field(default_factory=dict)  # install: {"selection": {...}}
    exc: BaseException | None = None  # an unexpected crash, shown with -v

    @property
    def status(self) -> str:
        if self.exit_code != 0 or any(s.status is StepStatus.FAILED for s in self.steps):
            return "failed"
        if any(s.status in (StepStatus.CHANGED, StepStatus.PLANNED) for s in self.steps):
            return "changed"
        return "ok"

    def as_dict(self) -> dict:
        d: dict[str, Any] = {
            "command": self.command,
            "status": self.status,
            "platform": self.platform,
            "steps": [s.as_dict() for s in self.steps],
        }
        d.update(self.extra)
        if self.error:
            d["error"] = self.error
            d["hint"] = self.hint
        return d


def to_json(obj: DoctorReport | RunReport) -> str:
    return json.dumps(obj.as_dict(), indent=2, sort_keys=False, default=str)


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


def _console(stream: TextIO):
    from rich.console import Console  # heavy: only when rendering text

    return Console(file=stream, highlight=False, soft_wrap=True, emoji=False)


def mark(status: str, width: int = 9) -> tuple[str, str]:
    label, style = MARKS.get(status, (status, ""))
    return f"[{label}]".ljust(width), style


def render_doctor_text(report: DoctorReport, stream: TextIO | None = None) -> None:
    from rich.markup import escape

    con = _console(stream or sys.stdout)
    con.print(f"gpuprep doctor on {escape(report.platform.get('name', 'unknown'))}", style="bold")
    group = None
    for c in report.checks:
        if c.group != group:
            group = c.group
            con.print(f"\n{group}", style="bold")
        label, style = mark(c.status.value)
        took = f"  ({c.duration_ms:.0f} ms)" if c.duration_ms >= 100 else ""
        con.print(f"  [{style}]{escape(label)}[/] {c.id:<24} {escape(c.summary)}{took}")
        if c.hint and c.status not in (Status.OK, Status.SKIPPED):
            for i, line in enumerate(c.hint.splitlines()):
                con.print(f"  {'':10}{'':24} {'fix: ' if i == 0 else '     '}{escape(line)}")
    counts: dict[str, int] = {}
    for c in report.checks:
        counts[c.status.value] = counts.get(c.status.value, 0) + 1
    order = ("ok", "warning", "critical", "unknown", "skipped")
    parts = ", ".join(f"{counts[k]} {k}" for k in order if k in counts)
    label, style = mark(report.status.value)
    con.print(f"\n[{style}]{escape(report.status.value.upper())}[/]: {parts} (exit {report.exit_code})")


def render_step_line(step: StepResult, stream: TextIO | None = None) -> None:
    """One line per step, printed as it finishes (user-data logs read well line by line)."""
    from rich.markup import escape

    con = _console(stream or sys.stdout)
    label, style = mark(step.status.value)
    took = f" ({step.duration_ms / 1000:.1f}s)" if step.duration_ms >= 100 else ""
    con.print(f"[{style}]{escape(label)}[/] {step.id:<15} {escape(step.summary)}{took}")
    if step.diff:
        con.print(escape(step.diff.rstrip("\n")), style="dim")
    for argv in step.commands:
        con.print(f"{'':10}{'':15} $ {escape(' '.join(argv))}")
    for key in ("table", "lines"):
        lines = step.data.get(key)
        for line in lines if isinstance(lines, list) else []:
            con.print(f"{'':10}{'':15} {escape(str(line))}")
    if step.hint and step.status is StepStatus.FAILED:
        con.print(f"{'':10}{'':15} fix: {escape(step.hint)}")


def render_run_summary(report: RunReport, stream: TextIO | None = None) -> None:
    from rich.markup import escape

    con = _console(stream or sys.stdout)
    counts: dict[str, int] = {}
    for s in report.steps:
        counts[s.status.value] = counts.get(s.status.value, 0) + 1
    parts = ", ".join(f"{n} {k}" for k, n in counts.items())
    label, style = mark(report.status)
    con.print(f"[{style}]{report.command} {escape(report.status)}[/]: {parts} (exit {report.exit_code})")


# -- Prometheus textfile ------------------------------------------------------------------
def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def prometheus_text(report: DoctorReport) -> str:
    """node_exporter textfile format; no timestamps (the collector stamps the scrape)."""
    lines = [
        "# HELP gpuprep_doctor_status Worst check status as a Nagios code (0 ok, 1 warning, 2 critical, 3 unknown).",
        "# TYPE gpuprep_doctor_status gauge",
        f"gpuprep_doctor_status {report.exit_code}",
        "# HELP gpuprep_check_status Check status as a Nagios code; skipped checks are absent.",
        "# TYPE gpuprep_check_status gauge",
    ]
    for c in report.checks:
        if c.status is not Status.SKIPPED:
            lines.append(
                f'gpuprep_check_status{{check="{_label(c.id)}",group="{_label(c.group)}"}} {c.status.exit_code}'
            )
    lines += [
        "# HELP gpuprep_check_duration_seconds How long each check took.",
        "# TYPE gpuprep_check_duration_seconds gauge",
    ]
    for c in report.checks:
        labels = f'check="{_label(c.id)}",group="{_label(c.group)}"'
        lines.append(f"gpuprep_check_duration_seconds{{{labels}}} {c.duration_ms / 1000:.6f}")
    return "\n".join(lines) + "\n"


def write_prometheus(report: DoctorReport, path: str) -> None:
    """Write the textfile atomically: temp file in the same directory, then rename.

    node_exporter only reads ``*.prom``; the temp file from write_atomic is ``.NAME.XXXX.tmp``, so a
    half-written file is never collected.
    """
    write_atomic(Path(path), prometheus_text(report))
