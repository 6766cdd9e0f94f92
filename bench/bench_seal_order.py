"""The order seal removes containers in: Engine CPU and wall time of the container removals alone.

Why it matters: every layer removal makes the Engine read the whole mount table, and only running
containers have an overlay mounted (see RESULTS.md). Population as in bench_seal.py: 200 containers,
half running, over 50 images. Contenders, each timed from the first request to the last answer:
- `docker rm -f $(docker ps -aq)` (the by-hand line's container half; the baseline);
- seal's order (``seal.removal_order``: running containers first), through docker-py;
- by image, as seal removed them before, through docker-py, with the same number in flight.
For each, the wall time and the machine's CPU time less this process's and its children's (the
Engine's: dockerd, containerd, the shims, runc), from /proc/stat. Contenders take turns, in reverse
order every other round. Needs root, dockerd, the docker CLI and busybox-static.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "bench"))

from bench_seal import populate  # noqa: E402
from testbed import PrivateDockerd  # noqa: E402


def busy_seconds() -> float:
    """CPU time the whole machine spent on anything but idle and iowait."""
    with open("/proc/stat") as f:
        ticks = [int(v) for v in f.readline().split()[1:]]
    return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")


def own_seconds() -> float:
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def by_hand(url: str) -> None:
    # The baseline is a shell line by definition: this is what people type.
    subprocess.run(["sh", "-c", "docker rm -f $(docker ps -aq) >/dev/null"], env={**os.environ, "DOCKER_HOST": url},
                   check=True, timeout=300)


def through_docker_py(url: str, order) -> None:
    import docker

    from gpuprep.engine.objects import DOCKER_WORKERS, REMOVAL_TIMEOUT

    api = docker.APIClient(base_url=url, version="auto", timeout=REMOVAL_TIMEOUT, max_pool_size=DOCKER_WORKERS)
    api.trust_env = False  # as seal's removal client on a unix socket
    try:
        rows = [{"id": c["Id"], "name": c["Names"][0], "state": c["State"], "image_id": c["ImageID"]}
                for c in api.containers(all=True)]
        with ThreadPoolExecutor(DOCKER_WORKERS) as pool:
            list(pool.map(lambda r: api.remove_container(r["id"], force=True, v=True), order(rows)))
    finally:
        api.close()


def by_image(rows: list[dict]) -> list[dict]:
    """seal's order before running containers went first: containers of one image together."""
    return sorted(rows, key=lambda r: (r["image_id"], r["name"]))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--containers", type=int, default=200)
    ap.add_argument("--images", type=int, default=50)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    if os.geteuid() != 0 or not all(shutil.which(c) for c in ("dockerd", "docker")):
        print("skipped: needs root, dockerd and the docker CLI")
        return 0

    from gpuprep.engine.objects import removal_order

    d = PrivateDockerd().start()
    client = d.client()
    contenders = {
        "docker rm -f": lambda: by_hand(d.url),
        "seal order": lambda: through_docker_py(d.url, removal_order),
        "by image": lambda: through_docker_py(d.url, by_image),
    }
    results: dict[str, list[tuple[float, float]]] = {k: [] for k in contenders}
    print(f"{args.containers} containers, {args.images} images, {args.rounds} rounds; "
          f"Engine {client.version().get('Version')}, {os.cpu_count()} CPUs", flush=True)
    try:
        for n in range(args.rounds):
            for label in (list(contenders) if n % 2 == 0 else list(contenders)[::-1]):
                populate(client, args.containers, args.images)
                os.sync()
                busy, own, started = busy_seconds(), own_seconds(), time.monotonic()
                contenders[label]()
                took = time.monotonic() - started
                engine = (busy_seconds() - busy) - (own_seconds() - own)
                if client.api.containers(all=True):
                    raise SystemExit(f"{label} left containers behind")
                for img in client.api.images():
                    client.api.remove_image(img["Id"], force=True)
                results[label].append((took, engine))
                print(f"round {n + 1} {label:13} {took:5.2f} s, Engine CPU {engine:5.2f} s", flush=True)
    finally:
        client.close()
        d.cleanup()
    base_wall = statistics.median(t for t, _ in results["docker rm -f"])
    base_cpu = statistics.median(c for _, c in results["docker rm -f"])
    for label, rows in results.items():
        wall, cpu = statistics.median(t for t, _ in rows), statistics.median(c for _, c in rows)
        print(f"{label:13} median {wall:.2f} s ({wall / base_wall:.2f}x), Engine CPU {cpu:.2f} s "
              f"({cpu / base_cpu:.2f}x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
