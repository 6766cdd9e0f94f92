"""Host: atomic writes, backups, root-relative paths and subprocesses (real files, real programs)."""

from __future__ import annotations

import os
import stat

import pytest

from gpuprep.errors import BadInput, CommandError
from gpuprep.host import Host, backup_file, write_atomic

pytestmark = pytest.mark.allow_subp('echo', 'prog', 'sh', 'false', 'sleep')


def test_write_atomic_creates_file_and_parents_with_default_modes(tmp_path):
    target = tmp_path / "a" / "b" / "daemon.json"
    write_atomic(target, "{}\n")
    assert target.read_text() == "{}\n"
    assert stat.S_IMODE(target.stat().st_mode) == 0o644
    assert stat.S_IMODE(target.parent.stat().st_mode) & 0o755 == 0o755


def test_write_atomic_keeps_mode_and_owner(tmp_path):
    target = tmp_path / "ecs.config"
    target.write_text("old\n")
    os.chmod(target, 0o600)
    os.chown(target, 1234, 5678)
    write_atomic(target, "new\n")
    st = target.stat()
    assert target.read_text() == "new\n"
    assert stat.S_IMODE(st.st_mode) == 0o600
    assert (st.st_uid, st.st_gid) == (1234, 5678)


def test_write_atomic_follows_symlink_and_keeps_link(tmp_path):
    real = tmp_path / "real.json"
    real.write_text("{}")
    link = tmp_path / "daemon.json"
    link.symlink_to(real)
    write_atomic(link, '{"a": 1}')
    assert link.is_symlink()
    assert real.read_text() == '{"a": 1}'


def test_write_atomic_leaves_no_temp_file_behind(tmp_path):
    target = tmp_path / "f"
    write_atomic(target, b"x")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f"]


def test_write_atomic_refuses_a_directory(tmp_path):
    (tmp_path / "daemon.json").mkdir()
    with pytest.raises(BadInput, match="is a directory"):
        write_atomic(tmp_path / "daemon.json", "{}")


def test_backup_copies_beside_with_timestamp_and_mode(tmp_path):
    target = tmp_path / "daemon.json"
    target.write_text("{}")
    os.chmod(target, 0o640)
    backup = backup_file(target)
    assert backup is not None and backup.parent == tmp_path
    assert backup.name.startswith("daemon.json.gpuprep-")
    assert backup.read_text() == "{}"
    assert stat.S_IMODE(backup.stat().st_mode) == 0o640
    assert backup_file(tmp_path / "missing") is None


def test_root_paths_and_which(tmp_path):
    host = Host(tmp_path)
    assert not host.live
    assert host.path("/etc/os-release") == tmp_path / "etc/os-release"
    (tmp_path / "usr/bin").mkdir(parents=True)
    prog = tmp_path / "usr/bin/nvidia-smi"
    prog.write_text("#!/bin/sh\n")
    assert host.which("nvidia-smi") is None  # not executable
    prog.chmod(0o755)
    assert host.which("nvidia-smi") == "/usr/bin/nvidia-smi"
    assert host.read_text("/nope") is None
    with pytest.raises(ValueError):
        host.path("relative")


def test_live_host_is_identity():
    host = Host("/")
    assert host.live and host.path("/etc/hosts").as_posix() == "/etc/hosts"


def test_run_passes_argv_without_a_shell(tmp_path):
    host = Host("/")
    done = host.run(["echo", "$HOME; rm -rf /"])
    assert done.stdout == "$HOME; rm -rf /\n"  # no shell expanded or split it


def test_run_failure_carries_argv_code_and_output():
    host = Host("/")
    with pytest.raises(CommandError) as err:
        host.run(["sh", "-c", "echo oops >&2; exit 3"])
    assert err.value.returncode == 3 and err.value.argv[0] == "sh"
    assert "exited 3: oops" in err.value.message
    assert host.run(["false"], check=False).returncode == 1


def test_run_missing_program_and_timeout():
    host = Host("/")
    with pytest.raises(CommandError, match="could not be started"):
        host.run(["/nonexistent/prog"])
    with pytest.raises(CommandError, match="timed out after 0.2s"):
        host.run(["sleep", "5"], timeout=0.2)


def test_docker_url_follows_docker_host_and_root(tmp_path):
    assert Host("/", env={}).docker_url == "unix:///var/run/docker.sock"
    assert Host(tmp_path, env={}).docker_url is None
    assert Host(tmp_path, env={"DOCKER_HOST": "unix:///tmp/x.sock"}).docker_url == "unix:///tmp/x.sock"
