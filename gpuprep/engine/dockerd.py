"""dockerd's process and lifecycle: find the one serving the Engine, reload or restart it, verify, roll back.

The pattern is certbot's reverter: record what will be undone before changing it (the previous
daemon.json, kept by the docker-runtime step), apply, test (readiness, then ``docker info``), and on
failure restore and restart again, then say what happened. Every wait polls the Engine, bounded.

Reload semantics (docs/testbed.md 3, docs/domain.md): SIGHUP picks up a new runtime and a newly set
``default-runtime`` but cannot unset one, and NVIDIA's Ansible role found that SIGHUP does not always
make the runtime available; so a reload that does not show the runtime is followed by a restart. A
changed unit file needs ``systemctl daemon-reload`` before the restart.
"""

from __future__ import annotations

import logging
import os
import re
import signal
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gpuprep import hints
from gpuprep.errors import GpuprepError, StepFailed
from gpuprep.host import Host, Spawned, ping_engine
from gpuprep.interrupts import deferred
from gpuprep.platform import Platform
from gpuprep.poll import poll_until

log = logging.getLogger("gpuprep")

READY_TIMEOUT = 60.0  # dockerd with many containers to restore can take a while to answer
EXIT_TIMEOUT = 60.0  # dockerd stops its containers (10 s each by default) before exiting
SHOW_TIMEOUT = 3.0  # a SIGHUP reload takes milliseconds; this bounds waiting for it to show
DOCKER_UNIT = "docker.service"
HOST_FLAGS = ("-H", "--host")


class EngineDown(GpuprepError):
    """The Docker Engine does not answer: one error, in one message shape, wherever gpuprep asks it (docker info,
    seal's client, the container probes), so a user and a fleet's grep meet one sentence."""

    reference = "engine-not-answering"
    # What a check that needs the Engine says when it cannot run: the cause and its fix are docker-engine's.
    SEE_CHECK = "the Docker Engine does not answer (see docker-engine)"

    def __init__(self, url: str | None, why: str, hint: str, *, when: str = "") -> None:
        super().__init__(f"the Docker Engine at {url} does not answer{when}: {why}", hint)
        self.url, self.why = url, why

    @classmethod
    def said(cls, url: str | None, exc: BaseException, hint: str, *, when: str = "") -> EngineDown:
        """From the client's error ``exc`` (its first line is why)."""
        return cls(url, _first_line(exc), hint, when=when)


class DockerdDidNotStart(Exception):
    """dockerd exited while starting, or did not answer in time."""


class RuntimeNotShown(Exception):
    """dockerd answers but ``docker info`` does not show the runtime as wanted."""


# -- talking to the Engine --------------------------------------------------------------------
def engine_errors() -> tuple[type[BaseException], ...]:
    """What reaching the Engine can raise when it is down: OSError (``Host.engine_get``'s socket, and what it
    makes of a bad answer), and, where docker-py has been imported to run a container, its own errors and
    requests' (its ConnectionError is no DockerException). docker-py is not imported to find out."""
    import sys

    errors: tuple[type[BaseException], ...] = (OSError,)
    if "docker.errors" in sys.modules:
        errors += (sys.modules["docker.errors"].DockerException,)
    if "requests" in sys.modules:
        errors += (sys.modules["requests"].RequestException,)
    return errors


def engine_down_hint(host: Host, platform: Platform | None = None, *, failed: bool = False) -> str:
    """How to bring back the Engine gpuprep asked, in this host's own commands (``failed``: systemd gave up on
    docker.service, whose start limit then refuses a plain start until reset)."""
    if host.env.get("DOCKER_HOST"):
        return (f"start the dockerd that listens on {host.docker_url} (its `-H`), or `unset DOCKER_HOST` to ask "
                "the system's Engine")
    name = platform.docker_service if platform is not None else "docker"
    start = hints.service(host, platform, "start", name)
    if failed and hints.systemd(host, platform):
        start = f"{hints.service(host, platform, 'reset-failed', name)} && {start}"
    return f"`{start}`; if it does not stay up, {hints.service_log(host, platform, name)} says why"


def known_removal_deadlock(server: str | None) -> str | None:
    """What to say of an Engine that stopped answering in a mass removal, from its ``Server`` header.

    Engine 20.10 before 20.10.27 can deadlock when many containers exit at once: libnetwork's
    ``getSvcRecords`` takes a network's lock then the controller's, ``processEndpointDelete`` the other
    way round (moby/moby#46661; fixed by moby/moby#46693 in 20.10.27).
    """
    match = re.match(r"Docker/20\.10\.(\d+)", server or "")
    if match is None or int(match.group(1)) >= 27:
        return None
    return (f"Docker Engine 20.10.{match.group(1)} can deadlock when many containers go at once "
            "(moby/moby#46661, fixed in 20.10.27): update Docker")


def docker_info(host: Host, timeout: float = 10) -> dict[str, Any]:
    """``docker info`` (``Host.engine_info``: one GET on the socket, no docker-py); EngineDown with a one-line
    reason when it does not answer."""
    url = host.docker_url or ""
    if url.startswith("unix://") and not os.path.exists(url[len("unix://"):]):
        # No socket, no dockerd: say so at once, before asking anything.
        raise EngineDown(url, "no socket there (dockerd is not running)", engine_down_hint(host))
    try:
        return host.engine_info(timeout=timeout)
    except engine_errors() as exc:
        if "Permission denied" in str(exc):
            raise EngineDown(url, "permission denied on its socket",
                             "run as root or as a member of group docker: `sudo gpuprep ...`") from None
        raise EngineDown.said(url, exc, engine_down_hint(host)) from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__


def runtimes_of(info: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """(Runtimes, DefaultRuntime) from ``docker info``."""
    return dict(info.get("Runtimes") or {}), str(info.get("DefaultRuntime") or "")


def shows_runtime(info: dict[str, Any], name: str, *, default: bool, path: str | None = None) -> bool:
    runtimes, current_default = runtimes_of(info)
    if name not in runtimes:
        return False
    if path is not None and runtimes[name].get("path") != path:
        return False
    return current_default == name if default else True


# -- finding the dockerd that serves the Engine ---------------------------------------------
@dataclass
class EngineProcess:
    pid: int
    argv: list[str]
    exe: str
    cwd: str
    env: dict[str, str]
    create_time: float
    systemd_unit: str | None = None  # the unit that manages it, when systemd does

    def flag(self, *names: str) -> list[str]:
        return flag_values(self.argv, names)

    @property
    def pidfile(self) -> str | None:
        values = self.flag("-p", "--pidfile")
        return values[-1] if values else None

    @property
    def exec_root(self) -> str:
        values = self.flag("--exec-root")
        return values[-1] if values else "/var/run/docker"

    @property
    def config_file(self) -> str | None:
        values = self.flag("--config-file")
        return values[-1] if values else None

    @property
    def add_runtimes(self) -> dict[str, str]:
        """Runtimes the command line registers (``--add-runtime NAME=PATH``)."""
        out: dict[str, str] = {}
        for value in self.flag("--add-runtime"):
            name, _, path = value.partition("=")
            out[name] = path
        return out

    @property
    def log_path(self) -> Path:
        """Where a re-exec'd dockerd writes its output: beside its pidfile, else in its exec-root."""
        base = Path(self.pidfile).parent if self.pidfile else Path(self.exec_root)
        return base / "dockerd.log"

    def as_dict(self) -> dict[str, Any]:
        return {"pid": self.pid, "argv": self.argv, "systemd_unit": self.systemd_unit}


def flag_values(argv: Sequence[str], names: Sequence[str]) -> list[str]:
    """Values of a pflag-style flag: ``--name v``, ``--name=v``, ``-H v``, ``-H=v``, ``-Hv``."""
    values: list[str] = []
    i = 1
    while i < len(argv):
        arg = argv[i]
        for name in names:
            if arg == name and i + 1 < len(argv):
                values.append(argv[i + 1])
                i += 1
                break
            if arg.startswith(name + "="):
                values.append(arg[len(name) + 1:])
                break
            if len(name) == 2 and arg.startswith(name) and not arg.startswith("--") and len(arg) > 2:
                values.append(arg[2:])
                break
        i += 1
    return values


def _socket_path(url: str) -> str | None:
    if url.startswith("unix://"):
        return os.path.realpath(url[len("unix://"):])
    return None


def _serves(argv: Sequence[str], url: str) -> bool:
    hosts = flag_values(argv, HOST_FLAGS) or ["unix:///var/run/docker.sock"]
    want = _socket_path(url)
    for h in hosts:
        if want is not None and _socket_path(h) == want:
            return True
        if h.rstrip("/") == url.rstrip("/"):
            return True
    return False


def _systemd_unit_of(pid: int) -> str | None:
    try:
        cgroup = Path(f"/proc/{pid}/cgroup").read_text()
    except OSError:
        return None
    for line in cgroup.splitlines():
        path = line.split(":", 2)[-1]
        if path.rstrip("/").endswith("/" + DOCKER_UNIT):
            return DOCKER_UNIT
    return None


def describe(host: Host, pid: int) -> EngineProcess | None:
    d = host.process_detail(pid)
    if d is None:
        return None
    return EngineProcess(pid, list(d.cmdline), d.exe, d.cwd, d.env, d.started, _systemd_unit_of(pid))


def _systemd_main_pid(host: Host) -> int:
    if host.which("systemctl") is None:
        return 0
    proc = host.run(["systemctl", "show", DOCKER_UNIT, "--property=MainPID", "--value"], check=False, timeout=30)
    try:
        return int(proc.stdout.strip() or 0)
    except ValueError:
        return 0


def find_engine_process(host: Host) -> EngineProcess | None:
    """The dockerd serving ``host.docker_url``: docker.service's MainPID on the live system; with
    DOCKER_HOST, the dockerd whose ``-H`` names that socket, or that holds the socket open."""
    url = host.docker_url
    if url is None:
        return None
    if host.live and not host.env.get("DOCKER_HOST"):
        pid = _systemd_main_pid(host)
        if pid > 0:
            return describe(host, pid)
    candidates = [p for p in host.processes()
                  if p.name == "dockerd" or (p.cmdline and os.path.basename(p.cmdline[0]) == "dockerd")]
    for p in candidates:
        if _serves(list(p.cmdline), url):
            return describe(host, p.pid)
    want = _socket_path(url)
    if want is not None:  # socket activation (-H fd://): whoever holds the socket open serves it
        for p in candidates:
            if want in host.unix_sockets(p.pid):
                return describe(host, p.pid)
    return None


def need_daemon_reload(host: Host, proc: EngineProcess | None) -> bool:
    """systemd says docker.service changed on disk (a package replaced the unit file)."""
    if proc is None or proc.systemd_unit is None or host.which("systemctl") is None:
        return False
    out = host.run(["systemctl", "show", proc.systemd_unit, "--property=NeedDaemonReload", "--value"],
                   check=False, timeout=30)
    return out.stdout.strip() == "yes"


# -- waiting ------------------------------------------------------------------------------------
# A restart is on the critical path of every install (user data waits on it): the pauses grow from 0.05 s to no more
# than 0.1 s, so gpuprep sees dockerd answer at most 0.1 s after it does.
DOCKERD_POLL_MAX_S = 0.1


def _alive(host: Host, pid: int) -> bool:
    proc = host.process(pid)
    return proc is not None and not proc.zombie


def wait_for_exit(host: Host, pid: int, timeout: float = EXIT_TIMEOUT) -> None:
    waited = poll_until(lambda: _alive(host, pid), lambda alive: not alive, what=f"dockerd (pid {pid}) to exit",
                        timeout_s=timeout, max_interval_s=DOCKERD_POLL_MAX_S, level=logging.DEBUG)
    if not waited.met:
        raise StepFailed(f"dockerd (pid {pid}) did not exit within {timeout:g}s of SIGTERM",
                         f"look at what it is doing (`ps -o stat,cmd -p {pid}`); kill it, then run again")


def wait_ready(url: str, *, timeout: float = READY_TIMEOUT, child: Spawned | None = None) -> None:
    """Poll the Engine at ``url`` until it answers ping (bounded); DockerdDidNotStart when it does not,
    at once when ``child`` (a dockerd we started) exits."""

    def ping() -> bool:
        if child is not None and child.poll() is not None:
            raise DockerdDidNotStart(f"dockerd exited {child.returncode} while starting")
        try:
            # A fresh connection each time (the cached client may hold one to the dockerd that just
            # exited), and unversioned: Docker 29 refuses a /v1.24/_ping, any Engine answers /_ping.
            ping_engine(url, timeout=3)
            return True
        except engine_errors():
            return False

    # Said only once it is slow: a restart usually answers within a second.
    poll_until(ping, bool, what=f"dockerd to answer on {url}", timeout_s=timeout, max_interval_s=DOCKERD_POLL_MAX_S,
               say_after_s=1.0).or_raise(lambda waited: DockerdDidNotStart(
                   f"dockerd did not answer on {url} within {timeout:g}s"))


def wait_shows(host: Host, name: str, *, default: bool, path: str | None,
               timeout: float = SHOW_TIMEOUT) -> dict[str, Any] | None:
    """Poll ``docker info`` until it shows the runtime (and default); the info, or None on timeout."""

    def read() -> dict[str, Any] | None:
        try:
            return host.engine_info(timeout=SHOW_TIMEOUT)  # a connection of its own each time: none goes stale
        except engine_errors():
            return None

    def shown(info: dict[str, Any] | None) -> bool:
        return info is not None and shows_runtime(info, name, default=default, path=path)

    waited = poll_until(read, shown, what=f"docker info to show runtime {name}", timeout_s=timeout,
                        max_interval_s=DOCKERD_POLL_MAX_S, level=logging.DEBUG)
    return waited.value if waited.met else None


# -- reload / restart -------------------------------------------------------------------------
def reload(host: Host, proc: EngineProcess) -> None:
    """SIGHUP: what ``systemctl reload docker`` does (its ExecReload is ``kill -s HUP $MAINPID``)."""
    host.signal(proc.pid, signal.SIGHUP)


@dataclass
class Restarted:
    how: list[str]  # the restart command, for the report
    child: Spawned | None = None  # a dockerd we started by hand
    before: list[list[str]] = field(default_factory=list)  # what ran first (systemctl daemon-reload)

    @property
    def commands(self) -> list[list[str]]:
        """Every command the restart ran, in order: what the step reports as done."""
        return [*self.before, self.how]


def sysv_managed(host: Host, proc: EngineProcess | None) -> bool:
    """Amazon Linux 1: docker is a SysV service (its script owns the pidfile and the log), not systemd's."""
    return (proc is None or proc.systemd_unit is None) and host.live and not host.env.get("DOCKER_HOST") \
        and host.which("systemctl") is None and host.exists("/etc/init.d/docker")


SYSV_RESTART = ["service", "docker", "restart"]


def restart(host: Host, proc: EngineProcess, *, daemon_reload: bool = False) -> Restarted:
    """systemd-managed: ``systemctl restart``; started by hand: SIGTERM, wait, re-exec the same way."""
    if proc.systemd_unit is not None and host.which("systemctl") is not None:
        before = []
        if daemon_reload:
            before.append(["systemctl", "daemon-reload"])
            host.run(before[-1], timeout=120)
        return Restarted(_run_restart(host, ["systemctl", "restart", proc.systemd_unit]), before=before)
    if sysv_managed(host, proc):
        return Restarted(_run_restart(host, list(SYSV_RESTART)))
    host.signal(proc.pid, signal.SIGTERM)
    wait_for_exit(host, proc.pid)
    # Two commands, as --dry-run lists them (engine.steps._commands).
    return Restarted(list(proc.argv), spawn_detached(host, proc), before=[["kill", "-TERM", str(proc.pid)]])


def _run_restart(host: Host, argv: list[str]) -> list[str]:
    """Run a service manager's restart; DockerdDidNotStart with its last line of output when it fails."""
    # Said before the wait, not after: a user-data log otherwise shows nothing while dockerd restarts.
    log.info("restarting dockerd: `%s` (up to 300s)", " ".join(argv))
    done = host.run(argv, check=False, timeout=300)
    if done.returncode != 0:
        last = ((done.stderr or done.stdout).strip().splitlines() or ["?"])[-1]
        raise DockerdDidNotStart(f"`{' '.join(argv)}` failed: {last}")
    return argv


def spawn_detached(host: Host, proc: EngineProcess) -> Spawned:
    """Start ``proc``'s command line again, as it was started: same argv, environment and directory,
    output appended to ``proc.log_path`` so the dockerd log continues in one place."""
    return host.spawn(proc.argv, log_path=proc.log_path, env=proc.env, cwd=proc.cwd)


def last_error(proc: EngineProcess, host: Host) -> str:
    """dockerd's last error line: from its log file, or the journal for docker.service."""
    lines: list[str] = []
    if proc.systemd_unit is not None and host.which("journalctl") is not None:
        out = host.run(["journalctl", "-u", proc.systemd_unit, "-n", "30", "--no-pager", "-o", "cat"],
                       check=False, timeout=30)
        lines = out.stdout.splitlines()
    else:
        try:
            lines = proc.log_path.read_text(errors="replace").splitlines()[-30:]
        except OSError:
            return ""
    for line in reversed(lines):
        if "level=error" in line or "level=fatal" in line or line.startswith(("failed", "unable")):
            msg = line.split('msg="', 1)[-1].rsplit('"', 1)[0] if 'msg="' in line else line
            return msg.replace('\\"', '"')[:300]
    return ""


# -- save -> apply -> verify -> roll back ------------------------------------------------------
@dataclass
class Rollback:
    """What the docker-runtime step recorded before it wrote daemon.json."""

    path: str  # host path
    previous: bytes | None  # None: the file did not exist
    backup: str | None = None


@dataclass
class Outcome:
    action: str  # "reload" | "restart"
    summary: str
    pid_before: int
    pid_after: int | None
    commands: list[list[str]] = field(default_factory=list)


def apply_config(host: Host, proc: EngineProcess, *, action: str, name: str, default: bool, path: str | None,
                 daemon_reload: bool = False, rollback: Rollback | None = None) -> Outcome:
    """Make the running dockerd take up daemon.json and verify it shows runtime ``name``; roll back
    and raise StepFailed when it does not come back or does not show it."""
    url = host.docker_url or ""
    commands: list[list[str]] = []
    what = "runtime nvidia" + (" as the default" if default else "")
    try:
        if action == "reload":
            reload(host, proc)
            commands.append(["kill", "-HUP", str(proc.pid)])
            if wait_shows(host, name, default=default, path=path) is not None:
                return Outcome("reload", f"reloaded dockerd (SIGHUP, pid {proc.pid}): it shows {what}",
                               proc.pid, proc.pid, commands)
            log.info("dockerd (pid %d) does not show %s after SIGHUP; restarting it", proc.pid, what)
        restarted = restart(host, proc, daemon_reload=daemon_reload)
        commands.extend(restarted.commands)
        host.close()
        wait_ready(url, child=restarted.child)
        if wait_shows(host, name, default=default, path=path) is None:
            raise RuntimeNotShown(f"dockerd came back but does not show {what}")
    except (DockerdDidNotStart, RuntimeNotShown, StepFailed) as exc:
        with deferred():  # a signal now waits for dockerd to run again (certbot's error_handler)
            _roll_back(host, proc, rollback, exc, url)
    new = find_engine_process(host)
    return Outcome("restart", f"restarted dockerd (pid {proc.pid} -> {new.pid if new else '?'}): it shows {what}",
                   proc.pid, new.pid if new else None, commands)


def _roll_back(host: Host, proc: EngineProcess, rollback: Rollback | None, cause: BaseException, url: str) -> None:
    reason = str(cause) if not isinstance(cause, StepFailed) else cause.message
    error = last_error(proc, host)
    detail = f" (dockerd: {error})" if error else ""
    if rollback is None:
        raise StepFailed(f"{reason}{detail}; daemon.json was not changed in this run, so there is nothing to restore",
                         f"fix {host.path('/etc/docker/daemon.json')} or dockerd's command line, then run again")
    restored = restore_file(host, rollback)
    log.info("%s; %s; restarting dockerd", reason, restored)
    try:
        start_on_restored(host, proc, url)
    except Exception as exc:
        raise StepFailed(f"{reason}{detail}; {restored}, but dockerd did not start again either: {exc}",
                         "see dockerd's log or `journalctl -u docker -n 50`; start it by hand") from None
    now = find_engine_process(host)
    raise StepFailed(
        f"{reason}{detail}; {restored} and restarted dockerd: it runs again with the old config"
        + (f" (pid {now.pid})" if now else ""),
        "fix what dockerd rejects (its error is above; a --default-runtime or --add-runtime flag on dockerd's "
        "command line conflicts with daemon.json), then run gpuprep again",
    )


def restore_file(host: Host, rollback: Rollback) -> str:
    """Put daemon.json back as ``rollback`` recorded it; says what was done."""
    real = host.path(rollback.path)
    if rollback.previous is None:
        host.remove(rollback.path, base=os.path.dirname(rollback.path))
        return f"removed the new {real}"
    host.write_atomic(rollback.path, rollback.previous)
    return f"restored {real}" + (f" from {rollback.backup}" if rollback.backup else "")


def start_on_restored(host: Host, proc: EngineProcess, url: str) -> None:
    """Restart the dockerd serving the Engine (``proc``, or whichever serves it now), or start it again the way
    ``proc`` was started when none runs, and wait (bounded) until it answers."""
    again = find_engine_process(host) or proc
    restarted = restart(host, again) if _alive(host, again.pid) else _start_again(host, proc)
    host.close()
    wait_ready(url, child=restarted.child)


def recover(host: Host, rollback: Rollback | None, proc: EngineProcess | None) -> str:
    """After a signal ended the run between daemon.json's write and the Engine showing it: the file as it was
    before the run, and dockerd, when this run touched it (``proc``), running again on it. What was done, said;
    StepFailed when dockerd does not answer again within its bound."""
    done = [restore_file(host, rollback)] if rollback is not None else []
    if proc is not None:
        url = host.docker_url or ""
        try:
            start_on_restored(host, proc, url)
        except (DockerdDidNotStart, StepFailed, GpuprepError, OSError) as exc:
            said = exc.message if isinstance(exc, GpuprepError) else str(exc)
            raise StepFailed("; ".join([*done, f"dockerd did not start again: {said}"]),
                             engine_down_hint(host)) from None
        now = find_engine_process(host)
        done.append("dockerd runs again on it" + (f" (pid {now.pid})" if now else ""))
    return "; ".join(done)


def _start_again(host: Host, proc: EngineProcess) -> Restarted:
    """Start the dockerd that is gone, the way it was started."""
    if proc.systemd_unit is not None and host.which("systemctl") is not None:
        return Restarted(_run_restart(host, ["systemctl", "restart", proc.systemd_unit]))
    if sysv_managed(host, proc):
        return Restarted(_run_restart(host, list(SYSV_RESTART)))
    return Restarted(list(proc.argv), spawn_detached(host, proc))
