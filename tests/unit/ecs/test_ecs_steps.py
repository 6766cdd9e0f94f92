"""gpuprep/ecs.py: ecs.config parsing and editing, nvidia-gpu-info.json, and the install steps
``ecs-config`` and ``docker-group``.

Real components: ``systemctl --root`` (enables ecs.service in a fixture tree, as on an image) and the
shadow utilities ``usermod -R`` / ``groupadd -R`` (edit the tree's /etc/group). Each step runs in
dry-run mode, for real, and again (the second run reports ``ok``).
"""

from __future__ import annotations

import json
import os
import shutil
import stat
from pathlib import Path

import pytest
from conftest import FIXTURES, require

from gpuprep.ecs import config as ecs_config
from gpuprep.ecs import steps as ecs_steps
from gpuprep.host import Host
from gpuprep.options import InstallOptions
from gpuprep.packages.rpmdb import rpm_installed
from gpuprep.platform import detect
from gpuprep.report import StepStatus
from gpuprep.runner.steps import Context, run_steps

pytestmark = pytest.mark.allow_subp('rpm', 'usermod', 'groupadd', 'systemctl')

ECS_UNIT = """[Unit]
Description=Amazon Elastic Container Service - container agent
After=docker.service

[Service]
Type=simple
ExecStart=/usr/libexec/amazon-ecs-init start
RestartPreventExitStatus=5

[Install]
WantedBy=multi-user.target
"""


# -- ecs.config ---------------------------------------------------------------------------
def test_parse_config_comments_blanks_last_wins_and_literal_values():
    text = "# cluster\nECS_CLUSTER=gpu\n\n  # ECS_ENABLE_GPU_SUPPORT=true\nECS_ENABLE_GPU_SUPPORT=false\n" \
           "ECS_INSTANCE_ATTRIBUTES={\"a\":\"b=c\"}\nECS_ENABLE_GPU_SUPPORT=true\nnot a line\nQ=\"x\"\n"
    cfg = ecs_config.parse_config(text)
    assert cfg == {"ECS_CLUSTER": "gpu", "ECS_ENABLE_GPU_SUPPORT": "true",
                   "ECS_INSTANCE_ATTRIBUTES": '{"a":"b=c"}', "Q": '"x"'}


@pytest.mark.parametrize("before,after", [
    ("", "ECS_ENABLE_GPU_SUPPORT=true\n"),
    ("ECS_CLUSTER=gpu", "ECS_CLUSTER=gpu\nECS_ENABLE_GPU_SUPPORT=true\n"),
    ("# keep me\nECS_CLUSTER=gpu\n\n", "# keep me\nECS_CLUSTER=gpu\n\nECS_ENABLE_GPU_SUPPORT=true\n"),
    ("ECS_ENABLE_GPU_SUPPORT=false\nECS_CLUSTER=gpu\n", "ECS_ENABLE_GPU_SUPPORT=true\nECS_CLUSTER=gpu\n"),
    ("#ECS_ENABLE_GPU_SUPPORT=false\n", "#ECS_ENABLE_GPU_SUPPORT=false\nECS_ENABLE_GPU_SUPPORT=true\n"),
    ("A=1\r\nECS_ENABLE_GPU_SUPPORT=0\r\nB=2\r\n", "A=1\r\nECS_ENABLE_GPU_SUPPORT=true\r\nB=2\r\n"),
    ("ECS_ENABLE_GPU_SUPPORT=no\nX=1\nECS_ENABLE_GPU_SUPPORT=no\n",
     "ECS_ENABLE_GPU_SUPPORT=true\nX=1\nECS_ENABLE_GPU_SUPPORT=true\n"),
])
def test_set_config_key_keeps_every_other_line(before, after):
    assert ecs_config.set_config_key(before, "ECS_ENABLE_GPU_SUPPORT", "true") == after


def test_etc_config_wins_over_the_ami_file(tmp_path):
    host = Host(tmp_path)
    (tmp_path / "var/lib/ecs").mkdir(parents=True)
    (tmp_path / "var/lib/ecs/ecs.config").write_text("ECS_ENABLE_GPU_SUPPORT=true\nECS_CLUSTER=ami\n")
    assert ecs_config.read_config(host).gpu_support
    (tmp_path / "etc/ecs").mkdir(parents=True)
    (tmp_path / "etc/ecs/ecs.config").write_text("ECS_ENABLE_GPU_SUPPORT=false\n")
    cfg = ecs_config.read_config(host)
    assert not cfg.gpu_support and cfg.source["ECS_ENABLE_GPU_SUPPORT"] == "/etc/ecs/ecs.config"
    assert cfg.get("ECS_CLUSTER") == "ami" and cfg.source["ECS_CLUSTER"] == "/var/lib/ecs/ecs.config"


# -- nvidia-gpu-info.json ------------------------------------------------------------------
def test_parse_gpu_info_as_ecs_init_writes_it():
    info = ecs_config.parse_gpu_info(
        '{"DriverVersion":"580.159.04","GPUIDs":["GPU-0e7d3af2-be49-affe-ae6c-f6fcf358f2ea"]}')
    assert info.driver_version == "580.159.04" and info.gpu_ids == ("GPU-0e7d3af2-be49-affe-ae6c-f6fcf358f2ea",)


@pytest.mark.parametrize("text,problem", [
    ("{", "not JSON"), ("[]", "not a JSON object"), ('{"GPUIDs": []}', "DriverVersion"),
    ('{"DriverVersion": "1", "GPUIDs": "GPU-x"}', "GPUIDs"), ('{"DriverVersion": "1", "GPUIDs": [1]}', "GPUIDs"),
])
def test_parse_gpu_info_says_what_is_wrong(text, problem):
    with pytest.raises(ValueError, match=problem):
        ecs_config.parse_gpu_info(text)


# -- install step: ecs-config --------------------------------------------------------------
def _tree(tmp_path: Path, *, unit: bool = True) -> Path:
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    shutil.copy(FIXTURES / "distros/amzn-2023/etc/os-release", root / "etc/os-release")
    if unit:
        (root / "usr/lib/systemd/system").mkdir(parents=True)
        (root / "usr/lib/systemd/system/ecs.service").write_text(ECS_UNIT)
    return root


def _run(root: Path, step, dry_run: bool = False, **opts):
    host = Host(root)
    ctx = Context(host, detect(host), InstallOptions(dry_run=dry_run, **opts))
    return run_steps(ctx, "install", [step])


def _enabled(root: Path) -> bool:
    return (root / "etc/systemd/system/multi-user.target.wants/ecs.service").is_symlink()


def test_ecs_config_created_with_its_dir_and_ecs_enabled_not_started(tmp_path):
    require("systemctl")
    root = _tree(tmp_path)
    conf = root / "etc/ecs/ecs.config"

    dry = _run(root, ecs_steps.EcsConfigStep(), dry_run=True).steps[0]
    assert dry.status is StepStatus.PLANNED and not conf.exists() and not _enabled(root)
    assert "+ECS_ENABLE_GPU_SUPPORT=true" in dry.diff and dry.diff.startswith("--- /dev/null")
    assert ["systemctl", f"--root={root.resolve()}", "enable", "ecs.service"] in dry.commands

    real = _run(root, ecs_steps.EcsConfigStep()).steps[0]
    assert real.status is StepStatus.CHANGED, real.summary
    assert conf.read_text() == "ECS_ENABLE_GPU_SUPPORT=true\n"
    assert stat.S_IMODE(conf.stat().st_mode) == 0o644 and stat.S_IMODE(conf.parent.stat().st_mode) == 0o755
    assert _enabled(root)

    again = _run(root, ecs_steps.EcsConfigStep()).steps[0]
    assert again.status is StepStatus.OK, again.summary


def test_ecs_config_keeps_other_lines_and_mode_and_edits_the_option_path(tmp_path):
    require("systemctl")
    root = _tree(tmp_path)
    conf = root / "etc/ecs/ecs.config"
    conf.parent.mkdir(parents=True)
    original = "# written by user-data\nECS_CLUSTER=gpu-batch\nECS_ENABLE_GPU_SUPPORT=false\nECS_LOGLEVEL=debug"
    conf.write_text(original)
    os.chmod(conf, 0o600)
    result = _run(root, ecs_steps.EcsConfigStep()).steps[0]
    assert result.status is StepStatus.CHANGED
    assert "-ECS_ENABLE_GPU_SUPPORT=false" in result.diff and "+ECS_ENABLE_GPU_SUPPORT=true" in result.diff
    assert conf.read_text() == original.replace("=false", "=true")  # even the missing final newline kept
    assert stat.S_IMODE(conf.stat().st_mode) == 0o600
    assert _run(root, ecs_steps.EcsConfigStep()).steps[0].status is StepStatus.OK

    # --ecs-config names another file: that one is edited, /etc/ecs/ecs.config left alone
    other = _run(root, ecs_steps.EcsConfigStep(), ecs_config="/var/lib/ecs/ecs.config").steps[0]
    assert other.status is StepStatus.CHANGED
    assert (root / "var/lib/ecs/ecs.config").read_text() == "ECS_ENABLE_GPU_SUPPORT=true\n"


def test_ecs_config_without_ecs_init_fails_and_writes_nothing(tmp_path):
    require("systemctl")
    root = _tree(tmp_path, unit=False)
    dry = _run(root, ecs_steps.EcsConfigStep(), dry_run=True)
    assert dry.steps[0].status is StepStatus.PLANNED  # the packages step may install it first
    report = _run(root, ecs_steps.EcsConfigStep())
    assert report.steps[0].status is StepStatus.FAILED and report.exit_code == 1
    assert "ecs is not installed" in report.steps[0].summary and "ecs-init" in report.steps[0].hint
    assert not (root / "etc/ecs").exists()


def test_ecs_config_on_a_directory_is_bad_input(tmp_path):
    root = _tree(tmp_path)
    (root / "etc/ecs/ecs.config").mkdir(parents=True)
    report = _run(root, ecs_steps.EcsConfigStep())
    assert report.exit_code == 2 and "is a directory" in report.steps[0].summary


# -- install step: docker-group ------------------------------------------------------------
def _users(root: Path, group: str = "root:x:0:\nalice:x:1000:\ndocker:x:990:\n") -> None:
    (root / "etc/passwd").write_text("root:x:0:0:root:/root:/bin/bash\nalice:x:1000:1000::/home/alice:/bin/sh\n"
                                     "bob:x:1001:990::/home/bob:/bin/sh\n")
    (root / "etc/group").write_text(group)


def test_docker_group_no_user_given_is_converged(tmp_path):
    root = _tree(tmp_path, unit=False)
    result = _run(root, ecs_steps.DockerGroupStep()).steps[0]
    assert result.status is StepStatus.OK and result.summary == "no --user given"


def test_docker_group_adds_the_user_through_usermod_then_converges(tmp_path):
    require("usermod")
    root = _tree(tmp_path, unit=False)
    _users(root)
    dry = _run(root, ecs_steps.DockerGroupStep(), dry_run=True, user="alice").steps[0]
    assert dry.status is StepStatus.PLANNED
    assert dry.commands == [["usermod", "-R", str(root.resolve()), "-aG", "docker", "alice"]]
    assert "docker:x:990:\n" in (root / "etc/group").read_text()

    real = _run(root, ecs_steps.DockerGroupStep(), user="alice").steps[0]
    assert real.status is StepStatus.CHANGED, real.summary
    assert "docker:x:990:alice\n" in (root / "etc/group").read_text()
    assert _run(root, ecs_steps.DockerGroupStep(), user="alice").steps[0].status is StepStatus.OK


def test_docker_group_missing_group_is_created_and_primary_group_counts(tmp_path):
    require("usermod", "groupadd")
    root = _tree(tmp_path, unit=False)
    _users(root, group="root:x:0:\nalice:x:1000:\n")
    real = _run(root, ecs_steps.DockerGroupStep(), user="alice").steps[0]
    assert real.status is StepStatus.CHANGED and real.commands[0][:1] == ["groupadd"]
    line = [g for g in (root / "etc/group").read_text().splitlines() if g.startswith("docker:")]
    assert line and line[0].endswith(":alice")
    # bob's primary group is docker (gid 990) in _users' default group file
    _users(root)
    assert _run(root, ecs_steps.DockerGroupStep(), user="bob").steps[0].status is StepStatus.OK


def test_docker_group_unknown_user_is_bad_input_and_changes_nothing(tmp_path):
    root = _tree(tmp_path, unit=False)
    _users(root)
    before = (root / "etc/group").read_text()
    report = _run(root, ecs_steps.DockerGroupStep(), user="mallory")
    assert report.exit_code == 2 and "no such user" in report.steps[0].summary
    assert "useradd mallory" in report.steps[0].hint
    assert (root / "etc/group").read_text() == before


def test_rpm_installed_asks_nothing_of_a_root_without_rpm_database(tmp_path):
    require("rpm")
    root = _tree(tmp_path, unit=False)
    assert rpm_installed(Host(root), ("ecs-init", "docker")) == {}
    assert sorted(p.name for p in root.iterdir()) == ["etc"]  # no rpm database was created inside


def test_gpu_info_round_trip(tmp_path):
    host = Host(tmp_path)
    assert ecs_config.read_gpu_info(host) is None
    p = tmp_path / "var/lib/ecs/gpu/nvidia-gpu-info.json"
    p.parent.mkdir(parents=True)
    p.write_text(json.dumps({"DriverVersion": "580.159.04", "GPUIDs": ["GPU-a", "GPU-b"]}))
    assert ecs_config.read_gpu_info(host) == ecs_config.GpuInfo("580.159.04", ("GPU-a", "GPU-b"))
