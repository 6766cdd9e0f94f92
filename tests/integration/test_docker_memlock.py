"""install's docker-memlock on a private real dockerd (issue 28, item 5): where EFA is present and nothing gives
containers a memlock limit, daemon.json gets ``default-ulimits.memlock`` unlimited, its other keys kept, and
docker-reload restarts dockerd (it reads default-ulimits only at start), and the Engine then asks for that limit
in every container it starts.

This VM withholds CAP_SYS_RESOURCE (``CapEff`` 0x1fffeffffff) and holds RLIMIT_MEMLOCK at 8 MiB hard, so no
process here may raise it: before the change a container runs with 8192 KiB; after it, runc refuses to start one
with "error setting rlimit type 8" (RLIMIT_MEMLOCK is 8 on Linux), which is the Engine passing the new default on.
On an instance, where root has CAP_SYS_RESOURCE, the same container starts with ``ulimit -l`` unlimited.

Real: dockerd 20.10 (its daemon.json the one inside the --root tree gpuprep edits), runc, containerd, busybox's
``ulimit`` in a container, the gpuprep CLI. SIMULATED (no EFA here): the EFA devices are sysfs stand-ins in the
root (PCI functions 1d0f:efa1, tests/hosttree.py).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import docker.errors
import pytest
from conftest import FIXTURES, REPO
from contract import json_output
from testbed import tiny_image

EFA_SYSFS = "sys/bus/pci/devices/0000:a0:00.0"


def make_root(tmp_path: Path, efa: bool) -> Path:
    root = tmp_path / "root"
    (root / "etc/docker").mkdir(parents=True)
    (root / "etc/os-release").write_text((FIXTURES / "distros/amzn-2023/etc/os-release").read_text())
    if efa:
        (root / EFA_SYSFS).mkdir(parents=True)
        for name, value in (("vendor", "0x1d0f"), ("device", "0xefa1"), ("class", "0x020000")):
            (root / EFA_SYSFS / name).write_text(value + "\n")
    return root


def gpuprep(root: Path, url: str, *args: str) -> tuple[int, dict, str]:
    env = {**os.environ, "DOCKER_HOST": url, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-m", "gpuprep", "--root", str(root), "--json", *args],
                          capture_output=True, text=True, timeout=180, env=env)
    return proc.returncode, json_output(proc.stdout), proc.stderr


def can_raise_memlock() -> bool:
    """This machine lets root raise RLIMIT_MEMLOCK: CAP_SYS_RESOURCE (bit 24) in the effective set."""
    status = Path("/proc/self/status").read_text()
    cap = next(line.split()[1] for line in status.splitlines() if line.startswith("CapEff:"))
    return bool(int(cap, 16) & (1 << 24))


def memlock_in_a_container(dockerd) -> str:
    client = dockerd.client()
    try:
        tiny_image(client)
        return client.containers.run("tiny:latest", ["sh", "-c", "ulimit -l"], remove=True,
                                     network_mode="none").decode().strip()
    finally:
        client.close()


def test_efa_host_gets_unlimited_memlock_for_containers(tmp_path, dockerd_factory):
    root = make_root(tmp_path, efa=True)
    daemon_json = root / "etc/docker/daemon.json"
    # The nvidia runtime registered, as docker-runtime leaves it in a whole install (docker-reload verifies it after
    # its restart): here runc itself under that name, a STAND-IN (no GPU here).
    nvidia = {"nvidia": {"path": shutil.which("runc") or "/usr/sbin/runc", "runtimeArgs": []}}
    dockerd = dockerd_factory(config_path=daemon_json, config={"log-level": "warn", "runtimes": nvidia})
    assert memlock_in_a_container(dockerd) != "unlimited"
    pid = dockerd.current_pid()

    code, plan, err = gpuprep(root, dockerd.url, "install", "--dry-run", "--only", "docker-memlock,docker-reload")
    assert code == 0, err
    steps = {s["id"]: s for s in plan["steps"]}
    assert steps["docker-memlock"]["status"] == "planned" and '"memlock"' in steps["docker-memlock"]["diff"]
    assert steps["docker-reload"]["status"] == "planned"

    code, done, err = gpuprep(root, dockerd.url, "install", "--only", "docker-memlock,docker-reload")
    assert code == 0, (err, done)
    steps = {s["id"]: s for s in done["steps"]}
    assert steps["docker-memlock"]["status"] == "changed"
    assert steps["docker-reload"]["data"]["done"] == "restart" and dockerd.current_pid() not in (None, pid)
    config = json.loads(daemon_json.read_text())
    assert config["log-level"] == "warn" and config["default-ulimits"]["memlock"] == {
        "Name": "memlock", "Hard": -1, "Soft": -1}
    if can_raise_memlock():
        assert memlock_in_a_container(dockerd) == "unlimited"
    else:
        with pytest.raises(docker.errors.APIError, match="error setting rlimit type 8"):
            memlock_in_a_container(dockerd)  # the Engine asks for memlock unlimited now (see the docstring)

    code, again, err = gpuprep(root, dockerd.url, "install", "--only", "docker-memlock,docker-reload")
    assert code == 0 and {s["id"]: s["status"] for s in again["steps"] if s["status"] != "skipped"} == {
        "docker-memlock": "ok", "docker-reload": "ok"}, again


def test_no_efa_no_change(tmp_path, dockerd_factory):
    root = make_root(tmp_path, efa=False)
    dockerd = dockerd_factory(config_path=root / "etc/docker/daemon.json", config={})
    code, done, err = gpuprep(root, dockerd.url, "install", "--only", "docker-memlock,docker-reload")
    assert code == 0, err
    steps = {s["id"]: s for s in done["steps"]}
    assert steps["docker-memlock"]["status"] == "skipped" and "no EFA device" in steps["docker-memlock"]["summary"]
    assert steps["docker-reload"]["data"]["action"] == "none"
