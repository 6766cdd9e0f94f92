"""install's ecs-config and docker-group steps end to end: the gpuprep CLI on an image tree (--root).

Real: the gpuprep CLI as Packer's amazon-chroot builder runs it, ``systemctl --root`` (enables units
offline, as in an image), shadow-utils' ``usermod -R`` and ``groupadd -R`` editing the tree's
/etc/group and /etc/gshadow. Nothing is simulated: ecs.service is ecs-init's unit file as AL2/AL2023
ship it (amazon-ecs-init packaging), only the agent binary it names is absent, and it is never run
(in an image nothing may start).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import FIXTURES, REPO, require
from contract import json_output
from testbed import ECS_SERVICE

# What user-data or an AMI recipe typically leaves in ecs.config before gpuprep runs.
ECS_CONFIG = """# Written by user-data: the cluster this instance joins.
ECS_CLUSTER=gpu-batch

# ECS_ENABLE_GPU_SUPPORT=false   (a comment that mentions the key stays a comment)
ECS_ENABLE_GPU_SUPPORT=false
ECS_LOGLEVEL=info
ECS_RESERVED_MEMORY=256
"""

PASSWD = ("root:x:0:0:root:/root:/bin/bash\n"
          "ec2-user:x:1000:1000:EC2 Default User:/home/ec2-user:/bin/bash\n")
GROUP = "root:x:0:\nwheel:x:10:ec2-user\nec2-user:x:1000:\ndocker:x:992:\n"
GSHADOW = "root:::\nwheel:::ec2-user\nec2-user:!::\ndocker:!::\n"


@pytest.fixture
def image_root(tmp_path) -> Path:
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    shutil.copy(FIXTURES / "distros/amzn-2023/etc/os-release", root / "etc/os-release")
    unit = root / "usr/lib/systemd/system/ecs.service"
    unit.parent.mkdir(parents=True)
    unit.write_text(ECS_SERVICE)
    (root / "etc/systemd/system").mkdir(parents=True)
    for name, text, mode in (("passwd", PASSWD, 0o644), ("group", GROUP, 0o644), ("shadow", "", 0o000),
                             ("gshadow", GSHADOW, 0o000)):
        (root / "etc" / name).write_text(text)
        (root / "etc" / name).chmod(mode)
    return root


def gpuprep(root: Path, *args: str, json_out: bool = True) -> tuple[int, dict | None, str, str]:
    # No DOCKER_HOST: an image tree has no Engine, as on a Packer chroot.
    env = {k: v for k, v in os.environ.items() if k != "DOCKER_HOST"}
    proc = subprocess.run([sys.executable, "-m", "gpuprep", "--root", str(root), *(["--json"] if json_out else []),
                           *args], capture_output=True, text=True, timeout=60, env={**env, "PYTHONPATH": str(REPO)})
    report = json_output(proc.stdout) if json_out and proc.stdout.strip().startswith("{") else None
    return proc.returncode, report, proc.stdout, proc.stderr


def step(report: dict, ident: str) -> dict:
    return next(s for s in report["steps"] if s["id"] == ident)


def ecs_wanted(root: Path) -> Path:
    return root / "etc/systemd/system/multi-user.target.wants/ecs.service"


def test_ecs_config_dry_run_real_run_second_run(image_root):
    require("systemctl")
    root = image_root
    conf = root / "etc/ecs/ecs.config"
    conf.parent.mkdir()
    conf.write_text(ECS_CONFIG)
    conf.chmod(0o600)  # user-data wrote it private: it stays so

    code, report, _, err = gpuprep(root, "install", "--only", "ecs-config", "--dry-run")
    assert code == 0, err
    planned = step(report, "ecs-config")
    assert planned["status"] == "planned"
    assert "-ECS_ENABLE_GPU_SUPPORT=false\n+ECS_ENABLE_GPU_SUPPORT=true\n" in planned["diff"]
    assert planned["diff"].startswith("--- /etc/ecs/ecs.config\n+++ /etc/ecs/ecs.config\n")
    assert planned["commands"] == [["systemctl", f"--root={root.resolve()}", "enable", "ecs.service"]]
    assert conf.read_text() == ECS_CONFIG and not ecs_wanted(root).exists()

    # The text output shows the same diff a user reads before saying yes.
    code, _, out, err = gpuprep(root, "install", "--only", "ecs-config", "--dry-run", json_out=False)
    assert code == 0 and "+ECS_ENABLE_GPU_SUPPORT=true" in out, out + err

    code, report, _, err = gpuprep(root, "install", "--only", "ecs-config")
    assert code == 0 and step(report, "ecs-config")["status"] == "changed", err
    assert conf.read_text() == ECS_CONFIG.replace("\nECS_ENABLE_GPU_SUPPORT=false\n", "\nECS_ENABLE_GPU_SUPPORT=true\n")
    assert "# ECS_ENABLE_GPU_SUPPORT=false   (a comment" in conf.read_text()  # comments untouched
    assert oct(conf.stat().st_mode & 0o777) == oct(0o600)
    # Enabled for the next boot through systemctl --root; nothing started (an image runs nothing).
    assert ecs_wanted(root).is_symlink()
    assert os.readlink(ecs_wanted(root)) == "/usr/lib/systemd/system/ecs.service"
    assert not any(c[-2:-1] == ["start"] for c in step(report, "ecs-config")["commands"])
    enabled = subprocess.run(["systemctl", f"--root={root}", "is-enabled", "ecs.service"], capture_output=True,
                             text=True, timeout=30)
    assert enabled.stdout.strip() == "enabled"

    stat_before = conf.stat()
    code, report, _, err = gpuprep(root, "install", "--only", "ecs-config")
    assert code == 0 and report["status"] == "ok" and step(report, "ecs-config")["status"] == "ok", err
    assert conf.stat().st_mtime_ns == stat_before.st_mtime_ns


def test_ecs_config_is_created_when_missing(image_root):
    require("systemctl")
    root = image_root
    code, report, _, err = gpuprep(root, "install", "--only", "ecs-config")
    assert code == 0 and step(report, "ecs-config")["status"] == "changed", err
    conf = root / "etc/ecs/ecs.config"
    assert conf.read_text() == "ECS_ENABLE_GPU_SUPPORT=true\n"
    assert oct(conf.stat().st_mode & 0o777) == oct(0o644) and oct(conf.parent.stat().st_mode & 0o777) == oct(0o755)


def _group_line(root: Path, name: str = "docker") -> str:
    return next(line for line in (root / "etc/group").read_text().splitlines() if line.startswith(name + ":"))


def test_docker_group_user_joins_through_usermod_in_the_root(image_root):
    require("usermod")
    root = image_root
    code, report, _, err = gpuprep(root, "install", "--only", "docker-group", "--user", "ec2-user", "--dry-run")
    assert code == 0, err
    planned = step(report, "docker-group")
    assert planned["status"] == "planned"
    assert planned["commands"] == [["usermod", "-R", str(root.resolve()), "-aG", "docker", "ec2-user"]]
    assert _group_line(root) == "docker:x:992:"

    code, report, _, err = gpuprep(root, "install", "--only", "docker-group", "--user", "ec2-user")
    assert code == 0 and step(report, "docker-group")["status"] == "changed", err
    assert _group_line(root) == "docker:x:992:ec2-user"
    assert (root / "etc/group").read_text().replace("docker:x:992:ec2-user", "docker:x:992:") == GROUP
    assert "docker:!::ec2-user" in (root / "etc/gshadow").read_text()

    code, report, _, err = gpuprep(root, "install", "--only", "docker-group", "--user", "ec2-user")
    assert code == 0 and step(report, "docker-group")["status"] == "ok", err

    # No --user: nobody joins (group docker is root-equivalent).
    code, report, _, err = gpuprep(root, "install", "--only", "docker-group")
    assert code == 0 and step(report, "docker-group")["summary"] == "no --user given", err


def test_docker_group_unknown_user_exits_2_and_changes_nothing(image_root):
    root = image_root
    before = {n: (root / "etc" / n).read_bytes() for n in ("group", "gshadow", "passwd")}
    for dry in ((), ("--dry-run",)):
        code, report, _, err = gpuprep(root, "install", "--only", "docker-group", "--user", "mallory", *dry)
        assert code == 2, err
        failed = step(report, "docker-group")
        assert failed["status"] == "failed" and "--user mallory: no such user" in failed["summary"]
        assert "useradd mallory" in failed["hint"] and "Traceback" not in err
    assert {n: (root / "etc" / n).read_bytes() for n in before} == before


def test_install_help_says_group_docker_is_root_equivalent():
    proc = subprocess.run([sys.executable, "-m", "gpuprep", "install", "--help"], capture_output=True, text=True,
                          timeout=60, env={**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "200"})
    assert proc.returncode == 0
    text = " ".join(proc.stdout.split())
    assert "--user NAME" in text and "root-equivalent" in text and "No user is added by default" in text
