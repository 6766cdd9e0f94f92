"""Benchmarks for install part 2's speed targets (issue 4), on a private real dockerd, medians of N runs.

1. gpu-check (the step, in-process: host view + docker-py create/start/wait/logs/remove + compare) vs a
   bare ``docker run --rm --network none -e NVIDIA_VISIBLE_DEVICES=all IMAGE nvidia-smi --query-gpu=...``
   on the same Engine, interleaved in the same run: target ratio <= 1.15.
2. ``gpuprep --root ROOT install --only docker-runtime,docker-reload,gpu-check`` on a converged
   simulated host (CLI, a fresh process each time): target < 1 s wall, every step ok, dockerd keeps its pid.

SIMULATED: the nvidia runtime is the tests' shim (bind-mounts a fake nvidia-smi, then execs runc);
the Engine, runc and containerd are real. Needs root, dockerd, runc, busybox-static, the docker CLI.

Usage: ``.venv/bin/python bench/bench_gpu_check.py [--runs N] [--json] [--strict]``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO))

RATIO_TARGET = 1.15
IDEMPOTENT_TARGET_S = 1.0
IMAGE = "tiny:latest"
STEPS = "docker-runtime,docker-reload,gpu-check"


def gpuprep_argv() -> list[str]:
    script = REPO / ".venv" / "bin" / "gpuprep"
    return [str(script)] if script.exists() else [sys.executable, "-m", "gpuprep"]


def simulated_host(tmp: Path):
    from testbed import PrivateDockerd, tiny_image, write_fake_nvidia_smi, write_runtime_shim

    root = tmp / "root"
    (root / "etc/docker").mkdir(parents=True)
    shutil.copy(REPO / "tests/fixtures/distros/amzn-2023/etc/os-release", root / "etc/os-release")
    smi = write_fake_nvidia_smi(root / "usr/bin/nvidia-smi")
    shim = write_runtime_shim(tmp / "nvidia-container-runtime", smi)
    config = {"runtimes": {"nvidia": {"path": str(shim), "runtimeArgs": []}}, "default-runtime": "nvidia"}
    dockerd = PrivateDockerd(config_path=root / "etc/docker/daemon.json", config=config).start()
    client = dockerd.client()
    tiny_image(client, IMAGE)
    client.close()
    return root, dockerd, shim


def gpu_check_step_seconds(root: Path, url: str) -> float:
    from gpuprep.engine.steps import GpuCheckStep
    from gpuprep.host import Host
    from gpuprep.options import InstallOptions
    from gpuprep.platform import detect
    from gpuprep.report import StepStatus
    from gpuprep.runner.steps import Context, run_steps

    host = Host(root, env={**os.environ, "DOCKER_HOST": url})
    ctx = Context(host, detect(host), InstallOptions(image=IMAGE))
    try:
        started = time.perf_counter()
        report = run_steps(ctx, "install", [GpuCheckStep()])
        took = time.perf_counter() - started
    finally:
        host.close()
    step = report.steps[0]
    if step.status is not StepStatus.OK:
        raise SystemExit(f"gpu-check failed: {step.summary}")
    return took


def bare_docker_run_seconds(url: str) -> float:
    argv = ["docker", "-H", url, "run", "--rm", "--network", "none", "-e", "NVIDIA_VISIBLE_DEVICES=all", IMAGE,
            "nvidia-smi", "--query-gpu=index,uuid,name,driver_version", "--format=csv,noheader"]
    started = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=60, env={**os.environ, "DOCKER_HOST": url})
    took = time.perf_counter() - started
    if proc.returncode != 0 or "GPU-" not in proc.stdout:
        raise SystemExit(f"bare docker run failed: {proc.stderr.strip()}")
    return took


def idempotent_install_seconds(root: Path, url: str, shim: Path) -> tuple[float, dict]:
    argv = [*gpuprep_argv(), "--root", str(root), "--json", "install", "--only", STEPS, "--runtime-path", str(shim),
            "--image", IMAGE]
    started = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=120, env={**os.environ, "DOCKER_HOST": url})
    took = time.perf_counter() - started
    report = json.loads(proc.stdout)
    return took, report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=9)
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="gpuprep-bench-") as d:
        root, dockerd, shim = simulated_host(Path(d))
        try:
            pid = dockerd.current_pid()
            gpu_check_step_seconds(root, dockerd.url)  # warm: image layers, page cache, imports
            bare_docker_run_seconds(dockerd.url)
            step, bare = [], []
            for _ in range(args.runs):  # interleaved, so drift hits both alike
                bare.append(bare_docker_run_seconds(dockerd.url))
                step.append(gpu_check_step_seconds(root, dockerd.url))
            first, report = idempotent_install_seconds(root, dockerd.url, shim)  # converges: already is
            installs, statuses = [], set()
            for _ in range(args.runs):
                took, report = idempotent_install_seconds(root, dockerd.url, shim)
                installs.append(took)
                statuses |= {s["status"] for s in report["steps"] if s["status"] != "skipped"}
            pid_after = dockerd.current_pid()
        finally:
            dockerd.cleanup()

    results = {
        "runs": args.runs,
        "gpu_check_step_s": round(statistics.median(step), 3),
        "bare_docker_run_s": round(statistics.median(bare), 3),
        "ratio": round(statistics.median(step) / statistics.median(bare), 3),
        "ratio_target": RATIO_TARGET,
        "idempotent_install_s": round(statistics.median(installs), 3),
        "idempotent_install_max_s": round(max(installs), 3),
        "idempotent_target_s": IDEMPOTENT_TARGET_S,
        "idempotent_step_statuses": sorted(statuses),
        "dockerd_pid_kept": pid == pid_after,
    }
    missed = []
    if results["ratio"] > RATIO_TARGET:
        missed.append("gpu-check ratio")
    if results["idempotent_install_s"] >= IDEMPOTENT_TARGET_S:
        missed.append("idempotent install time")
    if statuses != {"ok"} or not results["dockerd_pid_kept"]:
        missed.append("idempotent install not converged (a step changed or dockerd restarted)")
    if args.json:
        print(json.dumps({**results, "missed": missed}, indent=2))
    else:
        print("| benchmark | median | target | result |")
        print("|---|---|---|---|")
        print(f"| gpu-check step (in-process) | {results['gpu_check_step_s']:.3f} s | | |")
        print(f"| bare `docker run --rm IMAGE nvidia-smi` | {results['bare_docker_run_s']:.3f} s | | |")
        print(f"| ratio gpu-check / docker run | {results['ratio']:.2f}x | <= {RATIO_TARGET}x | "
              f"{'ok' if results['ratio'] <= RATIO_TARGET else 'MISSED'} |")
        print(f"| idempotent install {STEPS} (CLI) | {results['idempotent_install_s']:.3f} s "
              f"(max {results['idempotent_install_max_s']:.3f}) | < {IDEMPOTENT_TARGET_S} s | "
              f"{'ok' if results['idempotent_install_s'] < IDEMPOTENT_TARGET_S else 'MISSED'} |")
        print(f"| steps all ok, dockerd pid kept | {sorted(statuses)}, {results['dockerd_pid_kept']} | yes | "
              f"{'ok' if statuses == {'ok'} and results['dockerd_pid_kept'] else 'MISSED'} |")
        print(f"({args.runs} runs each, interleaved; Engine {shutil.which('dockerd')}, simulated nvidia runtime)")
    return 1 if args.strict and missed else 0


if __name__ == "__main__":
    sys.exit(main())
