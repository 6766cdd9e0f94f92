"""A SIGTERM while gpuprep restarts dockerd through systemd: daemon.json back, docker.service running on it.

systemd's stop timeout, a cancelled Packer build or cloud-init's timeout sends SIGTERM to a running
`gpuprep install` (issue 23). Here docker.service changed on disk (an `Environment=` line in the unit file, so
gpuprep must `systemctl daemon-reload` and `systemctl restart docker.service`), gpuprep writes the nvidia runtime
into daemon.json, and the test sends SIGTERM from outside the moment gpuprep says it restarts dockerd (its own
log line, the event the test watches). Then: exit 1 saying it was interrupted, daemon.json as before the run, and
docker.service active with the old config (no nvidia runtime), restarted through systemctl.

Real: systemd (PID 1), docker.service (Debian's Engine 20.10 with its own unit), the gpuprep the README's
user-data installs. SIMULATED (see simfixtures.py): the GPU, driver and NVIDIA runtime.
"""

from __future__ import annotations

import json
import signal
import subprocess

import psutil
from contract import json_output
from nspawn import INSIDE_PATH
from simfixtures import *  # noqa: F403  (pytest fixtures)

DAEMON_JSON = "/etc/docker/daemon.json"
UNIT_FILE = "/usr/lib/systemd/system/docker.service"
RESTARTING = "restarting dockerd: `systemctl restart docker.service`"


def _inside(inst, *argv: str) -> list[str]:
    env = [f"PATH={INSIDE_PATH}", "LANG=C.UTF-8", "HOME=/root", "TERM=dumb"]
    return ["nsenter", "-t", str(inst.leader), "-a", "env", "-i", *env, *argv]


def _gpuprep_process(nsenter: subprocess.Popen) -> psutil.Process:
    """The gpuprep process under nsenter (its Python), as systemd or Packer would signal it."""
    for p in psutil.Process(nsenter.pid).children(recursive=True):
        if any("gpuprep" in part for part in p.cmdline()[:2]):
            return p
    raise AssertionError("no gpuprep process under nsenter")


def test_sigterm_during_a_systemctl_restart_brings_docker_back_on_the_old_config(instance):
    inst = instance
    inst.install_gpuprep()
    unit = inst.path(UNIT_FILE)
    unit.write_text(unit.read_text().replace("[Service]\n", "[Service]\nEnvironment=GPUPREP_TEST_MARK=sig\n", 1))
    before = inst.path(DAEMON_JSON).read_bytes()
    argv = _inside(inst, "gpuprep", "-v", "--json", "install", "--only", "docker-runtime,docker-reload",
                   "--runtime-path", "/usr/bin/nvidia-container-runtime", "--no-default-runtime")
    proc = subprocess.Popen(argv,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
    err: list[str] = []
    signalled = False
    try:
        for line in proc.stderr:
            err.append(line)
            if RESTARTING in line and not signalled:
                _gpuprep_process(proc).send_signal(signal.SIGTERM)
                signalled = True
        out = proc.stdout.read()
        code = proc.wait(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    said = "".join(err)
    assert signalled, f"gpuprep never said it restarts dockerd through systemctl:\n{said[-3000:]}"
    assert code == 1, f"exit {code}\n{said[-3000:]}"
    assert "interrupted by SIGTERM" in said and "Traceback" not in said, said[-3000:]
    assert json_output(out)["status"] == "failed"
    assert inst.path(DAEMON_JSON).read_bytes() == before  # the last good config
    assert inst.run(["systemctl", "is-active", "docker.service"], check=False).stdout.strip() == "active"
    info = json.loads(inst.run(["docker", "info", "--format", "{{json .}}"]).stdout)
    assert "nvidia" not in (info.get("Runtimes") or {}) and info["DefaultRuntime"] == "runc", info["Runtimes"]
