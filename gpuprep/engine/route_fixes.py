"""The fixes of a GPU container route that failed, as values (gpuprep/fixes.py): built for this platform and target
from the link the probe (``engine/gpu_container.py``) found broken and the Engine's own message.

The probe's ``hint`` text stays what install's gpu-check step says; doctor's checks (gpu-container,
toolkit-gpu-routes) build their fixes here, where the host and its platform are known. A fix another check gives
for the same cause (the runtime not registered, not the default) is that check's, named by ``cause``.
"""

from __future__ import annotations

from gpuprep import fixes
from gpuprep.engine import gpu_container as gc
from gpuprep.engine.cdi import spec_fixes
from gpuprep.engine.gpu_container import CDI_ROUTE, ProbeResult
from gpuprep.engine.probe_run import OUTPUT_LOST
from gpuprep.gpu.inventory import persistence_fixes
from gpuprep.host import Host
from gpuprep.runner.checks import Probes

RUNTIME_CONFIG = "/etc/nvidia-container-runtime/config.toml"


def docker_pull(host: Host, image: str, why: str) -> fixes.Fix:
    """``image`` pulled into the Engine's store (a container check runs on the live Engine)."""
    return fixes.Fix(why, fixes.as_user(host, ["docker", "pull", image]))


def _restart_docker(probes: Probes, why: str) -> list[fixes.Fix]:
    fix = fixes.service(probes.host, probes.platform, "restart", probes.platform.docker_service, why)
    return [fix] if fix is not None else []


def _toolkit_install(probes: Probes, why: str) -> list[fixes.Fix]:
    """The NVIDIA container toolkit installed whole: gpuprep's packages step where install runs, else the package."""
    host, p = probes.host, probes.platform
    step = fixes.gpuprep(host, p, why, "install", "--only", "packages")
    return [step or fixes.packages(host, p, "install", ("nvidia-container-toolkit",), why)]


def cdi_on_fixes(probes: Probes, restart_only: bool) -> list[fixes.Fix]:
    """Docker's CDI turned on: daemon.json's features.cdi and a dockerd restart (SIGHUP does not turn CDI on), or
    where daemon.json has it already (``restart_only``), the restart."""
    from gpuprep.engine.checks import runtime_fixes

    if restart_only:
        why = "dockerd has not taken up features.cdi from daemon.json: restart it"
        step = fixes.gpuprep(probes.host, probes.platform, why, "install", "--only", "docker-reload")
        return [step] if step is not None else _restart_docker(probes, why)
    return runtime_fixes(probes, "turn Docker's CDI on (features.cdi in daemon.json) and restart dockerd",
                         "--docker-cdi", ctk=None)


def route_fixes(probes: Probes, result: ProbeResult, *, cdi_restart: bool = False) -> list[fixes.Fix]:
    """What clears ``result``'s broken link. ``cdi_restart``: daemon.json turns Docker's CDI on and the running
    dockerd has not taken it up (gpu_routes.Routes.cdi_hint)."""
    host, p = probes.host, probes.platform
    link, message = result.link, result.output
    if link == gc.CDI_OFF:
        return cdi_on_fixes(probes, cdi_restart)
    if link in (gc.CDI_UNRESOLVABLE, gc.CDI_INJECTION, gc.CDI_NO_SMI):
        return spec_fixes(host, p, "write this host's CDI spec anew for its driver and devices (NVIDIA's generator "
                          "mounts the driver's tools; a stale copy in /etc/cdi is toolkit-cdi-specs' finding)")
    if link == gc.RUNTIME_INJECT:
        if "unresolvable CDI devices" in message or gc._stale_mount(message):
            return spec_fixes(host, p, "write this host's CDI spec anew: the nvidia runtime (cdi mode) reads it")
        if 'exec: "nvidia-container-cli"' in message:
            return _toolkit_install(probes, "install the toolkit whole, libnvidia-container-tools with it")
        return [fixes.edit_by_hand(str(host.path(RUNTIME_CONFIG)), "turn on the runtime's `debug` log to see why; "
                                   "doctor's toolkit-stack and toolkit-cdi-specs say what is installed")]
    if link == gc.GPUS:
        if result.route == CDI_ROUTE:
            return spec_fixes(host, p, "the CDI spec lists other GPUs than the host has: write it anew")
        return [fixes.Fix("compare with the GPUs the host lists: every GPU's /dev/nvidiaN must exist, and "
                          "NVIDIA_VISIBLE_DEVICES in the runtime's config must not narrow them",
                          fixes.as_user(host, ["nvidia-smi", "-L"])),
                *_restart_docker(probes, "then restart docker")]
    if link == gc.GPUS_UNSERVED:
        return [*_toolkit_install(probes, "Docker serves --gpus through nvidia-container-runtime-hook on dockerd's "
                                          "PATH: install the toolkit, which ships it"),
                *_restart_docker(probes, "restart docker after installing it")]
    if link == gc.NO_SMI:
        return [fixes.Fix("see what the toolkit's hook finds of the driver: its nvidia-smi must be on the host",
                          fixes.as_user(host, ["nvidia-container-cli", "info"]))]
    if link == gc.TIMEOUT:
        return [fixes.kernel_log(host, "a GPU call is hanging: look for Xid lines in the kernel log"),
                *persistence_fixes(probes)]
    if link == OUTPUT_LOST:
        again = fixes.gpuprep(host, p, "prove it again once the host is less loaded (`uptime` shows the load)",
                              "doctor", "--image", result.image)
        return [again] if again is not None else []
    if link == gc.DRIVER:
        return [fixes.Fix("make the driver work on the host first: nvidia-smi must list the GPUs (gpu-driver and "
                          "gpu-kernel-module say why not)", fixes.as_user(host, ["nvidia-smi"]))]
    if link == gc.RUNTIME_BINARY:
        return _toolkit_install(probes, "install the NVIDIA container runtime")
    if link == gc.IMAGE:
        return [docker_pull(host, result.image, "pre-load the image where its registry can be reached"),
                fixes.Fix("or prove the route with a local image: gpuprep doctor --image IMAGE (docker images lists "
                          "them)")]
    return [fixes.service_log(host, p, p.docker_service, "dockerd's log says why")]
