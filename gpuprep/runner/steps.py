"""The step mechanism shared by install and seal.

A step plans first (pure: what would change, or that nothing needs to) and applies second. One
runner gives ``--dry-run`` (print the plans), idempotency (a converged step plans nothing),
``--only``/``--skip`` and the JSON report.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from gpuprep.errors import BadInput, GpuprepError, diagnosis, os_error
from gpuprep.hints import for_target
from gpuprep.host import Host
from gpuprep.interrupts import Interrupted, deferred
from gpuprep.options import InstallOptions, SealOptions
from gpuprep.platform import Platform
from gpuprep.report import RunReport, StepResult, StepStatus
from gpuprep.runner.needs import Need, unmet

log = logging.getLogger("gpuprep")


# The plan a step hands from ``plan`` to its own ``apply``: a dataclass the step declares (None: apply needs
# nothing beyond what it can read again), so apply never unpacks a tuple or reads back the argv it showed.
P = TypeVar("P")


@dataclass
class Change(Generic[P]):
    """What a step would do. ``payload`` is the step's own typed plan, for ``apply``; ``commands`` and ``diff``
    are what the user is shown, never what ``apply`` reads to decide what to do."""

    summary: str
    payload: P
    diff: str = ""
    commands: list[list[str]] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)
    # Printed under the step, one a line (the table first), and carried as the step's data["table"] /
    # data["lines"] in --json: ``table`` explains a choice (the package selection), ``lines`` the items the
    # change acts on (each container seal removes).
    table: list[str] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)


@dataclass
class Converged:
    """Nothing to do; ``summary`` says what was found (``docker 25.0.6 running``); ``table`` and ``lines`` as
    ``Change``'s."""

    summary: str
    data: dict[str, Any] = field(default_factory=dict)
    table: list[str] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)


class Skip(Exception):
    """Raised by ``plan`` when the step does not apply here (with the reason)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


S = TypeVar("S")


@dataclass
class Context:
    host: Host
    platform: Platform
    options: InstallOptions | SealOptions
    interactive: bool = False  # stdin and stdout are a terminal (progress bars)
    # stdin is a terminal: a person can answer a question (seal's), whatever stdout is (`| tee seal.log`)
    can_ask: bool = False
    # Top-level JSON fields the command adds (install: "selection").
    extra: dict[str, Any] = field(default_factory=dict)
    # The ids of --only and --skip, as run_steps parsed them (empty: every step is selected).
    only: list[str] = field(default_factory=list)
    skip: list[str] = field(default_factory=list)
    # The ids of the steps this run has applied so far (their apply was called, whatever it ended in).
    applied: list[str] = field(default_factory=list)
    # What steps of one run share, one typed object per kind (see ``shared``).
    _shared: dict[type, object] = field(default_factory=dict, repr=False)

    def selected(self, step_id: str) -> bool:
        """Whether ``--only``/``--skip`` select step ``step_id`` in this run."""
        return (not self.only or step_id in self.only) and step_id not in self.skip

    @property
    def dry_run(self) -> bool:
        return self.options.dry_run

    @property
    def install_options(self) -> InstallOptions:
        """``options`` of an install run, for the steps only install runs (a bug to ask in another run)."""
        if not isinstance(self.options, InstallOptions):
            raise TypeError(f"an install step in a run with {type(self.options).__name__}")
        return self.options

    @property
    def seal_options(self) -> SealOptions:
        """``options`` of a seal run, for the steps only seal runs (a bug to ask in another run)."""
        if not isinstance(self.options, SealOptions):
            raise TypeError(f"a seal step in a run with {type(self.options).__name__}")
        return self.options

    def shared(self, kind: type[S]) -> S:
        """This run's one ``kind``: a dataclass, every field defaulted, that a domain declares beside its steps
        for what they hand each other (packages' query results, daemon.json's rollback, seal's image plan).
        Made on first use and keyed by the class itself, so each field is typed where it is declared and no
        step reads a string key another step never wrote."""
        if kind not in self._shared:
            self._shared[kind] = kind()
        value = self._shared[kind]
        if not isinstance(value, kind):  # stored under its own class above
            raise TypeError(f"ctx.shared({kind.__name__}) holds a {type(value).__name__}")
        return value


class Step(Generic[P]):
    """A step whose plan hands ``apply`` a ``P`` (``Step[None]``: apply needs no payload)."""

    id: str = ""
    title: str = ""  # one line for --list-steps
    # What the step needs here (runner/needs.py), asked in order before its plan: the first unmet one's reason is
    # its `skipped` summary.
    needs: tuple[Need, ...] = ()
    # The command's preconditions (root, a supported platform), first in its list: where --only/--skip leave it out
    # while selecting another step its plan still runs, and a run's confirm is asked once it has passed.
    gate: bool = False
    # Its planned change is among those a run's confirm shows (seal's question); False for a step that only
    # records the run (seal's stamp writes seal.json and removes nothing).
    confirmed: bool = True

    def plan(self, ctx: Context) -> Change[P] | Converged:
        """Pure: reads, never waits, prompts, writes or starts a container."""
        raise NotImplementedError

    def apply(self, ctx: Context, change: Change[P]) -> Applied:
        """Make the change the plan described."""
        raise NotImplementedError

    def undo(self, ctx: Context, failed: StepResult) -> str | None:
        """A later step of this run failed (``failed``): undo what that failure made useless and say what was
        undone, or return None to keep the change. Asked of each step this run applied, the last first."""
        return None


@dataclass
class Applied:
    """What ``apply`` did. Every field defaults to the plan's: ``Applied()`` is "done as planned"."""

    summary: str | None = None
    commands: list[list[str]] | None = None  # what really ran, where it differs from the plan's
    data: dict[str, Any] = field(default_factory=dict)  # merged over the plan's data


# A run's steps, each with its own plan type: the runner hands a step's plan back only to that step, so the
# payload's type never meets another step's (Python's types have no "some P" to say that with).
AnyStep = Step[Any]


class Verify(Step[P]):
    """A step that changes nothing and proves something on the live system (install's gpu-check).

    Its ``plan`` says what it would run (a dry run lists that, status ``planned``) or raises ``Skip``; a real
    run then calls ``verify``, which returns what it found (status ``ok``) or raises ``StepFailed``. Keeping
    the container out of ``plan`` keeps plans pure: a dry run starts nothing."""

    def plan(self, ctx: Context) -> Change[P]:
        raise NotImplementedError

    def verify(self, ctx: Context, change: Change[P]) -> Converged:
        raise NotImplementedError

    def apply(self, ctx: Context, change: Change[P]) -> Applied:
        raise TypeError(f"{self.id} verifies; it has nothing to apply")


def file_diff(path: str, before: str | None, after: str) -> str:
    """The unified diff a dry run shows for file ``path`` going from ``before`` (None: it does not exist,
    shown as from /dev/null) to ``after``; a last line without a newline is marked as diff marks it."""
    import difflib

    lines = difflib.unified_diff((before or "").splitlines(keepends=True), after.splitlines(keepends=True),
                                 fromfile=path if before is not None else "/dev/null", tofile=path)
    return "".join(line if line.endswith("\n") else line + "\n\\ No newline at end of file\n" for line in lines)


def parse_ids(values: Sequence[str], steps: Sequence[AnyStep], flag: str) -> list[str]:
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


def check_selection(only: Sequence[str], skip: Sequence[str], steps: Sequence[AnyStep]) -> tuple[list[str], list[str]]:
    """The ids of ``--only`` and ``--skip``; BadInput (exit 2) for an unknown id, or for one named by
    both (the run would do nothing and report success)."""
    only_ids, skip_ids = parse_ids(only, steps, "--only"), parse_ids(skip, steps, "--skip")
    both = [i for i in only_ids if i in skip_ids]
    if both:
        raise BadInput(f"--only and --skip both name {', '.join(both)}",
                       "name each step in one of them only")
    return only_ids, skip_ids


# Shown the planned changes of every selected step: True when it asked and the answer was yes, False when
# there was nothing to ask; a refusal raises (StepFailed).
Confirm = Callable[[Sequence[tuple[AnyStep, "Change[Any]"]]], bool]


def run_steps(
    ctx: Context,
    command: str,
    steps: Sequence[AnyStep],
    *,
    only: Sequence[str] = (),
    skip: Sequence[str] = (),
    on_step: Callable[[StepResult], None] | None = None,
    confirm: Confirm | None = None,
) -> RunReport:
    """Plan and apply ``steps`` in order; stop at the first failure.

    A first step that is the ``gate`` holds the command's preconditions (root, a supported
    platform): where ``--only``/``--skip`` leave it out while selecting another step, its checks still
    run (its plan; it changes nothing) and a failure stops the run as it would have.

    ``confirm`` (seal on a terminal) is asked once the gate has passed, before anything changes, with every
    other selected step's planned change that is ``confirmed``; its refusal is the gate's failure, so nothing
    changes.
    """
    ctx.only, ctx.skip = check_selection(only, skip, steps)
    gate = steps[0] if steps and steps[0].gate else None
    if confirm is not None and gate is None:
        raise ValueError("confirm needs a gate step to answer for")
    report = RunReport(command, ctx.platform.as_dict(), [], extra=ctx.extra, dry_run=ctx.dry_run)
    failed: StepResult | None = None
    for step in steps:
        started = time.monotonic()
        try:
            result = _step_result(ctx, step, steps, gate, failed, confirm, report)
        except Interrupted as exc:
            result = _interrupted(ctx, steps, step, exc, report)
        if result.status is StepStatus.FAILED and failed is None:
            failed = result
        if not result.duration_ms:
            result.duration_ms = (time.monotonic() - started) * 1000
        report.steps.append(result)
        if on_step is not None:
            on_step(result)
    return report


def _step_result(ctx: Context, step: AnyStep, steps: Sequence[AnyStep], gate: AnyStep | None, failed: StepResult | None,
                 confirm: Confirm | None, report: RunReport) -> StepResult:
    """``step``'s result in a run whose first failure so far is ``failed``."""

    def selected(step: AnyStep) -> bool:
        return ctx.selected(step.id)

    if failed is not None:
        result = StepResult(step.id, StepStatus.SKIPPED, f"not run: {failed.id} failed")
    elif not selected(step):
        if step is gate and any(selected(s) for s in steps[1:]):
            result = _run_one(ctx, step, report, checks_only=True)
        else:
            result = StepResult(step.id, StepStatus.SKIPPED, "not selected (--only/--skip)")
    else:
        result = _run_one(ctx, step, report)
    if step is gate and confirm is not None and not ctx.dry_run and result.status is not StepStatus.FAILED:
        result = _ask(ctx, confirm, [s for s in steps[1:] if selected(s)], result, report)
    if result.status is StepStatus.FAILED:
        _undo(ctx, steps, result)
    return result


def _interrupted(ctx: Context, steps: Sequence[AnyStep], step: AnyStep, exc: Interrupted,
                 report: RunReport) -> StepResult:
    """A signal ended the run in ``step``: every step this run applied, that one included (it may have stopped
    half way), undoes what the run leaves half done, with further signals held until that is over."""
    log.warning("%s: interrupted by %s; undoing what this run left half done", step.id, exc.name)
    result = StepResult(step.id, StepStatus.FAILED, f"interrupted by {exc.name}",
                        hint="run the command again to finish", data={"interrupted": exc.name},
                        reference="interrupted")
    report.exit_code = max(report.exit_code, 1)
    with deferred(then_raise=False):
        _undo(ctx, steps, result, including_failed=True)
    report.error, report.hint, report.reference = f"{step.id}: {result.summary}", result.hint, "interrupted"
    return result


def _undo(ctx: Context, steps: Sequence[AnyStep], failed: StepResult, *, including_failed: bool = False) -> None:
    """Let each step this run applied undo what ``failed`` made useless; what was undone joins its summary."""
    for step in reversed([s for s in steps if s.id in ctx.applied and (including_failed or s.id != failed.id)]):
        try:
            note = step.undo(ctx, failed)
        except (GpuprepError, OSError) as exc:
            err = exc if isinstance(exc, GpuprepError) else os_error(exc)
            note = f"could not undo {step.id}: {err.message}"
        if note:
            log.warning("%s: %s", step.id, note)
            failed.summary += f"; {note}"
            failed.data.setdefault("undone", []).append({"step": step.id, "what": note})


def _ask(ctx: Context, confirm: Confirm, steps: Sequence[AnyStep], gate: StepResult, report: RunReport) -> StepResult:
    """Plan ``steps`` (plans are pure) and ask ``confirm``; the gate's result, failed when it was refused."""
    plans: list[tuple[AnyStep, Change[Any]]] = []
    for step in steps:
        if not step.confirmed or _unmet(ctx, step) is not None:
            continue  # nothing to ask about, or the step reports its skip when it runs
        try:
            planned = step.plan(ctx)
        except (Skip, GpuprepError, OSError):
            continue  # the step itself reports it when it runs
        if isinstance(planned, Change) and not isinstance(step, Verify):
            plans.append((step, planned))
    if not plans:
        return gate
    try:
        asked = confirm(plans)
    except GpuprepError as exc:
        return _failed(report, gate.id, exc, exc.hint, gate.data)
    if asked:
        gate.summary += "; confirmed"
    return gate


def _unmet(ctx: Context, step: AnyStep) -> str | None:
    """Why ``step`` cannot run here (the first of its ``needs`` this run does not meet), or None."""
    return unmet(step.needs, ctx.host, ctx.platform, ctx.options)


def _run_one(ctx: Context, step: Step[P], report: RunReport, *, checks_only: bool = False) -> StepResult:
    """One step's result; ``run_steps`` times it. ``checks_only``: plan, never apply, and report the
    step as not selected when its checks pass."""
    reason = _unmet(ctx, step)
    if reason is not None:
        return StepResult(step.id, StepStatus.SKIPPED, reason)
    try:
        plan = step.plan(ctx)
        if checks_only:
            return StepResult(step.id, StepStatus.SKIPPED,
                              f"not selected (--only/--skip); its checks passed: {plan.summary}")
        if isinstance(plan, Converged):
            return StepResult(step.id, StepStatus.OK, plan.summary, data=plan.data, table=plan.table,
                              lines=plan.lines)
        if ctx.dry_run:
            # A Verify step's plan is a container it would run, not a change: a converged host's dry run is "ok".
            return StepResult(step.id, StepStatus.PLANNED, plan.summary, diff=plan.diff,
                              commands=plan.commands, data=plan.data, changes=not isinstance(step, Verify),
                              table=plan.table, lines=plan.lines)
        if isinstance(step, Verify):
            found = step.verify(ctx, plan)
            return StepResult(step.id, StepStatus.OK, found.summary, data=found.data, table=found.table,
                              lines=found.lines)
        ctx.applied.append(step.id)
        done = step.apply(ctx, plan)
        return StepResult(step.id, StepStatus.CHANGED, done.summary or plan.summary, diff=plan.diff,
                          commands=plan.commands if done.commands is None else done.commands,
                          data={**plan.data, **done.data}, table=plan.table, lines=plan.lines)
    except Skip as exc:
        return StepResult(step.id, StepStatus.SKIPPED, exc.reason)
    except Exception as exc:
        # A GpuprepError as it is; the system's refusal (a full disk, a read-only mount, permission) as one line
        # naming the file and what to do; anything else is a bug: reported, never a bare traceback.
        err = diagnosis(exc)
        log.debug("step %s failed", step.id, exc_info=True)
        if err.reference == "internal-error":
            report.exc = exc
        # a gpuprep command in the hint keeps this run's --root
        hint = for_target(ctx.host, err.hint) if isinstance(exc, GpuprepError) else err.hint
        return _failed(report, step.id, err, hint, err.data)


def _failed(report: RunReport, step_id: str, err: GpuprepError, hint: str, data: dict[str, Any]) -> StepResult:
    """``step_id`` failed with ``err``: the run's exit code, error, hint and reference say so, and its result."""
    report.exit_code = max(report.exit_code, err.exit_code)
    report.error, report.hint, report.reference = f"{step_id}: {err.message}", hint, err.reference
    return StepResult(step_id, StepStatus.FAILED, err.message, hint=hint, data=data, reference=err.reference)
