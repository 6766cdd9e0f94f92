"""gpu-check pulls a missing image first: progress on a tty, a bounded retry, a clear outcome when it cannot.

Real: dockerd 20.10 of the test's own (its daemon.json the --root tree's, nvidia the default runtime),
its pull client, runc, containerd, docker-py, the gpuprep CLI as a user runs it.
SIMULATED, because these machines reach no registry: the network and the registry are
tests/testbed.py's ``TinyRegistry``, a Registry HTTP API v2 pull path on 127.0.0.1 that dockerd pulls
from over plain HTTP (Docker treats 127.0.0.0/8 registries as insecure); it can answer 503 to the
first pulls (a registry having a bad moment) or to all (one that is down). Also SIMULATED (no GPU
here): the nvidia runtime is the testbed shim that bind-mounts a fake nvidia-smi, and the host's
nvidia-smi is the same fake inside the root tree.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import FIXTURES, REPO
from contract import json_output
from testbed import DEFAULT_GPUS, TinyRegistry, run_on_tty, write_fake_nvidia_smi

from gpuprep.engine.gpu_container import PULL_ATTEMPTS

UUIDS = [g["uuid"] for g in DEFAULT_GPUS]


@pytest.fixture
def gpu_host(tmp_path, dockerd_factory, fake_gpu):
    """A --root tree whose daemon.json makes the simulated nvidia runtime the default; no image in the Engine."""
    root = tmp_path / "root"
    (root / "etc/docker").mkdir(parents=True)
    shutil.copy(FIXTURES / "distros/amzn-2023/etc/os-release", root / "etc/os-release")
    write_fake_nvidia_smi(root / "usr/bin/nvidia-smi")  # the host's view of its GPUs (SIMULATED)
    config = {"runtimes": {"nvidia": {"path": str(fake_gpu["runtime"]), "runtimeArgs": []}},
              "default-runtime": "nvidia"}
    dockerd = dockerd_factory(config_path=root / "etc/docker/daemon.json", config=config)
    return root, dockerd


def env_for(url: str) -> dict[str, str]:
    return {**os.environ, "DOCKER_HOST": url, "PYTHONPATH": str(REPO)}


def gpu_check(root: Path, url: str, image: str) -> tuple[int, dict, str, float]:
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "gpuprep", "--root", str(root), "--json", "install",
                           "--only", "gpu-check", "--image", image], capture_output=True, text=True,
                          timeout=120, env=env_for(url))
    took = time.monotonic() - started
    try:
        report = json_output(proc.stdout)
    except json.JSONDecodeError:
        pytest.fail(f"gpuprep printed no JSON (exit {proc.returncode}): {proc.stdout!r} {proc.stderr}")
    [step] = [s for s in report["steps"] if s["id"] == "gpu-check"]
    return proc.returncode, step, proc.stderr, took


def image_present(dockerd, image: str) -> bool:
    import docker.errors

    client = dockerd.client()
    try:
        client.images.get(image)
        return True
    except docker.errors.ImageNotFound:
        return False
    finally:
        client.close()


def probe_containers(dockerd) -> list:
    client = dockerd.client()
    try:
        return client.containers.list(all=True, filters={"label": "io.gpuprep.probe"})
    finally:
        client.close()


def test_a_missing_image_is_pulled_then_checked_and_a_second_run_pulls_nothing(gpu_host):
    root, dockerd = gpu_host
    with TinyRegistry() as registry:
        assert not image_present(dockerd, registry.image)
        code, step, err, _ = gpu_check(root, dockerd.url, registry.image)
        assert code == 0 and step["status"] == "ok", (step, err)
        assert step["data"]["uuids"] == UUIDS and step["data"]["host_uuids"] == UUIDS
        assert step["data"]["pull_seconds"] > 0 and registry.pulls == 1
        assert f"pulling {registry.image}" in err
        assert image_present(dockerd, registry.image)
        assert probe_containers(dockerd) == []  # the probe removed its container

        code, step, err, _ = gpu_check(root, dockerd.url, registry.image)
        assert code == 0 and step["status"] == "ok", (step, err)
        assert step["data"]["pull_seconds"] == 0 and registry.pulls == 1  # present: no pull this time


def test_a_registry_that_fails_twice_is_retried_and_the_check_passes(gpu_host):
    root, dockerd = gpu_host
    with TinyRegistry(fail_pulls=2) as registry:
        code, step, err, _ = gpu_check(root, dockerd.url, registry.image)
        assert code == 0 and step["status"] == "ok", (step, err)
        assert registry.pulls == 3
        assert [s for _, _, s in registry.manifest_requests()].count(503) >= 2
        assert f"trying again (2 of {PULL_ATTEMPTS})" in err and f"trying again (3 of {PULL_ATTEMPTS})" in err
        assert "503" in err  # the retry says why
        assert image_present(dockerd, registry.image)


def test_a_registry_that_always_fails_gives_image_missing_with_the_hint_in_bounded_time(gpu_host):
    root, dockerd = gpu_host
    with TinyRegistry(fail_pulls=-1) as registry:
        code, step, err, took = gpu_check(root, dockerd.url, registry.image)
        assert code == 1 and step["status"] == "failed", step
        assert step["summary"].startswith(f"image: image {registry.image} is missing and cannot be pulled:")
        assert "503" in step["summary"] and "\n" not in step["summary"]
        assert "docker load" in step["hint"] and "--image" in step["hint"]
        assert registry.pulls == PULL_ATTEMPTS  # bounded: this many tries, no more
        assert took < 30, f"gpu-check took {took:.1f}s to give up"
        assert "Traceback" not in err and "error: gpu-check: image:" in err
        assert not image_present(dockerd, registry.image)


def test_pull_progress_shows_on_a_tty_and_not_in_a_log(gpu_host):
    root, dockerd = gpu_host
    with TinyRegistry(name="tty") as registry:
        argv = [sys.executable, "-m", "gpuprep", "--root", str(root), "install", "--only", "gpu-check",
                "--image", registry.image]
        code, out = run_on_tty(argv, {**env_for(dockerd.url), "TERM": "xterm"})
        assert code == 0, out
        assert "\r\x1b[K" in out and "Pull complete" in out, out[-2000:]
    with TinyRegistry(name="log") as registry:
        # cloud-init's log (no terminal): no progress lines, no escape codes
        code, step, err, _ = gpu_check(root, dockerd.url, registry.image)
        assert code == 0 and registry.pulls == 1, (step, err)
        assert "Pull complete" not in err and "\x1b[K" not in err


def test_a_pull_that_outlasts_its_deadline_stops_and_says_so(gpu_host):
    """Every wait is bounded: a pull still streaming at its deadline ends (here a deadline of 0 s, so the
    first progress event from the real dockerd pulling from TinyRegistry is already too late)."""
    from gpuprep.engine.gpu_container import _pull
    from gpuprep.host import Host

    _, dockerd = gpu_host
    with TinyRegistry() as registry, Host("/", env={"DOCKER_HOST": dockerd.url}).docker_api(30) as api:
        started = time.monotonic()
        failure = _pull(api, registry.image, progress=False, deadline_s=0.0)
        assert failure is not None and "still pulling after 0s" in failure, failure
        assert time.monotonic() - started < 20 and registry.pulls == 1  # no retry past the deadline
