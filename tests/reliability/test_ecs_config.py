"""ecs.config: every byte but the line gpuprep owns is kept, whatever else the file holds (issue 23).

The agent reads ``/etc/ecs/ecs.config`` line by line, a line ending at ``\\n`` only (Go's bufio.ScanLines, which
drops a ``\\r`` before it): a form feed, a lone ``\\r``, NEL (``\\xc2\\x85``) or U+2028 inside a line is part of
that line's value. Each case lays one such file in an Amazon Linux 2023 root, runs ``install --only ecs-config``
(the real CLI) and checks: exit 0, the lines that are not ``ECS_ENABLE_GPU_SUPPORT``'s byte for byte as they were
(split at ``\\n`` as the agent splits them; a last line without its newline may gain one), and the file's last
``ECS_ENABLE_GPU_SUPPORT`` line saying ``true``.

Simulated: the image (a plain directory tree) and ecs.service (a stand-in unit, already enabled).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import reliability_kit as kit

_figure = kit.module_figure("ecs.config", "kept every other byte")

GPU = re.compile(rb"^\s*ECS_ENABLE_GPU_SUPPORT\s*=")
CASES = {
    # A separator Python's str.splitlines knows and the agent does not, then the key: part of ECS_CLUSTER's value.
    "nel-in-a-value": b"ECS_CLUSTER=a\xc2\x85ECS_ENABLE_GPU_SUPPORT=false\nECS_LOGLEVEL=info\n",
    "u2028-in-a-value": "ECS_CLUSTER=a\u2028ECS_ENABLE_GPU_SUPPORT=false\n".encode(),
    "form-feed-in-a-value": b"ECS_CLUSTER=a\x0cECS_ENABLE_GPU_SUPPORT=false\n",
    "lone-cr-in-a-value": b"ECS_CLUSTER=a\rECS_ENABLE_GPU_SUPPORT=false\n",
    "crlf": b"ECS_CLUSTER=a\r\nECS_ENABLE_GPU_SUPPORT=false\r\nECS_LOGLEVEL=info\r\n",
    "latin-1": b"ECS_CLUSTER=caf\xe9\nECS_INSTANCE_ATTRIBUTES={\"team\": \"\xe9quipe\"}\n",
    "no-equals-sign": b"ECS_CLUSTER=a\nJUST_A_NAME\nECS_LOGLEVEL=info\n",
    "bad-boolean-elsewhere": b"ECS_CLUSTER=a\nECS_ENABLE_TASK_IAM_ROLE=yes please\n",
    "no-last-newline": b"ECS_CLUSTER=a",
    "comments-and-blanks": b"# cluster\n\n   \nECS_CLUSTER=a\n# ECS_ENABLE_GPU_SUPPORT=false\n",
    "key-twice": b"ECS_ENABLE_GPU_SUPPORT=false\nECS_CLUSTER=a\n  ECS_ENABLE_GPU_SUPPORT = 0\n",
}


def _others(data: bytes) -> list[bytes]:
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    return [line for line in lines if not GPU.match(line)]


@pytest.mark.parametrize("case", sorted(CASES))
def test_every_byte_but_gpupreps_line_is_kept(case: str, tmp_path: Path):
    before = CASES[case]
    root = kit.al2023(tmp_path / "root", ecs_config=before)
    r = kit.install(root, "--only", "ecs-config")
    after = (root / "etc/ecs/ecs.config").read_bytes()
    problems = [] if r.code == 0 else [f"exit {r.code}: {kit.error_line(r)}"]
    if _others(after) != _others(before):
        problems.append(f"other lines changed: {before!r} -> {after!r}")
    ours = [line for line in after.split(b"\n") if GPU.match(line)]
    if not ours or ours[-1].split(b"=", 1)[1].strip() != b"true":
        problems.append(f"ECS_ENABLE_GPU_SUPPORT is not true in the end: {after!r}")
    kit.figure("ecs.config cases", not problems, 1, [case] if problems else [])
    assert not problems, f"{problems}\n{r}"
