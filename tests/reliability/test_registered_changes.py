"""A change is registered before it is made (certbot's reverter.py ``register_file_creation``; issue 27 item 4), so
SIGTERM or SIGHUP landing just after the write, before the step's next line, still finds it and undoes it as an
exception would.

Real: the gpuprep CLI in a process of its own, writing into an Amazon Linux 2023 tree (``--root``) the repository
file of ``--repo-file`` (step repositories) or daemon.json's memlock default (step docker-memlock); strace (Debian's
6.1) delivers the signal to gpuprep's process on the rename that puts the file in place (``-e
inject=renameat:signal=SIG:when=N``), and its log shows the signal landed on that rename: the point is observed, not
timed. SIMULATED (no EFA here): docker-memlock's EFA device is a sysfs stand-in in the root (PCI function 1d0f:efa1,
as tests/integration/test_docker_memlock.py makes it); no Engine is asked (--root without DOCKER_HOST).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import reliability_kit as kit
from conftest import FIXTURES
from contract import json_output

EFA_SYSFS = "sys/bus/pci/devices/0000:a0:00.0"
REPO_TEXT = "[nvidia-container-toolkit]\nname=NVIDIA\nbaseurl=https://nvidia.github.io/libnvidia-container/stable/rpm/$basearch\n"


def _root(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    shutil.copy(FIXTURES / "distros/amzn-2023/etc/os-release", root / "etc/os-release")
    return root


def _interrupted(tmp_path: Path, root: Path, signame: str, when: int, target: str, *args: str) -> tuple[dict, str]:
    """Run install with ``args``, ``signame`` delivered on the ``when``-th renameat, which must be ``target``'s."""
    kit.require_strace()
    trace = tmp_path / "strace.log"
    proc = subprocess.run(["strace", "-o", str(trace), "-e", "trace=renameat",
                           "-e", f"inject=renameat:signal={signame}:when={when}",
                           sys.executable, "-m", "gpuprep", "--root", str(root), "--json", "install", *args],
                          capture_output=True, text=True, timeout=120, env=kit.env(), cwd="/")
    lines = trace.read_text().splitlines()
    said = f"--- {signame} {{si_signo={signame}, si_code=SI_KERNEL"  # strace's own injected signal
    landed = [i for i, line in enumerate(lines) if line.startswith(said)]
    assert landed and lines[landed[0] - 1].startswith("renameat(") and f'"{target}") = 0' in lines[landed[0] - 1], \
        f"the signal did not land on {target}'s rename:\n{trace.read_text()[-2000:]}"
    assert proc.returncode == 1 and f"interrupted by {signame}" in proc.stderr and "Traceback" not in proc.stderr, \
        (proc.stdout, proc.stderr)
    report = json_output(proc.stdout)
    assert report["reference"] == "interrupted", report
    return report, proc.stderr


@pytest.mark.parametrize("signame", ["SIGTERM", "SIGHUP"])
@pytest.mark.parametrize("before", [None, "[old]\nbaseurl=https://example.invalid/old\n"], ids=["new", "replaced"])
def test_a_signal_right_after_the_repository_file_is_written_undoes_it(tmp_path, signame, before):
    root = _root(tmp_path)
    target = root / "etc/yum.repos.d/nvidia.repo"
    if before is not None:
        target.parent.mkdir()
        target.write_text(before)
    src = tmp_path / "nvidia.repo"
    src.write_text(REPO_TEXT)
    # The backup of a replaced file is the first rename; the repository file's own is the last one the step makes.
    report, _ = _interrupted(tmp_path, root, signame, 1 if before is None else 2, "nvidia.repo",
                             "--only", "repositories", "--repo-file", str(src))
    step = next(s for s in report["steps"] if s["id"] == "repositories")
    assert step["data"]["interrupted"] == signame, step
    if before is None:
        assert not target.exists(), f"the file this run added stayed: {step['summary']}"
        assert "removed /etc/yum.repos.d/nvidia.repo, which this run added" in step["summary"]
    else:
        assert target.read_text() == before, f"the file this run replaced was not put back: {step['summary']}"


@pytest.mark.parametrize("signame", ["SIGTERM", "SIGHUP"])
@pytest.mark.parametrize("before", [None, '{"log-level": "warn"}\n'], ids=["new", "replaced"])
def test_a_signal_right_after_docker_memlock_writes_daemon_json_puts_it_back(tmp_path, signame, before):
    root = _root(tmp_path)
    (root / EFA_SYSFS).mkdir(parents=True)
    for name, value in (("vendor", "0x1d0f"), ("device", "0xefa1"), ("class", "0x020000")):
        (root / EFA_SYSFS / name).write_text(value + "\n")
    daemon_json = root / "etc/docker/daemon.json"
    if before is not None:
        daemon_json.parent.mkdir()
        daemon_json.write_text(before)
    report, _ = _interrupted(tmp_path, root, signame, 1 if before is None else 2, "daemon.json",
                             "--only", "docker-memlock")
    step = next(s for s in report["steps"] if s["id"] == "docker-memlock")
    assert step["data"]["interrupted"] == signame, step
    if before is None:
        assert not daemon_json.exists(), f"the daemon.json this run wrote stayed: {step['summary']}"
    else:
        assert daemon_json.read_text() == before, f"daemon.json was not put back: {step['summary']}"
