"""seal: leave the instance ready to be imaged, with nothing of this machine in the image.

Steps, in docs/contract.md's order: preflight, stop-ecs, containers, images, ecs-state, gpu-info, toolkit-state,
deep-clean (only with --deep), stamp. Why each matters (docs/domain.md): a baked agent checkpoint makes instances fail
to register or join the build machine's cluster (aws/amazon-ecs-agent 858, 2738); a baked
``nvidia-gpu-info.json`` holds the build machine's GPU UUIDs; AWS Batch's guide says to stop the agent
and remove ``/var/lib/ecs/data/*`` before creating an AMI. Each step lives in its domain: ``ecs/steps.py``
(stop-ecs, ecs-state, gpu-info), ``engine/seal.py`` (containers, images), ``image/`` (deep-clean, stamp)."""

from __future__ import annotations

import logging
import signal
import sys
from collections.abc import Sequence
from typing import Any

from gpuprep.ecs import config as ecs_config
from gpuprep.ecs.gpu_health_seal import GpuHealthStateStep
from gpuprep.ecs.steps import EcsStateStep, GpuInfoStep, StopEcsStep
from gpuprep.engine.objects import image_plan
from gpuprep.engine.seal import ContainersStep, ImagesStep
from gpuprep.errors import BadInput, GpuprepError, PreconditionUnmet, PromptInterrupted, StepFailed
from gpuprep.image.clean import DeepCleanStep
from gpuprep.image.stamp import StampStep
from gpuprep.interrupts import Interrupted
from gpuprep.options import SealOptions
from gpuprep.platform import OS_RELEASE_HINT
from gpuprep.runner import registry
from gpuprep.runner.steps import AnyStep, Change, Confirm, Context, Converged, Skip, Step
from gpuprep.seal_record import SEAL_JSON
from gpuprep.toolkit.seal import ToolkitStateStep

log = logging.getLogger("gpuprep")

PREVIEW_LINES = 15

# Step ids that are gone, with why: never reused (docs/contract.md). None yet.
RETIRED: dict[str, str] = {}


# -- preflight ----------------------------------------------------------------------------
class SealPreflightStep(Step[None]):
    id = "preflight"
    title = "root, a known platform, --keep-image names real images; on a terminal, confirm what goes"
    gate = True

    def plan(self, ctx: Context) -> Change[None] | Converged:
        host, platform = ctx.host, ctx.platform
        if not host.is_root:
            raise PreconditionUnmet("seal needs root: it stops services and removes files owned by root",
                                    "run it as root (sudo gpuprep seal)")
        # seal.json is written last: a directory or FIFO there must stop seal before anything is removed.
        host.read_bytes(SEAL_JSON, limit=1 << 20)
        if platform.broken:
            raise BadInput(platform.reason, OS_RELEASE_HINT)
        if platform.family == "unknown":
            raise PreconditionUnmet(f"{platform.reason or 'unknown platform'}",
                                    "seal runs on Amazon Linux 1/2/2023 or RHEL-family 7-9 (Ubuntu accepted)")
        try:
            gpu_info = host.path(ecs_config.GPU_INFO, follow=False)
        except GpuprepError:
            gpu_info = None  # a link out of the root on the way: the step that removes it names it
        if ctx.selected("gpu-info") and gpu_info is not None and gpu_info.is_dir() and not gpu_info.is_symlink():
            # Said before anything is removed: the gpu-info step comes after the agent's state is gone.
            raise BadInput(f"{gpu_info}: is a directory, expected ecs-init's nvidia-gpu-info.json",
                           f"look at it and remove it by hand (rm -r {gpu_info}), then run seal again")
        if ctx.seal_options.keep_images and ctx.selected("images"):
            try:
                image_plan(ctx)  # a --keep-image that names no image stops seal here, before any removal
            except Skip:
                pass  # no Engine with --root: the images step says so
        where = platform.name if platform.rpm else \
            f"{platform.name} (not an ECS-optimized RPM platform; sealing anyway)"
        return Converged(f"running as root on {where}")


def confirm_for(ctx: Context) -> Confirm | None:
    """With stdin a terminal and without --yes, seal asks before removing anything (the runner calls it once
    preflight has passed), whatever stdout is: `gpuprep seal | tee seal.log` at a terminal asks too, as dnf and
    apt do. Without a terminal on stdin (user-data, SSM, Packer) nobody is there to answer."""
    return confirm_removal if ctx.can_ask and not ctx.seal_options.yes else None


def confirm_removal(plans: Sequence[tuple[AnyStep, Change[Any]]]) -> bool:
    """Show what the planned steps remove and ask; False when nothing would go, StepFailed on no."""
    import typer

    lines: list[str] = []
    for step, planned in plans:
        lines.append(f"{step.id}: {planned.summary}")
        body = planned.lines or [" ".join(c) for c in planned.commands]
        lines += [f"    {line}" for line in body[:PREVIEW_LINES]]
        if len(body) > PREVIEW_LINES:
            lines.append(f"    ... and {len(body) - PREVIEW_LINES} more (--dry-run lists them all)")
    if not lines:
        return False
    # On stderr, the terminal's too: with --json, stdout carries the one JSON object and nothing else.
    typer.echo("gpuprep seal will remove:", err=True)
    for line in lines:
        typer.echo(f"  {line}", err=True)
    if not _ask_yes_no("Go ahead? [y/N]: "):
        raise StepFailed("aborted, nothing removed", "run again and answer yes, or pass --yes")
    return True


def _ask_yes_no(question: str) -> bool:
    """y/yes or n/no/empty (no) from stdin, the question on stderr. Ctrl-C or end of input is no change at all
    (PromptInterrupted, exit 130; the end of input exit 1): click's confirm turns both into an Abort that says
    neither, and its caller could not tell them apart."""
    while True:
        try:
            # The question's own write is inside: a Ctrl-C typed as soon as it shows can land before the read.
            sys.stderr.write(question)
            sys.stderr.flush()
            answer = sys.stdin.readline()
        except (KeyboardInterrupt, Interrupted) as exc:
            # During a run, SIGINT arrives as interrupts.Interrupted (issue 23); nothing was changed before the
            # question, so the question's own answer stands. SIGTERM and SIGHUP stay what they are: an end of run.
            if isinstance(exc, Interrupted) and exc.signum != signal.SIGINT:
                raise
            sys.stderr.write("\n")
            raise PromptInterrupted("interrupted at the question (Ctrl-C), nothing removed",
                                    "run again and answer yes, or pass --yes") from None
        if not answer:  # end of input (Ctrl-D): nobody said yes
            sys.stderr.write("\n")
            raise StepFailed("no answer (end of input), nothing removed", "run again and answer yes, or pass --yes")
        reply = answer.strip().lower()
        if reply in ("y", "yes"):
            return True
        if reply in ("", "n", "no"):
            return False
        sys.stderr.write(f"answer y or n, not {reply[:20]!r}\n")


def seal_steps() -> list[AnyStep]:
    """In docs/contract.md's order; ids never change meaning."""
    return registry.steps([
        SealPreflightStep(),
        StopEcsStep(),
        ContainersStep(),
        ImagesStep(),
        EcsStateStep(),
        GpuInfoStep(),
        ToolkitStateStep(),
        GpuHealthStateStep(),  # issue 28
        DeepCleanStep(),
        StampStep(),
    ], SealOptions, RETIRED)
