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
    from gpuprep.host import Host

log = logging.getLogger("gpuprep")

R = TypeVar("R")

OUTPUT_LOST = "output-lost"
OUTPUT_LOST_WHY = ("dockerd gave back none of its output: it drops what it has not copied 2 s after a container "
                   "exits, and this host was that busy, twice")
OUTPUT_LOST_FIX = "run it again once the host is less loaded (`uptime` shows the load)"


def output_lost(exit_code: int | None, output: str) -> bool:
    """The program exited 0 and the Engine gave back nothing it printed."""
    return exit_code == 0 and not output.strip()


def remove(host: Host, cid: str, timeout: float) -> None:
    """``docker rm -f`` the probe container ``cid`` over the Engine's socket (``DELETE /containers/ID?force=1``, as
    docker-py's ``remove_container(force=True)``), bounded by ``timeout``; one already gone, or an Engine gone away
    meanwhile, is no failure of the probe (the result stands; the latter is logged)."""
    from gpuprep.engine.dockerd import engine_errors

    try:
        status = host.engine_get(f"/containers/{cid}?force=1", timeout, method="DELETE").status
    except engine_errors():
        status = None
    if status not in (204, 404):
        log.warning("could not remove container %s", cid[:12])


def collect(host: Host, cid: str, started: float, run: Callable[[str, float], R], lost: Callable[[R], bool],
            create: Callable[[], str], timeout: float) -> R:
    """``run(cid, started)`` the created container ``cid`` (start, wait, read) and remove it (bounded by
    ``timeout``); where ``lost`` says the Engine dropped its output, ``create()`` another and run that once
    (``started`` anew)."""
    result = _once(host, cid, started, run, timeout)
    if not lost(result):
        return result
    log.info("the container exited 0 and dockerd gave back none of its output (a busy host): running it once more")
    started = time.monotonic()
    return _once(host, create(), started, run, timeout)


def _once(host: Host, cid: str, started: float, run: Callable[[str, float], R], timeout: float) -> R:
    try:
        return run(cid, started)
    finally:
        remove(host, cid, timeout)
