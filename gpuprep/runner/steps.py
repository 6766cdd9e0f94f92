"""The step mechanism shared by install and seal.

A step plans first (pure: what would change, or that nothing needs to) and applies second. One
runner gives ``--dry-run`` (print the plans), idempotency (a converged step plans nothing),
``--only``/``--skip`` and the JSON report.
"""

from __future__ import annotations

import logging
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from gpuprep.errors import BadInput, GpuprepError, os_error
from gpuprep.host import Host
from gpuprep.platform import Platform
from gpuprep.report import RunReport, StepResult, StepStatus

log = logging.getLogger("gpuprep")


@dataclass
class Change:
    """What a step would do. ``payload`` is the step's own, for ``apply``."""

    summary: str
    diff: str = ""
    commands: list[list[str]] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)
    payload: Any = None


@dataclass
class Converged:
    """Nothing to do; ``summary`` says what was found (``docker 25.0.6 running``)."""

    summary: str
    data: dict[str, Any] = field(default_factory=dict)


class Skip(Exception):
    """Raised by ``plan`` when the step does not apply here (with the reason)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass
class Context:
    host: Host
    platform: Platform
    options: Any
    interactive: bool = False  # stdin and stdout are a terminal
    # Shared between steps of one run: "selection", "runtime_path", "daemon_json_changed", ...
    state: dict[str, Any] = field(default_factory=dict)
    # Top-level JSON fields the command adds (install: "selection").
    extra: dict[str, Any] = field(default_factory=dict)
    # The ids of --only and --skip, as run_steps parsed them (empty: every step is selected).
    only: list[str] = field(default_factory=list)
    skip: list[str] = field(default_factory=list)

    def selected(self, step_id: str) -> bool:
        """Whether ``--only``/``--skip`` select step ``step_id`` in this run."""
        return (not self.only or step_id in self.only) and step_id not in self.skip

    @property
    def dry_run(self) -> bool:
        return bool(getattr(self.options, "dry_run", False))


class Step:
    id: str = ""
    title: str = ""  # one line for --list-steps

    def plan(self, ctx: Context) -> Change | Converged:
        raise NotImplementedError

    def apply(self, ctx: Context, change: Change) -> str | StepResult | None:
        """Make the change; return a summary (or a full StepResult) or None for ``change.summary``."""
        raise NotImplementedError


def file_diff(path: str, before: str | None, after: str) -> str:
    """The unified diff a dry run shows for file ``path`` going from ``before`` (None: it does not exist,
    shown as from /dev/null) to ``after``; a last line without a newline is marked as diff marks it."""
    import difflib

    lines = difflib.unified_diff((before or "").splitlines(keepends=True), after.splitlines(keepends=True),
                                 fromfile=path if before is not None else "/dev/null", tofile=path)
    return "".join(line if line.endswith("\n") else line + "\n\\ No newline at end of file\n" for line in lines)


def parse_ids(values: Sequence[str], steps: Sequence[Step], flag: str) -> list[str]:
    """``--only a,b --only c`` -> [a, b, c], each a known step id (else exit 2)."""
    known = [s.id for s in steps]
    ids = [v.strip() for value in values for v in value.split(",") if v.strip()]
    if values and not ids:
        # `--only "$STEPS"` with the variable unset must not mean every step.
        raise BadInput(f"{flag} is empty", f"name steps ({', '.join(known)}) or leave {flag} out")
    unknown = [i for i in ids if i not in known]
    if unknown:
        raise BadInput(
            f"{flag}: unknown step {', '.join(unknown)}",
            f"steps are: {', '.join(known)} (--list-steps says what each does)",
        )
    return ids


def check_selection(only: Sequence[str], skip: Sequence[str], steps: Sequence[Step]) -> tuple[list[str], list[str]]:
    """The ids of ``--only`` and ``--skip``; BadInput (exit 2) for an unknown id, or for one named by
    both (the run would do nothing and report success)."""
    only_ids, skip_ids = parse_ids(only, steps, "--only"), parse_ids(skip, steps, "--skip")
    both = [i for i in only_ids if i in skip_ids]
    if both:
        raise BadInput(f"--only and --skip both name {', '.join(both)}",
                       "name each step in one of them only")
    return only_ids, skip_ids


def run_steps(
    ctx: Context,
    command: str,
    steps: Sequence[Step],
    *,
    only: Sequence[str] = (),
    skip: Sequence[str] = (),
    on_step: Callable[[StepResult], None] | None = None,
) -> RunReport:
    """Plan and apply ``steps`` in order; stop at the first failure.

    A first step with id ``preflight`` holds the command's preconditions (root, a supported
    platform): where ``--only``/``--skip`` leave it out while selecting another step, its checks still
    run (its plan; it changes nothing) and a failure stops the run as it would have.
    """
    ctx.only, ctx.skip = check_selection(only, skip, steps)

    def selected(step: Step) -> bool:
        return ctx.selected(step.id)

    gate = steps[0] if steps and steps[0].id == "preflight" else None
    report = RunReport(command, ctx.platform.as_dict(), [], extra=ctx.extra)
    failed: StepResult | None = None
    for step in steps:
        started = time.monotonic()
        if failed is not None:
            result = StepResult(step.id, StepStatus.SKIPPED, f"not run: {failed.id} failed")
        elif not selected(step):
            if step is gate and any(selected(s) for s in steps[1:]):
                result = _run_one(ctx, step, report, checks_only=True)
            else:
                result = StepResult(step.id, StepStatus.SKIPPED, "not selected (--only/--skip)")
        else:
            result = _run_one(ctx, step, report)
        if result.status is StepStatus.FAILED:
            failed = result
        if not result.duration_ms:
            result.duration_ms = (time.monotonic() - started) * 1000
        report.steps.append(result)
        if on_step is not None:
            on_step(result)
    return report


def _run_one(ctx: Context, step: Step, report: RunReport, *, checks_only: bool = False) -> StepResult:
    """One step's result; ``run_steps`` times it. ``checks_only``: plan, never apply, and report the
    step as not selected when its checks pass."""
    try:
        plan = step.plan(ctx)
        if checks_only:
            return StepResult(step.id, StepStatus.SKIPPED,
                              f"not selected (--only/--skip); its checks passed: {plan.summary}")
        if isinstance(plan, Converged):
            return StepResult(step.id, StepStatus.OK, plan.summary, data=plan.data)
        if ctx.dry_run:
            return StepResult(step.id, StepStatus.PLANNED, plan.summary, diff=plan.diff,
                              commands=plan.commands, data=plan.data)
        outcome = step.apply(ctx, plan)
        if isinstance(outcome, StepResult):
            return outcome
        return StepResult(step.id, StepStatus.CHANGED, outcome or plan.summary, diff=plan.diff,
                          commands=plan.commands, data=plan.data)
    except Skip as exc:
        return StepResult(step.id, StepStatus.SKIPPED, exc.reason)
    except GpuprepError as exc:
        log.debug("step %s failed", step.id, exc_info=True)
        report.exit_code = max(report.exit_code, exc.exit_code)
        report.error, report.hint = f"{step.id}: {exc.message}", exc.hint
        return StepResult(step.id, StepStatus.FAILED, exc.message, hint=exc.hint, data=exc.data)
    except OSError as exc:
        # The system refused (a full disk, a read-only mount, an I/O error, permission): not a bug of
        # gpuprep's, so it is said as one line naming the file and what to do.
        err = os_error(exc)
        log.debug("step %s failed", step.id, exc_info=True)
        report.exit_code = max(report.exit_code, err.exit_code)
        report.error, report.hint = f"{step.id}: {err.message}", err.hint
        return StepResult(step.id, StepStatus.FAILED, err.message, hint=err.hint)
    except Exception as exc:  # a bug: report it, never a bare traceback
        log.debug("step %s crashed\n%s", step.id, traceback.format_exc())
        report.exit_code = max(report.exit_code, 1)
        report.error = f"{step.id}: internal error: {type(exc).__name__}: {exc}"
        report.hint = "run again with -v for the traceback and report it"
        report.exc = exc
        return StepResult(step.id, StepStatus.FAILED, f"internal error: {type(exc).__name__}: {exc}",
                          hint=report.hint)
