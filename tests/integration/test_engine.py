"""install's docker-runtime, docker-reload and gpu-check on a private real dockerd (docs/testbed.md 1-3, 10).

Real: dockerd 20.10 and, where the Engine's behaviour matters (``--validate``, SIGHUP and restart, API version,
its error texts, the runtimes.d route), also 26.1.5 (``docker_engine``: own socket, data-root, exec-root; its
daemon.json is the one inside the --root tree gpuprep edits), runc, containerd, docker-py, the gpuprep CLI as a
user runs it.
The nvidia runtime is NVIDIA's real nvidia-container-runtime 1.20.0 in cdi mode (tests/testbed.py
``write_nvidia_runtime``), so Docker's side (runtime registration, default runtime, SIGHUP, restart) and the runtime's
are real. STAND-INS (no GPU or NVIDIA driver on these machines): the device nodes and the nvidia-smi its CDI spec
names, and the host's nvidia-smi inside the root tree.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import psutil
import pytest
from conftest import FIXTURES, REPO, require
from contract import json_output
from testbed import DEFAULT_GPUS, PrivateDockerd, tiny_image, write_fake_nvidia_smi

UUIDS = [g["uuid"] for g in DEFAULT_GPUS]
STEPS = "docker-runtime,docker-reload,gpu-check"


def make_root(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    (root / "etc/docker").mkdir(parents=True)
    shutil.copy(FIXTURES / "distros/amzn-2023/etc/os-release", root / "etc/os-release")
    write_fake_nvidia_smi(root / "usr/bin/nvidia-smi")  # the host's view of its GPUs (SIMULATED)
    return root


def gpuprep(root: Path, url: str, *args: str, timeout: float = 120) -> tuple[int, dict, str]:
    env = {**os.environ, "DOCKER_HOST": url, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-m", "gpuprep", "--root", str(root), "--json", *args],
                          capture_output=True, text=True, timeout=timeout, env=env)
    try:
        out = json_output(proc.stdout)
    except json.JSONDecodeError:
        pytest.fail(f"gpuprep printed no JSON (exit {proc.returncode}): {proc.stdout!r} {proc.stderr}")
    return proc.returncode, out, proc.stderr


def steps(report: dict) -> dict[str, dict]:
    return {s["id"]: s for s in report["steps"]}


def run_nvidia_smi(dockerd: PrivateDockerd) -> str:
    """What an ECS task would run: no runtime argument."""
    client = dockerd.client()
    try:
        return client.containers.run("tiny:latest", ["nvidia-smi", "-L"], remove=True, network_mode="none",
                                     environment={"NVIDIA_VISIBLE_DEVICES": "all"}).decode()
    finally:
        client.close()


def probe_containers(dockerd: PrivateDockerd) -> list:
    client = dockerd.client()
    try:
        return client.containers.list(all=True, filters={"label": "io.gpuprep.probe"})
    finally:
        client.close()


@pytest.fixture
def simhost(tmp_path, dockerd_factory, fake_gpu):
    root = make_root(tmp_path)
    dockerd = dockerd_factory(config_path=root / "etc/docker/daemon.json", config={})  # plain runc
    client = dockerd.client()
    tiny_image(client)
    client.close()
    return root, dockerd, fake_gpu["runtime"]


def test_install_makes_nvidia_the_default_and_a_second_run_changes_nothing(simhost, docker_engine):
    import docker.errors

    root, dockerd, runtime = simhost
    daemon_json = root / "etc/docker/daemon.json"
    with pytest.raises(docker.errors.APIError, match='exec: "nvidia-smi": executable file not found'):
        run_nvidia_smi(dockerd)  # the negative case: runc, no nvidia-smi in the image
    pid = dockerd.current_pid()
    started_at = psutil.Process(pid).create_time()
    args = ("install", "--only", STEPS, "--runtime-path", str(runtime), "--image", "tiny:latest")

    before = daemon_json.read_bytes()
    code, report, err = gpuprep(root, dockerd.url, *args, "--dry-run")
    assert code == 0, err
    s = steps(report)
    assert s["docker-runtime"]["status"] == "planned"
    assert '+  "default-runtime": "nvidia"' in s["docker-runtime"]["diff"]  # the file's 2-space indent kept
    assert s["docker-reload"]["status"] == "planned" and s["docker-reload"]["commands"] == [["kill", "-HUP", str(pid)]]
    assert s["gpu-check"]["status"] == "planned"
    assert daemon_json.read_bytes() == before

    code, report, err = gpuprep(root, dockerd.url, *args)
    assert code == 0, err
    s = steps(report)
    assert s["docker-runtime"]["status"] == "changed"
    if docker_engine.major >= 23:  # the running Engine's own dockerd checks the new file before it is written
        assert f"validated by {docker_engine.dockerd} --validate" in s["docker-runtime"]["summary"]
    else:  # Engine 20.10 has no --validate (23+ has): the step says it could not validate, and why.
        assert "not validated:" in s["docker-runtime"]["summary"]
        assert "has no --validate" in s["docker-runtime"]["summary"]
    assert s["docker-reload"]["status"] == "changed" and s["docker-reload"]["data"]["done"] == "reload"
    assert s["gpu-check"]["status"] == "ok" and s["gpu-check"]["data"]["uuids"] == UUIDS
    assert s["gpu-check"]["data"]["host_uuids"] == UUIDS
    # Docker's CDI is off on 20.10 (none) and 26 (only with features.cdi): the default runtime is the one route.
    # On 28 it is on by default (28.2+) and reads the runtime's own spec: both routes are proved.
    routes = ["default-runtime", "cdi"] if docker_engine.major >= 28 else ["default-runtime"]
    assert [r["route"] for r in s["gpu-check"]["data"]["routes"]] == routes
    assert json.loads(daemon_json.read_text())["default-runtime"] == "nvidia"
    assert all(u in run_nvidia_smi(dockerd) for u in UUIDS)  # no runtime flag, the GPUs are there
    assert dockerd.current_pid() == pid  # SIGHUP was enough
    assert probe_containers(dockerd) == []  # gpu-check removed its container

    stat = daemon_json.stat()
    code, report, err = gpuprep(root, dockerd.url, *args)
    assert code == 0, err
    assert report["status"] == "ok"
    assert {s["id"]: s["status"] for s in report["steps"] if s["status"] != "skipped"} == \
        {"docker-runtime": "ok", "docker-reload": "ok", "gpu-check": "ok"}
    assert steps(report)["docker-reload"]["data"]["action"] == "none"
    assert dockerd.current_pid() == pid
    assert psutil.Process(pid).create_time() == started_at  # the same process, never restarted
    assert daemon_json.stat().st_mtime_ns == stat.st_mtime_ns
    assert len(list(daemon_json.parent.glob("daemon.json.gpuprep-*"))) == 1


class FlagDockerd(PrivateDockerd):
    """A dockerd whose command line sets --default-runtime, as some hand-built hosts' units do: a
    daemon.json that also sets it is valid JSON that dockerd refuses (reload and start)."""

    @property
    def argv(self) -> list[str]:
        return [*super().argv, "--default-runtime=runc"]


@pytest.fixture
def flag_dockerd(tmp_path, dockerd_factory, fake_gpu):
    dockerd_factory  # noqa: B018 -- for its skip conditions (root, dockerd, runc, containerd)
    root = make_root(tmp_path)
    dockerd = FlagDockerd(config_path=root / "etc/docker/daemon.json", config={})
    try:
        dockerd.start()
        client = dockerd.client()
        tiny_image(client)
        client.close()
        yield root, dockerd, fake_gpu["runtime"]
    finally:
        dockerd.cleanup()


def test_a_config_dockerd_refuses_is_rolled_back_and_dockerd_runs_again(flag_dockerd):
    root, dockerd, runtime = flag_dockerd
    daemon_json = root / "etc/docker/daemon.json"
    before = daemon_json.read_bytes()
    pid = dockerd.current_pid()
    code, report, err = gpuprep(root, dockerd.url, "install", "--only", STEPS, "--runtime-path", str(runtime),
                                "--image", "tiny:latest")
    assert code == 1, err
    s = steps(report)
    assert s["docker-runtime"]["status"] == "changed"
    reload = s["docker-reload"]
    assert reload["status"] == "failed"
    assert "restored" in reload["summary"] and "runs again with the old config" in reload["summary"]
    assert "specified both as a flag and in the configuration file" in reload["summary"]
    assert s["gpu-check"]["status"] == "skipped"
    assert "error: docker-reload:" in err and "hint:" in err
    assert daemon_json.read_bytes() == before  # the old config is back
    dockerd.wait_ready(10)
    assert dockerd.current_pid() not in (None, pid)  # restarted by gpuprep with the old config
    client = dockerd.client()
    try:
        assert client.info()["DefaultRuntime"] == "runc"
    finally:
        client.close()


def test_a_default_runtime_the_file_no_longer_sets_takes_a_restart(simhost, docker_engine):
    """SIGHUP cannot unset a default runtime (docs/testbed.md 3; Engine 26 the same): gpuprep restarts the
    hand-started dockerd, with its own command line and environment."""
    root, dockerd, runtime = simhost
    daemon_json = root / "etc/docker/daemon.json"
    config = json.loads(daemon_json.read_text())
    daemon_json.write_text(json.dumps({**config, "runtimes": {"nvidia": {"path": str(runtime), "runtimeArgs": []}},
                                       "default-runtime": "nvidia"}))
    dockerd.stop()
    dockerd.start()
    daemon_json.write_text(json.dumps({**config, "runtimes": {"nvidia": {"path": str(runtime), "runtimeArgs": []}}}))
    pid = dockerd.current_pid()
    code, report, err = gpuprep(root, dockerd.url, "install", "--only", "docker-runtime,docker-reload",
                                "--runtime-path", str(runtime), "--no-default-runtime")
    assert code == 0, err
    s = steps(report)
    assert s["docker-runtime"]["status"] == "ok"
    assert s["docker-reload"]["status"] == "changed" and s["docker-reload"]["data"]["done"] == "restart"
    new_pid = dockerd.current_pid()
    assert new_pid not in (None, pid)
    client = dockerd.client()
    try:
        info = client.info()
    finally:
        client.close()
    assert info["DefaultRuntime"] == "runc" and "nvidia" in info["Runtimes"]
    code, report, err = gpuprep(root, dockerd.url, "install", "--only", "docker-runtime,docker-reload",
                                "--runtime-path", str(runtime), "--no-default-runtime")
    assert code == 0 and report["status"] == "ok", err
    assert dockerd.current_pid() == new_pid


def test_engine_down_is_one_line_with_a_hint(simhost):
    root, dockerd, runtime = simhost
    dockerd.stop()
    code, report, err = gpuprep(root, dockerd.url, "install", "--only", "docker-reload,gpu-check",
                                "--runtime-path", str(runtime), "--image", "tiny:latest")
    assert code == 1
    reload = steps(report)["docker-reload"]
    assert reload["status"] == "failed" and "does not answer" in reload["summary"]
    assert "\n" not in reload["summary"] and dockerd.url in reload["hint"]
    assert "Traceback" not in err


def test_gpu_check_names_the_broken_link(simhost, docker_engine):
    """runc still the default: gpu-check fails saying nvidia is not registered / not the default."""
    root, dockerd, runtime = simhost
    code, report, err = gpuprep(root, dockerd.url, "install", "--only", "gpu-check", "--image", "tiny:latest")
    assert code == 1
    check = steps(report)["gpu-check"]
    assert check["status"] == "failed" and check["summary"].startswith("runtime-missing:")
    assert "docker-runtime" in check["hint"]


DOCKER_UNIT = """[Unit]
Description=Docker Application Container Engine

[Service]
Type=notify
ExecStart=/usr/bin/dockerd -H fd://
ExecReload=/bin/kill -s HUP $MAINPID

[Install]
WantedBy=multi-user.target
"""


def test_docker_service_in_a_root_is_enabled_offline(tmp_path):
    """Real ``systemctl --root``: an image's docker.service is enabled for its next boot, not started."""
    require("systemctl")
    root = make_root(tmp_path)
    unit = root / "usr/lib/systemd/system/docker.service"
    unit.parent.mkdir(parents=True)
    unit.write_text(DOCKER_UNIT)
    env = {k: v for k, v in os.environ.items() if k != "DOCKER_HOST"}
    wants = root / "etc/systemd/system/multi-user.target.wants/docker.service"
    for dry, status in (("--dry-run", "planned"), (None, "changed"), (None, "ok")):
        proc = subprocess.run([sys.executable, "-m", "gpuprep", "--root", str(root), "--json", "install", "--only",
                               "docker-service", *([dry] if dry else [])], capture_output=True, text=True,
                              timeout=60, env={**env, "PYTHONPATH": str(REPO)})
        step = steps(json_output(proc.stdout))["docker-service"]
        assert proc.returncode == 0 and step["status"] == status, (step, proc.stderr)
        if status == "planned":
            assert step["commands"] == [["systemctl", f"--root={root.resolve()}", "enable", "docker.service"]]
            assert not wants.exists()
    assert wants.is_symlink()


def test_docker_service_with_docker_host_counts_the_engine_answering(simhost):
    root, dockerd, _ = simhost
    code, report, err = gpuprep(root, dockerd.url, "install", "--only", "docker-service")
    assert code == 0 and steps(report)["docker-service"]["status"] == "ok", err
    dockerd.stop()
    code, report, err = gpuprep(root, dockerd.url, "install", "--only", "docker-service")
    assert code == 1 and "does not answer" in steps(report)["docker-service"]["summary"]


# -- each link of the chain, broken once: gpu-check names it -----------------------------------
def test_no_default_runtime_registers_nvidia_and_gpu_check_says_it_is_not_the_default(simhost):
    """--no-default-runtime: nvidia registered (SIGHUP), runc stays the default, and the proof says so."""
    root, dockerd, runtime = simhost
    pid = dockerd.current_pid()
    code, report, err = gpuprep(root, dockerd.url, "install", "--only", STEPS, "--runtime-path", str(runtime),
                                "--image", "tiny:latest", "--no-default-runtime")
    assert code == 1, err
    s = steps(report)
    assert s["docker-runtime"]["status"] == "changed" and "default-runtime" not in s["docker-runtime"]["summary"]
    config = json.loads((root / "etc/docker/daemon.json").read_text())
    assert "default-runtime" not in config and config["runtimes"]["nvidia"]["path"] == str(runtime)
    assert s["docker-reload"]["status"] == "changed" and s["docker-reload"]["data"]["done"] == "reload"
    assert dockerd.current_pid() == pid
    check = s["gpu-check"]
    assert check["status"] == "failed" and check["summary"].startswith("runtime-not-default:"), check
    assert check["data"]["link"] == "runtime-not-default"
    assert "it is runc" in check["summary"] and '"default-runtime": "nvidia"' in check["hint"]
    assert probe_containers(dockerd) == []


def _nvidia_default(root: Path, path: str) -> None:
    daemon_json = root / "etc/docker/daemon.json"
    config = json.loads(daemon_json.read_text())
    daemon_json.write_text(json.dumps({**config, "runtimes": {"nvidia": {"path": path, "runtimeArgs": []}},
                                       "default-runtime": "nvidia"}, indent=2))


def test_gpu_check_names_a_runtime_binary_that_cannot_run(simhost, docker_engine):
    """The toolkit removed by hand: daemon.json still names the runtime, its binary is gone."""
    root, dockerd, _ = simhost
    gone = "/usr/local/bin/nvidia-container-runtime-removed"
    _nvidia_default(root, gone)
    dockerd.stop()
    dockerd.start()
    code, report, err = gpuprep(root, dockerd.url, "install", "--only", "gpu-check", "--image", "tiny:latest")
    assert code == 1, err
    check = steps(report)["gpu-check"]
    assert check["status"] == "failed" and check["summary"].startswith("runtime-binary:"), check
    assert gone in check["summary"] and f"gpuprep --root {root} install --only packages" in check["hint"]
    assert probe_containers(dockerd) == []


def test_gpu_check_names_the_driver_when_nvidia_smi_exits_9(simhost, tmp_path):
    """The runtime works, the driver does not: nvidia-smi in the container exits 9 (NVML: driver not loaded)."""
    from testbed import write_fake_nvidia_smi, write_nvidia_runtime

    root, dockerd, _ = simhost
    smi = write_fake_nvidia_smi(tmp_path / "broken/nvidia-smi", exit_code=9)  # STAND-IN: no driver here
    runtime = write_nvidia_runtime(tmp_path / "broken", smi)
    _nvidia_default(root, str(runtime.path))
    dockerd.stop()
    dockerd.start()
    code, report, err = gpuprep(root, dockerd.url, "install", "--only", "gpu-check", "--image", "tiny:latest")
    assert code == 1, err
    check = steps(report)["gpu-check"]
    assert check["status"] == "failed" and check["summary"].startswith("driver:"), check
    assert "exited 9: the NVIDIA kernel module is not loaded" in check["summary"] and "modprobe nvidia" in check["hint"]
    assert check["data"]["link"] == "driver" and check["data"]["exit_code"] == 9
    assert "couldn't communicate with the NVIDIA driver" in check["data"]["output"]
    assert probe_containers(dockerd) == []


# -- Amazon Linux's /etc/docker-runtimes.d route ------------------------------------------------
class AddRuntimeDockerd(PrivateDockerd):
    """dockerd as Amazon Linux's docker.service starts it: docker-setup-runtimes.sh turns each
    executable in /etc/docker-runtimes.d into ``--add-runtime NAME=PATH`` (here the root tree's)."""

    def __init__(self, runtime: Path, **kwargs) -> None:
        super().__init__(**kwargs)
        self.runtime = runtime

    @property
    def argv(self) -> list[str]:
        return [*super().argv, f"--add-runtime=nvidia={self.runtime}"]


@pytest.fixture
def al2023_runtimes_dir(tmp_path, dockerd_factory, fake_gpu):
    """The AL2023 ECS GPU AMI's layout: /etc/docker-runtimes.d/nvidia -> /usr/bin/nvidia-container-runtime."""
    dockerd_factory  # noqa: B018 -- for its skip conditions (root, dockerd, runc, containerd)
    root = make_root(tmp_path)
    runtime = root / "usr/bin/nvidia-container-runtime"
    shutil.copy(fake_gpu["runtime"], runtime)  # NVIDIA's runtime (its wrapper) where the toolkit puts it
    (root / "etc/docker-runtimes.d").mkdir()
    os.symlink("/usr/bin/nvidia-container-runtime", root / "etc/docker-runtimes.d/nvidia")
    dockerd = AddRuntimeDockerd(runtime, config_path=root / "etc/docker/daemon.json", config={})
    try:
        dockerd.start()
        client = dockerd.client()
        tiny_image(client)
        client.close()
        yield root, dockerd, runtime
    finally:
        dockerd.cleanup()


def test_runtimes_dir_route_sets_only_the_default_and_gpu_check_passes(al2023_runtimes_dir):
    root, dockerd, runtime = al2023_runtimes_dir
    daemon_json = root / "etc/docker/daemon.json"
    pid = dockerd.current_pid()
    args = ("install", "--only", STEPS, "--image", "tiny:latest")  # no --runtime-path: the dir's runtime is used
    code, report, err = gpuprep(root, dockerd.url, *args)
    assert code == 0, err
    s = steps(report)
    # Engine 20.10 validates daemon.json alone before merging flags: a default-runtime naming a runtime
    # only --add-runtime registers stops it. So the runtime is defined in the file with the flag's own path.
    config = json.loads(daemon_json.read_text())
    assert config["default-runtime"] == "nvidia" and config["runtimes"]["nvidia"]["path"] == str(runtime), config
    assert s["docker-reload"]["data"]["done"] == "reload" and dockerd.current_pid() == pid
    assert s["gpu-check"]["status"] == "ok" and s["gpu-check"]["data"]["uuids"] == UUIDS, s["gpu-check"]
    client = dockerd.client()
    try:
        info = client.info()
    finally:
        client.close()
    assert info["DefaultRuntime"] == "nvidia" and info["Runtimes"]["nvidia"]["path"] == str(runtime)

    code, report, err = gpuprep(root, dockerd.url, *args)
    assert code == 0 and report["status"] == "ok", err
    assert dockerd.current_pid() == pid


def test_runtimes_dir_route_removes_a_second_definition_from_daemon_json(al2023_runtimes_dir, tmp_path):
    """A daemon.json nvidia entry with another path beside the flag: Engine 20.10 let the file's win
    silently (docs/domain.md); gpuprep leaves one meaning, the flag's path, and dockerd shows that one."""
    root, dockerd, runtime = al2023_runtimes_dir
    daemon_json = root / "etc/docker/daemon.json"
    other = tmp_path / "other-runtime"
    shutil.copy(runtime, other)
    config = json.loads(daemon_json.read_text())
    daemon_json.write_text(json.dumps({**config, "runtimes": {"nvidia": {"path": str(other)}}}, indent=2))
    dockerd.stop()
    dockerd.start()
    code, report, err = gpuprep(root, dockerd.url, "install", "--only", STEPS, "--image", "tiny:latest")
    assert code == 0, err
    s = steps(report)
    assert f"path {other} -> {runtime}" in s["docker-runtime"]["summary"]  # one meaning: the flag's path
    assert json.loads(daemon_json.read_text())["runtimes"]["nvidia"]["path"] == str(runtime)
    assert s["gpu-check"]["status"] == "ok", s["gpu-check"]
    client = dockerd.client()
    try:
        info = client.info()
    finally:
        client.close()
    assert info["DefaultRuntime"] == "nvidia" and info["Runtimes"]["nvidia"]["path"] == str(runtime), info["Runtimes"]


def test_a_slow_gpu_runtime_start_is_waited_for_not_called_an_engine_failure(dockerd_factory, fake_gpu, tmp_path):
    """Without persistence mode the runtime's GPU setup takes 1-3 s per GPU (NVIDIA/nvidia-docker 1279), so
    `docker start` can outlast doctor's 5 s `docker info` client. SIMULATED slowness (no GPU to initialise here):
    a wrapper sleeps 7 s on `create` before it execs NVIDIA's real runtime; the Engine, docker-py, the runtime and the
    probe are real."""
    from testbed import tiny_image

    from gpuprep.engine.dockerd import docker_info
    from gpuprep.engine.gpu_container import probe
    from gpuprep.host import Host

    slow = tmp_path / "slow-runtime"
    slow.write_text(f'#!/bin/sh\ncase " $* " in *" create "*) sleep 7 ;; esac\nexec {fake_gpu["runtime"]} "$@"\n')
    slow.chmod(0o755)
    dockerd = dockerd_factory(config={"runtimes": {"nvidia": {"path": str(slow), "runtimeArgs": []}},
                                      "default-runtime": "nvidia"})
    tiny_image(dockerd.client())
    host = Host("/", env={"DOCKER_HOST": dockerd.url})
    try:
        docker_info(host, timeout=5)  # doctor's client first, as in a doctor run
        result = probe(host, "tiny:latest", host_view=None, pull=False)
    finally:
        host.close()
    assert result.ok and result.link == "ok", (result.link, result.summary)
    assert result.seconds >= 7 and len(result.uuids) == 2
