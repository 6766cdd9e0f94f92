"""CUDA proven inside a container, the way ECS starts one: install's gpu-check and doctor's ``container-cuda``.

The container is created as the default route's (``engine/gpu_container.py``): no ``--runtime`` (ECS relies on the
nvidia runtime being the default, or names it through ``ECS_NVIDIA_RUNTIME``), ``NVIDIA_VISIBLE_DEVICES=all`` and
``NVIDIA_DRIVER_CAPABILITIES=compute,utility``: without ``compute`` the runtime mounts no libcuda.so.1 and no PTX
JIT compiler into the container (NVIDIA/libnvidia-container, the driver capabilities), which is what a CUDA job
needs and nvidia-smi does not. The proof is ``gpu/cuda_proof.py``'s source given to the image's own ``python3 -c``
(it is standard-library only), so nothing is mounted and a remote Engine (DOCKER_HOST) works the same.

An image without python3 cannot run it: then the result says that CUDA in the container was not proven and why,
never a silent pass. Which images have python3: Amazon Linux 2023's container image (the default ``--image``,
public.ecr.aws/amazonlinux/amazonlinux:2023) does, for its dnf is Python (amazonlinux/amazon-linux-2023 issue 585);
``amazonlinux:2023-minimal`` (microdnf), NVIDIA's ``nvidia/cuda:*-base`` and ``-runtime`` images and
busybox/distroless images do not; ``python:*`` and PyTorch images do (docs/domain.md, "Images that can prove
CUDA").
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gpuprep.engine import probe_run
from gpuprep.engine.gpu_container import RUN_TIMEOUT
from gpuprep.gpu import cuda
from gpuprep.host import Host
from gpuprep.report import Status
from gpuprep.runner.checks import Check, NotApplicable, Probes, Verdict
from gpuprep.runner.needs import CONTAINERS, ENGINE

if TYPE_CHECKING:
    from docker import APIClient

log = logging.getLogger("gpuprep")

ENVIRONMENT = {"NVIDIA_VISIBLE_DEVICES": "all", "NVIDIA_DRIVER_CAPABILITIES": "compute,utility"}
MANY_GPUS = 16
PROVEN, FAILED, NOT_PROVEN = "proven", "failed", "not-proven"
# What the Engine says when the image has no python3 (runc: exec: "python3": executable file not found in $PATH).
NO_PYTHON = ('exec: "python3"', "python3: no such file", "python3: not found")
IMAGE_FIX = ("pass `--image` an image with python3 (the default public.ecr.aws/amazonlinux/amazonlinux:2023 has it, "
             "as do python:* and PyTorch images; nvidia/cuda base images do not)")


def command() -> list[str]:
    """``python3 -I -S -c <cuda_proof.py>``: the proof's own source, run by the image's interpreter (no site: the
    proof is standard library only, and an image's .pth files cost each start; gpu/cuda.py runs it so on the host)."""
    return ["python3", "-I", "-S", "-c", cuda.PROOF_FILE.read_text()]


def run_argv(image: str) -> list[str]:
    """The ``docker run`` this is the same as (what a dry run lists; the source shortened to its path)."""
    env = [a for k, v in ENVIRONMENT.items() for a in ("-e", f"{k}={v}")]
    return ["docker", "run", "--rm", "--network", "none", *env, image, "python3", "-I", "-S", "-c",
            f"\"$(cat {Path('gpuprep/gpu/cuda_proof.py')})\""]


@dataclass
class ContainerCuda:
    outcome: str  # PROVEN | FAILED | NOT_PROVEN
    summary: str
    hint: str = ""
    image: str = ""
    seconds: float = 0.0
    exit_code: int | None = None
    report: dict[str, Any] = field(default_factory=dict)
    output: str = ""
    started: bool = True  # False: the container did not start for a reason gpu-container reports
    output_lost: bool = False  # it exited 0 and dockerd gave back nothing it printed (engine/probe_run.py)
    early: bool = False  # the container doctor began at its start (start_early)

    @property
    def ok(self) -> bool:
        return self.outcome == PROVEN

    def as_data(self) -> dict[str, Any]:
        return {"outcome": self.outcome, "image": self.image, "seconds": round(self.seconds, 3),
                "exit_code": self.exit_code, "report": self.report, "early": self.early,
                **({"output": self.output[-2000:]} if self.outcome != PROVEN else {})}


LABELS = {"io.gpuprep.probe": "cuda"}
EARLY_ASK_S = 5.0  # the early start's image lookups and create: an Engine that answers does so in milliseconds
EARLY_JOIN_S = 15.0  # how long doctor's end waits for an early start under way before removing its container


class ImageMissing(Exception):
    """The Engine has no such image (create answered 404)."""


def _create(host: Host, image: str, timeout: float, ask: float | None = None) -> str:
    """Create the proof's container (``POST /containers/create``, as ``docker create`` does; the request bounded by
    ``ask``, else ``timeout``); its id. OSError when the Engine does not answer or refuses; ImageMissing when the
    image is not here (nothing is pulled)."""
    # The host's GPU count is not asked here: allow the most a cold init of every GPU may take (gpu/query.py).
    inner, _ = cuda.proof_timeouts(MANY_GPUS)
    env = {**ENVIRONMENT, "GPUPREP_CUDA_DEADLINE_S": f"{min(inner, timeout - 5):g}"}
    body = {"Image": image, "Cmd": command(), "Env": [f"{k}={v}" for k, v in env.items()], "Labels": LABELS,
            "HostConfig": {"NetworkMode": "none"}}
    answer = host.engine_get("/containers/create", ask or timeout, method="POST", data=body)
    if answer.status == 404:
        raise ImageMissing(image)
    if answer.status != 201:
        answer.json()  # a status other than 200 too: raises the Engine's message (an OSError)
    return str(json.loads(answer.body)["Id"])


class EarlyProof:
    """The proof's container, chosen, created and started on a thread of its own as soon as doctor's Host is made
    (``start_early``): the Engine's start, the runtime's CDI edits and the proof itself run while doctor imports its
    checks and reads the host, as the host's proof does (gpu/cuda.py ``PendingProof``); the CUDA container is the
    longest part of a live doctor (bench/RESULTS.md, 2026-12-08). Nothing of it waits in doctor's own thread: an
    Engine that does not answer delays no check. ``prove`` collects it; ``discard``, at doctor's end whatever ended
    it, removes what was not collected."""

    def __init__(self, host: Host, given: str | None, timeout: float) -> None:
        self.host, self.given, self.timeout = host, given, timeout
        self.started = time.monotonic()
        self.image: str | None = None  # the image container-cuda will choose, where it is present
        self.cid: str | None = None
        self.failed = ""
        self.collected = False
        self.abandoned = False  # doctor ended before the Engine answered the create
        self._thread = threading.Thread(target=self._start, name="gpuprep-early-cuda", daemon=True)
        self._thread.start()

    def _start(self) -> None:
        from gpuprep.engine.check_image import choose

        try:
            self.image = choose(self.host, self.given, timeout=EARLY_ASK_S).local
            if self.image is None:
                return  # nothing here to run it in: container-cuda says so
            self.cid = _create(self.host, self.image, self.timeout, ask=EARLY_ASK_S)
            if self.abandoned:
                probe_run.remove(self.host, self.cid, EARLY_JOIN_S)
                return
            answer = self.host.engine_get(f"/containers/{self.cid}/start", self.timeout, method="POST")
            if answer.status not in (204, 304):
                self.failed = f"{answer.status} {answer.reason}"
        except (OSError, ImageMissing, ValueError, KeyError) as exc:
            self.failed = str(exc) or type(exc).__name__
        if self.failed:
            log.debug("the early CUDA container did not start (%s): container-cuda runs its own", self.failed)

    def running(self, image: str) -> str | None:
        """The started container's id, once its start returned (bounded by the start's own timeout), where it runs
        ``image``; None where it did not start: ``prove`` then runs its own, whose error it reports."""
        self._thread.join(self.timeout)
        return None if self._thread.is_alive() or self.failed or self.image != image else self.cid

    def discard(self) -> None:
        """Remove the container unless ``prove`` collected it, and forget it. Where the Engine has not answered the
        create, nothing waits on it (the thread removes a container created after this)."""
        if _early.get(id(self.host)) is self:
            del _early[id(self.host)]
        self.abandoned = True
        if self.cid is None or self.collected:
            return
        if self._thread.is_alive():
            log.info("waiting up to %gs for the early CUDA container's start to return, to remove it", EARLY_JOIN_S)
            self._thread.join(EARLY_JOIN_S)
        probe_run.remove(self.host, self.cid, EARLY_JOIN_S)


_early: dict[int, EarlyProof] = {}  # by id(host): the container start_early began for that host's doctor


def start_early(host: Host, given: str | None, timeout: float = RUN_TIMEOUT) -> EarlyProof | None:
    """Begin the proof's container now, for container-cuda to collect, where that check will run it: an Engine to
    reach, no PCI scan without an NVIDIA GPU (the check's own conditions), the image it will choose present (it
    never pulls). The caller discards it when doctor ends."""
    from gpuprep.gpu.devices import read_pci

    if host.docker_url is None:
        return None
    pci = read_pci(host)
    if pci.present and not pci.gpus:
        return None
    early = _early[id(host)] = EarlyProof(host, given, timeout)
    return early


def prove(host: Host, image: str, *, timeout: float = RUN_TIMEOUT) -> ContainerCuda:
    """Run the CUDA proof in ``image`` by the default route (or collect the container ``start_early`` began for
    this host and image); never pulls (gpu-check and gpu-container pull)."""
    from gpuprep.engine.dockerd import EngineDown, engine_errors

    early = _early.get(id(host))
    early_cid = early.running(image) if early is not None else None
    started = early.started if early is not None and early_cid is not None else time.monotonic()
    try:
        with host.docker_api(timeout) as api:
            def create() -> str:
                return _create(host, image, timeout)

            def run(c: str, t: float) -> ContainerCuda:
                if c != early_cid:
                    return _start(api, c, image, timeout, t)
                result = _collect(api, c, image, timeout, t)
                result.early = True
                return result

            cid = early_cid
            if cid is None:
                try:
                    cid = create()
                except ImageMissing:
                    return ContainerCuda(NOT_PROVEN, f"CUDA in the container not proven: image {image} is not "
                                         "present locally", f"pre-load it (`docker pull {image}`) or pass --image",
                                         image, started=False)
            try:
                return probe_run.collect(host, cid, started, run, lambda r: r.output_lost, create, timeout)
            finally:
                if early is not None and early_cid is not None:
                    early.collected = True  # collect removed it: doctor's end has nothing left to remove
    except engine_errors() as exc:
        down = EngineDown.said(host.docker_url, exc, "")
        return ContainerCuda(NOT_PROVEN, f"CUDA in the container not proven: {down.message}",
                             image=image, started=False)


def _start(api: APIClient, cid: str, image: str, timeout: float, started: float) -> ContainerCuda:
    import docker.errors

    try:
        api.start(cid)
    except docker.errors.APIError as exc:
        message = str(exc.explanation or exc)
        if any(s in message for s in NO_PYTHON):
            return ContainerCuda(NOT_PROVEN, f"CUDA in the container not proven: {image} has no python3 to run the "
                                 "proof", IMAGE_FIX, image, time.monotonic() - started, output=message)
        from gpuprep.engine.gpu_container import engine_detail

        last = engine_detail(message)
        return ContainerCuda(NOT_PROVEN, f"CUDA in the container not proven: the container did not start ({last})",
                             "see gpu-container / gpu-check, which name the broken link", image,
                             time.monotonic() - started, output=message, started=False)
    return _collect(api, cid, image, timeout, started)


def _collect(api: APIClient, cid: str, image: str, timeout: float, started: float) -> ContainerCuda:
    """Wait for the started proof's container, bounded, and judge what it printed."""
    import requests

    try:
        # A float: docker-py hands it to requests (types-docker says int).
        status = api.wait(cid, timeout=timeout)  # type: ignore[arg-type]
    except (requests.exceptions.ReadTimeout, requests.exceptions.ConnectionError):
        cause = cuda.CUDA_CAUSES["TIMEOUT"]
        return ContainerCuda(FAILED, f"the CUDA proof in {image} did not finish within {timeout:g}s: "
                             f"{cause.summary}", cause.hint, image, time.monotonic() - started)
    code = int(status.get("StatusCode", -1))
    stdout = api.logs(cid, stdout=True, stderr=False).decode(errors="replace")
    stderr = api.logs(cid, stdout=False, stderr=True).decode(errors="replace")
    seconds = time.monotonic() - started
    report = cuda.parse_report(stdout)
    if report is None and probe_run.output_lost(code, stdout):
        return ContainerCuda(NOT_PROVEN, f"CUDA in the container not proven: the proof in {image} exited 0, but "
                             f"{probe_run.OUTPUT_LOST_WHY}", probe_run.OUTPUT_LOST_FIX, image, seconds, code,
                             output=stderr, output_lost=True)
    if report is None:
        said = (stderr or stdout).strip().splitlines()
        last = said[-1][:300] if said else f"exit {code}"
        if code in (126, 127) or any(s in stderr for s in NO_PYTHON):
            return ContainerCuda(NOT_PROVEN, f"CUDA in the container not proven: {image} has no python3 to run the "
                                 f"proof ({last})", IMAGE_FIX, image, seconds, code, output=stderr)
        return ContainerCuda(NOT_PROVEN, f"CUDA in the container not proven: {image}'s python3 could not run the "
                             f"proof ({last}; it needs Python 3.7 or newer)", IMAGE_FIX, image, seconds, code,
                             output=stdout + stderr)
    proof = cuda.CudaProof(report, code, duration_ms=seconds * 1000)
    if proof.ok:
        n = len(report.get("devices", []))
        return ContainerCuda(PROVEN, f"CUDA works in {image} on {n} GPU{'' if n == 1 else 's'}: a PTX kernel ran on "
                             f"each and returned the expected value ({seconds:.2f}s)", "", image, seconds, code,
                             report)
    summary, hint = cuda.describe(proof, f"in {image} (no --runtime, NVIDIA_DRIVER_CAPABILITIES=compute,utility): ")
    return ContainerCuda(FAILED, summary, hint, image, seconds, code, report, output=stderr)


# -- doctor's check ----------------------------------------------------------------------------
def check_container_cuda(probes: Probes) -> Verdict:
    from gpuprep.engine.checks import ENGINE_FIRST
    from gpuprep.engine.dockerd import EngineDown
    from gpuprep.engine.probes import docker_info
    from gpuprep.gpu import inventory

    pci = inventory.probe_pci(probes)
    if pci.present and not pci.gpus:
        raise NotApplicable("no NVIDIA GPU on this host (see gpu-pci): no GPU for CUDA in a container")
    try:
        docker_info(probes)
    except EngineDown:
        raise NotApplicable(ENGINE_FIRST) from None
    from gpuprep.engine.check_image import image_choice

    choice = image_choice(probes)  # the image gpu-container uses; never pulled here
    result = prove(probes.host, choice.local or choice.image)
    data = result.as_data()
    if result.ok:
        return Verdict(Status.OK, result.summary, data=data)
    if result.outcome == FAILED:
        return Verdict(Status.CRITICAL, result.summary, result.hint, data)
    # Not proven (no python3 in the image, the image absent, a container gpu-container says cannot start): a skip
    # that says so and how to prove it, not a warning on every healthy host whose chosen image lacks python3.
    raise NotApplicable(result.summary + (f"; {result.hint}" if result.started and result.hint else ""))


CHECKS = [
    Check("container-cuda", "container", "a CUDA kernel runs on every GPU inside a container started as ECS starts "
          "one (NVIDIA_DRIVER_CAPABILITIES with compute; images with python3)", check_container_cuda,
          timeout=RUN_TIMEOUT + 10, needs=(CONTAINERS, ENGINE), boot=True),
]
