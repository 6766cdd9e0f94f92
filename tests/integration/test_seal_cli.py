"""`gpuprep seal` as a process, the way people and user-data run it.

- On a terminal it asks before deleting (a real pseudo-terminal, ``pty.openpty()``; "n" removes nothing,
  "y" goes ahead), also when ``--only`` leaves the preflight step out, and also with stdout a pipe
  (`gpuprep seal | tee seal.log`: stdin is what decides); Ctrl-C typed at the question (the kernel's SIGINT
  from the terminal) removes nothing and exits 130 with one line; ``--yes`` or no terminal on stdin
  (user-data) never asks.
- ``--root`` with DOCKER_HOST unset: the Docker steps say why they are skipped; the file steps act inside
  the root and nowhere else.
- The stamp records gpuprep's version, the time, the platform, the installed packages (real rpm
  database in the root, fixture RPMs), the driver version and the kept images; doctor reads it back.
- stop-ecs under upstart (Amazon Linux 1). SIMULATED: upstart itself, which this machine cannot run.
  Stand-in ``initctl``/``stop``/``status`` on PATH log their arguments and act on a stand-in
  ``amazon-ecs-init`` process; gpuprep sees Amazon Linux 1 (its os-release, ``/etc/init/ecs.conf``)
  through an overlay on ``/etc`` in a private mount namespace, so this machine's /etc is untouched.
  Real: the process table gpuprep waits on, and a private dockerd running the ``ecs-agent`` container.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

from conftest import FIXTURES, require, require_root
from contract import json_output
from testbed import run_on_tty, run_on_tty_piped

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def env_without_docker(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "DOCKER_HOST"}
    return {**env, "COLUMNS": "300", **extra}


def on_tty(args: list[str], answer: str | None, timeout: float = 60) -> tuple[int, str]:
    """Run ``gpuprep ARGS`` with a pseudo-terminal as stdin/stdout/stderr; type ``answer`` at the question."""
    code, out = run_on_tty([sys.executable, "-m", "gpuprep", *args], env_without_docker(), timeout=timeout,
                           answer=None if answer is None else (b"Go ahead?", answer))
    return code, ANSI.sub("", out).replace("\r", "")


def tree(tmp_path: Path, distro: str = "amzn-2023") -> Path:
    root = tmp_path / "root"
    shutil.copytree(FIXTURES / "distros" / distro, root)
    for rel, text in {"var/lib/ecs/data/agent.db": "bolt", "var/lib/ecs/data/ecs_agent_data.json": "{}",
                      "var/lib/ecs/data/metadata/t1/ecs-container-metadata.json": "{}",
                      "var/lib/ecs/gpu/nvidia-gpu-info.json": '{"DriverVersion":"580.95.05","GPUIDs":[]}'}.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


# -- asking on a terminal -----------------------------------------------------------------
def test_on_a_terminal_no_removes_nothing_and_yes_goes_ahead(tmp_path):
    root = tree(tmp_path)
    code, out = on_tty(["--root", str(root), "seal"], "n")
    assert code == 1, out
    assert "gpuprep seal will remove:" in out and "remove /var/lib/ecs/data/agent.db" in out
    assert "Go ahead? [y/N]:" in out and "aborted, nothing removed" in out
    assert (root / "var/lib/ecs/data/agent.db").exists() and not (root / "etc/gpuprep/seal.json").exists()

    # --only leaves the preflight step out: the first step that plans still asks.
    code, out = on_tty(["--root", str(root), "seal", "--only", "ecs-state"], "n")
    assert code == 1 and "Go ahead?" in out and "aborted, nothing removed" in out, out
    assert (root / "var/lib/ecs/data/agent.db").exists()

    code, out = on_tty(["--root", str(root), "seal"], "y")
    assert code == 0, out
    assert "Go ahead?" in out and "seal changed" in out
    assert os.listdir(root / "var/lib/ecs/data") == [] and (root / "etc/gpuprep/seal.json").exists()


def test_stdin_a_terminal_asks_with_stdout_a_pipe(tmp_path):
    """`gpuprep seal | tee seal.log` at a terminal: before issue 26 it deleted everything without asking."""
    root = tree(tmp_path)
    argv = [sys.executable, "-m", "gpuprep", "--root", str(root), "seal"]
    code, shown, piped = run_on_tty_piped(argv, env_without_docker(), timeout=60, answer=(b"Go ahead?", "n"))
    shown = ANSI.sub("", shown)
    assert code == 1, shown + piped
    assert "gpuprep seal will remove:" in shown and "Go ahead? [y/N]: " in shown, shown
    assert "aborted, nothing removed" in shown and "gpuprep seal on Amazon Linux 2023" in piped, (shown, piped)
    assert (root / "var/lib/ecs/data/agent.db").exists() and not (root / "etc/gpuprep/seal.json").exists()

    code, shown, piped = run_on_tty_piped([*argv[:-1], "--json", "seal"], env_without_docker(), timeout=60,
                                          answer=(b"Go ahead?", "y"))
    assert code == 0, shown + piped
    assert json_output(piped)["status"] == "changed" and "Go ahead?" in shown, (shown, piped)
    assert not (root / "var/lib/ecs/data/agent.db").exists()


def test_ctrl_c_at_the_question_removes_nothing_and_exits_130(tmp_path):
    """Ctrl-C typed on the terminal (the line discipline's SIGINT to the foreground process group), stdout a
    pipe: one error line saying nothing was removed, exit 130, no "internal error" (issue 26 met
    `internal error: Abort ... report it`)."""
    root = tree(tmp_path)
    for args in (["seal"], ["--json", "seal"]):
        code, shown, piped = run_on_tty_piped([sys.executable, "-m", "gpuprep", "--root", str(root), *args],
                                              env_without_docker(), timeout=60, answer=(b"Go ahead?", b"\x03"))
        shown = ANSI.sub("", shown).replace("\r", "")
        assert code == 130, shown + piped
        assert "gpuprep: error: preflight: interrupted at the question (Ctrl-C), nothing removed" in shown, shown
        assert "internal error" not in shown + piped and "Traceback" not in shown, shown
        assert os.listdir(root / "var/lib/ecs/data") and not (root / "etc/gpuprep/seal.json").exists()
        if "--json" in args:
            report = json_output(piped)
            assert report["status"] == "failed" and "interrupted at the question" in report["error"], report
            assert [s["status"] for s in report["steps"][1:]] == ["skipped"] * (len(report["steps"]) - 1)

    # Ctrl-D (end of input) is no answer: nothing removed, exit 1.
    code, shown, _ = run_on_tty_piped([sys.executable, "-m", "gpuprep", "--root", str(root), "seal"],
                                      env_without_docker(), timeout=60, answer=(b"Go ahead?", b"\x04"))
    assert code == 1 and "no answer (end of input), nothing removed" in shown, shown
    assert os.listdir(root / "var/lib/ecs/data")


def test_yes_on_a_terminal_and_no_terminal_never_ask(tmp_path):
    root = tree(tmp_path)
    code, out = on_tty(["--root", str(root), "seal", "--yes"], None)
    assert code == 0 and "Go ahead?" not in out, out
    assert not (root / "var/lib/ecs/data/agent.db").exists()

    root2 = tree(tmp_path / "2")  # user-data: stdin is not a terminal, and nobody passes --yes
    proc = subprocess.run([sys.executable, "-m", "gpuprep", "--root", str(root2), "seal"], stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, env=env_without_docker(), timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "Go ahead?" not in proc.stdout + proc.stderr
    assert not (root2 / "var/lib/ecs/data/agent.db").exists()


# -- --root without DOCKER_HOST -------------------------------------------------------------
def test_root_without_docker_host_skips_the_docker_steps_and_acts_only_inside_the_root(tmp_path):
    root = tree(tmp_path)
    # The same paths outside the root, as the build machine's own files would be: never touched.
    outside = tmp_path / "outside"
    shutil.copytree(root / "var", outside / "var")
    proc = subprocess.run([sys.executable, "-m", "gpuprep", "--root", str(root), "--json", "seal", "--yes"],
                          capture_output=True, text=True, env=env_without_docker(), timeout=60)
    assert proc.returncode == 0, proc.stderr
    steps = {s["id"]: s for s in json_output(proc.stdout)["steps"]}
    assert steps["stop-ecs"]["status"] == "skipped" and "--root" in steps["stop-ecs"]["summary"]
    for sid in ("containers", "images"):
        assert steps[sid] | {"duration_ms": 0} == {
            "id": sid, "status": "skipped", "duration_ms": 0,
            "summary": "no Docker Engine with --root (set DOCKER_HOST to use one)"}, steps[sid]
    assert [(s, steps[s]["status"]) for s in ("ecs-state", "gpu-info", "stamp")] == [
        ("ecs-state", "changed"), ("gpu-info", "changed"), ("stamp", "changed")]
    assert os.listdir(root / "var/lib/ecs/data") == [] and not (root / "var/lib/ecs/gpu/nvidia-gpu-info.json").exists()
    assert (outside / "var/lib/ecs/data/agent.db").read_text() == "bolt"
    assert (outside / "var/lib/ecs/gpu/nvidia-gpu-info.json").exists()

    text = subprocess.run([sys.executable, "-m", "gpuprep", "--root", str(root), "seal", "--yes"],
                          capture_output=True, text=True, env=env_without_docker(), timeout=60).stdout
    assert re.search(r"\[skip\]\s+containers\s+no Docker Engine with --root \(set DOCKER_HOST to use one\)", text), text


# -- the stamp, and doctor reading it ------------------------------------------------------
def test_stamp_records_what_the_image_holds_and_doctor_reads_it(tmp_path, request):
    require("rpm", "rpmbuild")
    from rpmfixtures import PkgSpec, build_rpm

    from gpuprep import __version__

    root = tree(tmp_path)
    cache = request.config.cache.mkdir("rpmfixtures")
    specs = [PkgSpec("ecs-init", "1.97.1", "1.amzn2023"), PkgSpec("docker", "25.0.8", "1.amzn2023.0.1"),
             PkgSpec("nvidia-container-toolkit", "1.17.8", "1")]
    rpms = [str(build_rpm(s, tmp_path / "rpms", cache=cache)) for s in specs]
    subprocess.run(["rpm", "-i", "--root", str(root), "--nodeps", "--justdb", *rpms], check=True, capture_output=True)
    version = root / "proc/driver/nvidia/version"  # the chroot's /proc, as the loaded module shows it
    version.parent.mkdir(parents=True)
    version.write_text("NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  580.95.05  Release Build\n")
    lib = root / "usr/lib64/libnvidia-ml.so.580.95.05"  # the driver's userland, as its library's name says
    lib.parent.mkdir(parents=True)
    lib.write_text("")
    (lib.parent / "libnvidia-ml.so.1").symlink_to(lib.name)
    (root / "etc/dnf/plugins").mkdir(parents=True)
    (root / "etc/dnf/plugins/versionlock.list").write_text("nvidia-container-toolkit-0:1.17.8-1.*\n")

    before = time.time()
    proc = subprocess.run([sys.executable, "-m", "gpuprep", "--root", str(root), "--json", "seal", "--yes",
                           "--keep-image", "train:1"], capture_output=True, text=True, env=env_without_docker(),
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    stamp = json.loads((root / "etc/gpuprep/seal.json").read_text())
    assert list(stamp) == ["gpuprep", "sealed_at", "platform", "packages", "driver_version", "driver", "kept_images",
                           "versionlock"]
    assert stamp["gpuprep"] == __version__
    sealed = time.mktime(time.strptime(stamp["sealed_at"], "%Y-%m-%dT%H:%M:%SZ")) - time.timezone
    assert before - 1 <= sealed <= time.time() + 1
    assert stamp["platform"] == {"id": "amzn", "version_id": "2023", "name": "Amazon Linux 2023"}
    assert stamp["packages"] == {"ecs-init": "ecs-init-1.97.1-1.amzn2023", "docker": "docker-25.0.8-1.amzn2023.0.1",
                                 "nvidia-container-toolkit": "nvidia-container-toolkit-1.17.8-1"}
    assert stamp["driver_version"] == "580.95.05"
    assert stamp["driver"] == {"userland": "580.95.05", "userland_from": "libnvidia-ml", "kernel_module": "580.95.05",
                               "kernel_module_from": "/proc/driver/nvidia/version"}
    assert stamp["versionlock"] == {"file": "/etc/dnf/plugins/versionlock.list",
                                    "entries": ["nvidia-container-toolkit-0:1.17.8-1.*"]}
    assert stamp["kept_images"] == [{"refs": ["train:1"]}]  # no Engine named: what was asked to be kept

    proc = subprocess.run([sys.executable, "-m", "gpuprep", "--root", str(root), "--json", "doctor", "--no-container"],
                          capture_output=True, text=True, env=env_without_docker(), timeout=120)
    checks = {c["id"]: c for c in json_output(proc.stdout)["checks"]}
    assert checks["seal-stamp"]["status"] == "ok", checks["seal-stamp"]
    assert checks["seal-stamp"]["summary"] == (
        f"sealed {stamp['sealed_at']} by gpuprep {__version__} on Amazon Linux 2023; docker-25.0.8-1.amzn2023.0.1, "
        "ecs-init-1.97.1-1.amzn2023, nvidia-container-toolkit-1.17.8-1; driver 580.95.05; 1 kept image(s)")
    assert checks["ecs-stale-state"]["status"] == "ok", checks["ecs-stale-state"]
    # Read back by the drift checks against the real rpm database: nothing moved since the seal.
    assert checks["gpu-driver-drift"]["status"] == "ok", checks["gpu-driver-drift"]
    assert checks["packages-drift"]["status"] == "ok", checks["packages-drift"]

    # A checkpoint baked into the image after all (written before the seal): doctor calls it out.
    db = root / "var/lib/ecs/data/agent.db"
    db.write_text("bolt")
    os.utime(db, (sealed - 60, sealed - 60))
    proc = subprocess.run([sys.executable, "-m", "gpuprep", "--root", str(root), "--json", "doctor", "--no-container"],
                          capture_output=True, text=True, env=env_without_docker(), timeout=120)
    stale = {c["id"]: c for c in json_output(proc.stdout)["checks"]}["ecs-stale-state"]
    assert stale["status"] == "critical" and "/var/lib/ecs/data/agent.db" in stale["summary"], stale


# -- stop-ecs under upstart (Amazon Linux 1) ------------------------------------------------
UPSTART_ECS_CONF = """\
# ecs-init's upstart job on Amazon Linux 1 (amazon-ecs-init packaging/amazon-linux-ami/ecs.conf)
description "Amazon Elastic Container Service (ECS)"
start on stopped rc RUNLEVEL=[345]
respawn
exec /usr/libexec/amazon-ecs-init start
pre-stop exec /usr/libexec/amazon-ecs-init stop
"""

# SIMULATED upstart: initctl, with `stop` and `status` as its other names (as on Amazon Linux 1, where
# both are links to initctl). The ecs job "runs" while the pid in STATE/ecs.pid lives.
INITCTL = r"""#!@PY@
import os, signal, sys
STATE = "@STATE@"
name = os.path.basename(sys.argv[0])
args = sys.argv[1:]
with open(STATE + "/calls.log", "a") as log:
    log.write(" ".join([name, *args]) + "\n")
verb, args = (args[0], args[1:]) if name == "initctl" else (name, args)
job = args[0]
try:
    pid = int(open(f"{STATE}/{job}.pid").read())
    alive = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0] != "Z"
except (FileNotFoundError, ValueError, ProcessLookupError):
    pid, alive = 0, False
if verb == "status":
    print(f"{job} start/running, process {pid}" if alive else f"{job} stop/waiting")
elif verb == "stop":
    if not alive:
        sys.exit(f"stop: Unknown instance: {job}")
    os.kill(pid, signal.SIGTERM)  # returns at once: gpuprep must wait for the process itself
    print(f"{job} stop/waiting")
else:
    sys.exit(f"initctl stand-in: {verb} not simulated")
"""

# SIMULATED ecs-init: takes a second to stop after SIGTERM, as the real one waits for `docker stop`.
ECS_INIT = r"""#!@PY@
import signal, sys, time
def stop(*_):
    time.sleep(1.0)
    sys.exit(0)
signal.signal(signal.SIGTERM, stop)
while True:
    signal.pause()
"""

IN_NAMESPACE = """\
import os, subprocess, sys
upper, work, cmd = sys.argv[1], sys.argv[2], sys.argv[3:]
subprocess.run(["mount", "-t", "overlay", "overlay", "-o", f"lowerdir=/etc,upperdir={upper},workdir={work}", "/etc"],
               check=True)
os.execv(cmd[0], cmd)
"""


def test_stop_ecs_under_upstart_runs_stop_ecs_waits_and_leaves_the_job(tmp_path, dockerd_factory):
    require_root()
    require("unshare", "mount")
    from testbed import tiny_image

    state, bin_dir, upper, work = (tmp_path / n for n in ("state", "bin", "upper", "work"))
    for d in (state, bin_dir, upper / "init", work):
        d.mkdir(parents=True)
    shutil.copy(FIXTURES / "distros/amzn-2018.03/etc/os-release", upper / "os-release")
    (upper / "init/ecs.conf").write_text(UPSTART_ECS_CONF)
    initctl = bin_dir / "initctl"
    initctl.write_text(INITCTL.replace("@PY@", sys.executable).replace("@STATE@", str(state)))
    initctl.chmod(0o755)
    for alias in ("stop", "status"):
        (bin_dir / alias).symlink_to("initctl")
    ecs_init = bin_dir / "amazon-ecs-init"
    ecs_init.write_text(ECS_INIT.replace("@PY@", sys.executable))
    ecs_init.chmod(0o755)

    d = dockerd_factory()
    client = d.client()
    tiny_image(client, "tiny:latest")
    agent = client.containers.run("tiny:latest", ["sh", "-c", "trap 'exit 0' TERM; while :; do sleep 0.2; done"],
                                  name="ecs-agent", network_mode="none", detach=True)
    job = subprocess.Popen([str(ecs_init)])
    threading.Thread(target=job.wait, daemon=True).start()  # reaped at once: no zombie left behind
    (state / "ecs.pid").write_text(str(job.pid))

    def seal_stop_ecs() -> dict:
        env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "DOCKER_HOST": d.url}
        proc = subprocess.run(["unshare", "--mount", "--propagation", "private", sys.executable, "-c", IN_NAMESPACE,
                               str(upper), str(work), sys.executable, "-m", "gpuprep", "--json", "seal", "--yes",
                               "--only", "stop-ecs"], capture_output=True, text=True, env=env, timeout=180)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        return {s["id"]: s for s in json_output(proc.stdout)["steps"]}["stop-ecs"]

    try:
        step = seal_stop_ecs()
        assert step["status"] == "changed", step
        assert step["commands"] == [["stop", "ecs"], ["docker", "stop", "ecs-agent"]]
        assert step["summary"] == "ecs stopped; still enabled for the next boot"
        assert job.poll() == 0  # the step returned only once ecs-init had exited
        agent.reload()
        assert agent.status == "exited"  # stopped, left for `containers` to remove
        calls = (state / "calls.log").read_text().splitlines()
        assert calls.count("stop ecs") == 1 and set(calls) == {"status ecs", "stop ecs"}, calls
        assert (upper / "init/ecs.conf").read_text() == UPSTART_ECS_CONF  # the job stays: it starts at boot

        again = seal_stop_ecs()
        assert again["status"] == "ok" and again["summary"] == "ecs is stopped (enabled for the next boot)", again
        assert (state / "calls.log").read_text().splitlines().count("stop ecs") == 1
    finally:
        if job.poll() is None:
            job.kill()
        client.close()
    assert not Path("/etc/init/ecs.conf").exists()  # the overlay never reached this machine's /etc
