"""doctor's docker and container checks against a private real dockerd (docs/testbed.md 1-2).

Real: dockerd 20.10 on its own socket (its daemon.json is the --root tree's), runc, containerd,
docker-py, the gpuprep CLI, NVIDIA's nvidia-container-runtime (1.20.0, cdi mode: tests/testbed.py
``write_nvidia_runtime``). STAND-INS (no GPU or driver here): the device nodes and the nvidia-smi its CDI spec
names, and the host's nvidia-smi inside the root tree.
Each broken case is made the way it happens on a host and must give its status and its fix; where the fix is a
gpuprep command, it is run as the hint writes it and the finding must be gone (issue 16).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import FIXTURES, REPO
from contract import json_output
from testbed import DEFAULT_GPUS, tiny_image, write_fake_nvidia_smi, write_nvidia_runtime

UUIDS = [g["uuid"] for g in DEFAULT_GPUS]


def make_root(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    (root / "etc/docker").mkdir(parents=True)
    shutil.copy(FIXTURES / "distros/amzn-2023/etc/os-release", root / "etc/os-release")
    write_fake_nvidia_smi(root / "usr/bin/nvidia-smi")  # the host's view of its GPUs (SIMULATED): 2 GPUs
    return root


def doctor(root: Path, url: str, *args: str) -> tuple[int, dict[str, dict]]:
    env = {**os.environ, "DOCKER_HOST": url, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-m", "gpuprep", "--root", str(root), "--json", "doctor",
                           "--image", "tiny:latest", *args], capture_output=True, text=True, timeout=120, env=env)
    report = json_output(proc.stdout)
    # The toolkit-* checks of the docker group read the NVIDIA toolkit's own files, which this root has not got
    # (they skip here; tests/unit/toolkit/test_toolkit.py and test_doctor_hints.py provoke them). container-cuda
    # skips too: tiny:latest has no python3 to run the CUDA proof (tests/integration/test_cuda_container.py runs it).
    return proc.returncode, {c["id"]: c for c in report["checks"]
                             if c["group"] in ("docker", "container") and not c["id"].startswith("toolkit-")
                             and c["id"] != "container-cuda"}


def statuses(checks: dict[str, dict]) -> dict[str, str]:
    return {k: v["status"] for k, v in checks.items()}


@pytest.fixture
def host(tmp_path, dockerd_factory, fake_gpu):
    """Returns start(config) -> (root, dockerd): a --root tree whose daemon.json the dockerd reads."""
    root = make_root(tmp_path)

    def start(config: dict):
        dockerd = dockerd_factory(config_path=root / "etc/docker/daemon.json", config=config)
        client = dockerd.client()
        tiny_image(client)
        client.close()
        return root, dockerd

    return start, fake_gpu


def nvidia(runtime: Path, default: bool = True) -> dict:
    config: dict = {"runtimes": {"nvidia": {"path": str(runtime), "runtimeArgs": []}}}
    return {**config, "default-runtime": "nvidia"} if default else config


def test_healthy(host):
    start, gpu = host
    root, dockerd = start(nvidia(gpu["runtime"]))
    code, checks = doctor(root, dockerd.url)
    assert set(statuses(checks).values()) == {"ok"}, statuses(checks)
    container = checks["gpu-container"]
    assert container["data"]["uuids"] == UUIDS and container["data"]["host_uuids"] == UUIDS
    assert 0 < container["data"]["seconds"] < 10
    assert checks["docker-nvidia-runtime"]["data"]["runtimes"]["nvidia"] == str(gpu["runtime"])


def test_runtime_missing(host):
    start, _ = host
    root, dockerd = start({})
    code, checks = doctor(root, dockerd.url)
    assert code == 2
    assert checks["docker-nvidia-runtime"]["status"] == "critical"
    assert "docker-runtime,docker-reload" in checks["docker-nvidia-runtime"]["hint"]
    assert checks["docker-runtime-binary"]["status"] == "skipped"
    assert checks["gpu-container"]["status"] == "critical"
    assert checks["gpu-container"]["data"]["link"] == "runtime-missing"
    run_hint(checks["docker-nvidia-runtime"]["hint"], dockerd.url)
    _, checks = doctor(root, dockerd.url)
    assert checks["docker-nvidia-runtime"]["status"] == "ok", checks["docker-nvidia-runtime"]


def test_runtime_in_daemon_json_but_not_loaded_says_reload(host):
    start, gpu = host
    root, dockerd = start({})
    (root / "etc/docker/daemon.json").write_text(json.dumps(nvidia(gpu["runtime"])))  # edited, not reloaded
    _, checks = doctor(root, dockerd.url)
    assert checks["docker-nvidia-runtime"]["status"] == "critical"
    assert "install --only docker-reload" in checks["docker-nvidia-runtime"]["hint"]
    run_hint(checks["docker-nvidia-runtime"]["hint"], dockerd.url)
    _, checks = doctor(root, dockerd.url)
    assert checks["docker-nvidia-runtime"]["status"] == "ok", checks["docker-nvidia-runtime"]


def run_hint(hint: str, url: str) -> None:
    """The hint's first command, run as written (its gpuprep is this checkout's, with the Engine of the test)."""
    argv = shlex.split(re.findall(r"`([^`]+)`", hint)[0])
    assert argv[0] == "gpuprep", hint
    env = {**os.environ, "DOCKER_HOST": url, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-m", "gpuprep", *argv[1:]], capture_output=True, text=True, timeout=120,
                          env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_runtime_not_default(host):
    start, gpu = host
    root, dockerd = start(nvidia(gpu["runtime"], default=False))
    code, checks = doctor(root, dockerd.url)
    assert code == 2  # the container check is critical; the default-runtime finding itself is a warning
    assert checks["docker-nvidia-runtime"]["status"] == "ok"
    assert checks["docker-default-runtime"]["status"] == "warning"
    assert '"default-runtime": "nvidia"' in checks["docker-default-runtime"]["hint"]
    container = checks["gpu-container"]
    assert container["status"] == "critical" and container["data"]["link"] == "runtime-not-default"
    assert "default-runtime" in container["hint"]
    run_hint(checks["docker-default-runtime"]["hint"], dockerd.url)
    _, checks = doctor(root, dockerd.url)
    assert checks["docker-default-runtime"]["status"] == "ok" and checks["gpu-container"]["status"] == "ok", checks


def test_runtime_binary_gone(host):
    start, gpu = host
    root, dockerd = start(nvidia(gpu["runtime"]))
    gpu["runtime"].unlink()  # e.g. the toolkit package removed by hand
    code, checks = doctor(root, dockerd.url)
    assert code == 2
    binary = checks["docker-runtime-binary"]
    assert binary["status"] == "critical" and "does not exist" in binary["summary"]
    # No rpm database in this tree: no package owns the runtime's wrapper, so the fix installs the runtime
    # (with the --root)
    assert f"gpuprep --root {root} install --only packages" in binary["hint"]
    container = checks["gpu-container"]
    assert container["status"] == "critical" and container["data"]["link"] == "runtime-binary"


def test_container_sees_fewer_gpus_than_the_host(host):
    start, gpu = host
    one = write_fake_nvidia_smi(gpu["dir"] / "one-gpu/nvidia-smi", gpus=DEFAULT_GPUS[:1])
    # The spec defines one GPU: the real runtime gives the container that one, and its nvidia-smi lists it.
    runtime = write_nvidia_runtime(gpu["dir"] / "one-gpu", one, gpus=DEFAULT_GPUS[:1])
    root, dockerd = start(nvidia(runtime.path))  # the host's own nvidia-smi (in the root) lists 2
    code, checks = doctor(root, dockerd.url)
    assert code == 2
    container = checks["gpu-container"]
    assert container["status"] == "critical" and container["data"]["link"] == "gpus"
    assert "sees 1 GPU(s), the host 2" in container["summary"] and UUIDS[1] in container["summary"]
    assert "/dev/nvidia" in container["hint"]


def test_engine_down(host):
    start, gpu = host
    root, dockerd = start(nvidia(gpu["runtime"]))
    dockerd.stop()
    code, checks = doctor(root, dockerd.url)
    assert code == 2
    engine = checks["docker-engine"]
    assert engine["status"] == "critical" and "does not answer" in engine["summary"]
    assert dockerd.url in engine["hint"]
    for dependent in ("docker-nvidia-runtime", "docker-default-runtime", "gpu-container"):
        # one cause, said once: the checks that need the Engine point at docker-engine (issue 16)
        assert checks[dependent]["status"] == "skipped", dependent
        assert checks[dependent]["summary"] == "the Docker Engine does not answer (see docker-engine)", dependent
    assert checks["docker-daemon-json"]["status"] == "ok"  # the file is still readable


def test_runtime_defined_twice(host):
    start, gpu = host
    root, dockerd = start(nvidia(gpu["runtime"]))
    # Amazon Linux's registration: an executable in /etc/docker-runtimes.d, linked to the runtime.
    shutil.copy(gpu["runtime"], root / "usr/bin/nvidia-container-runtime")
    (root / "etc/docker-runtimes.d").mkdir()
    os.symlink("/usr/bin/nvidia-container-runtime", root / "etc/docker-runtimes.d/nvidia")
    _, checks = doctor(root, dockerd.url)
    once = checks["docker-runtime-once"]
    assert once["status"] == "warning" and once["data"]["twice"] == ["nvidia"]
    assert "remove runtimes.nvidia from daemon.json" in once["hint"]


def test_missing_image_is_unknown_and_skipped_at_boot(host):
    start, gpu = host
    root, dockerd = start(nvidia(gpu["runtime"]))
    # No registry is reachable here: a registry on a closed local port fails at once, as offline would.
    code, checks = doctor(root, dockerd.url, "--image", "localhost:1/nvidia/cuda:12.4.1-base")
    container = checks["gpu-container"]
    assert container["status"] == "unknown" and "cannot be pulled" in container["summary"]
    assert "--image" in container["hint"] and "pre-load" in container["hint"]
    code, checks = doctor(root, dockerd.url, "--boot", "--image", "localhost:1/nvidia/cuda:12.4.1-base")
    assert checks["gpu-container"]["status"] == "skipped"
    assert code == 0


def test_broken_daemon_json_is_critical(host):
    start, gpu = host
    root, dockerd = start(nvidia(gpu["runtime"]))
    (root / "etc/docker/daemon.json").write_text('{"runtimes": null}')
    _, checks = doctor(root, dockerd.url)
    assert checks["docker-daemon-json"]["status"] == "critical"
    assert '"runtimes" is null' in checks["docker-daemon-json"]["summary"]
