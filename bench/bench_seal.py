"""seal's Docker steps vs the by-hand way, on the same private Engine in the same run.

Population: 200 containers (half running `sleep 3600`, half exited; network none) over 50 images (tag
variants of the busybox image with different content). Timed, from the command's start to its exit:
- gpuprep: `DOCKER_HOST=URL gpuprep --root ROOT seal --yes --only containers,images`
- by hand: `docker rm -f $(docker ps -aq); docker rmi -f $(docker images -q)` (the seed's way)
- steps only (a breakdown, not the target): the same two seal steps run in this process, through
  ``run_steps`` with docker-py already imported: the removal without the Python process's start-up.
The population is rebuilt (and flushed to disk) before each timing; the contenders take turns for
``--rounds`` rounds (default 4), in reverse order every other round, so a drift of the machine over the
run weighs on all alike. Each round prints the times and the gpuprep/by-hand ratio; the end prints the
medians and the median of the per-round ratios. Target: the gpuprep/by-hand ratio at most 1.0. Needs root,
dockerd, the docker CLI and busybox-static.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from testbed import PrivateDockerd, tiny_image  # noqa: E402

BY_HAND = "docker rm -f $(docker ps -aq) >/dev/null; docker rmi -f $(docker images -q) >/dev/null"
# Engine 20.10 before 20.10.27 can deadlock in libnetwork when many containers go at once (moby/moby#46661,
# fixed by moby/moby#46693): getSvcRecords and processEndpointDelete take the network's and the controller's
# locks in opposite orders. It happened here under `docker rm -f` as well as under docker-py. A contender
# that has not finished in this long has met it: the Engine is replaced and the round run again.
HANG_AFTER = 120


class EngineHung(Exception):
    pass


def run_bounded(argv: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    """Run a contender; EngineHung, with it and every process it started killed, past HANG_AFTER."""
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)  # `docker rm` under `sh` goes with it
    try:
        out, err = proc.communicate(timeout=HANG_AFTER)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise EngineHung(f"{argv[0]} had no answer from the Engine after {HANG_AFTER} s") from None
    return subprocess.CompletedProcess(argv, proc.returncode, out, err)


def populate(client, n_containers: int, n_images: int) -> None:
    tags = [f"bench:v{i}" for i in range(n_images)]
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda t: tiny_image(client, t, extra_files={"/etc/variant": t}), tags))

    def create(i: int) -> None:
        running = i % 2 == 0
        c = client.containers.create(tags[i % n_images], ["sleep", "3600"] if running else ["true"],
                                     name=f"c{i:03d}", network_mode="none")
        if running:
            c.start()

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(create, range(n_containers)))
    assert len(client.api.containers(all=True)) == n_containers


def time_gpuprep(url: str, root: Path) -> float:
    env = {**os.environ, "DOCKER_HOST": url}
    started = time.monotonic()
    proc = run_bounded([sys.executable, "-m", "gpuprep", "--root", str(root), "--json", "seal", "--yes",
                        "--only", "containers,images"], env)
    took = time.monotonic() - started
    if proc.returncode != 0:
        if "did not answer" in proc.stderr:  # seal's own bound on a removal (REMOVAL_TIMEOUT)
            raise EngineHung(f"gpuprep: {proc.stderr.strip().splitlines()[0]}")
        raise SystemExit(f"gpuprep seal failed: {proc.stderr.strip()}")
    steps = {s["id"]: s["duration_ms"] / 1000 for s in json.loads(proc.stdout)["steps"]}
    said = "; ".join(line for line in proc.stderr.splitlines() if line.strip())
    print(f"         (containers step {steps['containers']:.2f} s, images step {steps['images']:.2f} s)"
          + (f" gpuprep said: {said}" if said else ""))
    return took


def time_steps_in_process(url: str, root: Path) -> float:
    from gpuprep.host import Host
    from gpuprep.options import SealOptions
    from gpuprep.platform import detect
    from gpuprep.runner.steps import Context, run_steps
    from gpuprep.seal import seal_steps

    host = Host(root, env={**os.environ, "DOCKER_HOST": url})
    options = SealOptions(yes=True, only=["containers,images"])
    ctx = Context(host, detect(host), options)
    started = time.monotonic()
    report = run_steps(ctx, "seal", seal_steps(), only=options.only)
    took = time.monotonic() - started
    host.close()
    if report.exit_code:
        if "did not answer" in (report.error or ""):
            raise EngineHung(f"steps: {report.error}")
        raise SystemExit(f"seal's steps failed in-process: {report.error}")
    return took


def time_by_hand(url: str) -> float:
    env = {**os.environ, "DOCKER_HOST": url}
    started = time.monotonic()
    # The baseline is a shell line by definition: this is what people type.
    run_bounded(["sh", "-c", BY_HAND], env)
    return time.monotonic() - started


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--containers", type=int, default=200)
    ap.add_argument("--images", type=int, default=50)
    ap.add_argument("--rounds", type=int, default=4)
    args = ap.parse_args()
    if os.geteuid() != 0 or not all(shutil.which(c) for c in ("dockerd", "docker")):
        print("skipped: needs root, dockerd and the docker CLI")
        return 0

    # gpuprep as pip installs it, byte-compiled (see run_all.py); run alone, this bench does it too.
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(REPO / "gpuprep")], check=True)
    d = PrivateDockerd().start()
    root = Path(tempfile.mkdtemp(prefix="bench-seal-"))
    shutil.copytree(REPO / "tests/fixtures/distros/amzn-2023", root, dirs_exist_ok=True)
    client = d.client()
    import docker  # noqa: F401  (imported once here: the in-process contender leaves start-up out)

    ours, theirs, steps_only, ratios = [], [], [], []
    contenders = [("gpuprep", ours, lambda: time_gpuprep(d.url, root)),
                  ("by hand", theirs, lambda: time_by_hand(d.url)),
                  ("steps", steps_only, lambda: time_steps_in_process(d.url, root))]
    print(f"{args.containers} containers, {args.images} images, {args.rounds} rounds; "
          f"Engine {client.version().get('Version')}, {os.cpu_count()} CPUs", flush=True)
    hangs = 0
    try:
        n = 0
        while n < args.rounds:
            round_: dict[str, float] = {}
            try:
                for label, _, run in (contenders if n % 2 == 0 else contenders[::-1]):
                    populate(client, args.containers, args.images)
                    os.sync()  # the population's own writes are flushed before the clock starts, for either one
                    round_[label] = run()
                    left = len(client.api.containers(all=True)), len(client.api.images())
                    if left != (0, 0):
                        raise SystemExit(f"{label} left {left[0]} containers and {left[1]} images")
                    print(f"round {n + 1} {label:8} {round_[label]:6.2f} s", flush=True)
            except EngineHung as exc:
                hangs += 1
                print(f"round {n + 1}: the Engine hung ({exc}); it is replaced and the round run again", flush=True)
                if hangs > 3:
                    raise SystemExit("the Engine hung more than three times: no figures") from None
                client.close()
                d.kill()
                d.cleanup()
                d = PrivateDockerd().start()
                client = d.client()
                continue
            for label, timings, _ in contenders:
                timings.append(round_[label])
            ratios.append(ours[-1] / theirs[-1])
            print(f"round {n + 1} ratio {ratios[-1]:.2f}x (steps in-process {steps_only[-1] / theirs[-1]:.2f}x)",
                  flush=True)
            n += 1
    finally:
        client.close()
        d.cleanup()
        shutil.rmtree(root, ignore_errors=True)
    a, b, c = statistics.median(ours), statistics.median(theirs), statistics.median(steps_only)
    print(f"seal --only containers,images: median {a:.2f} s; by hand: median {b:.2f} s; "
          f"ratio of medians {a / b:.2f}x; median of round ratios {statistics.median(ratios):.2f}x (target <= 1.0x)")
    step_ratios = [x / y for x, y in zip(steps_only, theirs)]
    print(f"breakdown: the two steps in-process (no process start-up): median {c:.2f} s, {c / b:.2f}x by hand; "
          f"median of round ratios {statistics.median(step_ratios):.2f}x")
    if hangs:
        print(f"the Engine hung {hangs} time(s); those rounds are not counted")
    return 0


if __name__ == "__main__":
    sys.exit(main())
