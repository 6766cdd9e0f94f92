"""rootfs: paths of a --root tree resolved inside it, and the writes, reads and removals that use them.

Real files, links and FIFOs in tmp_path; nothing simulated.
"""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
import time

import pytest

from gpuprep import rootfs
from gpuprep.errors import BadInput
from gpuprep.host import LOCK_PATH, Host, LockHeld
from gpuprep.packages.rpmdb import parse_records

pytestmark = pytest.mark.allow_subp('python')


@pytest.fixture
def root(tmp_path):
    r = tmp_path / "root"
    (r / "etc/docker").mkdir(parents=True)
    (r / "usr/lib").mkdir(parents=True)
    return r


def test_an_absolute_link_means_the_images_path(root, tmp_path):
    (root / "usr/lib/os-release").write_text("ID=amzn\n")
    os.symlink("/usr/lib/os-release", root / "etc/os-release")
    assert rootfs.resolve(str(root), "/etc/os-release") == str(root / "usr/lib/os-release")
    assert Host(root).read_text("/etc/os-release") == "ID=amzn\n"


def test_dotdot_never_leaves_the_root_and_a_climbing_link_is_refused(root, tmp_path):
    assert rootfs.resolve(str(root), "/../../etc/docker") == str(root / "etc/docker")
    outside = tmp_path / "outside"
    outside.mkdir()
    os.symlink(os.path.relpath(outside / "daemon.json", root / "etc/docker"), root / "etc/docker/daemon.json")
    with pytest.raises(rootfs.LinkEscapes, match="/etc/docker/daemon.json leads out of"):
        Host(root).write_atomic("/etc/docker/daemon.json", "{}")
    assert list(outside.iterdir()) == []


def test_a_link_loop_is_bad_input(root):
    os.symlink("b", root / "etc/a")
    os.symlink("a", root / "etc/b")
    with pytest.raises(rootfs.BadInput, match="symlinks on the way"):
        rootfs.resolve(str(root), "/etc/a")


def test_write_follows_an_absolute_link_inside_and_keeps_it(root, tmp_path):
    os.symlink("/etc/docker/daemon.real.json", root / "etc/docker/daemon.json")
    Host(root).write_atomic("/etc/docker/daemon.json", "{}\n")
    assert (root / "etc/docker/daemon.json").is_symlink()
    assert (root / "etc/docker/daemon.real.json").read_text() == "{}\n"
    assert not (tmp_path / "etc").exists() and not os.path.exists("/etc/docker/daemon.real.json")


def test_a_write_removes_the_temp_files_a_killed_write_left(root):
    litter = root / "etc/docker/.daemon.json.ab12cd34.tmp"
    backup_litter = root / "etc/docker/.daemon.json.gpuprep-20261203T101010123456Z.zz99yy88.tmp"
    other = root / "etc/docker/.other.json.ab12cd34.tmp"
    for p in (litter, backup_litter, other):
        p.write_text("half")
    Host(root).write_atomic("/etc/docker/daemon.json", "{}\n")
    assert not litter.exists() and not backup_litter.exists() and other.exists()
    assert rootfs.temp_files(str(root), "/etc/docker") == ["/etc/docker/.other.json.ab12cd34.tmp"]


def test_expect_abandons_a_write_when_the_file_changed(root):
    target = root / "etc/docker/daemon.json"
    target.write_text("theirs\n")
    with pytest.raises(rootfs.TreeChanged, match="changed while gpuprep was working on it"):
        Host(root).write_atomic("/etc/docker/daemon.json", "ours\n", expect=b"what we planned on\n")
    assert target.read_text() == "theirs\n"
    assert rootfs.temp_files(str(root), "/etc/docker") == []


def test_a_fifo_is_refused_without_blocking(root):
    os.mkfifo(root / "etc/docker/daemon.json")
    started = time.monotonic()
    with pytest.raises(rootfs.NotRegular, match="is a FIFO"):
        Host(root).read_bytes("/etc/docker/daemon.json")
    with pytest.raises(rootfs.NotRegular, match="is a FIFO"):
        Host(root).write_atomic("/etc/docker/daemon.json", "{}")
    assert time.monotonic() - started < 1


def test_a_directory_swapped_for_a_link_stops_the_walk(root, tmp_path):
    (root / "var/lib/ecs/data").mkdir(parents=True)
    (root / "var/lib/ecs/data/agent.db").write_text("x")
    real = rootfs.resolve(str(root), "/var/lib/ecs/data")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "agent.db").write_text("keep")
    os.rename(real, tmp_path / "moved")
    os.symlink(elsewhere, real)
    with pytest.raises(rootfs.TreeChanged):
        rootfs.open_dir(str(root), rootfs.relative(str(root), real))
    with pytest.raises(rootfs.TreeChanged):
        Host(root).remove("/var/lib/ecs/data/agent.db", base="/var/lib/ecs")
    assert (elsewhere / "agent.db").read_text() == "keep"


def test_the_lock_names_its_holder_and_waits_bounded(root):
    lock = root / LOCK_PATH.lstrip("/")
    lock.parent.mkdir(parents=True)
    holder = subprocess.Popen([sys.executable, "-c", "import fcntl,os,sys,time\n"
                               f"fd = os.open({str(lock)!r}, os.O_RDWR | os.O_CREAT)\n"
                               "fcntl.flock(fd, fcntl.LOCK_EX); os.write(fd, b'4242 gpuprep install')\n"
                               "print('held', flush=True); time.sleep(30)"],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        started = time.monotonic()
        with pytest.raises(LockHeld, match="4242 gpuprep install"):
            with Host(root).lock("seal", wait_s=0.5):
                pass
        assert 0.4 < time.monotonic() - started < 3
    finally:
        holder.kill()
        holder.wait()
    with Host(root).lock("seal", wait_s=0.5):
        with open(lock) as f:
            assert f.read() == f"{os.getpid()} gpuprep seal\n"
        with pytest.raises(BlockingIOError):
            fd = os.open(lock, os.O_RDWR)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            finally:
                os.close(fd)


@pytest.mark.parametrize("stdout", [
    "docker<:>x<:>25.0.6<:>1<:>x86_64<;>",  # a plugin printed a word where the epoch goes
    "docker<:>0<;>",  # a record cut short
    "<:>0<:>1<:>1<:>noarch<;>",  # no name
])
def test_package_output_it_cannot_read_names_the_tool(stdout):
    with pytest.raises(BadInput, match="cannot read the output of dnf repoquery"):
        parse_records(stdout, tool="dnf repoquery")
