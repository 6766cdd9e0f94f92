"""Bad inputs that must name the file and the problem, with exit 2 and nothing changed (issue 23).

An os-release with an ID and no VERSION_ID (named "Amazon Linux 2023.6.20241212", a platform that does not
exist, from the pretty name's digits), an unknown distribution at seal (named " 4"), a ``.repo`` with a boolean
that is neither true nor false (dnf warns and queries it anyway), an ``nvidia-gpu-info.json`` that is a directory
(exit 1, after seal had already removed the agent's state). Each case runs the real CLI on an Amazon Linux 2023
root with that one input and asserts the exit code, one ``gpuprep: error:`` line that names the file and the
problem, a hint, no traceback, and the tree byte-identical (gpuprep's run lock aside).

An unknown distribution is not bad input but a precondition (exit 3, docs/contract.md: "unsupported platform"):
its case asserts 3, and that the line names the file and what it says.

Simulated: the image (a plain directory tree) and ecs.service (a stand-in unit, already enabled).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import reliability_kit as kit

_figure = kit.module_figure("named inputs", "named the file and the problem")

INSTALL = ("install", "--only", "ecs-config")
SEAL = ("seal", "--yes", "--skip", kit.NO_DOCKER)


def _no_version_id(root: Path) -> None:
    p = root / "etc/os-release"
    p.write_text("".join(line for line in p.read_text().splitlines(keepends=True)
                         if not line.startswith("VERSION_ID=")))


def _unknown(root: Path) -> None:
    (root / "etc/os-release").write_text('NAME="Plan 9"\nID=plan9\nVERSION_ID=4\n')


def _bad_boolean(root: Path) -> None:
    kit.write(root / "etc/yum.repos.d/extra.repo",
              "[extra]\nname=extra\nbaseurl=file:///nonexistent/extra\nenabled=maybe\ngpgcheck=0\n")


def _gpu_info_dir(root: Path) -> None:
    p = root / "var/lib/ecs/gpu/nvidia-gpu-info.json"
    p.unlink()
    p.mkdir()


# id: (build, args, exit code, what the error line must name)
CASES = {
    "os-release-no-version-id-install": (_no_version_id, INSTALL, 2, ("os-release", "VERSION_ID")),
    "os-release-no-version-id-seal": (_no_version_id, SEAL, 2, ("os-release", "VERSION_ID")),
    "unknown-distro-seal": (_unknown, SEAL, 3, ("os-release", "ID=plan9")),
    "repo-bad-boolean": (_bad_boolean, ("install", "--only", "packages", "--dry-run"), 2,
                         ("extra.repo", "line 4", "enabled=maybe")),
    "gpu-info-is-a-directory": (_gpu_info_dir, SEAL, 2, ("nvidia-gpu-info.json", "directory")),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_bad_input_names_the_file_and_the_problem(case: str, tmp_path: Path):
    build, args, code, names = CASES[case]
    root = kit.al2023(tmp_path / "root", agent_state=True)
    build(root)
    before = kit.snapshot(root)
    r = kit.gpuprep("--root", str(root), *args, timeout=120)
    problems = [] if r.code == code else [f"exit {r.code}, not {code}"]
    problems += kit.error_problems(r)
    line = kit.error_line(r)
    problems += [f"the error line does not name {n!r}: {line}" for n in names if n not in line]
    changed = kit.diff(kit.without_lock(before), kit.without_lock(kit.snapshot(root), before))
    if changed:
        problems.append(f"changed: {changed[:5]}")
    kit.figure("named inputs", not problems, 1, [case] if problems else [])
    assert not problems, f"{problems}\n{r}"
