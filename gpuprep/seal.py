"""seal: leave the instance ready to be imaged, with nothing of this machine in the image.

Steps, in docs/contract.md's order: preflight, stop-ecs, containers, images, ecs-state, gpu-info, toolkit-state,
deep-clean (only with --deep), stamp. Why each matters (docs/domain.md): a baked agent checkpoint makes instances fail
to register or join the build machine's cluster (aws/amazon-ecs-agent 858, 2738); a baked
``nvidia-gpu-info.json`` holds the build machine's GPU UUIDs; AWS Batch's guide says to stop the agent
and remove ``/var/lib/ecs/data/*`` before creating an AMI. Each step lives in its domain: ``ecs/steps.py``
(stop-ecs, ecs-state, gpu-info), ``engine/seal.py`` (containers, images), ``image/`` (deep-clean, stamp)."""

from __future__ import annotations

import logging

from gpuprep.ecs.steps import EcsStateStep, GpuInfoStep, StopEcsStep
from gpuprep.engine.seal import ContainersStep, ImagesStep
from gpuprep.errors import PreconditionUnmet, StepFailed
from gpuprep.image.clean import DeepCleanStep
from gpuprep.image.stamp import SEAL_JSON, StampStep
from gpuprep.runner.steps import Change, Context, Converged, Skip, Step
from gpuprep.toolkit.seal import ToolkitStateStep

log = logging.getLogger("gpuprep")

PREVIEW_LINES = 15


# -- preflight ----------------------------------------------------------------------------
def _asks(ctx: Context) -> bool:
    """Whether seal asks before removing: a terminal, no --yes, and a real run."""
    return ctx.interactive and not getattr(ctx.options, "yes", False) and not ctx.dry_run


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
        where = platform.name if platform.rpm else \
            f"{platform.name} (not an ECS-optimized RPM platform; sealing anyway)"
        preview = self._preview(ctx)
        if _asks(ctx):
            self._confirm(preview)
            return Converged(f"running as root on {where}; confirmed")
        return Converged(f"running as root on {where}")

    def _preview(self, ctx: Context) -> list[str]:
        """What the selected steps would remove; validates --keep-image before anything goes."""
        interactive = _asks(ctx)
        lines: list[str] = []
        for step in seal_steps()[1:]:
            if not ctx.selected(step.id) or step.id == "stamp":
                continue
            if not interactive and (step.id != "images" or not getattr(ctx.options, "keep_images", None)):
                continue  # no one to ask: only --keep-image needs checking before anything goes
            try:
                planned = step.plan(ctx)
            except (Skip, StepFailed):
                continue  # the step itself will report it
            if isinstance(planned, Change):
                lines.append(f"{step.id}: {planned.summary}")
                body = planned.data.get("lines") or [" ".join(c) for c in planned.commands]
                lines += [f"    {line}" for line in body[:PREVIEW_LINES]]
                if len(body) > PREVIEW_LINES:
                    lines.append(f"    ... and {len(body) - PREVIEW_LINES} more (--dry-run lists them all)")
        return lines

    def _confirm(self, preview: list[str]) -> None:
        import typer

        if not preview:
            return
        # On stderr, the terminal's too: with --json, stdout carries the one JSON object and nothing else.
        typer.echo("gpuprep seal will remove:", err=True)
        for line in preview:
            typer.echo(f"  {line}", err=True)
        if not typer.confirm("Go ahead?", default=False, err=True):
            raise StepFailed("aborted, nothing removed", "run again and answer yes, or pass --yes")


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
        DeepCleanStep(),
        StampStep(),
    ]
