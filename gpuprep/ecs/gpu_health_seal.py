"""seal's step ``gpu-health-state`` (issue 28, item 9): nothing of the build machine's GPU health in the image.

The ECS agent's GPU health (branch ``feature/gpu-metrics`` of aws/amazon-ecs-agent, 2026-06; docs/domain.md): the
``dcgm-init`` binary writes ``/var/run/ecs/gpu-metrics.json`` every 60 s, which the agent maps to the
``ACCELERATED_COMPUTE`` instance health check; a copy baked into an image reports the build machine's GPUs as the
new instance's until dcgm-init first writes (doctor's ``ecs-gpu-health`` reads it). DCGM's host engine and dcgm-init
log to ``/var/log/ecs/nv-hostengine.log`` and ``/var/log/ecs/dcgm-init.log``: emptied, as toolkit-state empties the
runtime's log (truncated, as logrotate's copytruncate leaves a log, so a writer holding it open keeps writing).

A step of its own (a new id, docs/contract.md): gpu-info means ecs-init's file, toolkit-state the toolkit's.
"""

from __future__ import annotations

from gpuprep.ecs.agent_gpu import GPU_METRICS
from gpuprep.image.tree import FileStep, Item, remove_items, truncate_items
from gpuprep.runner.steps import Context

LOGS = ("/var/log/ecs/nv-hostengine.log", "/var/log/ecs/dcgm-init.log")


class GpuHealthStateStep(FileStep):
    id = "gpu-health-state"
    title = ("remove /var/run/ecs/gpu-metrics.json (dcgm-init's GPU health of this machine); empty the ECS-side "
             "logs of nv-hostengine and dcgm-init")
    what = "GPU health state"

    def items(self, ctx: Context) -> list[Item]:
        host = ctx.host
        return [i for i in remove_items(host, GPU_METRICS) if i.kind != "dir"] + truncate_items(host, LOGS)

    def nothing(self, ctx: Context) -> str:
        return f"no {GPU_METRICS} and no dcgm log to empty"
