"""SIGTERM, SIGINT and SIGHUP while install changes daemon.json and makes dockerd take it up (issue 23).

What sends them in the field: systemd's stop timeout, a cancelled Packer build, cloud-init's timeout, Ctrl-C
in SSH, a hung-up SSH session. Whatever point of the restart or reload path a signal lands on, the run must
end with exit 1 and one line saying it was interrupted (no traceback), daemon.json as it was before the run
(the last config dockerd ran well on), and dockerd answering again on it: the next run then starts from a
working Engine.

Real: a private dockerd 20.10 (tests/testbed.py ``PrivateDockerd``, started by hand, so gpuprep restarts it
with SIGTERM and its own command line), the gpuprep CLI, strace (Debian's 6.1) delivering the signal to
gpuprep's own process at a chosen syscall (``-e inject=SYSCALL:signal=SIG:when=N``), and a container whose
PID 1 ignores SIGTERM (a PID 1 without a handler does) holding dockerd's shutdown while gpuprep waits for it.
SIMULATED (no GPU here): the nvidia runtime is tests/testbed.py's shim; the image is a plain directory tree.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import reliability_kit as kit
from conftest import FIXTURES, REPO
from contract import json_output
from testbed import tiny_image, wait_until

_figure = kit.module_figure("signals", "left dockerd running on the last good daemon.json")

STEPS = "docker-runtime,docker-reload"
WAITING_FOR_EXIT = "to exit"  # dockerd.wait_for_exit's debug line: "waiting up to 60s for dockerd (pid N) to exit"


def _root(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    (root / "etc/docker").mkdir(parents=True)
    shutil.copy(FIXTURES / "distros/amzn-2023/etc/os-release", root / "etc/os-release")
    return root


def _argv(root: Path, shim: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "gpuprep", "-v", "--root", str(root), "--json", "install", "--only", STEPS,
            "--runtime-path", str(shim), *extra]


def _env(url: str) -> dict[str, str]:
    return {**kit.env(), "DOCKER_HOST": url, "PYTHONPATH": os.environ.get("PYTHONPATH", str(REPO))}


@pytest.fixture
def reload_path(tmp_path, dockerd_factory, fake_gpu):
    """A dockerd running runc by default, a daemon.json without nvidia: gpuprep writes it and sends SIGHUP."""
    root = _root(tmp_path)
    dockerd = dockerd_factory(config_path=root / "etc/docker/daemon.json", config={})
    return root, dockerd, fake_gpu["runtime"], ()


@pytest.fixture
def restart_path(tmp_path, dockerd_factory, fake_gpu):
    """A dockerd that runs nvidia as its default, a daemon.json that no longer sets it: SIGHUP cannot unset a
    default runtime (docs/testbed.md 3), so with --no-default-runtime gpuprep restarts dockerd (SIGTERM, wait,
    the same command line again). The container holds dockerd's shutdown until the test kills it."""
    root = _root(tmp_path)
    shim = fake_gpu["runtime"]
    daemon_json = root / "etc/docker/daemon.json"
    dockerd = dockerd_factory(config_path=daemon_json, config={
        "runtimes": {"nvidia": {"path": str(shim), "runtimeArgs": []}}, "default-runtime": "nvidia",
        "shutdown-timeout": 300})
    config = json.loads(daemon_json.read_text())
    del config["default-runtime"], config["runtimes"]
    daemon_json.write_text(json.dumps(config, indent=2) + "\n")
    return root, dockerd, shim, ("--no-default-runtime",)


@pytest.fixture
def refused_path(tmp_path, dockerd_factory, fake_gpu):
    """A dockerd whose command line sets --default-runtime (as some hand-built hosts' units do): the daemon.json
    gpuprep writes, with a default runtime too, is one it refuses (Engine 20.10: "specified both as a flag and in
    the configuration file"), so gpuprep restores the old file and starts dockerd again: the rollback path."""
    root = _root(tmp_path)
    dockerd = dockerd_factory(config_path=root / "etc/docker/daemon.json", config={},
                              args=("--default-runtime=runc",))
    return root, dockerd, fake_gpu["runtime"], ()


def _holding_container(dockerd) -> int:
    """A container whose PID 1 (``cat`` on an open stdin) ignores SIGTERM: dockerd's shutdown waits its stop timeout
    (300 s) for it. Its host pid, for the test to kill when it wants dockerd to go on."""
    client = dockerd.client()
    try:
        tiny_image(client)
        made = client.api.create_container("tiny:latest", ["cat"], stdin_open=True, stop_timeout=300,
                                           host_config=client.api.create_host_config(network_mode="none"))
        client.api.start(made["Id"])
        return int(client.api.inspect_container(made["Id"])["State"]["Pid"])
    finally:
        client.close()


def _check(root: Path, dockerd, before: bytes, code: int | None, out: str, err: str, signame: str,
           said: str = "") -> list[str]:
    problems = []
    if code != 1:
        problems.append(f"exit {code}, not 1")
    if "internal error" in err:  # runs are -v (its debug lines are the events watched): tracebacks may show
        problems.append("an internal error")
    said = said or f"interrupted by {signame}"
    if said not in err:
        problems.append(f"no line saying {said!r}")
    try:
        report = json_output(out)
        if report.get("status") != "failed":
            problems.append(f"report status {report.get('status')}")
    except json.JSONDecodeError:
        problems.append(f"stdout is not one JSON object: {out[-300:]!r}")
    now = (root / "etc/docker/daemon.json").read_bytes()
    if now != before:
        problems.append(f"daemon.json is not the one before the run: {now[:300]!r}")
    if kit.temp_files(root):
        problems.append(f"temp files left: {kit.temp_files(root)}")
    try:
        dockerd.wait_ready(60)  # bounded: a dockerd that is down fails here
        client = dockerd.client()
        try:
            default = client.info()["DefaultRuntime"]
        finally:
            client.close()
        if default != "runc":
            problems.append(f"dockerd runs with default runtime {default}, not the last good config's runc")
    except Exception as exc:
        problems.append(f"dockerd does not answer after the run: {exc}")
    return problems


@pytest.mark.parametrize("signame", ["SIGTERM", "SIGINT", "SIGHUP"])
@pytest.mark.parametrize("path,syscall,when", [
    ("reload", "renameat", 1),  # daemon.json's atomic write (the backup's copy or the file itself)
    ("reload", "renameat", 2),
    ("reload", "kill", 1),  # gpuprep's SIGHUP to dockerd: dockerd has taken up the new file
    ("restart", "kill", 1),  # gpuprep's SIGTERM to dockerd: dockerd is stopping
])
def test_a_signal_at_a_point_of_the_reload_and_restart_paths_leaves_dockerd_running_on_the_old_config(
        request, path, syscall, when, signame):
    kit.require_strace()
    root, dockerd, shim, extra = request.getfixturevalue(f"{path}_path")
    before = (root / "etc/docker/daemon.json").read_bytes()
    trace = root.parent / "strace.log"
    prefix = ["strace", "-o", str(trace), "-e", f"trace={syscall}",
              "-e", f"inject={syscall}:signal={signame}:when={when}"]
    proc = subprocess.run([*prefix, *_argv(root, shim, *extra)], capture_output=True, text=True, timeout=300,
                          env=_env(dockerd.url), cwd="/")
    if f"--- {signame} {{si_signo={signame}, si_code=SI_KERNEL}}" not in trace.read_text():  # strace's own signal
        pytest.fail(f"the injection did not land ({syscall} #{when}): {trace.read_text()[-2000:]}")
    problems = _check(root, dockerd, before, proc.returncode, proc.stdout, proc.stderr, signame)
    kit.figure("signal points", not problems, 1, [f"{path}-{syscall}{when}-{signame}"] if problems else [])
    assert not problems, f"{problems}\n--- stderr\n{proc.stderr[-3000:]}"


def test_a_kill_while_gpuprep_waits_for_dockerd_to_exit_brings_dockerd_back(restart_path):
    """``kill -TERM`` from outside, as systemd's stop would send it, while gpuprep waits for the dockerd it sent
    SIGTERM to: the test sees gpuprep's own log line saying it waits, then signals it."""
    root, dockerd, shim, extra = restart_path
    before = (root / "etc/docker/daemon.json").read_bytes()
    holder = _holding_container(dockerd)
    proc = subprocess.Popen(_argv(root, shim, *extra), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=_env(dockerd.url), cwd="/", start_new_session=True)
    err_lines: list[str] = []
    waiting = threading.Event()

    def read_stderr() -> None:
        for line in proc.stderr:
            err_lines.append(line)
            if WAITING_FOR_EXIT in line:
                waiting.set()

    reader = threading.Thread(target=read_stderr, daemon=True)
    reader.start()
    try:
        wait_until(lambda: waiting.is_set() or proc.poll() is not None, what="gpuprep to wait for dockerd to exit",
                   timeout=120)
        assert waiting.is_set(), f"gpuprep ended before it waited for dockerd: {''.join(err_lines)[-3000:]}"
        os.kill(proc.pid, signal.SIGTERM)
        os.kill(holder, signal.SIGKILL)  # now dockerd can finish its shutdown
        out = proc.stdout.read()
        code = proc.wait(timeout=180)
        reader.join(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    problems = _check(root, dockerd, before, code, out, "".join(err_lines), "SIGTERM")
    kit.figure("signal points", not problems, 1, ["restart-waiting-for-exit-kill"] if problems else [])
    assert not problems, f"{problems}\n--- stderr\n{''.join(err_lines)[-3000:]}"


@pytest.mark.parametrize("signame", ["SIGTERM", "SIGINT", "SIGHUP"])
def test_a_signal_during_the_rollback_waits_for_dockerd_to_run_again(refused_path, signame):
    """The signal lands on the rollback's own write of the old daemon.json (the third rename of the run: the
    backup, the new file, the old one back). It is held until dockerd runs again on the old file; the run then
    ends on the failure it was rolling back (exit 1)."""
    kit.require_strace()
    root, dockerd, shim, extra = refused_path
    before = (root / "etc/docker/daemon.json").read_bytes()
    trace = root.parent / "strace.log"
    prefix = ["strace", "-o", str(trace), "-e", "trace=renameat",
              "-e", f"inject=renameat:signal={signame}:when=3"]
    proc = subprocess.run([*prefix, *_argv(root, shim, *extra)], capture_output=True, text=True, timeout=300,
                          env=_env(dockerd.url), cwd="/")
    if f"--- {signame} {{si_signo={signame}, si_code=SI_KERNEL}}" not in trace.read_text():
        pytest.fail(f"the injection did not land (renameat #3): {trace.read_text()[-2000:]}")
    problems = _check(root, dockerd, before, proc.returncode, proc.stdout, proc.stderr, signame,
                      said="runs again with the old config")
    kit.figure("signal points", not problems, 1, [f"rollback-renameat3-{signame}"] if problems else [])
    assert not problems, f"{problems}\n--- stderr\n{proc.stderr[-3000:]}"
