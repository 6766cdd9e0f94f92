"""A probe container's life after its creation, shared by the GPU route probe (``engine/gpu_container.py``) and the
CUDA proof in a container (``engine/cuda_container.py``): collected, always removed, and run once more where the
Engine lost what it printed.

dockerd waits at most 2 s after a container's process exits for its output to be copied, then closes the
container's streams (moby/moby ``daemon/monitor.go``, ``handleContainerExit``: ``StreamConfig.Wait`` under a
2-second context, then ``Reset``); on a host too loaded to copy a few hundred bytes in that time the logs come back
empty although the program exited 0. Neither probe's program exits 0 without printing (nvidia-smi lists each GPU or
says why it lists none, "No devices were found"; the proof always prints its report), so an exit 0 with nothing
said is the Engine's loss, not the host's answer: the container is run once more, and a second loss is said as
such (``OUTPUT_LOST``), never as a broken driver.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Callable, TypeVar

if TYPE_CHECKING:
    from docker import APIClient

log = logging.getLogger("gpuprep")

R = TypeVar("R")

OUTPUT_LOST = "output-lost"
OUTPUT_LOST_WHY = ("dockerd gave back none of its output: it drops what it has not copied 2 s after a container "
                   "exits, and this host was that busy, twice")
OUTPUT_LOST_FIX = "run it again once the host is less loaded (`uptime` shows the load)"


def output_lost(exit_code: int | None, output: str) -> bool:
    """The program exited 0 and the Engine gave back nothing it printed."""
    return exit_code == 0 and not output.strip()


def remove(api: APIClient, cid: str) -> None:
    """Remove the probe container ``cid``; one already gone, or an Engine gone away meanwhile, is no failure of the
    probe (the result stands; the latter is logged)."""
    import docker.errors
    import requests

    try:
        api.remove_container(cid, force=True)
    except docker.errors.NotFound:
        pass
    except (docker.errors.APIError, requests.exceptions.RequestException):
        log.warning("could not remove container %s", cid[:12])


def collect(api: APIClient, cid: str, started: float, run: Callable[[str, float], R], lost: Callable[[R], bool],
            create: Callable[[], str]) -> R:
    """``run(cid, started)`` the created container ``cid`` (start, wait, read) and remove it; where ``lost`` says
    the Engine dropped its output, ``create()`` another and run that once (``started`` anew)."""
    result = _once(api, cid, started, run)
    if not lost(result):
        return result
    log.info("the container exited 0 and dockerd gave back none of its output (a busy host): running it once more")
    started = time.monotonic()
    return _once(api, create(), started, run)


def _once(api: APIClient, cid: str, started: float, run: Callable[[str, float], R]) -> R:
    try:
        return run(cid, started)
    finally:
        remove(api, cid)
