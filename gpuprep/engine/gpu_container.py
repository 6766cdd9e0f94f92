"""The one GPU container probe: ``gpu-check`` (install) and doctor's container check both call ``probe_routes``.

A route is a way a container gets the GPUs; each configured one is proven:

- ``default-runtime``: what the seed did by hand (``docker run --rm nvidia/cuda nvidia-smi``), the way ECS runs a
  GPU task: no ``--runtime`` argument (so ``nvidia`` must be the default runtime), and
  ``NVIDIA_VISIBLE_DEVICES=all`` (the variable the NVIDIA runtime acts on; the ECS agent sets it).
- ``cdi``: where Docker's own CDI is on (``features.cdi``, or by default from the Engine the knowledge table
  ``docker-cdi`` names, moby/moby PR 49963), a CDI device
  request as ``docker run --device nvidia.com/gpu=all`` makes it: docker-py's
  ``DeviceRequest(driver="cdi", device_ids=["nvidia.com/gpu=all"])`` (device requests need API 1.40; the
  Engine's ``cdi`` driver exists from 25, API 1.44) with runtime ``runc``, so the spec alone gives the GPUs.

The GPUs seen inside are compared with the host's, for each route. A failure names the route and the link of
the chain that broke: Engine, image, runtime registration, runtime binary, default runtime, Docker's CDI, the
CDI spec, driver, or the GPU set (or ``output-lost``: dockerd dropped what nvidia-smi printed, twice; see
``engine/probe_run.py``). ``probe(host, image, route=...)`` proves one route (what a script drives).
"""

from __future__ import annotations

import logging
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from gpuprep.engine import probe_run
from gpuprep.engine.probe_run import OUTPUT_LOST
from gpuprep.gpu.view import HostGpus, host_gpus
from gpuprep.host import Host
from gpuprep.poll import poll_until

if TYPE_CHECKING:
    from docker import APIClient

log = logging.getLogger("gpuprep")

QUERY = ["nvidia-smi", "--query-gpu=index,uuid,name,driver_version", "--format=csv,noheader"]
ENVIRONMENT = {"NVIDIA_VISIBLE_DEVICES": "all", "NVIDIA_DRIVER_CAPABILITIES": "utility"}
RUN_TIMEOUT = 120.0  # without persistence mode GPU init alone can take 25 s (NVIDIA/nvidia-docker 1279)
PULL_ATTEMPTS = 3
# A pull is bounded twice: the client's socket timeout ends a stream that goes silent (RUN_TIMEOUT), and
# this deadline ends one that trickles. 30 minutes fits a multi-GB CUDA image on a slow link.
PULL_DEADLINE = 1800.0


# Links of the chain, in the order a container meets them.
ENGINE, IMAGE, RUNTIME_MISSING, RUNTIME_BINARY, NOT_DEFAULT, NO_SMI, DRIVER, GPUS, TIMEOUT = (
    "engine", "image", "runtime-missing", "runtime-binary", "runtime-not-default", "runtime-no-nvidia-smi",
    "driver", "gpus", "timeout")
# ... the nvidia runtime ran but could not give the container the GPUs (its spec edit or hook failed) ...
RUNTIME_INJECT = "runtime-inject"
# ... and the CDI route's own: Docker's CDI off, the device in no spec, a spec that does not fit the host, a spec
# that puts no nvidia-smi into the container.
CDI_OFF, CDI_UNRESOLVABLE, CDI_INJECTION, CDI_NO_SMI = "cdi-off", "cdi-unresolvable", "cdi-injection", \
    "cdi-no-nvidia-smi"

# The routes, in the order they are proven.
DEFAULT_ROUTE, CDI_ROUTE = "default-runtime", "cdi"
# `docker run --gpus all`: a device request Docker serves with the prestart hook (nvidia-container-runtime-hook on
# dockerd's PATH), or from the static CDI spec first on 29.2+ with nvidia-cdi-hook (issue 28; docs/domain.md).
GPUS_ROUTE = "gpus"
ROUTES = (DEFAULT_ROUTE, CDI_ROUTE, GPUS_ROUTE)
CDI_DEVICE = "nvidia.com/gpu=all"
CDI_RUNTIME = "runc"  # the spec alone must give the GPUs: not the nvidia runtime, whatever the default is
ROUTE_WORDS = {DEFAULT_ROUTE: "without --runtime", CDI_ROUTE: f"through CDI ({CDI_DEVICE}, runtime {CDI_RUNTIME})",
               GPUS_ROUTE: "with --gpus all"}


def route_took(route: str, seconds: float) -> str:
    """"without --runtime (0.31s)", "through CDI (nvidia.com/gpu=all, runtime runc; 0.24s)"."""
    words = ROUTE_WORDS[route]
    return f"{words[:-1]}; {seconds:.2f}s)" if words.endswith(")") else f"{words} ({seconds:.2f}s)"


@dataclass
class ContainerGpu:
    index: int
    uuid: str
    name: str
    driver_version: str


@dataclass
class ProbeResult:
    ok: bool
    link: str  # "ok", or the link that broke
    summary: str
    hint: str = ""
    image: str = ""
    route: str = DEFAULT_ROUTE
    seconds: float = 0.0  # the container's run, create to removal, without a pull
    pull_seconds: float = 0.0
    gpus: list[ContainerGpu] = field(default_factory=list)
    host_uuids: list[str] | None = None
    output: str = ""
    exit_code: int | None = None

    @property
    def uuids(self) -> list[str]:
        return [g.uuid for g in self.gpus]

    @property
    def image_unavailable(self) -> bool:
        return self.link == IMAGE

    def route_data(self) -> dict[str, Any]:
        """This route's line of ``data.routes``."""
        return {"route": self.route, "ok": self.ok, "link": self.link, "uuids": self.uuids,
                "seconds": round(self.seconds, 3), "summary": self.summary,
                **({"hint": self.hint, "exit_code": self.exit_code} if not self.ok else {})}

    def as_data(self) -> dict[str, Any]:
        return {
            "route": self.route,
            "link": self.link,
            "image": self.image,
            "seconds": round(self.seconds, 3),
            "pull_seconds": round(self.pull_seconds, 3),
            "gpus": [asdict(g) for g in self.gpus],
            "uuids": self.uuids,
            "host_uuids": self.host_uuids,
            "exit_code": self.exit_code,
            **({"output": self.output[-2000:]} if not self.ok else {}),
        }


# -- parsing ----------------------------------------------------------------------------------
def parse_query(text: str) -> list[ContainerGpu]:
    """Rows of ``nvidia-smi --query-gpu=index,uuid,name,driver_version --format=csv,noheader``, run in the container.

    >>> gpus = parse_query('''0, GPU-5a1c2f4e-0b7d-3e8a-9c61-2f0d4b7e8a10, NVIDIA H100 80GB HBM3, 580.95.05
    ... 1, MIG-1f2e3d4c-5b6a-7988-0a1b-2c3d4e5f6a7b, NVIDIA A100-SXM4-40GB MIG 1g.5gb, 580.95.05
    ... No devices were found''')
    >>> [(g.index, g.uuid[:4], g.name, g.driver_version) for g in gpus]
    [(0, 'GPU-', 'NVIDIA H100 80GB HBM3', '580.95.05'), (1, 'MIG-', 'NVIDIA A100-SXM4-40GB MIG 1g.5gb', '580.95.05')]
    """
    gpus = []
    for line in text.splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) >= 4 and parts[0].isdigit() and parts[1].startswith(("GPU-", "MIG-")):
            # A GPU name never has a comma; the driver version is last.
            gpus.append(ContainerGpu(int(parts[0]), parts[1], ", ".join(parts[2:-1]), parts[-1]))
    return gpus


# What NVIDIA's runtime says when it ran and could not give the container the GPUs (NVIDIA/nvidia-container-toolkit,
# seen with 1.17.8, 1.18.0 and 1.20.0 on Engines 20.10 to 28.5, docs/testbed.md 12): the driver's NVML is not there
# (jit-cdi: "failed to initialize NVML: ERROR_LIBRARY_NOT_FOUND" from 1.20; 1.18 only says its own automatic device
# is "unresolvable CDI devices runtime.nvidia.com/gpu=all", toolkit issue 1537; legacy: nvidia-container-cli's "load
# library failed: libnvidia-ml.so.1"), or the edit failed another way ("could not apply required modification to OCI
# specification", a hook that failed, legacy mode's nvidia-container-cli missing).
_NO_NVML = ("failed to initialize NVML", "load library failed: libnvidia-ml.so", "ERROR_LIBRARY_NOT_FOUND",
            "unresolvable CDI devices runtime.nvidia.com/")
_RUNTIME_EDIT = ("could not apply required modification to OCI specification", "nvidia-container-cli",
                 "error running hook", "failed to create the automatic CDI modifier")
# What runc says when a CDI spec mounts a file this host does not have (the spec written for another driver: its
# libraries' version suffix); seen on an H100 with toolkit 1.20.0, tests/fixtures/real-gpu/2026-12-08-speed.
_STALE_MOUNT = ('error mounting "', "no such file or directory")
# The wrappers runc and containerd put in front of the cause ("failed to create task for container: failed to create
# shim task: OCI runtime create failed: runc create failed: unable to start container process: ...").
_WRAPPERS = ("error during container init: ", "Error response from daemon: ")


def _stale_mount(message: str) -> bool:
    return all(s in message for s in _STALE_MOUNT)


def engine_detail(message: str, limit: int = 300) -> str:
    """The Engine's error as a user reads it: its last line from the cause on (the wrappers dropped), cut at a word.

    >>> engine_detail('docker: Error response from daemon: failed to create task for container: runc create failed: '
    ...               'error during container init: error mounting "/usr/lib/libEGL.so.9": no such file or directory')
    'error mounting "/usr/lib/libEGL.so.9": no such file or directory'
    """
    line = message.strip().splitlines()[-1] if message.strip() else ""
    for marker in _WRAPPERS:
        if marker in line:
            line = line.rsplit(marker, 1)[1]
            break
    return line if len(line) <= limit else line[:limit].rsplit(" ", 1)[0] + " ..."


def classify_start_error(message: str, runtime_name: str = "nvidia") -> str:
    """Which link an Engine error names (create/start fail before nvidia-smi runs)."""
    m = message
    if "Unknown runtime specified" in m or "unknown or invalid runtime name" in m:
        return RUNTIME_MISSING
    if any(s in m for s in _NO_NVML):
        return DRIVER
    if any(s in m for s in _RUNTIME_EDIT) or _stale_mount(m):
        return RUNTIME_INJECT
    if 'exec: "nvidia-smi"' in m or "nvidia-smi: no such file" in m:
        return NOT_DEFAULT  # refined by ``explain`` with docker info
    if "fork/exec" in m or "executable file not found" in m or "permission denied" in m:
        return RUNTIME_BINARY
    if "could not select device driver" in m:
        return RUNTIME_MISSING
    return RUNTIME_BINARY if "OCI runtime" in m else "engine"


def _explain(link: str, message: str, info: dict[str, Any] | None, image: str) -> tuple[str, str, str]:
    """(link, summary, hint) for a container that did not start."""
    runtimes = (info or {}).get("Runtimes") or {}
    default = (info or {}).get("DefaultRuntime") or "?"
    detail = engine_detail(message)
    if link == NOT_DEFAULT:
        if "nvidia" not in runtimes:
            return (RUNTIME_MISSING, f"runtime nvidia is not registered with dockerd: {detail}",
                    "run `gpuprep install --only docker-runtime,docker-reload` (or add runtimes.nvidia to "
                    "/etc/docker/daemon.json and restart docker)")
        if default != "nvidia":
            return (NOT_DEFAULT, f"nvidia is not Docker's default runtime (it is {default}): {detail}",
                    'set "default-runtime": "nvidia" in /etc/docker/daemon.json and reload docker '
                    "(`gpuprep install --only docker-runtime,docker-reload` does both)")
        return (NO_SMI, f"the nvidia runtime ran but put no nvidia-smi into {image}: {detail}",
                "check the NVIDIA container toolkit's hook (`nvidia-container-cli info`) and that the "
                "driver's nvidia-smi is installed on the host")
    if link == RUNTIME_MISSING:
        return (RUNTIME_MISSING, f"dockerd does not know the runtime it was asked for: {detail}",
                "register it: `gpuprep install --only docker-runtime,docker-reload`")
    if link == DRIVER:
        return (DRIVER, f"the nvidia runtime could not reach the NVIDIA driver (NVML): {detail}",
                "make the driver work on the host first: `nvidia-smi` must list the GPUs (exit 9: `modprobe nvidia`, "
                "or reinstall the driver for this kernel)")
    if link == RUNTIME_INJECT:
        return _explain_runtime_edit(message, detail)
    if link == RUNTIME_BINARY:
        path = (runtimes.get(default) or {}).get("path", "?")
        return (RUNTIME_BINARY, f"the {default} runtime's binary ({path}) cannot be run: {detail}",
                "install the NVIDIA container runtime (`gpuprep install --only packages`) or fix runtimes."
                f"{default}.path in /etc/docker/daemon.json, then reload docker")
    return ("engine", f"dockerd could not run the container: {detail}",
            "see dockerd's log (`journalctl -u docker -n 50`)")


def _explain_runtime_edit(message: str, detail: str) -> tuple[str, str, str]:
    """(link, summary, hint) where NVIDIA's runtime ran and could not give the container the GPUs."""
    from gpuprep.engine.cdi import GENERATED_SPEC

    if "unresolvable CDI devices" in message:  # cdi mode: no spec file defines what NVIDIA_VISIBLE_DEVICES asks
        return (RUNTIME_INJECT, f"the nvidia runtime (cdi mode) finds no CDI spec for the GPUs: {detail}",
                f"write this host's spec: `nvidia-ctk cdi generate --output={GENERATED_SPEC}` (or `gpuprep install "
                "--only cdi-spec`, which also keeps it written at boot)")
    if _stale_mount(message):
        return (RUNTIME_INJECT, f"the nvidia runtime mounts a file its CDI spec names and this host does not have (a "
                f"spec written for another driver): {detail}",
                f"write this host's spec anew: `nvidia-ctk cdi generate --output={GENERATED_SPEC}` (`gpuprep doctor` "
                "check toolkit-cdi-specs names the stale file)")
    if 'exec: "nvidia-container-cli"' in message:  # legacy mode: libnvidia-container-tools is gone
        return (RUNTIME_INJECT, f"the nvidia runtime (legacy mode) cannot run nvidia-container-cli: {detail}",
                "install the toolkit whole, libnvidia-container-tools with it: `gpuprep install --only packages`")
    return (RUNTIME_INJECT, f"the nvidia runtime could not give the container the GPUs: {detail}",
            "see `gpuprep doctor`'s toolkit checks (toolkit-stack, toolkit-cdi-specs) and the runtime's log (`debug` "
            "in /etc/nvidia-container-runtime/config.toml)")


def classify_cdi_error(message: str) -> str:
    """Which link of the CDI route an Engine error names (the texts of Engine 26's CDI, moby daemon/cdi.go and
    the CDI library, seen here)."""
    if 'could not select device driver "cdi"' in message:
        return CDI_OFF
    if "unresolvable CDI devices" in message:
        return CDI_UNRESOLVABLE
    if "CDI device injection failed" in message or "CDI device" in message or _stale_mount(message):
        return CDI_INJECTION
    if 'exec: "nvidia-smi"' in message or "nvidia-smi: no such file" in message:
        return CDI_NO_SMI
    return ENGINE


def _explain_cdi(link: str, message: str, info: dict[str, Any] | None, image: str, cdi_hint: str
                 ) -> tuple[str, str, str]:
    """(link, summary, hint) for a CDI-route container that did not start."""
    from gpuprep.engine.cdi import GENERATED_SPEC

    detail = engine_detail(message)
    words = ROUTE_WORDS[CDI_ROUTE]
    generate = f"`nvidia-ctk cdi generate --output={GENERATED_SPEC}`"
    dirs = ", ".join((info or {}).get("CDISpecDirs") or []) or "/etc/cdi, /var/run/cdi"
    if link == CDI_OFF:
        from gpuprep.engine.cdi import cdi_opt_in_range, since_text

        return (CDI_OFF, f"{words}: Docker's CDI is off in the running Engine: {detail}", cdi_hint or
                "turn it on: `gpuprep install --docker-cdi --only docker-runtime,docker-reload` (features.cdi in "
                f"daemon.json, Engine {cdi_opt_in_range()}; on by default from {since_text('cdi-default')})")
    if link == CDI_UNRESOLVABLE:
        return (CDI_UNRESOLVABLE, f"{words}: no CDI spec in {dirs} defines {CDI_DEVICE}: {detail}",
                f"write this host's spec: {generate} (or `gpuprep install --only cdi-spec`, which also keeps it "
                "written at boot)")
    if link == CDI_INJECTION:
        return (CDI_INJECTION, f"{words}: the CDI spec does not fit this host: {detail}",
                f"write it anew for this host's driver and devices: {generate} (`gpuprep doctor` check "
                "toolkit-cdi-specs names the stale file; remove a stale one in /etc/cdi)")
    if link == CDI_NO_SMI:
        return (CDI_NO_SMI, f"{words}: the CDI spec put no nvidia-smi into {image}: {detail}",
                f"write the spec with NVIDIA's generator, which mounts the driver's tools: {generate}")
    return (ENGINE, f"{words}: dockerd could not run the container: {detail}",
            "see dockerd's log (`journalctl -u docker -n 50`)")


# -- the probe ------------------------------------------------------------------------------
def probe(host: Host, image: str, *, route: str = DEFAULT_ROUTE, host_view: HostGpus | None | bool = True,
          pull: bool = True, progress: bool = False, timeout: float = RUN_TIMEOUT, cdi_hint: str = ""
          ) -> ProbeResult:
    """Run nvidia-smi in ``image`` through the Engine by ``route`` (``default-runtime``: as ECS would; ``cdi``:
    a CDI device request with runtime runc), and judge the result.

    ``host_view``: the host's GPUs to compare with; True asks ``host_gpus``; None/False compares nothing.
    ``pull``: pull a missing image (doctor --boot passes False: no network at boot).
    ``cdi_hint``: the fix for ``cdi-off`` where the caller knows better (daemon.json on, dockerd not restarted).
    """
    from concurrent.futures import ThreadPoolExecutor

    from gpuprep.engine.dockerd import EngineDown, engine_down_hint, engine_errors

    if route not in ROUTES:
        raise ValueError(f"unknown route {route!r} (one of {', '.join(ROUTES)})")
    with ThreadPoolExecutor(max_workers=1) as pool:
        # The host's view (NVML or nvidia-smi) is asked while the container runs: the probe then
        # costs what the container costs.
        asked = pool.submit(host_gpus, host) if host_view is True else None
        try:
            result = _run(host, image, route=route, pull=pull, progress=progress, timeout=timeout,
                          cdi_hint=cdi_hint)
        except engine_errors() as exc:
            down = EngineDown.said(host.docker_url, exc, engine_down_hint(host))
            return ProbeResult(False, ENGINE, down.message, down.hint, image, route)
        view = asked.result() if asked is not None else host_view
    view = view if isinstance(view, HostGpus) else None
    result.host_uuids = view.uuids if view is not None else None
    if result.ok and view is not None:
        _compare(result, view)
    return result


def _compare(result: ProbeResult, view: HostGpus) -> None:
    inside, host_side = result.uuids, view.uuids
    if sorted(inside) == sorted(host_side):
        return
    missing = [u for u in host_side if u not in inside]
    extra = [u for u in inside if u not in host_side]
    result.ok, result.link = False, GPUS
    parts = [f"the container sees {len(inside)} GPU(s), the host {len(host_side)}"]
    if missing:
        parts.append(f"missing inside: {', '.join(missing)}")
    if extra:
        parts.append(f"unknown to the host: {', '.join(extra)}")
    result.summary = (f"{ROUTE_WORDS[CDI_ROUTE]}: " if result.route == CDI_ROUTE else "") + "; ".join(parts)
    if result.route == CDI_ROUTE:
        from gpuprep.engine.cdi import GENERATED_SPEC

        # A spec names GPUs by index and UUID as they were when it was written (toolkit issues 1239, 1828).
        result.hint = (f"the CDI spec lists other GPUs than the host has: write it anew, `nvidia-ctk cdi generate "
                       f"--output={GENERATED_SPEC}`, and remove a stale copy in /etc/cdi")
        return
    result.hint = ("check NVIDIA_VISIBLE_DEVICES in the runtime's config and that every GPU's /dev/nvidiaN "
                   "exists (`ls /dev/nvidia*`; `nvidia-smi -L`); then restart docker")


def _run(host: Host, image: str, *, route: str, pull: bool, progress: bool, timeout: float, cdi_hint: str
         ) -> ProbeResult:
    import docker.errors

    # The probe's own timeout, not docker()'s few seconds for /info: a start may wait for GPU init.
    with host.docker_api(timeout) as api:
        pull_seconds = 0.0
        started = time.monotonic()
        try:
            cid = _create(api, image, route)
        except docker.errors.ImageNotFound:
            if not pull:
                return ProbeResult(False, IMAGE, f"image {image} is not present locally (not pulled: --boot)",
                                   f"pre-load it (`docker pull {image}` while building the image) or pass --image",
                                   image, route)
            pull_started = time.monotonic()
            failure = _pull(api, image, progress=progress)
            pull_seconds = time.monotonic() - pull_started
            if failure is not None:
                return ProbeResult(False, IMAGE, f"image {image} is missing and cannot be pulled: {failure}",
                                   f"pre-load the image (`docker load -i FILE`, or `docker pull {image}` where a "
                                   "registry is reachable) or pass --image with one present locally (`docker images`)",
                                   image, route, pull_seconds=pull_seconds)
            started = time.monotonic()
            cid = _create(api, image, route)
        return probe_run.collect(
            host, cid, started,
            lambda c, t: _start_and_collect(host, api, c, image, route, timeout, t, pull_seconds, cdi_hint),
            lambda r: r.link == OUTPUT_LOST, lambda: _create(api, image, route), timeout)


GPUS_UNSERVED = "gpus-unserved"


def _explain_gpus(message: str) -> tuple[str, str, str]:
    """(link, summary, hint) for a ``--gpus all`` container that did not start."""
    from gpuprep.engine.cdi import GENERATED_SPEC

    detail = engine_detail(message)
    return (GPUS_UNSERVED, f"{ROUTE_WORDS[GPUS_ROUTE]}: dockerd could not run it: {detail}",
            "Docker serves --gpus through nvidia-container-runtime-hook on dockerd's PATH (the toolkit's "
            "`nvidia-container-toolkit` package ships it; restart docker after installing it), or on Docker 29.2+ "
            "with nvidia-cdi-hook from the CDI spec: write it anew, "
            f"`nvidia-ctk cdi generate --output={GENERATED_SPEC}`")


def run_argv(image: str, route: str) -> list[str]:
    """The ``docker run`` a route's container is the same as (what a dry run lists)."""
    if route == GPUS_ROUTE:
        return ["docker", "run", "--rm", "--network", "none", "--gpus", "all", image, *QUERY]
    if route == CDI_ROUTE:
        return ["docker", "run", "--rm", "--network", "none", "--runtime", CDI_RUNTIME, "--device", CDI_DEVICE,
                image, *QUERY]
    env = [a for k, v in ENVIRONMENT.items() for a in ("-e", f"{k}={v}")]
    return ["docker", "run", "--rm", "--network", "none", *env, image, *QUERY]


def _create(api: APIClient, image: str, route: str) -> str:
    labels = {"io.gpuprep.probe": "gpu-container", "io.gpuprep.route": route}
    if route == CDI_ROUTE:
        from docker.types import DeviceRequest

        host_config = api.create_host_config(network_mode="none", runtime=CDI_RUNTIME, device_requests=[
            DeviceRequest(driver="cdi", device_ids=[CDI_DEVICE])])
        return str(api.create_container(image, QUERY, host_config=host_config, labels=labels)["Id"])
    if route == GPUS_ROUTE:
        from docker.types import DeviceRequest

        host_config = api.create_host_config(network_mode="none", device_requests=[
            DeviceRequest(count=-1, capabilities=[["gpu"]])])
        return str(api.create_container(image, QUERY, host_config=host_config, labels=labels)["Id"])
    host_config = api.create_host_config(network_mode="none")
    return str(api.create_container(image, QUERY, environment=ENVIRONMENT, host_config=host_config,
                                    labels=labels)["Id"])


def _start_and_collect(host: Host, api: APIClient, cid: str, image: str, route: str, timeout: float, started: float,
                       pull_seconds: float, cdi_hint: str) -> ProbeResult:
    import docker.errors
    import requests

    try:
        api.start(cid)
    except docker.errors.APIError as exc:
        message = str(exc.explanation or exc)
        try:
            info = api.info()
        except Exception:  # diagnosis only; the start error is what we report
            info = None
        if route == CDI_ROUTE:
            link, summary, hint = _explain_cdi(classify_cdi_error(message), message, info, image, cdi_hint)
        elif route == GPUS_ROUTE:
            link, summary, hint = _explain_gpus(message)
        else:
            link, summary, hint = _explain(classify_start_error(message), message, info, image)
        return ProbeResult(False, link, summary, hint, image, route, time.monotonic() - started, pull_seconds,
                           output=message)
    words = ROUTE_WORDS[route]
    prefix = f"{words}: " if route != DEFAULT_ROUTE else ""
    try:
        # A float: docker-py hands it to requests (types-docker says int).
        status = api.wait(cid, timeout=timeout)  # type: ignore[arg-type]
    except (requests.exceptions.ReadTimeout, requests.exceptions.ConnectionError):
        return ProbeResult(False, TIMEOUT, f"{prefix}nvidia-smi in {image} did not finish within {timeout:g}s",
                           "a GPU call is hanging: look for XIDs (`dmesg | grep -i xid`) and enable persistence "
                           "mode (`nvidia-smi -pm 1`)", image, route, time.monotonic() - started, pull_seconds)
    code = int(status.get("StatusCode", -1))
    output = api.logs(cid, stdout=True, stderr=True).decode(errors="replace")
    seconds = time.monotonic() - started
    if code != 0:
        # nvidia-smi's exit codes are NVML's return codes (docs/domain.md): one table, gpu/query.py's.
        from gpuprep.gpu.query import NVML_CAUSES

        cause = NVML_CAUSES.get(code)
        last = output.strip().splitlines()[-1][:300] if output.strip() else ""
        return ProbeResult(False, DRIVER, f"{prefix}nvidia-smi in the container exited {code}"
                           + (f": {cause.summary}" if cause else "") + (f" ({last})" if last else ""),
                           cause.hint if cause else "check the driver on the host: `nvidia-smi` (exit 9: load it "
                           "with `modprobe nvidia` or reinstall the driver for this kernel)", image, route, seconds,
                           pull_seconds, output=output, exit_code=code)
    gpus = parse_query(output)
    if probe_run.output_lost(code, output):
        return ProbeResult(False, OUTPUT_LOST, f"{prefix}nvidia-smi in the container exited 0, but "
                           f"{probe_run.OUTPUT_LOST_WHY}", probe_run.OUTPUT_LOST_FIX, image, route, seconds,
                           pull_seconds, output=output, exit_code=code)
    if not gpus:
        return ProbeResult(False, DRIVER, f"{prefix}nvidia-smi in the container listed no GPU "
                           f"({output.strip()[:200]!r})", "check the host's `nvidia-smi -L` and the driver", image,
                           route, seconds, pull_seconds, output=output, exit_code=code)
    return ProbeResult(True, "ok", f"{len(gpus)} GPU(s) visible in {image} {route_took(route, seconds)}", "", image,
                       route, seconds, pull_seconds, gpus, output=output, exit_code=code)


def _pull(api: APIClient, image: str, *, progress: bool, deadline_s: float = PULL_DEADLINE) -> str | None:
    """Pull ``image`` with a bounded retry; None when done, else why it could not be pulled."""
    from docker.utils import parse_repository_tag

    repo, tag = parse_repository_tag(image)
    deadline = time.monotonic() + deadline_s

    def once() -> None:
        for event in api.pull(repo, tag=tag or "latest", stream=True, decode=True):
            if "error" in event:
                raise PullFailed(str(event["error"]))
            if progress:
                _show_progress(event)
            if time.monotonic() > deadline:
                raise PullFailed(f"still pulling after {deadline_s:g}s")
        if progress:
            sys.stderr.write("\n")

    def attempt() -> BaseException | None:
        try:
            once()
            return None
        except Exception as exc:  # what the Engine or the registry said; the last one is the answer
            return exc

    def again(failed: BaseException | None, tries: int) -> None:
        log.info("pulling %s failed (%s); trying again (%d of %d)", image, _pull_error(failed), tries + 1,
                 PULL_ATTEMPTS)

    log.info("pulling %s (up to %d attempts and %gs in all)", image, PULL_ATTEMPTS, deadline_s)
    cause = poll_until(attempt, lambda failed: failed is None, what=f"a pull of {image}", timeout_s=deadline_s,
                       interval_s=1.0, backoff=2.0, max_interval_s=8.0, tries=PULL_ATTEMPTS, level=logging.DEBUG,
                       on_miss=again).value
    return None if cause is None else _pull_error(cause)


def _pull_error(cause: BaseException | None) -> str:
    """What the Engine said about a pull, without docker-py's wrapping (``500 Server Error for
    http+docker://localhost/v1.41/images/create?...: Internal Server Error ("...")``, issue 26): its
    ``explanation``, the Engine's own message, first line."""
    text = str(getattr(cause, "explanation", None) or cause or "").strip().splitlines()
    return text[0][:300] if text else type(cause).__name__


class PullFailed(Exception):
    pass


def _show_progress(event: dict[str, Any]) -> None:
    line = " ".join(str(event[k]) for k in ("id", "status", "progress") if event.get(k))
    sys.stderr.write("\r\033[K" + line[:150])
    sys.stderr.flush()
