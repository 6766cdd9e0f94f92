"""install's fabric-manager step: on NVSwitch types, enable nvidia-fabricmanager where it is installed.

Without it running, the fabric never trains and every CUDA program fails with 802 (docs/domain.md, "The fabric").
gpuprep does not install it (its version must be the driver's, from NVIDIA's repository: doctor's
gpu-fabric-manager names the package); it makes an installed one start at every boot, and on the running system
starts it and waits, bounded, for the fabric, so gpu-check's CUDA proof that follows meets a trained fabric (starting
it from cloud-init without waiting races the first jobs: pytorch/ci-infra PR 552).
"""

from __future__ import annotations

from dataclasses import dataclass

from gpuprep.ec2.imds import read_instance_type
from gpuprep.gpu import fabric
from gpuprep.gpu.fabric_checks import FABRIC_WAIT_S, SERVICE, UNIT, WANTS_LINK, nvswitch_host, settle, unit_file
from gpuprep.gpu.query import NVML_DEADLINE_S
from gpuprep.runner.needs import Systemd
from gpuprep.runner.steps import Applied, Change, Context, Converged, Skip, Step
from gpuprep.services import Services


@dataclass
class _FabricPlan:
    """The fabric-manager step's plan: enable the unit for the next boot; start it and wait for the fabric."""

    enable: bool
    start: bool


class FabricManagerStep(Step[_FabricPlan]):
    id = "fabric-manager"
    title = ("NVSwitch types (p4d, p5, p6, ...): enable nvidia-fabricmanager where it is installed, and start it and "
             "wait for the fabric on the running system")
    needs = (Systemd("nvidia-fabricmanager is a systemd unit"),)

    def plan(self, ctx: Context) -> Change[_FabricPlan] | Converged:
        host = nvswitch_host(ctx.host, read_instance_type(ctx.host))
        if isinstance(host, str):
            raise Skip(host)
        if unit_file(ctx.host, UNIT) is None:
            raise Skip(f"{host.label}: nvidia-fabricmanager is not installed (install it at the driver's version "
                       "from NVIDIA's repository; `gpuprep doctor` check gpu-fabric-manager names the package)")
        services = Services(ctx.host, ctx.platform)
        enable = not ctx.host.lexists(WANTS_LINK)
        start = ctx.host.live and not services.state(SERVICE).running
        data = {"host": host.label, "enable": enable, "start": start}
        if not enable and not start:
            return Converged(f"{host.label}: nvidia-fabricmanager enabled" + (" and running" if ctx.host.live else ""),
                             data=data)
        commands = ([services.argv("enable", SERVICE)] if enable else []) + \
            ([services.argv("start", SERVICE)] if start else [])
        words = " and ".join(w for w, on in (("enable", enable), ("start", start)) if on)
        return Change(f"{host.label}: {words} nvidia-fabricmanager (CUDA fails with 802 until the NVSwitch fabric "
                      "it trains is up)" + (f"; then wait up to {FABRIC_WAIT_S:g}s for the fabric" if start else ""),
                      commands=commands, data=data, payload=_FabricPlan(enable, start))

    def apply(self, ctx: Context, change: Change[_FabricPlan]) -> Applied:
        enable, start = change.payload.enable, change.payload.start
        services = Services(ctx.host, ctx.platform)
        if enable:
            services.enable(SERVICE)
        if not start:
            return Applied()
        services.start(SERVICE)
        view = settle(fabric.query_fabric(), NVML_DEADLINE_S)
        states = sorted({g.state for g in view.gpus})
        return Applied(f"nvidia-fabricmanager started; fabric {', '.join(states) or 'state unknown'} after "
                       f"{view.waited_s:g}s", data={**change.data, "fabric_states": states,
                                                    "waited_s": view.waited_s})
