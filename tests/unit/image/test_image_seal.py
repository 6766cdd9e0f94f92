"""seal's file steps on fixture trees: ecs-state, gpu-info, deep-clean, stamp, preflight.

The whole CLI runs in-process (typer's CliRunner) with ``--root TREE``, as on a mounted image; no Docker
Engine is named, so the Docker steps report skipped. Symlink traps point at files outside the tree:
after seal the links are gone and their targets intact. ``--dry-run`` lists exactly the items the real
run removes, in the same order; a second run reports every step ok.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import FIXTURES
from contract import json_output
from typer.testing import CliRunner

from gpuprep import seal
from gpuprep.cli import app
from gpuprep.engine import objects
from gpuprep.host import Host
from gpuprep.image.clean import DeepCleanStep
from gpuprep.image.stamp import driver_version
from gpuprep.options import SealOptions
from gpuprep.platform import detect
from gpuprep.report import StepStatus
from gpuprep.rootfs import TreeChanged
from gpuprep.runner.steps import Context, run_steps

pytestmark = pytest.mark.allow_subp('python', 'rpm')

NO_DOCKER = "stop-ecs,containers,images"


def gpuprep(*args: str) -> tuple[int, dict | str]:
    """Run the CLI in-process; with --json return the parsed report."""
    result = CliRunner().invoke(app, list(args), env={"DOCKER_HOST": None})
    if "--json" in args and result.stdout.strip().startswith("{"):
        return result.exit_code, json_output(result.stdout)
    return result.exit_code, result.stdout + result.stderr


def _write(path: Path, text: str = "x") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


@pytest.fixture
def tree(tmp_path) -> dict[str, Path]:
    """An AL2023 root with the agent's state in both checkpoint formats, metadata, gpu-info, and traps."""
    root = tmp_path / "root"
    outside = tmp_path / "outside"
    shutil.copytree(FIXTURES / "distros/amzn-2023", root)
    data = root / "var/lib/ecs/data"
    _write(data / "ecs_agent_data.json", '{"Data": {"Cluster": "build", "EC2InstanceID": "i-0build"}}')
    _write(data / "agent.db", "bolt")
    _write(data / "metadata/3f2a/ecs-container-metadata.json", "{}")
    _write(data / ".hidden", "dot files count too")
    _write(root / "var/lib/ecs/gpu/nvidia-gpu-info.json",
           '{"DriverVersion":"580.159.04","GPUIDs":["GPU-0e7d3af2-be49-affe-ae6c-f6fcf358f2ea"]}')
    _write(root / "var/lib/ecs/ecs.config", "ECS_ENABLE_GPU_SUPPORT=true\n")
    target = _write(outside / "precious", "must survive")
    _write(outside / "dir/inner", "must survive too")
    os.symlink(target, data / "trap")  # a link to a file outside
    os.symlink(outside / "dir", data / "dirtrap")  # a link to a directory outside
    os.symlink(outside / "dir", data / "metadata/3f2a/nested-trap")  # inside a tree rmtree walks
    return {"root": root, "outside": outside, "target": target}


def _removed(report: dict) -> dict[str, list]:
    return {s["id"]: s.get("data", {}).get("remove", []) for s in report["steps"]}


def test_seal_removes_the_agent_state_and_keeps_every_trap_target(tree):
    root = tree["root"]
    code, dry = gpuprep("--root", str(root), "--json", "seal", "--dry-run", "--yes", "--skip", NO_DOCKER)
    assert code == 0, dry
    assert {s["id"]: s["status"] for s in dry["steps"]}["ecs-state"] == "planned"
    assert (root / "var/lib/ecs/data/agent.db").exists()  # a dry run removes nothing
    assert not (root / "etc/gpuprep/seal.json").exists()

    code, real = gpuprep("--root", str(root), "--json", "seal", "--yes", "--skip", NO_DOCKER)
    assert code == 0, real
    assert _removed(real) == _removed(dry)  # same items, same order
    assert [r["path"] for r in _removed(real)["ecs-state"]] == [
        "/var/lib/ecs/data/.hidden", "/var/lib/ecs/data/agent.db", "/var/lib/ecs/data/dirtrap",
        "/var/lib/ecs/data/ecs_agent_data.json", "/var/lib/ecs/data/metadata", "/var/lib/ecs/data/trap"]
    kinds = {r["path"].rsplit("/", 1)[1]: r["kind"] for r in _removed(real)["ecs-state"]}
    assert kinds["trap"] == kinds["dirtrap"] == "link" and kinds["metadata"] == "dir"
    assert [r["path"] for r in _removed(real)["gpu-info"]] == ["/var/lib/ecs/gpu/nvidia-gpu-info.json"]

    assert os.listdir(root / "var/lib/ecs/data") == []
    assert not (root / "var/lib/ecs/gpu/nvidia-gpu-info.json").exists()
    assert (root / "var/lib/ecs/ecs.config").read_text() == "ECS_ENABLE_GPU_SUPPORT=true\n"
    assert tree["target"].read_text() == "must survive"
    assert (tree["outside"] / "dir/inner").read_text() == "must survive too"
    stamp = json.loads((root / "etc/gpuprep/seal.json").read_text())
    assert stamp["platform"]["id"] == "amzn" and stamp["gpuprep"] and stamp["sealed_at"].endswith("Z")

    code, again = gpuprep("--root", str(root), "--json", "seal", "--yes", "--skip", NO_DOCKER)
    assert code == 0 and again["status"] == "ok"
    assert {s["status"] for s in again["steps"]} <= {"ok", "skipped"}
    assert [s["id"] for s in again["steps"] if s["status"] == "ok"] == \
        ["preflight", "ecs-state", "gpu-info", "toolkit-state", "gpu-health-state", "stamp"]
    assert json.loads((root / "etc/gpuprep/seal.json").read_text()) == stamp  # not rewritten


def test_dry_run_text_lists_each_item(tree):
    # A real process: report.py's renderers bind sys.stdout at import, which CliRunner cannot capture.
    env = {k: v for k, v in os.environ.items() if k != "DOCKER_HOST"}
    proc = subprocess.run([sys.executable, "-m", "gpuprep", "--root", str(tree["root"]), "seal", "--dry-run",
                           "--skip", NO_DOCKER], capture_output=True, text=True, env=env, timeout=60)
    out = proc.stdout
    assert proc.returncode == 0, proc.stderr
    assert "remove /var/lib/ecs/data/trap (symlink only; its target is kept)" in out
    assert "remove /var/lib/ecs/data/metadata/ (directory and everything in it)" in out


def test_an_absolute_link_of_a_declared_dir_is_read_inside_the_root(tmp_path):
    """/var/lib/ecs -> /build-machine-ecs (absolute): in the image it names ROOT/build-machine-ecs, so the
    build machine's directory of that name is never touched and the image's own state is removed."""
    root = tmp_path / "root"
    shutil.copytree(FIXTURES / "distros/amzn-2023", root)
    elsewhere = tmp_path / "build-machine-ecs"
    _write(elsewhere / "data/agent.db", "the build machine's own")
    _write(root / str(elsewhere).lstrip("/") / "data/agent.db", "the image's")
    (root / "var/lib").mkdir(parents=True)
    os.symlink(elsewhere, root / "var/lib/ecs")
    code, report = gpuprep("--root", str(root), "--json", "seal", "--yes", "--skip", NO_DOCKER)
    assert code == 0, report
    assert (elsewhere / "data/agent.db").read_text() == "the build machine's own"
    assert not (root / str(elsewhere).lstrip("/") / "data/agent.db").exists()


def test_a_relative_link_climbing_out_of_the_root_is_refused(tmp_path):
    """/var/lib/ecs -> ../../../build-machine-ecs climbs above the image's /: exit 2 naming the link."""
    root = tmp_path / "root"
    shutil.copytree(FIXTURES / "distros/amzn-2023", root)
    elsewhere = tmp_path / "build-machine-ecs"
    _write(elsewhere / "data/agent.db", "the build machine's own")
    (root / "var/lib").mkdir(parents=True)
    os.symlink(os.path.relpath(elsewhere, root / "var/lib"), root / "var/lib/ecs")
    code, report = gpuprep("--root", str(root), "--json", "seal", "--yes", "--skip", NO_DOCKER)
    assert code == 2 and report["status"] == "failed"
    failed = [s for s in report["steps"] if s["status"] == "failed"]
    assert failed[0]["id"] == "ecs-state" and "/var/lib/ecs leads out of" in failed[0]["summary"]
    assert (elsewhere / "data/agent.db").read_text() == "the build machine's own"


def test_a_directory_swapped_for_a_link_after_planning_stops_the_removal(tmp_path):
    """Between plan and apply, ~alice/.ssh becomes a link to another directory: nothing there is touched."""
    root = tmp_path / "root"
    shutil.copytree(FIXTURES / "distros/amzn-2023", root)
    _write(root / "home/alice/.ssh/authorized_keys", "ssh-ed25519 AAAA alice")
    other = _write(tmp_path / "other/authorized_keys", "not ours")
    host = Host(root)
    ctx = Context(host, detect(host), SealOptions(deep=True, yes=True))
    step = DeepCleanStep()
    change = step.plan(ctx)
    assert [i.path for i in change.payload] == ["/home/alice/.ssh/authorized_keys"]
    shutil.rmtree(root / "home/alice/.ssh")
    os.symlink(other.parent, root / "home/alice/.ssh")
    with pytest.raises(TreeChanged, match="no longer a directory"):
        step.apply(ctx, change)
    assert other.read_text() == "not ours"


@pytest.fixture
def deep_tree(tmp_path) -> dict[str, Path]:
    root = tmp_path / "root"
    outside = tmp_path / "outside"
    shutil.copytree(FIXTURES / "distros/amzn-2023", root)
    files = {
        "var/lib/cloud/instances/i-0build/user-data.txt": "#!/bin/sh",
        "var/lib/cloud/instance": None,  # a link, as cloud-init makes it
        "var/lib/cloud/data/instance-id": "i-0build",
        "etc/ssh/ssh_host_ed25519_key": "KEY", "etc/ssh/ssh_host_ed25519_key.pub": "PUB",
        "etc/ssh/sshd_config": "PermitRootLogin no",
        "root/.ssh/authorized_keys": "ssh-rsa root", "root/.ssh/known_hosts": "kept",
        "home/ec2-user/.ssh/authorized_keys": "ssh-rsa ec2-user", "home/ec2-user/.ssh/id_ed25519": "kept",
        "etc/machine-id": "0123456789abcdef0123456789abcdef\n",
        "var/log/messages": "boot...", "var/log/messages-20240101": "old", "var/log/cron.1.gz": "old",
        "var/log/audit/audit.log": "type=SYSCALL", "var/log/empty.log": "",
        "var/log/journal/0123abcd/system.journal": "LPKSHHRH",
        "var/lib/dhclient/dhclient--eth0.lease": "lease {}",
        "var/lib/NetworkManager/internal-1234-eth0.lease": "ADDRESS=10.0.0.5",
        "var/lib/NetworkManager/NetworkManager.state": "kept",
        "var/cache/yum/x86_64/2/amzn2-core/repomd.xml": "<repomd/>",
        "var/cache/dnf/amazonlinux-1234/repodata/repomd.xml": "<repomd/>",
        "var/lib/yum/history/history-2024-01-01.sqlite": "sqlite",
        "var/lib/dnf/history.sqlite": "sqlite", "var/lib/dnf/history.sqlite-wal": "wal",
        "var/lib/dnf/groups.json": "kept",
    }
    for rel, text in files.items():
        if text is not None:
            _write(root / rel, text)
    os.symlink("/var/lib/cloud/instances/i-0build", root / "var/lib/cloud/instance")
    precious = _write(outside / ".ssh/authorized_keys", "someone else's")
    log_target = _write(outside / "log-target", "not a log of ours")
    os.symlink(outside, root / "home/intruder")  # a home that is a link: never walked through
    os.symlink(log_target, root / "var/log/linked.log")  # a link in /var/log: left alone
    return {"root": root, "precious": precious, "log_target": log_target}


DEEP_EXPECTED = [
    "remove /var/lib/cloud/data/ (directory and everything in it)",
    "remove /var/lib/cloud/instance (symlink only; its target is kept)",
    "remove /var/lib/cloud/instances/ (directory and everything in it)",
    "remove /etc/ssh/ssh_host_ed25519_key",
    "remove /etc/ssh/ssh_host_ed25519_key.pub",
    "remove /root/.ssh/authorized_keys",
    "remove /home/ec2-user/.ssh/authorized_keys",
    "truncate /etc/machine-id",
    "truncate /var/log/audit/audit.log",
    "remove /var/log/cron.1.gz",
    "remove /var/log/journal/0123abcd/system.journal",
    "truncate /var/log/messages",
    "remove /var/log/messages-20240101",
    "remove /var/lib/dhclient/dhclient--eth0.lease",
    "remove /var/lib/NetworkManager/internal-1234-eth0.lease",
    "remove /var/cache/yum/x86_64/ (directory and everything in it)",
    "remove /var/cache/dnf/amazonlinux-1234/ (directory and everything in it)",
    "remove /var/lib/yum/history/history-2024-01-01.sqlite",
    "remove /var/lib/dnf/history.sqlite",
    "remove /var/lib/dnf/history.sqlite-wal",
]


def test_deep_clean_only_with_deep(deep_tree):
    code, report = gpuprep("--root", str(deep_tree["root"]), "--json", "seal", "--yes", "--skip", NO_DOCKER)
    assert code == 0
    step = {s["id"]: s for s in report["steps"]}["deep-clean"]
    assert step["status"] == "skipped" and step["summary"] == "only with --deep"
    assert (deep_tree["root"] / "etc/ssh/ssh_host_ed25519_key").exists()


def test_deep_clean_items_dry_run_equals_real_run_then_ok(deep_tree):
    root = deep_tree["root"]
    args = ("--root", str(root), "--json", "seal", "--yes", "--deep", "--skip", NO_DOCKER)
    code, dry = gpuprep(*args[:4], "--dry-run", *args[4:])
    assert code == 0
    dry_step = {s["id"]: s for s in dry["steps"]}["deep-clean"]
    assert dry_step["status"] == "planned" and dry_step["data"]["lines"] == DEEP_EXPECTED
    assert (root / "etc/machine-id").read_text().strip()

    code, real = gpuprep(*args)
    assert code == 0
    real_step = {s["id"]: s for s in real["steps"]}["deep-clean"]
    assert real_step["status"] == "changed" and real_step["data"]["remove"] == dry_step["data"]["remove"]

    # machine-id: empty, not removed; logs: truncated or removed, directories kept
    assert (root / "etc/machine-id").exists() and (root / "etc/machine-id").read_text() == ""
    assert (root / "var/log/messages").read_text() == "" and (root / "var/log/audit/audit.log").read_text() == ""
    assert (root / "var/log/journal/0123abcd").is_dir() and not any((root / "var/log/journal/0123abcd").iterdir())
    assert not (root / "var/log/messages-20240101").exists()
    for kept in ("etc/ssh/sshd_config", "root/.ssh/known_hosts", "home/ec2-user/.ssh/id_ed25519",
                 "var/lib/NetworkManager/NetworkManager.state", "var/lib/dnf/groups.json"):
        assert (root / kept).exists(), kept
    assert list((root / "var/lib/cloud").iterdir()) == []
    assert (root / "var/cache/yum").is_dir() and list((root / "var/cache/yum").iterdir()) == []
    assert deep_tree["precious"].read_text() == "someone else's"
    assert deep_tree["log_target"].read_text() == "not a log of ours"
    assert (root / "var/log/linked.log").is_symlink()

    code, again = gpuprep(*args)
    assert code == 0 and {s["id"]: s["status"] for s in again["steps"]}["deep-clean"] == "ok"
    assert again["status"] == "ok"


# -- preflight ----------------------------------------------------------------------------
def _ctx(root: Path, *, euid: int = 0, interactive: bool = False, **opts) -> Context:
    host = Host(root, euid=euid, env={})
    return Context(host, detect(host), SealOptions(**opts), interactive=interactive, can_ask=interactive)


def _seal(ctx: Context, only: list[str] | None = None):
    """seal's steps as the CLI runs them: on a terminal without --yes, the runner asks first."""
    return run_steps(ctx, "seal", seal.seal_steps(), only=only or (), confirm=seal.confirm_for(ctx))


def test_preflight_needs_root_exit_3_and_nothing_removed(tree):
    report = _seal(_ctx(tree["root"], euid=1000, yes=True))
    assert report.exit_code == 3 and "needs root" in report.steps[0].summary
    assert (tree["root"] / "var/lib/ecs/data/agent.db").exists()


def test_preflight_unknown_platform_exit_3(tmp_path):
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/os-release").write_text('ID="plan9"\nVERSION_ID="4"\n')
    report = _seal(_ctx(tmp_path, yes=True))
    assert report.exit_code == 3 and report.steps[0].status is StepStatus.FAILED


def test_preflight_on_a_terminal_asks_and_no_removes_nothing(tree, monkeypatch):
    """The person at the terminal is simulated: seal's question answers no (then yes). The same with a real
    pseudo-terminal: tests/integration/test_seal_cli.py."""
    import typer

    asked: list[str] = []
    monkeypatch.setattr(seal, "_ask_yes_no", lambda text: asked.append(text) or False)
    monkeypatch.setattr(typer, "echo", lambda line="", **kw: asked.append(str(line)))
    report = _seal(_ctx(tree["root"], interactive=True))
    assert report.exit_code == 1 and report.steps[0].summary == "aborted, nothing removed"
    assert any("remove /var/lib/ecs/data/agent.db" in line for line in asked)
    assert (tree["root"] / "var/lib/ecs/data/agent.db").exists()

    monkeypatch.setattr(seal, "_ask_yes_no", lambda text: True)
    report = _seal(_ctx(tree["root"], interactive=True))
    assert report.exit_code == 0 and not (tree["root"] / "var/lib/ecs/data/agent.db").exists()


def test_only_leaving_preflight_out_still_checks_root_and_asks(tree, monkeypatch):
    """`seal --only ecs-state`: the preflight step is not selected, its checks and question still come first."""
    import typer

    agent_db = tree["root"] / "var/lib/ecs/data/agent.db"
    only = ["ecs-state"]
    report = _seal(_ctx(tree["root"], euid=1000, yes=True, only=only), only)
    assert report.exit_code == 3 and report.error == "preflight: seal needs root: it stops services and removes " \
        "files owned by root" and agent_db.exists()
    asked: list[str] = []
    monkeypatch.setattr(seal, "_ask_yes_no", lambda text: asked.append(text) or False)
    monkeypatch.setattr(typer, "echo", lambda line="", **kw: None)
    report = _seal(_ctx(tree["root"], interactive=True, only=only), only)
    assert asked == ["Go ahead? [y/N]: "] and report.exit_code == 1 and agent_db.exists()


def test_yes_or_no_terminal_never_asks(tree, monkeypatch):

    def boom(*a, **k):
        raise AssertionError("asked")

    monkeypatch.setattr(seal, "_ask_yes_no", boom)
    assert _seal(_ctx(tree["root"], interactive=True, yes=True)).exit_code == 0


# -- --keep-image matching (pure) -----------------------------------------------------------
IMAGE = {"Id": "sha256:" + "ab12" * 16, "RepoTags": ["tiny:v1", "registry.example/team/train:2024"],
         "RepoDigests": ["registry.example/team/train@sha256:" + "cd34" * 16], "Size": 1234}


@pytest.mark.parametrize("ref,hit", [
    ("tiny:v1", True), ("docker.io/library/tiny:v1", True), ("tiny", False), ("tiny:v2", False),
    ("registry.example/team/train:2024", True), ("registry.example/team/train", False),
    ("registry.example/team/train@sha256:" + "cd34" * 16, True), ("sha256:" + "cd34" * 16, True),
    ("other/train@sha256:" + "cd34" * 16, False),
    ("sha256:" + "ab12" * 16, True), ("ab12ab12ab12", True), ("ab12ab12", False), ("sha256:ab12", False),
])
def test_image_matches_by_tag_digest_or_id(ref, hit):
    assert objects.image_matches(ref, IMAGE) is hit


def test_latest_is_implied():
    img = {"Id": "sha256:" + "00" * 32, "RepoTags": ["tiny:latest"], "RepoDigests": []}
    assert objects.image_matches("tiny", img) and objects.image_matches("library/tiny:latest", img)


def test_driver_version_from_the_kernel_module_file(tmp_path):
    _write(tmp_path / "proc/driver/nvidia/version",
           "NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  580.159.04  Release Build  (dvs-builder@U22)\n"
           "GCC version:  gcc version 12.3.0\n")
    assert driver_version(Host(tmp_path)) == "580.159.04"
    _write(tmp_path / "proc/driver/nvidia/version", "NVRM version: NVIDIA UNIX x86_64 Kernel Module  535.183.01  Sun\n")
    assert driver_version(Host(tmp_path)) == "535.183.01"


def test_engine_down_is_a_clear_error_with_a_hint_not_a_traceback(tree, tmp_path):
    """DOCKER_HOST names a socket nobody listens on (a dead Engine)."""
    env = {**os.environ, "DOCKER_HOST": f"unix://{tmp_path}/dead.sock"}
    proc = subprocess.run([sys.executable, "-m", "gpuprep", "--root", str(tree["root"]), "seal", "--yes"],
                          capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 1
    assert f"containers: the Docker Engine at unix://{tmp_path}/dead.sock does not answer" in proc.stderr
    assert "hint: check that DOCKER_HOST=" in proc.stderr and "Traceback" not in proc.stderr + proc.stdout
    assert (tree["root"] / "var/lib/ecs/data/agent.db").exists()  # stopped at the first failure
