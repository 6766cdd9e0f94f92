"""The package manager's lock: who holds it (yum's and dnf's pid files, rpm's fcntl transaction lock) and a
bounded wait for it. install waits on it; doctor's package-lock check reports the same holder.

At first boot cloud-init often runs yum (``Existing lock /var/run/yum.pid``, docs/domain.md).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

from gpuprep.errors import StepFailed
from gpuprep.host import Host
from gpuprep.poll import poll_until

log = logging.getLogger("gpuprep")


@dataclass(frozen=True)
class LockHolder:
    pid: int
    name: str  # the process name (``yum``, ``dnf``, ``packagekitd``)
    cmdline: str
    file: str  # the host path of the lock it holds
    since_s: float | None = None  # how long the process has run

    def __str__(self) -> str:
        cmd = f": {self.cmdline}" if self.cmdline and self.cmdline != self.name else ""
        return f"pid {self.pid} ({self.name}{cmd}) holding {self.file}"


# -- the package manager's lock ---------------------------------------------------------------
# rpm's own transaction lock (rpmlock.c): an fcntl write lock on %{_dbpath}/.rpm.lock while rpm changes the
# database, whoever drives it (yum, dnf, rpm -i, PackageKit). It holds no pid: /proc/locks names the owner.
RPM_LOCKS = ("/var/lib/rpm/.rpm.lock",)


def _describe(host: Host, pid: int, path: str, *, in_tree: bool = False) -> LockHolder | None:
    """The live process ``pid``; None when it is gone or a zombie (a dead yum left its pid file behind).

    Inside --root a pid file counts only for a process that acts on the tree: one whose root is the tree
    (chroot), or one whose command line names it (``dnf --installroot T``). A pid file baked into the
    image names a pid of the machine that built it, and on this machine that number may be anyone
    (pid 1, say): waiting for it would wait for nothing. ``in_tree``: the lock is on the tree's own
    file (rpm's fcntl lock), so its owner acts on the tree wherever it runs.
    """
    proc = host.process(pid)
    if proc is None or proc.zombie:
        return None
    name, argv = (proc.name or "?", list(proc.cmdline)) if not proc.denied else ("?", [])
    since = round(max(0.0, time.time() - proc.started), 1) if proc.started is not None else None
    if not host.live and not in_tree and not _acts_on(host, pid, argv):
        return None
    return LockHolder(pid, name, " ".join(argv)[:200], path, since)


def _acts_on(host: Host, pid: int, argv: Sequence[str]) -> bool:
    import os

    root = str(host.root)
    try:
        if os.path.realpath(f"/proc/{pid}/root") == root:
            return True
    except OSError:
        pass
    for i, arg in enumerate(argv):
        value = arg.split("=", 1)[1] if arg.startswith("--installroot=") else \
            (argv[i + 1] if arg == "--installroot" and i + 1 < len(argv) else None)
        if value is not None and os.path.realpath(value) == root:
            return True
    return False


def _fcntl_owner(host: Host, real: str) -> int | None:
    """The pid holding a POSIX write lock on file ``real``, from /proc/locks, or None."""
    import os

    try:
        st = os.stat(real)
    except OSError:
        return None
    return parse_proc_locks(host.proc_locks()).get((os.major(st.st_dev), os.minor(st.st_dev), st.st_ino))


def parse_proc_locks(table: str) -> dict[tuple[int, int, int], int]:
    """``/proc/locks`` -> {(device major, minor, inode): the pid holding a POSIX write lock on that file}. A ``->``
    line is a process waiting for the lock, not its owner; flock(2) locks and read locks are left out.

    >>> parse_proc_locks('''1: POSIX  ADVISORY  WRITE 32621 fe:00:2173370 0 EOF
    ... 1: -> POSIX  ADVISORY  WRITE 32700 fe:00:2173370 0 EOF
    ... 2: FLOCK  ADVISORY  WRITE 1187 00:19:1021 0 EOF
    ... 3: POSIX  ADVISORY  READ 901 fe:00:131 0 EOF
    ... ''')
    {(254, 0, 2173370): 32621}
    """
    held: dict[tuple[int, int, int], int] = {}
    for line in table.splitlines():
        parts = line.split()
        if len(parts) < 6 or parts[1] != "POSIX" or parts[3] != "WRITE":
            continue
        try:
            major, minor, inode = parts[5].split(":")
            held.setdefault((int(major, 16), int(minor, 16), int(inode)), int(parts[4]))
        except ValueError:
            continue
    return held


def lock_holder(host: Host, pidfiles: Sequence[str], rpm_locks: Sequence[str] = RPM_LOCKS) -> LockHolder | None:
    """The live process holding the package manager's lock, or None when it is free.

    ``pidfiles`` are the manager's pid files (yum 3: /var/run/yum.pid; dnf 4: one per lock, see
    platform.DNF_LOCKS); a pid file whose process is gone is stale and does not count, as yum and dnf
    themselves decide. ``rpm_locks`` are rpm's fcntl transaction locks. At first boot cloud-init often
    runs yum (``Existing lock /var/run/yum.pid``, docs/domain.md).
    """
    for pidfile in pidfiles:
        text = host.read_text(pidfile)
        first = text.strip().splitlines()[0].strip() if text and text.strip() else ""
        if not first.isdigit():
            continue
        holder = _describe(host, int(first), pidfile)
        if holder is not None:
            return holder
    for path in rpm_locks:
        pid = _fcntl_owner(host, str(host.path(path)))
        if pid is not None:
            holder = _describe(host, pid, path, in_tree=True)
            if holder is not None:
                return holder
    return None


def wait_for_lock(host: Host, pidfiles: Sequence[str], timeout: float = 600, interval: float = 2,
                  rpm_locks: Sequence[str] = RPM_LOCKS) -> str | None:
    """Wait (bounded) until no package manager holds its lock; returns what was waited for, if anything."""
    first = lock_holder(host, pidfiles, rpm_locks)
    if first is None:
        return None
    waited = poll_until(lambda: lock_holder(host, pidfiles, rpm_locks), lambda held: held is None,
                        what=f"the package manager lock: {first}", timeout_s=timeout, interval_s=interval)
    if not waited.met:
        holder = waited.value or first
        raise StepFailed(
            f"the package manager lock is still held after {timeout:g}s: {holder}",
            f"wait for it to finish (at first boot cloud-init runs yum updates; `ps -fp {holder.pid}` shows it) "
            "and run gpuprep again",
        )
    return f"waited {waited.seconds:.1f}s for {first} to release the package manager lock"
