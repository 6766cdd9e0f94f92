"""The package manager's lock: the packages step waits for it, bounded, naming the holder; preflight names it.

Real components: real processes hold the locks the way the package managers do. dnf 4 is run for real: it
installs a fixture package whose ``%pre`` (rpm's Lua, ``posix.sleep``) keeps the transaction open, so dnf
holds its pid lock (dnf/lock.py: ROOT/var/lib/dnf/rpmdb_lock.pid, one of platform.DNF_LOCKS) and rpm its
fcntl transaction lock; gpuprep must see both and name dnf's pid. yum 3 cannot run here (no Python 2 yum on
Debian): its lock is a pid file, ROOT/var/run/yum.pid with the pid on the first line (yum/__init__.py
doLock), so a real ``sleep`` chrooted into the tree stands in as the holder, with its pid written there.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from conftest import FIXTURES, REPO, require, require_root
from contract import json_output
from rpmfixtures import PkgSpec, build_repo, repo_file
from tenacity import retry, retry_if_result, stop_after_delay, wait_fixed

from gpuprep.errors import StepFailed
from gpuprep.host import Host
from gpuprep.packages.lock import lock_holder, wait_for_lock
from gpuprep.platform import DNF_LOCKS, YUM_LOCKS, detect

GPUPREP = [str(REPO / ".venv" / "bin" / "gpuprep")] if (REPO / ".venv" / "bin" / "gpuprep").exists() else ["gpuprep"]


@pytest.fixture
def root(tmp_path: Path) -> Path:
    r = tmp_path / "root"
    (r / "var/run").mkdir(parents=True)
    (r / "etc").mkdir()
    shutil.copy(FIXTURES / "distros" / "amzn-2023" / "etc" / "os-release", r / "etc" / "os-release")
    return r


@pytest.fixture
def holder(root: Path):
    """Start a real process that "holds" a pid lock file; every one is killed and reaped afterwards.

    It runs chrooted into the tree (busybox-static's sleep), as a yum run inside the image would: a pid
    file inside --root counts only for a process acting on the tree.
    """
    require_root()
    procs: list[subprocess.Popen] = []
    (root / "bin").mkdir(exist_ok=True)
    shutil.copy("/bin/busybox", root / "bin" / "busybox")

    def start(pidfile: Path, seconds: float) -> subprocess.Popen:
        p = subprocess.Popen(["chroot", str(root), "/bin/busybox", "sleep", str(seconds)])
        deadline = time.monotonic() + 5  # until chroot has exec'd busybox: what the pid file then names
        while psutil.Process(p.pid).name() != "busybox" and time.monotonic() < deadline:
            time.sleep(0.01)
        procs.append(p)
        pidfile.parent.mkdir(parents=True, exist_ok=True)
        pidfile.write_text(f"{p.pid}\n")
        return p

    yield start
    for p in procs:
        if p.poll() is None:
            p.kill()
        p.wait()


def test_held_lock_times_out_bounded_naming_the_process(root: Path, holder) -> None:
    p = holder(root / "var/run/yum.pid", 60)
    host = Host(root)
    found = lock_holder(host, YUM_LOCKS)
    assert found is not None and (found.pid, found.name, found.file) == (p.pid, "busybox", "/var/run/yum.pid")
    started = time.monotonic()
    with pytest.raises(StepFailed) as err:
        wait_for_lock(host, YUM_LOCKS, timeout=1.0, interval=0.2)
    took = time.monotonic() - started
    assert 0.9 <= took < 3, took  # bounded by the timeout, not by the holder
    assert f"pid {p.pid} (busybox: /bin/busybox sleep 60) holding /var/run/yum.pid" in err.value.message
    assert "still held after 1s" in err.value.message and f"ps -fp {p.pid}" in err.value.hint
    assert p.poll() is None  # gpuprep never touches the holder


def test_lock_released_mid_wait_lets_the_step_proceed(root: Path, holder, caplog) -> None:
    """The holder ends once wait_for_lock has said it waits (its log line, the event the test watches; a holder
    timed to 1.5 s raced a slow start on a busy machine, issue 23). Left unreaped: a zombie counts as gone, as yum
    itself decides."""
    import logging
    import threading

    p = holder(root / "var/run/yum.pid", 600)
    said = threading.Event()

    class Watch(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if "waiting up to" in record.getMessage():
                said.set()

    caplog.set_level(logging.INFO, logger="gpuprep")  # the line is INFO, as the CLI logs it
    watch = Watch()
    logging.getLogger("gpuprep").addHandler(watch)
    result: list = []
    waiter = threading.Thread(target=lambda: result.append(
        wait_for_lock(Host(root), YUM_LOCKS, timeout=120, interval=0.1)), daemon=True)
    try:
        waiter.start()
        assert said.wait(timeout=60), "wait_for_lock never said it waits"
        assert waiter.is_alive()  # still waiting: the holder holds
        p.terminate()
        waiter.join(timeout=60)
    finally:
        logging.getLogger("gpuprep").removeHandler(watch)
    assert not waiter.is_alive() and result
    assert f"pid {p.pid} (busybox: /bin/busybox sleep 600) holding /var/run/yum.pid" in result[0]


def test_stale_pid_file_does_not_block(root: Path) -> None:
    gone = subprocess.Popen(["true"])
    gone.wait()  # exited and reaped: its pid names no process now
    (root / "var/run/yum.pid").write_text(f"{gone.pid}\n")
    started = time.monotonic()
    assert wait_for_lock(Host(root), YUM_LOCKS, timeout=30) is None
    (root / "var/run/yum.pid").write_text("not a pid\n")
    assert wait_for_lock(Host(root), YUM_LOCKS, timeout=30) is None
    assert time.monotonic() - started < 1


def test_rpm_fcntl_lock_is_seen_with_its_owner(root: Path) -> None:
    """rpm's transaction lock (rpmlock.c) is an fcntl write lock on .rpm.lock with no pid in it: /proc/locks
    names the owner. A child takes the same kind of lock (F_SETLK, F_WRLCK) and keeps it until told."""
    lock = root / "var/lib/rpm/.rpm.lock"
    lock.parent.mkdir(parents=True)
    code = ("import fcntl, sys; f = open(sys.argv[1], 'w'); fcntl.lockf(f, fcntl.LOCK_EX | fcntl.LOCK_NB); "
            "print('locked', flush=True); sys.stdin.read()")
    p = subprocess.Popen([sys.executable, "-c", code, str(lock)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         text=True)
    try:
        assert p.stdout.readline().strip() == "locked"
        found = lock_holder(Host(root), pidfiles=())
        assert found is not None and found.pid == p.pid and found.file == "/var/lib/rpm/.rpm.lock"
    finally:
        p.stdin.close()
        p.wait(timeout=10)
    assert lock_holder(Host(root), pidfiles=()) is None  # released with the process


def test_doctor_names_the_owner_of_rpms_fcntl_lock(root: Path) -> None:
    """doctor's package-lock check asks the same holder install waits on, rpm's fcntl lock included: with
    the lock held by a live process, the check names that process (before, it read pid files and process
    names only, and said "no package manager running" while install waited)."""
    from typer.testing import CliRunner

    from gpuprep.cli import app

    lock = root / "var/lib/rpm/.rpm.lock"
    lock.parent.mkdir(parents=True)
    code = ("import fcntl, sys; f = open(sys.argv[1], 'w'); fcntl.lockf(f, fcntl.LOCK_EX | fcntl.LOCK_NB); "
            "print('locked', flush=True); sys.stdin.read()")
    p = subprocess.Popen([sys.executable, "-c", code, str(lock)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         text=True)
    try:
        assert p.stdout.readline().strip() == "locked"
        out = CliRunner().invoke(app, ["--root", str(root), "--json", "doctor", "--no-container"],
                                 env={"DOCKER_HOST": None})
        check = next(c for c in json_output(out.stdout)["checks"] if c["id"] == "package-lock")
    finally:
        p.stdin.close()
        p.wait(timeout=10)
    assert check["status"] == "warning", check
    assert check["summary"].startswith("python") and f"pid {p.pid}" in check["summary"]
    assert check["summary"].endswith("holds /var/lib/rpm/.rpm.lock") and f"ps -fp {p.pid}" in check["hint"]


SLOW = PkgSpec("gpuprep-slow-transaction", "1", "1", lua=True, pre="posix.sleep(3)")


def test_real_dnf_transaction_is_waited_for(root: Path, request) -> None:
    """dnf 4 installing into the root holds ROOT/var/lib/dnf/rpmdb_lock.pid (a platform.DNF_LOCKS path) and
    rpm's fcntl lock; gpuprep waits for dnf to finish and names it."""
    require("rpmbuild", "createrepo_c", "dnf", "rpm")
    require_root()
    cache = Path(request.config.cache.mkdir("rpmfixtures"))
    repo = build_repo([SLOW], cache / "repo-slow", cache=cache / "pkgs")
    (root / "etc/yum.repos.d").mkdir()
    (root / "etc/yum.repos.d/fixture.repo").write_text(repo_file({"fixture": repo}))
    host = Host(root)
    assert detect(host).package_locks == DNF_LOCKS
    dnf = subprocess.Popen(["dnf", "-q", "-y", "--disableplugin=local", f"--installroot={root}",
                            f"--setopt=reposdir={root}/etc/yum.repos.d", "--releasever=2023", "install", SLOW.name],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        @retry(retry=retry_if_result(lambda found: found is None), stop=stop_after_delay(30), wait=wait_fixed(0.05))
        def transaction_started():
            return lock_holder(host, ("/var/lib/dnf/rpmdb_lock.pid",), rpm_locks=())

        pid_lock = transaction_started()  # bounded: dnf takes the rpmdb lock within a second or two here
        assert pid_lock.pid == dnf.pid and pid_lock.name == "dnf", pid_lock
        # rpm's own fcntl lock, in this machine's rpm dbpath inside the root (Debian's rpm keeps ~/.rpmdb).
        dbpath = subprocess.run(["rpm", "--eval", "%{_dbpath}"], capture_output=True, text=True).stdout.strip()

        @retry(retry=retry_if_result(lambda found: found is None), stop=stop_after_delay(10), wait=wait_fixed(0.05))
        def rpm_locked():
            return lock_holder(host, pidfiles=(), rpm_locks=(f"{dbpath}/.rpm.lock",))

        fcntl_lock = rpm_locked()  # rpm takes it when the transaction proper begins, before %pre runs
        assert fcntl_lock.pid == dnf.pid and fcntl_lock.name == "dnf", fcntl_lock
        waited = wait_for_lock(host, detect(host).package_locks, timeout=60, interval=0.2)
        assert waited is not None and f"pid {dnf.pid} (dnf: " in waited and "rpmdb_lock.pid" in waited
        assert dnf.wait(timeout=30) == 0, dnf.stderr.read()
    finally:
        if dnf.poll() is None:
            dnf.kill()
            dnf.wait()
    assert lock_holder(host, detect(host).package_locks) is None


def test_preflight_names_the_holder_and_waits_for_nobody(root: Path, holder) -> None:
    """``gpuprep install --only preflight`` on a root whose dnf lock is held: a plan waits for nobody (issue 13),
    so preflight names the holder and says the packages step will wait; it does not wait itself. The
    packages step's own wait, right before its transaction, is proven in test_install_packages.py."""
    require("dnf", "rpm")
    require_root()
    p = holder(root / "var/lib/dnf/rpmdb_lock.pid", 60)
    out = subprocess.run([*GPUPREP, "--root", str(root), "--json", "install", "--only", "preflight"],
                         capture_output=True, text=True, timeout=120, env={**os.environ, "NO_COLOR": "1"})
    assert out.returncode == 0, out.stderr
    pre = json_output(out.stdout)["steps"][0]
    assert pre["status"] == "ok" and pre["summary"].startswith("Amazon Linux 2023, dnf; ")
    assert f"held by pid {p.pid} (busybox: /bin/busybox sleep 60) holding /var/lib/dnf/rpmdb_lock.pid " \
           "(the packages step waits for it)" in pre["summary"]
    assert "waiting up to" not in out.stderr and p.poll() is None  # still held: nobody waited for it


def test_a_pid_file_baked_into_the_image_naming_a_build_machine_process_is_stale(root: Path) -> None:
    """The image's /var/run/yum.pid says 1: on this machine pid 1 is alive, but it is not acting on the
    tree (its root is /, its command line names no --installroot), so nobody is waited for, dry run or not."""
    (root / "var/run/yum.pid").write_text("1\n")
    assert lock_holder(Host(root), YUM_LOCKS) is None
    started = time.monotonic()
    assert wait_for_lock(Host(root), YUM_LOCKS, timeout=30) is None
    assert time.monotonic() - started < 2
