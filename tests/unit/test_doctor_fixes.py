"""The fixes doctor shows, end to end through the CLI (issue 26 item 3, issue 27 item 5): built for the platform
and the target, ordered by cause, each once, wrapped at 80 columns with commands on lines of their own.

SIMULATED: the GPU hosts are tests/hosttree.py trees acted on with ``--root`` (this machine has no GPU, driver or
Amazon Linux); the CLI, the checks, the runner and the renderers are the real ones, and so are ``rpm`` (its
database in the tree) and ``systemctl --root`` where the checks ask them. The fix of ecs-gpu-support is run as the
screen shows it and the finding is proved cleared.
"""

from __future__ import annotations

import re
import shlex
import subprocess
from pathlib import Path

import hosttree
import pytest
from conftest import REPO
from contract import json_output
from typer.testing import CliRunner

from gpuprep.cli import app

pytestmark = pytest.mark.allow_subp("dpkg-query", "gpuprep", "rpm", "rpmbuild", "systemctl")

GPUPREP = REPO / ".venv" / "bin" / "gpuprep"
ENV = {"DOCKER_HOST": None, "COLUMNS": "80"}


def doctor(root: Path, *args: str) -> tuple[str, int]:
    result = CliRunner().invoke(app, ["--root", str(root), *args, "doctor", "--no-container"], env=ENV)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result.stdout, result.exit_code


def tree(tmp_path: Path, name: str) -> Path:
    return hosttree.build_named(name, tmp_path / name)


def checks(root: Path) -> dict[str, dict]:
    return {c["id"]: c for c in json_output(doctor(root, "--json")[0])["checks"]}


def fix_block(text: str) -> list[str]:
    return text.split("To fix (", 1)[1].splitlines()[1:]


def shown_commands(text: str) -> list[str]:
    """The commands of the fix list as a user copies them: the lines indented under a `fix:`, a trailing ` \\`
    joining the next line."""
    commands: list[str] = []
    joining = False
    for line in fix_block(text):
        if line.startswith("         ") and (joining or not line.startswith("          ")):
            part = line.strip()
            if joining:
                commands[-1] += " " + part.removesuffix(" \\")
            else:
                commands.append(part.removesuffix(" \\"))
            joining = part.endswith(" \\")
    return commands


# -- measured on main (issue 26) ---------------------------------------------------------------------------
def test_module_not_loaded_starts_with_the_module_and_marks_it_for_the_booted_instance(tmp_path):
    """The first fix was `sudo nvidia-modprobe -u -c 0` (device nodes for a module that is not loaded), and under
    --root `modprobe nvidia` and `reboot` would have acted on the builder."""
    root = tree(tmp_path, "module-not-loaded-g4dn")
    text, code = doctor(root)
    assert code == 2
    block = fix_block(text)
    assert block[0] == "  fix: load the nvidia module into the running kernel (on an instance booted"
    assert shown_commands(text)[0] == "sudo modprobe nvidia"
    assert "nvidia-modprobe" not in text
    assert "  for: gpu-kernel-module (gpu-device-nodes, gpu-count, gpu-sources-listed" in "\n".join(block)
    found = checks(root)
    assert {found[c]["cause"] for c in ("gpu-device-nodes", "gpu-count", "gpu-sources-listed")} == \
        {"gpu-kernel-module"}
    assert [f["runs"] for f in found["gpu-kernel-module"]["fixes"]] == ["booted", "booted"]


def test_under_root_what_acts_on_a_running_system_is_marked_for_the_booted_instance(tmp_path):
    root = tree(tmp_path, "driver-drift-p5")
    found = checks(root)
    for check in found.values():
        for fix in check.get("fixes", []):
            words = fix["argv"][1:] if fix["argv"][:1] == ["sudo"] else fix["argv"]
            if words[:1] in (["reboot"], ["modprobe"], ["nvidia-smi"], ["systemctl"]) and "--root" not in \
                    " ".join(words):
                assert fix["runs"] == "booted", (check["id"], fix)
            elif fix["runs"] == "here" and fix["argv"]:
                # What runs here acts on the image: its path, --root, --installroot or chroot.
                assert str(root) in " ".join(fix["argv"]), (check["id"], fix)


def test_the_driver_lock_holds_nvidias_kmod_packages_not_the_systems_kmod(tmp_path):
    text, _ = doctor(tree(tmp_path, "driver-drift-p5"))
    assert "'kmod*'" not in text and "'kmod-nvidia*'" in text


def test_driver_drift_gives_each_fix_once(tmp_path):
    """gpu-driver-version and gpu-driver-drift both said the 240-character reboot-and-lock text, nearly alike."""
    text, _ = doctor(tree(tmp_path, "driver-drift-p5"))
    commands = shown_commands(text)
    assert len(commands) == len(set(commands)), commands
    assert commands.count("sudo reboot") == 1
    assert sum("versionlock add 'nvidia*'" in c for c in commands) == 1
    assert "       for: gpu-driver-version, gpu-driver-drift" in text


def test_packages_removed_since_the_seal_point_at_the_sealed_versions_not_a_fresh_install(tmp_path):
    """packages-installed said `gpuprep install` (today's versions) while packages-drift said put the sealed ones
    back: the host was told two contradicting things."""
    root = tree(tmp_path, "driver-drift-p5")
    found = checks(root)
    assert found["packages-drift"]["status"] == "warning"
    for check_id in ("packages-installed", "ecs-init"):
        assert found[check_id]["cause"] == "packages-drift" and "fixes" not in found[check_id], found[check_id]
    text, _ = doctor(root)
    assert not any(c.split()[:1] == ["gpuprep"] and "install" in c.split() for c in shown_commands(text))
    assert "for: packages-drift (ecs-init, packages-installed follow from it)" in text


def test_on_ubuntu_no_gpuprep_install_is_offered(tmp_path):
    """`gpuprep install --only ecs-config` exits 3 on Ubuntu (install's preflight is RPM-only)."""
    root = tree(tmp_path, "healthy-h200-ubuntu")
    text, _ = doctor(root)
    found = checks(root)
    assert found["ecs-gpu-support"]["status"] == "critical"
    said = [c for c in found.values() if re.search(r"(^|[ `])gpuprep (--root \S+ )?install", c["hint"])
            or any("gpuprep" in f["argv"][:2] for f in c.get("fixes", []))]
    assert not said, said
    assert not any(c.startswith(("gpuprep", "sudo gpuprep")) for c in shown_commands(text))
    proc = subprocess.run([str(GPUPREP), "--root", str(root), "install", "--only", "ecs-config"],
                          capture_output=True, text=True, timeout=120, env={"PATH": "/usr/bin:/bin"})
    assert proc.returncode == 3, proc.stderr  # what used to be offered


def test_at_80_columns_lines_wrap_with_a_hanging_indent_and_commands_stand_alone(tmp_path):
    text, _ = doctor(tree(tmp_path, "driver-drift-p5"))
    lines = text.splitlines()
    # Longer only where one word is (pytest's long tmp_path): never a word cut in two.
    long = [line for line in lines[1:] if len(line) > 80 and len(line.removesuffix(" \\").split()) > 1]
    assert not long, long
    assert lines[0].startswith("GPUPREP CRITICAL - ")  # Nagios reads one line: never cut
    for line in lines[2:]:
        assert line == "" or line[0] != " " or line.startswith(" " * 2), line
        if line and not line[0].isspace():
            assert re.match(r"^(\w+ +\[|[A-Z]+: |To fix \()", line), f"a line that starts at column 0: {line!r}"
    for command in shown_commands(text):
        assert "`" not in command and shlex.split(command)  # a command on its own line, ready to paste


# -- hints that fix: the fix shown, run as shown, clears its finding ---------------------------------------
def test_gpu_support_without_ecs_init_points_at_ecs_init(tmp_path):
    """The ecs-config step refuses a host without ecs ("ecs is not installed", exit 1): the fix it was offered."""
    root = tree(tmp_path, "healthy-p5-h100x8")
    (root / "etc/ecs").mkdir(parents=True, exist_ok=True)
    (root / "etc/ecs/ecs.config").write_text("ECS_CLUSTER=training\n")
    found = checks(root)
    assert found["ecs-gpu-support"]["status"] == "critical" and found["ecs-gpu-support"]["cause"] == "ecs-init"
    assert "install --only ecs-config" not in doctor(root)[0]


def test_the_ecs_gpu_support_fix_as_shown_clears_it(tmp_path, request):
    """An ECS host's image (the simulated p5 tree, Amazon Linux 2023) with ecs-init in its rpm database (a fixture
    package, --justdb: only the database matters) and its unit, whose ecs.config leaves GPU support out: the command
    shown on its own line, pasted as a user would, clears ecs-gpu-support."""
    from rpmfixtures import PkgSpec, build_rpm

    root = tree(tmp_path, "healthy-p5-h100x8")
    rpm = build_rpm(PkgSpec("ecs-init", "1.97.1", "1.amzn2023", requires=["docker >= 20.10.0"]), tmp_path / "rpms",
                    cache=request.config.cache.mkdir("rpmfixtures"))
    subprocess.run(["rpm", "-i", "--root", str(root), "--nodeps", "--justdb", str(rpm)], check=True,
                   capture_output=True, timeout=120)
    unit = root / "usr/lib/systemd/system/ecs.service"
    unit.parent.mkdir(parents=True, exist_ok=True)
    unit.write_text("[Unit]\nDescription=Amazon ECS (stand-in unit)\n[Service]\nExecStart=/bin/true\n"
                    "[Install]\nWantedBy=multi-user.target\n")
    (root / "etc/ecs").mkdir(parents=True, exist_ok=True)
    (root / "etc/ecs/ecs.config").write_text("ECS_CLUSTER=training\n")
    assert checks(root)["ecs-gpu-support"]["status"] == "critical"
    text, _ = doctor(root)
    wanted = f"gpuprep --root {shlex.quote(str(root))} install --only ecs-config"
    assert wanted in shown_commands(text), text
    proc = subprocess.run([str(GPUPREP), *shlex.split(wanted)[1:]], capture_output=True, text=True, timeout=300,
                          env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert checks(root)["ecs-gpu-support"]["status"] == "ok"
