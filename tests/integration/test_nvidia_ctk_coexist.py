"""gpuprep beside `nvidia-ctk runtime configure --runtime=docker`, the way NVIDIA's install guide and many AMIs set
Docker up (issue 22): either may run first, and the host must end with one runtime definition, the user's keys, a
doctor that passes and an install that changes nothing more.

What the real nvidia-ctk (1.18.0 and 1.20.0) writes, seen here: it replaces runtimes.nvidia with
``{"args": [], "path": "nvidia-container-runtime"}`` (a bare name; Docker's key for arguments is runtimeArgs, so a
user's runtimeArgs are dropped), with --set-as-default sets default-runtime, with --cdi.enabled replaces the whole
features object with ``{"cdi": true}``, sorts the keys, indents by 4 spaces and keeps no backup.

Real: NVIDIA's nvidia-ctk and nvidia-container-runtime (tests/provision.sh unpacks both versions), Docker Engine 26.1.5
on its own socket reading the --root tree's daemon.json (it resolves nvidia-ctk's bare runtime name on its PATH,
which holds the tree's /usr/bin as docker.service's holds /usr/bin), runc, the gpuprep CLI with ``--root`` and
``DOCKER_HOST``. STAND-INS (no GPU or driver here): the device nodes and nvidia-smi the runtime's CDI spec names, and
the host's nvidia-smi inside the tree.
"""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import FIXTURES, require_toolkit
from testbed import DEFAULT_GPUS, gpuprep_json, tiny_image, toolkit_bin, write_fake_nvidia_smi

UUIDS = [g["uuid"] for g in DEFAULT_GPUS]
STEPS = "docker-runtime,docker-reload,gpu-check"
# What a user had before either tool ran: Engine 26's keys to start with no network, and keys of their own.
USER_KEYS = {"log-driver": "json-file", "log-opts": {"max-size": "10m"}, "max-concurrent-downloads": 6}


@pytest.fixture(params=["1.18.0", "1.20.0"])
def ctk(request):
    """Run NVIDIA's real `nvidia-ctk runtime configure --runtime=docker --config=FILE FLAGS...` of each version."""
    require_toolkit(request.param)

    def run(daemon_json: Path, *flags: str) -> None:
        argv = [str(toolkit_bin(request.param) / "nvidia-ctk"), "runtime", "configure", "--runtime=docker",
                f"--config={daemon_json}", *flags]
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr

    return run


class Host:
    """A --root tree (AL2023's os-release, the runtime's wrapper at the toolkit's /usr/bin path, the host's
    nvidia-smi) and a private Engine 26 reading its daemon.json, started when the test says."""

    def __init__(self, tmp_path: Path, dockerd_factory, fake_gpu, features: dict | None = None) -> None:
        self.root = tmp_path / "root"
        (self.root / "etc/docker").mkdir(parents=True)
        shutil.copy(FIXTURES / "distros/amzn-2023/etc/os-release", self.root / "etc/os-release")
        write_fake_nvidia_smi(self.root / "usr/bin/nvidia-smi")
        shutil.copy(fake_gpu["runtime"], self.root / "usr/bin/nvidia-container-runtime")
        self.daemon_json = self.root / "etc/docker/daemon.json"
        self.user = {"bridge": "none", "iptables": False, "ip6tables": False, "userland-proxy": False, **USER_KEYS,
                     "cdi-spec-dirs": [str(fake_gpu["nvidia"].spec.parent)], **({"features": features} if features
                                                                                 else {})}
        self.daemon_json.write_text(json.dumps(self.user, indent=2) + "\n")
        self.factory = dockerd_factory
        self.dockerd = None

    def start(self):
        self.dockerd = self.factory(config_path=self.daemon_json, engine_id="26",
                                    path_dirs=(str(self.root / "usr/bin"),))
        tiny_image(self.dockerd.client())
        return self.dockerd

    def config(self) -> dict:
        return json.loads(self.daemon_json.read_text())

    def gpuprep(self, *args: str) -> tuple[int, dict, str]:
        return gpuprep_json(self.root, self.dockerd.url, *args)

    def install(self, steps: str = STEPS) -> dict[str, dict]:
        code, report, err = self.gpuprep("install", "--only", steps, "--image", "tiny:latest")
        assert code == 0, (err, report)
        return {s["id"]: s for s in report["steps"]}

    def doctor(self) -> tuple[dict[str, tuple[str, str]], dict[str, dict]]:
        """(the failing checks, every check) of the docker and container groups (the tree has no GPU, packages or ECS
        for the rest to pass), less the toolkit's: they read the spec dirs inside the tree, while this machine's
        dockerd reads the test's own (the CDI route's container proves that one)."""
        _, report, _ = self.gpuprep("doctor", "--image", "tiny:latest")
        checks = {c["id"]: c for c in report["checks"] if c["group"] in ("docker", "container")
                  and not c["id"].startswith("toolkit-")}
        return {k: (c["status"], c["summary"]) for k, c in checks.items() if c["status"] not in ("ok", "skipped")}, \
            checks


def assert_users_keys_kept(config: dict, user: dict) -> None:
    lost = {k: v for k, v in user.items() if k != "features" and config.get(k) != v}
    assert not lost, (lost, config)


def test_install_after_nvidia_ctk_keeps_its_registration_and_the_users_keys(tmp_path, dockerd_factory, fake_gpu, ctk):
    """nvidia-ctk first (--set-as-default --cdi.enabled, as NVIDIA's guide for CDI): gpuprep install finds the runtime
    registered by its bare name, which dockerd finds at the tree's /usr/bin/nvidia-container-runtime, the toolkit's
    path: nothing to rewrite, no second definition, no reload; both routes (the default runtime, Docker's CDI)
    prove the GPUs through NVIDIA's runtime."""
    host = Host(tmp_path, dockerd_factory, fake_gpu)
    ctk(host.daemon_json, "--set-as-default", "--cdi.enabled")
    written = host.config()
    assert written["runtimes"] == {"nvidia": {"args": [], "path": "nvidia-container-runtime"}}, written
    assert written["default-runtime"] == "nvidia" and written["features"] == {"cdi": True}
    dockerd = host.start()
    pid, before = dockerd.current_pid(), host.daemon_json.read_bytes()

    steps = host.install()
    assert steps["docker-runtime"]["status"] == "ok", steps["docker-runtime"]
    assert steps["docker-reload"]["status"] == "ok"
    check = steps["gpu-check"]
    assert check["status"] == "ok" and check["data"]["uuids"] == UUIDS, check
    assert [r["route"] for r in check["data"]["routes"]] == ["default-runtime", "cdi"]
    assert host.daemon_json.read_bytes() == before and dockerd.current_pid() == pid
    assert list(host.config()["runtimes"]) == ["nvidia"]
    assert_users_keys_kept(host.config(), host.user)
    bad, checks = host.doctor()
    assert not bad, bad
    assert checks["docker-runtime-binary"]["data"]["resolved"] == str(host.root / "usr/bin/nvidia-container-runtime")


def test_nvidia_ctk_after_install_leaves_a_host_doctor_passes_and_install_does_not_touch(
        tmp_path, dockerd_factory, fake_gpu, ctk):
    """gpuprep first, then nvidia-ctk (--set-as-default): nvidia-ctk swaps gpuprep's absolute path for its bare name,
    drops runtimeArgs for its args, sorts the keys. Doctor passes (its args is empty, its name is found on dockerd's
    PATH) and the next install changes nothing: no rewrite back and forth, no reload, no restart."""
    host = Host(tmp_path, dockerd_factory, fake_gpu)
    dockerd = host.start()
    pid = dockerd.current_pid()
    # The first install's gpu-check is left out: gpuprep registers /usr/bin/nvidia-container-runtime, a path inside
    # the tree that this machine's dockerd cannot run (its runtime lives in the tree, found by its bare name).
    steps = host.install("docker-runtime,docker-reload")
    assert steps["docker-runtime"]["status"] == "changed" and steps["docker-reload"]["data"]["done"] == "reload"
    assert host.config()["runtimes"]["nvidia"] == {"path": "/usr/bin/nvidia-container-runtime", "runtimeArgs": []}

    ctk(host.daemon_json, "--set-as-default")
    assert host.config()["runtimes"]["nvidia"] == {"args": [], "path": "nvidia-container-runtime"}
    subprocess.run(["kill", "-HUP", str(pid)], check=True)  # the reload nvidia-ctk recommends
    bad, checks = host.doctor()
    assert not bad, bad
    assert checks["docker-nvidia-ctk-edits"]["status"] == "ok"

    after_ctk = host.daemon_json.read_bytes()
    steps = host.install()
    assert {k: s["status"] for k, s in steps.items() if s["status"] != "skipped"} == {
        "docker-runtime": "ok", "docker-reload": "ok", "gpu-check": "ok"}, steps
    assert steps["gpu-check"]["data"]["uuids"] == UUIDS
    assert host.daemon_json.read_bytes() == after_ctk and dockerd.current_pid() == pid
    assert_users_keys_kept(host.config(), host.user)


def test_what_nvidia_ctk_dropped_doctor_names_and_install_puts_back(tmp_path, dockerd_factory, fake_gpu, ctk):
    """The damage: the user's runtimeArgs and features (here containerd-snapshotter off, a key Docker 26 reads), then
    gpuprep install, then `nvidia-ctk runtime configure --set-as-default --cdi.enabled`, which drops both. Doctor's
    docker-nvidia-ctk-edits names them and gpuprep's backup they are in; its hint, run as written, puts them back
    beside nvidia-ctk's CDI switch, keeping every other key; then doctor passes and install changes nothing."""
    host = Host(tmp_path, dockerd_factory, fake_gpu, features={"containerd-snapshotter": False})
    runtime_args = ["--debug"]  # dockerd passes it before the command; NVIDIA's runtime hands it on to runc
    host.user["runtimes"] = {"nvidia": {"path": "/usr/bin/nvidia-container-runtime", "runtimeArgs": runtime_args}}
    host.daemon_json.write_text(json.dumps(host.user, indent=2) + "\n")
    dockerd = host.start()
    steps = host.install("docker-runtime,docker-reload")
    assert steps["docker-runtime"]["status"] == "changed"  # sets the default; the backup holds the user's file

    ctk(host.daemon_json, "--set-as-default", "--cdi.enabled")
    damaged = host.config()
    assert damaged["features"] == {"cdi": True} and "runtimeArgs" not in damaged["runtimes"]["nvidia"], damaged
    bad, checks = host.doctor()
    edits = checks["docker-nvidia-ctk-edits"]
    assert edits["status"] == "warning", edits
    assert "features containerd-snapshotter" in edits["summary"] and '["--debug"]' in edits["summary"]
    assert edits["data"]["backup"].startswith("/etc/docker/daemon.json.gpuprep-")
    fix = edits["fixes"][0]["argv"]  # the fix as a value (issue 26): the command, --root and all
    assert fix == ["gpuprep", "--root", str(host.root), "install", "--only", "docker-runtime,docker-reload"], edits
    assert f"`{shlex.join(fix)}`" in edits["hint"]
    code, report, err = gpuprep_json(host.root, dockerd.url, *fix[3:])
    assert code == 0, (err, report)
    repaired = host.config()
    assert repaired["features"] == {"cdi": True, "containerd-snapshotter": False}, repaired
    assert repaired["runtimes"]["nvidia"]["runtimeArgs"] == runtime_args
    assert_users_keys_kept(repaired, {k: v for k, v in host.user.items() if k != "runtimes"})
    bad, checks = host.doctor()
    assert not bad, bad
    steps = host.install()
    assert {k: s["status"] for k, s in steps.items() if s["status"] != "skipped"} == {
        "docker-runtime": "ok", "docker-reload": "ok", "gpu-check": "ok"}, steps


def test_arguments_under_args_move_to_runtime_args(tmp_path, dockerd_factory, fake_gpu, ctk):
    """A person who follows nvidia-ctk's key and adds arguments under args gets nothing passed: doctor names it and
    install moves them to runtimeArgs, where dockerd passes them to the runtime."""
    host = Host(tmp_path, dockerd_factory, fake_gpu)
    ctk(host.daemon_json, "--set-as-default")
    config = host.config()
    config["runtimes"]["nvidia"]["args"] = ["--debug"]
    host.daemon_json.write_text(json.dumps(config, indent=4))
    host.start()
    bad, checks = host.doctor()
    edits = checks["docker-nvidia-ctk-edits"]
    assert edits["status"] == "warning" and '["--debug"] under "args"' in edits["summary"], edits
    steps = host.install()
    assert steps["docker-runtime"]["status"] == "changed" and steps["gpu-check"]["status"] == "ok", steps
    assert host.config()["runtimes"]["nvidia"] == {"runtimeArgs": ["--debug"],
                                                  "path": "nvidia-container-runtime"}
    bad, checks = host.doctor()
    assert not bad, bad
