"""Result types and their renderers: text (rich on a tty, plain otherwise), JSON, Prometheus textfile."""

from __future__ import annotations

import json
import os
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


class _Out:
    """Lines of (text, style) parts: styled by rich on a terminal, plain text anywhere else.

    A pipe, a file or a user-data log never needs rich, and importing it costs about 13 ms, which seal
    used to pay before its first removal. ``FORCE_COLOR`` asks for rich's styles off a terminal too.
    Parts are plain text, never markup: nothing to escape. Every line is flushed as it is written, so
    a log shows each step as it finishes.
    """

    def __init__(self, stream: TextIO | None) -> None:
        self.stream = stream or sys.stdout
        self.con = None
        if self.stream.isatty() or os.environ.get("FORCE_COLOR"):
            from rich.console import Console  # heavy: only for a terminal

            self.con = Console(file=self.stream, highlight=False, soft_wrap=True, emoji=False)

    def line(self, *parts: str | tuple[str, str], style: str = "") -> None:
        if self.con is None:
            self.stream.write("".join(p if isinstance(p, str) else p[0] for p in parts) + "\n")
            self.stream.flush()
            return
        from rich.text import Text

        self.con.print(Text.assemble(*parts, style=style))


def mark(status: str, width: int = 9) -> tuple[str, str]:
    label, style = MARKS.get(status, (status, ""))
    return f"[{label}]".ljust(width), style


def render_doctor_text(report: DoctorReport, stream: TextIO | None = None) -> None:
    out = _Out(stream)
    out.line(f"gpuprep doctor on {report.platform.get('name', 'unknown')}", style="bold")
    group = None
    for c in report.checks:
        if c.group != group:
            group = c.group
            out.line("")
            out.line(group, style="bold")
        took = f"  ({c.duration_ms:.0f} ms)" if c.duration_ms >= 100 else ""
        out.line("  ", mark(c.status.value), f" {c.id:<24} {c.summary}{took}")
        if c.hint and c.status not in (Status.OK, Status.SKIPPED):
            for i, line in enumerate(c.hint.splitlines()):
                out.line(f"  {'':10}{'':24} {'fix: ' if i == 0 else '     '}{line}")
    counts: dict[str, int] = {}
    for c in report.checks:
        counts[c.status.value] = counts.get(c.status.value, 0) + 1
    order = ("ok", "warning", "critical", "unknown", "skipped")
    parts = ", ".join(f"{counts[k]} {k}" for k in order if k in counts)
    out.line("")
    out.line((report.status.value.upper(), mark(report.status.value)[1]), f": {parts} (exit {report.exit_code})")


def render_step_line(step: StepResult, stream: TextIO | None = None) -> None:
    """One line per step, printed as it finishes (user-data logs read well line by line)."""
    out = _Out(stream)
    took = f" ({step.duration_ms / 1000:.1f}s)" if step.duration_ms >= 100 else ""
    out.line(mark(step.status.value), f" {step.id:<15} {step.summary}{took}")
    if step.diff:
        out.line(step.diff.rstrip("\n"), style="dim")
    for argv in step.commands:
        out.line(f"{'':10}{'':15} $ {' '.join(argv)}")
    for key in ("table", "lines"):
        lines = step.data.get(key)
        for line in lines if isinstance(lines, list) else []:
            out.line(f"{'':10}{'':15} {line}")
    if step.hint and step.status is StepStatus.FAILED:
        out.line(f"{'':10}{'':15} fix: {step.hint}")


def render_run_summary(report: RunReport, stream: TextIO | None = None) -> None:
    counts: dict[str, int] = {}
    for s in report.steps:
        counts[s.status.value] = counts.get(s.status.value, 0) + 1
    parts = ", ".join(f"{n} {k}" for k, n in counts.items())
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
    # No directories made: a misspelt textfile directory would be created and never scraped, a metric
    # silently lost (node_exporter reads only the directory it was given).
    write_atomic(Path(path), prometheus_text(report), parents=False)
