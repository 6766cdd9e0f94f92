"""seal: leave the instance ready to be imaged, with nothing of this machine in the image.

Steps, in docs/contract.md's order: preflight, stop-ecs, containers, images, ecs-state, gpu-info, toolkit-state,
deep-clean (only with --deep), stamp. Why each matters (docs/domain.md): a baked agent checkpoint makes instances fail
to register or join the build machine's cluster (aws/amazon-ecs-agent 858, 2738); a baked
``nvidia-gpu-info.json`` holds the build machine's GPU UUIDs; AWS Batch's guide says to stop the agent
and remove ``/var/lib/ecs/data/*`` before creating an AMI. Each step lives in its domain: ``ecs/steps.py``
(stop-ecs, ecs-state, gpu-info), ``engine/seal.py`` (containers, images), ``image/`` (deep-clean, stamp)."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from gpuprep.ecs.gpu_health_seal import GpuHealthStateStep
from gpuprep.ecs.steps import EcsStateStep, GpuInfoStep, StopEcsStep
from gpuprep.engine.objects import image_plan
from gpuprep.engine.seal import ContainersStep, ImagesStep
from gpuprep.errors import PreconditionUnmet, StepFailed
from gpuprep.image.clean import DeepCleanStep
from gpuprep.image.stamp import SEAL_JSON, StampStep
from gpuprep.runner.steps import Change, Confirm, Context, Converged, Skip, Step
from gpuprep.toolkit.seal import ToolkitStateStep

log = logging.getLogger("gpuprep")

PREVIEW_LINES = 15


# -- preflight ----------------------------------------------------------------------------
class SealPreflightStep(Step):
    id = "preflight"
    title = "root, a known platform, --keep-image names real images; on a terminal, confirm what goes"

    def plan(self, ctx: Context) -> Change | Converged:
        host, platform = ctx.host, ctx.platform
        if not host.is_root:
            raise PreconditionUnmet("seal needs root: it stops services and removes files owned by root",
                                    "run it as root (sudo gpuprep seal)")
        # seal.json is written last: a directory or FIFO there must stop seal before anything is removed.
        host.read_bytes(SEAL_JSON, limit=1 << 20)
        if platform.family == "unknown":
            raise PreconditionUnmet(f"{platform.reason or 'unknown platform'}",
                                    "seal runs on Amazon Linux 1/2/2023 or RHEL-family 7-9 (Ubuntu accepted)")
        if ctx.options.keep_images and ctx.selected("images"):
            try:
                image_plan(ctx)  # a --keep-image that names no image stops seal here, before any removal
            except Skip:
                pass  # no Engine with --root: the images step says so
        where = platform.name if platform.rpm else \
            f"{platform.name} (not an ECS-optimized RPM platform; sealing anyway)"
        return Converged(f"running as root on {where}")


def confirm_for(ctx: Context) -> Confirm | None:
    """On a terminal and without --yes, seal asks before removing anything (the runner calls it once
    preflight has passed); elsewhere nobody is there to answer."""
    return confirm_removal if ctx.interactive and not ctx.options.yes else None


def confirm_removal(plans: Sequence[tuple[Step, Change]]) -> bool:
    """Show what the planned steps remove and ask; False when nothing would go, StepFailed on no."""
    import typer

    lines: list[str] = []
    for step, planned in plans:
        if step.id == "stamp":
            continue  # it writes seal.json; it removes nothing
        lines.append(f"{step.id}: {planned.summary}")
        body = planned.data.get("lines") or [" ".join(c) for c in planned.commands]
        lines += [f"    {line}" for line in body[:PREVIEW_LINES]]
        if len(body) > PREVIEW_LINES:
            lines.append(f"    ... and {len(body) - PREVIEW_LINES} more (--dry-run lists them all)")
    if not lines:
        return False
    # On stderr, the terminal's too: with --json, stdout carries the one JSON object and nothing else.
    typer.echo("gpuprep seal will remove:", err=True)
    for line in lines:
        typer.echo(f"  {line}", err=True)
    if not typer.confirm("Go ahead?", default=False, err=True):
        raise StepFailed("aborted, nothing removed", "run again and answer yes, or pass --yes")
    return True


def seal_steps() -> list[Step]:
    """In docs/contract.md's order; ids never change meaning."""
    return [
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
    ]
