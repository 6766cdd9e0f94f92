"""The process half of Host: this machine's process table read from /proc, as psutil reads it on Linux.

doctor scans the table on every run (the dockerd serving the Engine, a package manager holding its lock) and
reads the boot time; psutil's import alone was 0.16 s of a 1.07 s doctor on the accelerator machine (issue 14,
bench/RESULTS.md), more than the scan. The fields here are read as psutil's ``_pslinux`` reads them (its
``Process.name``, ``cmdline``, ``create_time``, ``boot_time``), so callers see the same values. Only
``gpuprep.host`` imports this module. gpuprep runs on Linux only: /proc is always there.
"""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class Process:
    """One process of this machine, as the process table showed it (/proc, ``procfs``). With --root the
    table is still this machine's: a tree has no processes of its own."""

    pid: int
    name: str = ""
    exe: str = ""
    cmdline: tuple[str, ...] = ()
    zombie: bool = False  # exited, not reaped yet: it runs nothing
    started: float | None = None  # epoch seconds
    denied: bool = False  # its details are not readable by this user (only pid and, maybe, name are known)


@dataclass(frozen=True)
class ProcessDetail:
    """What restarting a process the way it was started needs: its argv, binary, directory, environment."""

    pid: int
    cmdline: tuple[str, ...]
    exe: str
    cwd: str
    env: dict[str, str]
    started: float


PROC = "/proc"


class Denied(Exception):
    """The process belongs to another user and this one may not read it (psutil's AccessDenied)."""


class Gone(Exception):
    """No such process (any more): it ended between the listing and the read."""


@dataclass(frozen=True)
class Stat:
    name: str  # comm, at most 15 bytes
    state: str  # "R", "S", "Z", ...
    start_ticks: int  # since boot, in clock ticks


def pids() -> list[int]:
    return sorted(int(d) for d in os.listdir(PROC) if d.isdigit())


def _read(pid: int, name: str) -> bytes:
    try:
        with open(f"{PROC}/{pid}/{name}", "rb") as f:
            return f.read()
    except FileNotFoundError:
        raise Gone(pid) from None
    except ProcessLookupError:
        raise Gone(pid) from None
    except PermissionError:
        raise Denied(pid) from None


def _link(pid: int, name: str) -> str:
    try:
        return os.readlink(f"{PROC}/{pid}/{name}")
    except FileNotFoundError:
        # A kernel thread has no exe: psutil says "" for it, unless the process itself is gone.
        if not os.path.lexists(f"{PROC}/{pid}"):
            raise Gone(pid) from None
        return ""
    except ProcessLookupError:
        raise Gone(pid) from None
    except PermissionError:
        raise Denied(pid) from None


def stat(pid: int) -> Stat:
    return parse_stat(_read(pid, "stat").decode(errors="replace"))


def parse_stat(data: str) -> Stat:
    """``/proc/PID/stat`` (proc(5)) -> its command name, state and start time.

    >>> parse_stat("4242 (dockerd (main)) S 1 4242 4242 0 -1 4194560 21093 0 12 0 310 140 0 0 20 0 41 0 "
    ...            "1184 2291470336 21349 18446744073709551615")
    Stat(name='dockerd (main)', state='S', start_ticks=1184)
    """
    # comm is in parentheses and may hold spaces and parentheses itself: the last ")" ends it.
    comm = data[data.find("(") + 1:data.rfind(")")]
    fields = data[data.rfind(")") + 2:].split()
    # fields[0] is field 3 (state); field 22 (starttime) is fields[19]
    return Stat(comm, fields[0] if fields else "", int(fields[19]) if len(fields) > 19 else 0)


def cmdline(pid: int) -> tuple[str, ...]:
    data = _read(pid, "cmdline").decode(errors="replace")
    if not data:
        return ()
    # As psutil: NUL-separated; a process that rewrote its argv into one space-separated string is split on spaces.
    sep = "\x00" if data.endswith("\x00") else " "
    parts = data[:-1].split(sep) if data.endswith(sep) else data.split(sep)
    if sep == "\x00" and len(parts) == 1 and " " in parts[0]:
        parts = parts[0].split(" ")
    return tuple(parts)


def name(comm: str, argv: tuple[str, ...]) -> str:
    """psutil's name: comm, or argv[0]'s basename where the kernel cut comm at 15 bytes."""
    if len(comm) >= 15 and argv:
        base = os.path.basename(argv[0])
        if base.startswith(comm):
            return base
    return comm


def exe(pid: int) -> str:
    path = _link(pid, "exe")
    # A binary replaced since it started (a package update under a running dockerd) reads "PATH (deleted)".
    return path[:-len(" (deleted)")] if path.endswith(" (deleted)") else path


def cwd(pid: int) -> str:
    return _link(pid, "cwd")


def environ(pid: int) -> dict[str, str]:
    out = {}
    for entry in _read(pid, "environ").decode(errors="replace").split("\x00"):
        key, sep, value = entry.partition("=")
        if sep and key:
            out[key] = value
    return out


def boot_time() -> float:
    """The kernel's boot, epoch seconds (``btime`` of /proc/stat)."""
    with open(f"{PROC}/stat", "rb") as f:
        for line in f:
            if line.startswith(b"btime"):
                return float(line.split()[1])
    raise OSError(f"{PROC}/stat has no btime")


_TICKS = os.sysconf("SC_CLK_TCK")


def create_time(st: Stat, booted: float) -> float:
    return booted + st.start_ticks / _TICKS
