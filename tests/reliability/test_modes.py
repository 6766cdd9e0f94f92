"""Directories gpuprep creates get the distro's 0755 whatever the umask (issue 23).

Hardened images and some SSM setups run with umask 077, under which a plain mkdir makes 0700: /etc/gpuprep would
hide seal.json from everyone but root, /etc/docker and /etc/ecs would differ from what the distro ships. Each case
runs the real CLI under ``umask 077`` (bash) on an Amazon Linux 2023 root that lacks the directories, and checks
the mode of every directory the run created. Files keep the modes they get today (0644 for a new one).

Simulated: the image (a plain directory tree) and ecs.service (a stand-in unit, already enabled).
"""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
import reliability_kit as kit

_figure = kit.module_figure("modes", "made 0755 directories under umask 077")

UMASK = ["bash", "-c", 'umask 077 && exec "$@"', "bash"]
CASES = {
    "install": ("install", "--only", "docker-runtime,ecs-config,boot-check", "--runtime-path", kit.RUNTIME),
    "seal": ("seal", "--yes", "--skip", kit.NO_DOCKER),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_directories_made_under_umask_077_are_0755(case: str, tmp_path: Path):
    root = kit.al2023(tmp_path / "root", daemon_json=None, ecs_config=None, gpuprep_inside=True, agent_state=True)
    before = kit.snapshot(root)
    r = kit.gpuprep("--root", str(root), *CASES[case], prefix=UMASK, timeout=120)
    after = kit.snapshot(root)
    made = {k: v for k, v in after.items() if k not in before and v[0] == "dir"}
    problems = [] if r.code == 0 else [f"exit {r.code}: {kit.error_line(r)}"]
    if not made:
        problems.append("the run created no directory: the case tests nothing")
    problems += [f"{k}: {stat.filemode(stat.S_IFDIR | v[1])}" for k, v in sorted(made.items()) if v[1] != 0o755]
    kit.figure("umask cases", not problems, 1, [case] if problems else [])
    assert not problems, f"{problems}\n{r}"
