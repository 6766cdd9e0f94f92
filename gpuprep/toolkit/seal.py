"""seal's toolkit step, ``toolkit-state``: nothing of this machine's GPUs or containers in the image.

- CDI specs under ``/etc/cdi`` that name this machine's GPUs by UUID: ``nvidia-ctk cdi generate`` names devices by
  index and by UUID (NVIDIA/nvidia-container-toolkit ``cmd/nvidia-ctk/cdi/generate``; issues 1239, 1828), so a spec
  written to ``/etc/cdi`` on the build machine sends ``nvidia.com/gpu=GPU-<build machine's>`` requests nowhere on
  every instance. Where this machine's UUIDs are unknown (--root, no NVML) any spec naming a GPU UUID goes: in
  an image it can only be some build machine's. ``/var/run/cdi`` is a tmpfs, never in an image. ``--keep-cdi``
  keeps them.
- The runtime's debug log, ``/var/log/ecs/nvidia-container-runtime.log`` on the AL2023 ECS GPU AMI
  (aws/amazon-ecs-ami ``scripts/al2023/gpu/enable-ecs-agent-gpu-support-al2023.sh``), or wherever config.toml's
  ``debug`` points: emptied (truncated, as logrotate's copytruncate leaves it), so the image carries no build
  machine's container starts.

A step of its own (a new id, docs/contract.md): gpu-info's meaning is ecs-init's file, and these are the
toolkit's.
"""

from __future__ import annotations

from gpuprep.image.tree import FileStep, Item, truncate_items
from gpuprep.runner.steps import Context
from gpuprep.toolkit import cdi
from gpuprep.toolkit.config import read

DEBUG_LOG = "/var/log/ecs/nvidia-container-runtime.log"


def _this_machines_uuids(ctx: Context) -> list[str] | None:
    if not ctx.host.live:
        return None
    from gpuprep.gpu.view import host_gpus

    view = host_gpus(ctx.host)
    return view.uuids if view is not None else None


class ToolkitStateStep(FileStep):
    id = "toolkit-state"
    title = ("CDI specs in /etc/cdi naming this machine's GPUs (unless --keep-cdi); the NVIDIA runtime's debug log "
             "emptied")
    what = "toolkit state"

    def items(self, ctx: Context) -> list[Item]:
        host = ctx.host
        items: list[Item] = []
        if not ctx.seal_options.keep_cdi:
            uuids = _this_machines_uuids(ctx)
            for spec in cdi.find(host, ["/etc/cdi"]):
                named = spec.uuid_devices
                if named and (uuids is None or any(u in uuids for u in named)):
                    items.append(Item("remove", spec.path, "file", "/etc/cdi"))
        try:
            configured = read(host).debug_log
        except Exception:  # a config.toml doctor calls broken: the AMI's own path is still emptied
            configured = None
        logs = dict.fromkeys([DEBUG_LOG, *([configured] if configured and configured.startswith("/") else [])])
        return items + truncate_items(host, logs)

    def nothing(self, ctx: Context) -> str:
        return "no CDI spec in /etc/cdi names this machine's GPUs; the runtime's debug log is empty"
