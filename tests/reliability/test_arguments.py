"""A usage error touches nothing: arguments are judged before the run lock is taken (issue 23).

Each case passes one bad argument to the real CLI on an Amazon Linux 2023 root, with ``--only`` naming a step
that does not even use it (a value that is wrong is wrong whichever steps run). Every case asserts exit 2, one
``gpuprep: error:`` line naming the argument and a ``gpuprep: hint:`` line, no traceback, and the tree
byte-identical to what it was: not even the run lock (``run/lock/gpuprep.lock``) is created.

Simulated: the image (a plain directory tree) and ecs.service (a stand-in unit, already enabled).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import reliability_kit as kit

_figure = kit.module_figure("arguments", "touched nothing")

ECS = ("install", "--only", "ecs-config")
SEAL = ("seal", "--yes", "--only", "stamp")
CASES = {
    "ecs-config-directory": (*ECS, "--ecs-config", "/etc/ecs/"),  # a path ending in / is a directory
    "runtime-path-directory": (*ECS, "--runtime-path", "/usr/bin/"),
    "docker-empty": (*ECS, "--docker", ""),  # `--docker "$VERSION"` with the variable unset
    "docker-words": (*ECS, "--docker", "latest please"),
    "user-empty": (*ECS, "--user", ""),
    "user-spaces": (*ECS, "--user", "ec2 user"),
    "image-empty": (*ECS, "--image", ""),
    "repo-file-missing": (*ECS, "--repo-file", "/nonexistent/nvidia.repo"),
    "repo-file-directory": (*ECS, "--repo-file", "/etc"),
    "keep-image-empty": (*SEAL, "--keep-image", ""),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_usage_error_touches_nothing_not_even_the_lock(case: str, tmp_path: Path):
    root = kit.al2023(tmp_path / "root", agent_state=True)
    before = kit.snapshot(root)
    args = CASES[case]
    r = kit.gpuprep("--root", str(root), *args)
    problems = []
    if r.code != 2:
        problems.append(f"exit {r.code}, not 2")
    problems += kit.error_problems(r)
    flag = next(a for a in args if a.startswith("--") and a not in ("--only", "--yes"))
    if flag not in kit.error_line(r):
        problems.append(f"the error line does not name {flag}")
    changed = kit.diff(before, kit.snapshot(root))
    if changed:
        problems.append(f"touched: {changed}")
    kit.figure("usage errors", not problems, 1, [case] if problems else [])
    assert not problems, f"{problems}\n{r}"
