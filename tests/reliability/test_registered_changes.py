"""A change is registered before it is made (certbot's reverter.py ``register_file_creation``; issue 27 item 4), so
SIGTERM or SIGHUP landing just after the write, before the step's next line, still finds it and undoes it as an
exception would.

Real: the gpuprep CLI in a process of its own, writing the repository file of ``--repo-file`` into an Amazon Linux
2023 tree (``--root``); strace (Debian's 6.1) delivers the signal to gpuprep's process on the rename that puts the
file in place (``-e inject=renameat:signal=SIG:when=1``), and its log shows the signal landed on that rename: the
point is observed, not timed. Nothing is simulated: the step needs no package manager, no Engine and no GPU.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest
import reliability_kit as kit
from conftest import FIXTURES

REPO_TEXT = "[nvidia-container-toolkit]\nname=NVIDIA\nbaseurl=https://nvidia.github.io/libnvidia-container/stable/rpm/$basearch\n"


@pytest.mark.parametrize("signame", ["SIGTERM", "SIGHUP"])
@pytest.mark.parametrize("before", [None, "[old]\nbaseurl=https://example.invalid/old\n"], ids=["new", "replaced"])
def test_a_signal_right_after_the_repository_file_is_written_undoes_it(tmp_path, signame, before):
    kit.require_strace()
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    shutil.copy(FIXTURES / "distros/amzn-2023/etc/os-release", root / "etc/os-release")
    target = root / "etc/yum.repos.d/nvidia.repo"
    if before is not None:
        target.parent.mkdir()
        target.write_text(before)
    src = tmp_path / "nvidia.repo"
    src.write_text(REPO_TEXT)
    trace = tmp_path / "strace.log"
    # The backup of a replaced file is the first rename; the repository file's own is the last one the step makes.
    when = 1 if before is None else 2
    proc = subprocess.run(["strace", "-o", str(trace), "-e", "trace=renameat",
                           "-e", f"inject=renameat:signal={signame}:when={when}",
                           sys.executable, "-m", "gpuprep", "--root", str(root), "--json", "install",
                           "--only", "repositories", "--repo-file", str(src)],
                          capture_output=True, text=True, timeout=120, env=kit.env(), cwd="/")
    lines = trace.read_text().splitlines()
    said = f"--- {signame} {{si_signo={signame}, si_code=SI_KERNEL"  # strace's own injected signal
    landed = [i for i, line in enumerate(lines) if line.startswith(said)]
    assert landed and lines[landed[0] - 1].startswith("renameat(") and '"nvidia.repo") = 0' in lines[landed[0] - 1], \
        f"the signal did not land on the repository file's rename:\n{trace.read_text()[-2000:]}"
    report = json.loads(proc.stdout)
    step = next(s for s in report["steps"] if s["id"] == "repositories")
    assert proc.returncode == 1 and step["data"]["interrupted"] == signame and report["reference"] == "interrupted", \
        (proc.stdout, proc.stderr)
    if before is None:
        assert not target.exists(), f"the file this run added stayed: {step['summary']}"
        assert "removed /etc/yum.repos.d/nvidia.repo, which this run added" in step["summary"]
    else:
        assert target.read_text() == before, f"the file this run replaced was not put back: {step['summary']}"
    assert f"gpuprep: error: repositories: interrupted by {signame}" in proc.stderr and "Traceback" not in proc.stderr
