"""gpu-check and doctor's container-cuda run the CUDA proof inside a container started as ECS starts one (issue 25).

Real: Docker Engine 20.10 (a private dockerd reading the --root tree's daemon.json), runc, the nvidia runtime
registered as the default (no --runtime on the container), the gpuprep CLI with --root and DOCKER_HOST, the proof
program (gpu/cuda_proof.py's source run by `python3 -I -S -c` inside the container), and the image's python3: an
image imported here from this machine's own python3.11, its shared libraries and standard library, with busybox
(no registry is reachable), standing in for an application image that has python3.
SIMULATED (no GPU or NVIDIA driver on these machines): the nvidia runtime is the testbed shim, which binds what the
real one binds for NVIDIA_DRIVER_CAPABILITIES=compute,utility: nvidia-smi (a fake, tests/testbed.py) and the
driver's libcuda.so.1, here the stand-in built from C (tests/fake_cuda.py) at /usr/lib/x86_64-linux-gnu/libcuda.so.1.
The "cannot run CUDA" cases are a runtime that binds no libcuda (what the real one does without `compute`) and a
libcuda whose cuInit returns 802 (an NVSwitch host without its fabric).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import fake_cuda
import pytest
from conftest import FIXTURES
from testbed import busybox_path, gpuprep_json, tiny_image, wait_until, write_fake_nvidia_smi, write_runtime_shim

PY_IMAGE = "python3-standin:latest"
LIBCUDA_IN_CONTAINER = "/usr/lib/x86_64-linux-gnu/libcuda.so.1"
# The standard library the proof needs, without what only weighs (tests, GUIs, installers, third-party packages).
STDLIB_SKIP = ("test", "idlelib", "tkinter", "ensurepip", "lib2to3", "pydoc_data", "turtledemo", "dist-packages",
               "site-packages", "unittest", "distutils", "config-3.11-x86_64-linux-gnu")


def _libs(binary: str) -> list[str]:
    out = subprocess.run(["ldd", binary], capture_output=True, text=True, check=True).stdout
    return [p for line in out.splitlines() for p in line.split() if p.startswith("/")]


def python_image_tar() -> bytes:
    """A root file system of busybox and this machine's python3.11 (the interpreter, the libraries it and ctypes
    link, its standard library less tests and GUIs)."""
    exe = "/usr/bin/python3.11"  # Debian 12's own (its stdlib in /usr/lib/python3.11), not a pyenv shim
    stdlib = Path("/usr/lib/python3.11")
    with tempfile.TemporaryDirectory(prefix="pyimg-") as d:
        root = Path(d)
        (root / "bin").mkdir()
        shutil.copy2(busybox_path(), root / "bin/busybox")
        for applet in ("sh", "cat", "echo", "sed"):
            os.symlink("busybox", root / "bin" / applet)
        (root / "usr/bin").mkdir(parents=True)
        shutil.copy2(exe, root / "usr/bin/python3.11")
        os.symlink("python3.11", root / "usr/bin/python3")
        ctypes_ext = next((stdlib / "lib-dynload").glob("_ctypes.*.so"))
        for lib in {*_libs(exe), *_libs(str(ctypes_ext))}:
            dest = root / lib.lstrip("/")
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(lib, dest)
        shutil.copytree(stdlib, root / "usr/lib/python3.11", symlinks=True,
                        ignore=lambda _d, names: [n for n in names if n in STDLIB_SKIP])
        (root / "usr/lib/x86_64-linux-gnu").mkdir(parents=True, exist_ok=True)
        (root / "tmp").mkdir()
        return subprocess.run(["tar", "--owner=0", "--group=0", "-C", str(root), "-c", "."], capture_output=True,
                              check=True).stdout


@pytest.fixture(scope="module")
def image_tar() -> bytes:
    return python_image_tar()


class CudaHost:
    """A --root tree and a private Engine whose default runtime is the shim binding ``mounts`` into GPU containers."""

    def __init__(self, tmp_path: Path, dockerd_factory, image_tar: bytes, libcuda: Path | None,
                 mounts: dict[str, str] | None = None, writable: dict[str, str] | None = None):
        self.root = tmp_path / "root"
        (self.root / "etc/docker").mkdir(parents=True)
        shutil.copy(FIXTURES / "distros/amzn-2023/etc/os-release", self.root / "etc/os-release")
        write_fake_nvidia_smi(self.root / "usr/bin/nvidia-smi")  # the host's view of its GPUs (SIMULATED)
        smi = write_fake_nvidia_smi(tmp_path / "bin/nvidia-smi")
        mounts = {**({str(libcuda): LIBCUDA_IN_CONTAINER} if libcuda else {}), **(mounts or {})}
        shim = write_runtime_shim(tmp_path / "bin/nvidia-container-runtime", smi, mounts=mounts, writable=writable)
        config = {"runtimes": {"nvidia": {"path": str(shim), "runtimeArgs": []}}, "default-runtime": "nvidia"}
        self.dockerd = dockerd_factory(config_path=self.root / "etc/docker/daemon.json", config=config)
        client = self.dockerd.client()
        client.api.import_image_from_data(image_tar, repository=PY_IMAGE.split(":")[0], tag="latest")
        tiny_image(client)
        client.close()

    def run(self, *args: str) -> tuple[int, dict, str]:
        return gpuprep_json(self.root, self.dockerd.url, *args)

    def probe_containers(self, probe: str = "") -> list:
        """gpuprep's probe containers in this Engine, running or not (``probe``: only that kind, e.g. cuda)."""
        client = self.dockerd.client()
        try:
            label = "io.gpuprep.probe" + (f"={probe}" if probe else "")
            return client.containers.list(all=True, filters={"label": label})
        finally:
            client.close()


def step(report: dict, step_id: str) -> dict:
    return next(s for s in report["steps"] if s["id"] == step_id)


def check(report: dict, check_id: str) -> dict:
    return next(c for c in report["checks"] if c["id"] == check_id)


def test_gpu_check_and_doctor_prove_cuda_in_a_python3_image(tmp_path, dockerd_factory, image_tar):
    lib = fake_cuda.build(tmp_path / "cuda")
    host = CudaHost(tmp_path, dockerd_factory, image_tar, lib)
    code, report, err = host.run("install", "--only", "gpu-check", "--image", PY_IMAGE)
    s = step(report, "gpu-check")
    assert code == 0 and s["status"] == "ok", (s, err)
    assert f"CUDA works in {PY_IMAGE} on 2 GPUs: a PTX kernel ran on each and returned the expected value" \
        in s["summary"]
    devices = s["data"]["cuda"]["report"]["devices"]
    assert [d["result"] for d in devices] == [0x1234567 * 3 + 1000, 0x1234567 * 3 + 1001]
    assert devices[0]["uuid"] == "GPU-0e7d3af2-be49-affe-ae6c-f6fcf358f2ea"
    assert s["data"]["cuda"]["early"] is False  # install runs it in its turn
    code, report, err = host.run("doctor", "--image", PY_IMAGE)
    c = check(report, "container-cuda")
    assert c["status"] == "ok" and "CUDA works in" in c["summary"], (c, err)
    assert c["data"]["early"] is True  # doctor began it before importing its checks (start_early)
    assert host.probe_containers() == []


def test_gpu_check_fails_an_image_build_whose_container_cannot_run_cuda(tmp_path, dockerd_factory, image_tar):
    """The runtime binds no libcuda (as the real one without `compute`): nvidia-smi works, CUDA does not."""
    host = CudaHost(tmp_path, dockerd_factory, image_tar, None)
    code, report, err = host.run("install", "--only", "gpu-check", "--image", PY_IMAGE)
    s = step(report, "gpu-check")
    assert code == 1 and s["status"] == "failed", (s, err)
    assert s["data"]["routes"][0]["ok"] is True  # nvidia-smi saw the GPUs: only the CUDA proof catches it
    assert "dlopen returned LIBCUDA_NOT_FOUND" in s["summary"]
    assert "NVIDIA_DRIVER_CAPABILITIES must include compute" in s["hint"]
    code, report, err = host.run("doctor", "--image", PY_IMAGE)
    assert check(report, "container-cuda")["status"] == "critical"


def test_802_in_the_container_fails_gpu_check_naming_fabric_manager(tmp_path, dockerd_factory, image_tar):
    lib = fake_cuda.build(tmp_path / "cuda", fail="802")
    host = CudaHost(tmp_path, dockerd_factory, image_tar, lib)
    code, report, err = host.run("install", "--only", "gpu-check", "--image", PY_IMAGE)
    s = step(report, "gpu-check")
    assert code == 1 and s["status"] == "failed", (s, err)
    assert "cuInit returned CUDA_ERROR_SYSTEM_NOT_READY (802)" in s["summary"]
    assert "systemctl enable --now nvidia-fabricmanager" in s["hint"]


def test_an_image_without_python3_says_cuda_was_not_proven(tmp_path, dockerd_factory, image_tar):
    lib = fake_cuda.build(tmp_path / "cuda")
    host = CudaHost(tmp_path, dockerd_factory, image_tar, lib)
    code, report, err = host.run("install", "--only", "gpu-check", "--image", "tiny:latest")
    s = step(report, "gpu-check")
    assert code == 0 and s["status"] == "ok", (s, err)
    assert "CUDA in the container not proven: tiny:latest has no python3 to run the proof" in s["summary"]
    assert s["data"]["cuda"]["outcome"] == "not-proven"
    code, report, err = host.run("doctor", "--image", "tiny:latest")
    c = check(report, "container-cuda")
    assert c["status"] == "skipped" and "not proven" in c["summary"] and "--image" in c["summary"], c
    assert host.probe_containers() == []  # the early container, which could not start, removed at doctor's end


def test_the_dry_run_lists_the_cuda_container(tmp_path, dockerd_factory, image_tar):
    host = CudaHost(tmp_path, dockerd_factory, image_tar, None)
    code, report, err = host.run("install", "--dry-run", "--only", "gpu-check", "--image", PY_IMAGE)
    commands = step(report, "gpu-check")["commands"]
    assert any("NVIDIA_DRIVER_CAPABILITIES=compute,utility" in c and "python3" in c for c in map(" ".join, commands))




def test_a_proof_whose_output_dockerd_lost_is_run_once_more(tmp_path, dockerd_factory, image_tar):
    """dockerd drops a container's output it has not copied 2 s after the container exits (moby/moby
    daemon/monitor.go); the proof exits 0 and ``docker logs`` is empty: the container is run once more
    (engine/probe_run.py), not reported as an image whose python3 cannot run the proof. STAND-IN for the loss (a race
    of dockerd's own, not to be lost on purpose here): a python3 first on PATH that exits 0 and prints nothing while
    a state folder bound read-write holds a file, taking one a run, else runs the image's python3."""
    lib = fake_cuda.build(tmp_path / "cuda")
    state = tmp_path / "lost"
    state.mkdir()
    (state / "loss-0").write_text("")
    wrapper = tmp_path / "python3-lossy"
    wrapper.write_text("#!/bin/sh\n# STAND-IN for output dockerd lost: exit 0, print nothing, while /gpuprep-lost "
                       "holds a file\nfor f in /gpuprep-lost/*; do [ -e \"$f\" ] && /bin/busybox rm -f \"$f\" && "
                       "exit 0; done\nexec /usr/bin/python3 \"$@\"\n")
    wrapper.chmod(0o755)
    host = CudaHost(tmp_path, dockerd_factory, image_tar, lib, mounts={str(wrapper): "/usr/local/bin/python3"},
                    writable={str(state): "/gpuprep-lost"})
    code, report, err = host.run("doctor", "--image", PY_IMAGE)
    c = check(report, "container-cuda")
    assert list(state.iterdir()) == []  # a proof container ran and its output was lost
    assert c["status"] == "ok" and f"CUDA works in {PY_IMAGE} on 2 GPUs" in c["summary"], (c, err)


def test_a_signal_during_doctor_removes_the_cuda_container_it_began_early(tmp_path, dockerd_factory, image_tar):
    """doctor begins the proof's container before its checks (start_early); SIGTERM while the proof runs ends doctor
    with one line and exit 3, and the container is removed, not left running. STAND-IN for a proof that hangs (a
    GPU call that does not return): a python3 first on PATH that sleeps."""
    lib = fake_cuda.build(tmp_path / "cuda")
    hang = tmp_path / "python3-hangs"
    hang.write_text("#!/bin/sh\n# STAND-IN for a CUDA proof that hangs\nexec /bin/busybox sleep 600\n")
    hang.chmod(0o755)
    host = CudaHost(tmp_path, dockerd_factory, image_tar, lib, mounts={str(hang): "/usr/local/bin/python3"})
    env = {**os.environ, "DOCKER_HOST": host.dockerd.url, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    doctor = subprocess.Popen([sys.executable, "-m", "gpuprep", "--root", str(host.root), "doctor", "--image",
                               PY_IMAGE], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_until(lambda: any(c.status == "running" for c in host.probe_containers("cuda")),
                   what="the proof's container to run", timeout=120)
        doctor.send_signal(signal.SIGTERM)
        out, err = doctor.communicate(timeout=60)
    finally:
        doctor.kill()
    assert doctor.returncode == 3 and "SIGTERM" in err and "Traceback" not in err, (doctor.returncode, err)
    assert host.probe_containers("cuda") == []
