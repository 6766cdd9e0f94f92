"""The one door to the operating system.

Everything that reads a file, runs a program, writes a file or talks to the Docker Engine goes through
a ``Host``. ``Host.root`` makes every path act inside a mounted image or chroot (``--root``); tests use
the same seam to lay out a fake host tree. No code elsewhere calls ``subprocess`` or ``open`` on a
system path directly.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import stat
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gpuprep import dockersock, procfs, rootfs
from gpuprep.errors import EXIT_FAILED, CommandError, GpuprepError
from gpuprep.poll import poll_until
from gpuprep.procfs import Process, ProcessDetail

if TYPE_CHECKING:
    from docker import APIClient, DockerClient

log = logging.getLogger("gpuprep")

# Where programs live on the hosts we serve; used to find a program inside --root.
SYSTEM_PATH = ("/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin")

DEFAULT_DOCKER_SOCKET = "unix:///var/run/docker.sock"
# One run at a time per target (inside the root with --root). /run/lock is the FHS place for lock
# files; in an image it is a tmpfs mount point at boot, so the file never reaches a booted instance.
LOCK_PATH = "/run/lock/gpuprep.lock"
LOCK_WAIT_S = 120.0


# What Host.spawn returns (a daemon started by hand) and Host.start (a child worked beside, for Host.collect).
Spawned = subprocess.Popen[bytes]
Started = subprocess.Popen[str]


class LockHeld(GpuprepError):
    """Another gpuprep run holds the target's lock past the wait (exit 1)."""

    reference = "run-lock-held"
    exit_code = EXIT_FAILED


@dataclass(frozen=True)
class Completed:
    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str
    duration_s: float


def write_atomic(path: Path, data: bytes | str, *, mode: int | None = None, parents: bool = True) -> None:
    """Write ``path`` on this machine atomically (``rootfs.write_in``: temp file beside it, fsync, rename).

    An existing file keeps its mode and owner (``mode`` applies only to a new file, default 0644);
    a symlink is followed and its target replaced, so the link itself stays. Missing parent
    directories are created 0755, unless ``parents`` is False (then FileNotFoundError).
    """
    rootfs.write_atomic("/", os.path.abspath(path), data, mode=mode, parents=parents)


def backup_file(path: Path, *, now: datetime | None = None) -> Path | None:
    """Copy ``path`` on this machine (a link's target) beside itself as ``NAME.gpuprep-<stamp>``; see Host.backup."""
    copy = rootfs.backup("/", os.path.abspath(path), backup_suffix(now))
    return Path(copy) if copy is not None else None


def backup_suffix(now: datetime | None = None) -> str:
    """``.gpuprep-YYYYmmddTHHMMSSffffffZ``: microseconds, so two backups in one second never collide."""
    return (now or datetime.now(timezone.utc)).strftime(".gpuprep-%Y%m%dT%H%M%S%fZ")


def ping_engine(url: str, timeout: float, *, tls: bool = False) -> Mapping[str, str]:
    """Ping the Engine at ``url`` as the docker CLI does; the answer's headers.

    One ``GET /_ping`` with no version in its path: every Engine answers that, while a versioned
    ``/v1.24/_ping`` gets 400 from one whose minimum API version is higher (Docker 29: 1.44). The
    ``API-Version`` header is the version docker-py's ``version="auto"`` would find, without the
    ``GET /version`` it costs: that one makes dockerd run ``runc --version`` and ``docker-init
    --version`` (5-6 ms on Engine 20.10). ``Server`` names the Engine's release ("Docker/20.10.24 (linux)").
    An Engine that does not answer raises OSError (``dockersock``: a socket, no docker-py) or, for a URL only
    docker-py speaks (ssh://, or ``tls``: DOCKER_TLS_VERIFY's client certificates), what docker-py raises
    (requests' ConnectionError, docker.errors.APIError).
    """
    if dockersock.speaks(url) and not tls:
        answer = dockersock.get(url, "/_ping", timeout)
        if answer.status != 200:
            raise dockersock.EngineHTTPError(f"GET /_ping: {answer.status} {answer.reason}", answer.status)
        return answer.headers
    import docker  # heavy: imported where used
    from docker.constants import MINIMUM_DOCKER_API_VERSION

    # The version given here only spares docker-py's own lookup: the unversioned path does not use it. Each
    # client's timeout is a float: types-docker says int, but docker-py hands it to requests, which takes both.
    api = docker.APIClient(base_url=url, version=MINIMUM_DOCKER_API_VERSION, timeout=timeout)  # type: ignore[arg-type]
    try:
        response = api.get(f"{api.base_url}/_ping", timeout=timeout)
        if response.status_code != 200:
            raise docker.errors.APIError(f"GET /_ping: {response.status_code} {response.reason}",
                                         response=response, explanation=response.text.strip()[:200])
        return response.headers
    finally:
        api.close()


class Host:
    """The machine gpuprep acts on: the running system (root ``/``) or a tree under ``root``."""

    def __init__(
        self,
        root: str | Path = "/",
        *,
        env: Mapping[str, str] | None = None,
        euid: int | None = None,
    ) -> None:
        if not str(root):
            raise ValueError("the root is an empty path")
        self.root = Path(root).resolve()
        self._root = str(self.root)
        self.env = dict(os.environ if env is None else env)
        self.euid = os.geteuid() if euid is None else euid
        self._docker: DockerClient | None = None
        self._scratch: str | None = None
        self._docker_lock = threading.Lock()
        self.engine_server: str | None = None  # the Engine's Server header ("Docker/25.0.8 (linux)"), once pinged

    # -- where things are -------------------------------------------------------------------
    @property
    def live(self) -> bool:
        """True when acting on the running system (no --root)."""
        return self.root == Path("/")

    @property
    def is_root(self) -> bool:
        return self.euid == 0

    def path(self, p: str | Path, *, follow: bool = True) -> Path:
        """The real path of the host path ``p`` (``/etc/x`` -> ``ROOT/etc/x``).

        Inside --root every link on the way is resolved inside the root (``rootfs.resolve``: an
        absolute link means the image's path; one that climbs above the root raises LinkEscapes),
        the last one too unless ``follow`` is false. On the running system the path is as given.
        """
        p = str(p)
        if not p.startswith("/"):
            raise ValueError(f"host paths are absolute: {p!r}")
        if self.live:
            return Path(p)
        return Path(rootfs.resolve(self._root, p, follow=follow))

    def resolve(self, p: str | Path) -> str:
        """The host path ``p`` names once every link on the way is followed (inside the root): what
        ``/usr/lib64/libnvidia-ml.so.1`` is a link to, as a path of the host."""
        real = rootfs.resolve(self._root, str(p))
        return "/" + "/".join(rootfs.relative(self._root, real))

    def read_bytes(self, p: str | Path, *, limit: int | None = None) -> bytes | None:
        """The bytes of host file ``p``, or None when it does not exist. A FIFO, socket or device is
        refused (``rootfs.NotRegular``) before anything could block on it."""
        return rootfs.read_bytes(self._root, str(p), limit=limit)

    def read_text(self, p: str | Path) -> str | None:
        """The text of host file ``p``, or None when it does not exist."""
        data = self.read_bytes(p)
        return None if data is None else data.decode("utf-8", errors="replace")

    def exists(self, p: str | Path) -> bool:
        return self.path(p).exists()

    def lexists(self, p: str | Path) -> bool:
        """True for a dangling link too."""
        return os.path.lexists(self.path(p, follow=False))

    def which(self, name: str) -> str | None:
        """The host path of program ``name``: PATH on the live system, the usual dirs inside --root."""
        if self.live:
            return self.tool(name)
        for d in SYSTEM_PATH:
            candidate = self.path(f"{d}/{name}")
            if candidate.is_file() and os.access(candidate, os.X_OK):
                return f"{d}/{name}"
        return None

    def tool(self, name: str) -> str | None:
        """A program of the machine gpuprep runs on, found on gpuprep's PATH: with --root that is the build
        machine, not the image (``which`` looks inside the image). What ``run`` would execute."""
        return shutil.which(name, path=self.env.get("PATH") or os.pathsep.join(SYSTEM_PATH))

    def write_atomic(self, p: str | Path, data: bytes | str, *, mode: int | None = None,
                     expect: object = rootfs.ANY) -> None:
        """Write host file ``p`` atomically, confined to the root (``rootfs.write_atomic``). With
        ``expect`` (bytes, or None for "absent") the write is abandoned, nothing changed, when the
        file no longer holds that right before the rename."""
        rootfs.write_atomic(self._root, str(p), data, mode=mode, expect=expect)

    def backup(self, p: str | Path, *, now: datetime | None = None) -> Path | None:
        """Copy host file ``p`` beside itself as ``NAME.gpuprep-<UTC stamp>``; the copy's real path,
        or None when there was nothing to back up. Mode and owner are kept."""
        copy = rootfs.backup(self._root, str(p), backup_suffix(now))
        return self.path(copy, follow=False) if copy is not None else None

    def remove(self, p: str | Path, *, base: str = "/", truncate: bool = False) -> bool:
        """Remove host path ``p`` (file, link as a link, or tree), or truncate it; links are followed
        only down to ``base`` (``rootfs.remove``). False when there was nothing to do."""
        return rootfs.remove(self._root, str(p), base=base, truncate=truncate)

    def rename(self, p: str | Path, new_name: str) -> None:
        """Rename host path ``p`` to ``new_name`` in its own directory."""
        rootfs.rename(self._root, str(p), new_name)

    @contextlib.contextmanager
    def lock(self, command: str, *, wait_s: float = LOCK_WAIT_S) -> Iterator[None]:
        """Hold the target's run lock (an exclusive flock on LOCK_PATH, inside the root) for the block.

        A second run waits up to ``wait_s`` seconds, saying once who holds it, then raises LockHeld
        naming that pid. The holder's pid and command are written into the file while it is held (a
        reader of a stale file can tell it is stale: nobody holds the flock).
        """
        import fcntl

        where = self.path(LOCK_PATH)
        with rootfs.parent_dir(self._root, LOCK_PATH, create=True) as (dfd, name):
            try:
                fd = os.open(name, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, 0o644,
                             dir_fd=dfd)
            except OSError as exc:
                raise rootfs.NotRegular(f"{where}: cannot be the run lock ({exc.strerror})",
                                        f"remove {where}; gpuprep makes it a plain file") from None
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise rootfs.NotRegular(f"{where}: is not a regular file, so it cannot be the run lock",
                                    f"remove {where}; gpuprep makes it a plain file")
        try:
            def take() -> str | None:
                """None once this process holds the flock; else who holds it, as the file says."""
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    return None
                except BlockingIOError:
                    return os.pread(fd, 200, 0).decode(errors="replace").strip() or "another process"

            holder = take()
            if holder is not None:
                waited = poll_until(take, lambda h: h is None, what=f"{where}, held by {holder}", timeout_s=wait_s,
                                    max_interval_s=0.5)
                if not waited.met:
                    raise LockHeld(f"another gpuprep run holds {where} (pid and command: {waited.value}); waited "
                                   f"{wait_s:g}s", "let that run finish (or stop it), then run again; --lock-wait "
                                   "SECONDS waits longer")
            try:
                os.ftruncate(fd, 0)
                os.pwrite(fd, f"{os.getpid()} gpuprep {command}\n".encode(), 0)
            except OSError as exc:
                raise type(exc)(exc.errno, exc.strerror, str(where)) from None
            try:
                yield
            finally:
                with contextlib.suppress(OSError):
                    os.ftruncate(fd, 0)
        finally:
            os.close(fd)  # releases the flock

    def boot_identity(self) -> dict[str, Any] | None:
        """What names this boot of the running system without reading a clock: the kernel's boot_id and
        PID 1's start in clock ticks (a container's init starts anew on each of its boots while the
        kernel's stays). None inside --root, where no boot is ours.

        Wall-clock comparisons fail here: a VM's clock adjustments shift ``btime + starttime`` by up to
        a second, and a container can reboot within one (seen in the booted-host tests).
        """
        if not self.live:
            return None
        boot_id = (self.read_text("/proc/sys/kernel/random/boot_id") or "").strip()
        stat = self.read_text("/proc/1/stat") or ""
        fields = stat.rsplit(")", 1)[-1].split()
        # Field 22 of /proc/PID/stat (starttime); fields[0] here is field 3 (state).
        start = int(fields[19]) if len(fields) > 19 and fields[19].isdigit() else None
        return {"boot_id": boot_id, "init_start_ticks": start} if boot_id or start is not None else None

    # -- running programs -------------------------------------------------------------------
    def run(
        self,
        argv: Sequence[str],
        *,
        timeout: float = 60,
        check: bool = True,
        env: Mapping[str, str] | None = None,
        input: str | None = None,
        hint: str = "",
    ) -> Completed:
        """Run ``argv`` (never through a shell), bounded by ``timeout`` seconds.

        With ``check`` a non-zero exit raises CommandError carrying argv, exit code and output.
        A program that does not exist raises CommandError with returncode None either way.
        """
        argv = tuple(str(a) for a in argv)
        log.debug("run: %s", " ".join(argv))
        started = time.monotonic()
        try:
            proc = subprocess.run(
                argv,
                capture_output=True,
                text=True,
                errors="replace",
                timeout=timeout,
                env={**self.env, **(env or {})},
                input=input,
                stdin=None if input is not None else subprocess.DEVNULL,
                check=False,
            )
        except FileNotFoundError as exc:
            raise CommandError(argv, None, stderr=str(exc), hint=hint) from None
        except subprocess.TimeoutExpired as exc:
            out = exc.stdout.decode(errors="replace") if isinstance(exc.stdout, bytes) else exc.stdout
            raise CommandError(argv, None, out or "", timeout=timeout, hint=hint) from None
        took = time.monotonic() - started
        log.debug("run: %s -> %d in %.3fs", argv[0], proc.returncode, took)
        done = Completed(argv, proc.returncode, proc.stdout, proc.stderr, took)
        if check and proc.returncode != 0:
            raise CommandError(argv, proc.returncode, proc.stdout, proc.stderr, hint=hint)
        return done

    def run_filtered(self, argv: Sequence[str], *, timeout: float, keep: Callable[[str], bool],
                     stderr_limit: int = 64 << 10) -> tuple[Completed, int]:
        """``run``, keeping only the stdout lines ``keep`` accepts, read one at a time: memory bounded whatever the
        program prints (a kernel log of hundreds of MB, issue 23). (Completed, lines read); CommandError as run."""
        argv = tuple(str(a) for a in argv)
        log.debug("run: %s (filtered)", " ".join(argv))
        started = time.monotonic()
        try:
            proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                                    env=dict(self.env))
        except FileNotFoundError as exc:
            raise CommandError(argv, None, stderr=str(exc)) from None
        out_pipe, err_pipe = proc.stdout, proc.stderr
        assert out_pipe is not None and err_pipe is not None  # both PIPE
        killer, err, kept, count = threading.Timer(timeout, proc.kill), [], [], 0
        reader = threading.Thread(target=lambda: err.append(err_pipe.read(stderr_limit)), daemon=True)
        killer.start()
        reader.start()
        try:
            for raw in out_pipe:
                count += 1
                line = raw.decode(errors="replace")
                if keep(line):
                    kept.append(line)
            out_pipe.close()
            returncode = proc.wait()
        finally:
            killer.cancel()
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        reader.join(timeout=5)
        if time.monotonic() - started >= timeout and returncode < 0:
            raise CommandError(argv, None, "".join(kept), timeout=timeout)
        stderr = b"".join(err).decode(errors="replace")
        return Completed(argv, returncode, "".join(kept), stderr, time.monotonic() - started), count

    def start(self, argv: Sequence[str], *, env: Mapping[str, str] | None = None) -> Started:
        """Start ``argv`` (no shell, stdin closed, output piped) for ``collect``: a child gpuprep works beside."""
        log.debug("start: %s", " ".join(map(str, argv)))
        return subprocess.Popen([str(a) for a in argv], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, errors="replace", env={**self.env, **(env or {})})

    @staticmethod
    def collect(proc: Started, timeout: float) -> Completed:
        """Wait for ``start``'s child at most ``timeout`` seconds; past it the child is killed and CommandError
        (returncode None, as ``run``'s timeout) raised. Called again after a kill, it only reaps."""
        started, args = time.monotonic(), proc.args if isinstance(proc.args, (list, tuple)) else [proc.args]
        argv = tuple(map(str, args))
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            raise CommandError(argv, None, timeout=timeout) from None
        return Completed(argv, proc.returncode, out, err, time.monotonic() - started)

    def spawn(self, argv: Sequence[str], *, log_path: Path, env: Mapping[str, str] | None = None,
              cwd: str = "/") -> Spawned:
        """Start a daemon that outlives this call (``run`` waits; a dockerd started by hand must not be
        waited for): no shell, its own session, stdin closed, output appended to ``log_path``."""
        argv = [str(a) for a in argv]
        log.debug("spawn: %s (log %s)", " ".join(argv), log_path)
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(log_path, "ab") as out:
            return subprocess.Popen(argv, env=dict(self.env if env is None else env),
                                    cwd=cwd if os.path.isdir(cwd) else "/", stdin=subprocess.DEVNULL,
                                    stdout=out, stderr=subprocess.STDOUT, start_new_session=True, close_fds=True)

    # -- the process table, signals and kernel files of this machine -------------------------------
    def process(self, pid: int) -> Process | None:
        """Process ``pid``, or None when there is none. A process of another user comes back ``denied``.
        Read from /proc (``procfs``, as psutil reads it, without psutil's import)."""
        try:
            p, readable = self._process(pid, procfs.boot_time())
        except procfs.Gone:
            return None
        return p if readable else Process(pid, p.name, denied=True)

    @staticmethod
    def _process(pid: int, booted: float) -> tuple[Process, bool]:
        """What /proc shows of ``pid``, and whether its binary was readable (not for another user's process,
        whose argv is still readable to all)."""
        st = procfs.stat(pid)
        try:
            argv = procfs.cmdline(pid)
        except procfs.Denied:
            argv = ()
        try:
            exe, readable = procfs.exe(pid), True
        except procfs.Denied:
            exe, readable = "", False
        return Process(pid, procfs.name(st.name, argv), exe, argv, st.state == "Z",
                       procfs.create_time(st, booted)), readable

    def processes(self) -> list[Process]:
        """Every process now (name, exe, argv, state, start); ones that end during the scan are left out. Of
        another user's process, what this user may read (as psutil.process_iter: no exe)."""
        booted = procfs.boot_time()
        out = []
        for pid in procfs.pids():
            try:
                out.append(self._process(pid, booted)[0])
            except (procfs.Gone, procfs.Denied):
                continue
        return out

    def process_detail(self, pid: int) -> ProcessDetail | None:
        """Argv, binary, directory and environment of ``pid``; None when it is gone or not readable."""
        try:
            st = procfs.stat(pid)
            return ProcessDetail(pid, procfs.cmdline(pid), procfs.exe(pid), procfs.cwd(pid), procfs.environ(pid),
                                 procfs.create_time(st, procfs.boot_time()))
        except (procfs.Gone, procfs.Denied):
            return None

    def unix_sockets(self, pid: int) -> list[str]:
        """The paths of the unix sockets ``pid`` holds (listening or connected); [] when not readable."""
        import psutil

        try:
            # A path for AF_UNIX (psutil's docs, "net_connections"); types-psutil knows only the address tuples.
            return [c.laddr for c in psutil.Process(pid).net_connections("unix") if c.laddr]  # type: ignore[misc]
        except (psutil.AccessDenied, psutil.NoSuchProcess):
            return []

    def signal(self, pid: int, sig: int) -> None:
        """Send ``sig`` to ``pid`` (dockerd's SIGHUP reload, SIGTERM before a restart by hand)."""
        log.debug("signal %d to pid %d", sig, pid)
        os.kill(pid, sig)

    def boot_time(self) -> float:
        """When this system booted (epoch seconds): the kernel's boot, or PID 1's start when later (a
        container such as systemd-nspawn shares the host kernel, whose boot would predate it)."""
        booted = procfs.boot_time()
        try:
            init_started = procfs.create_time(procfs.stat(1), booted)
        except (procfs.Gone, procfs.Denied, OSError):
            init_started = 0.0
        return max(booted, init_started)

    def proc_locks(self) -> str:
        """This kernel's table of file locks (/proc/locks); "" when it cannot be read."""
        try:
            with open("/proc/locks") as f:
                return f.read()
        except OSError:
            return ""

    def read_records(self, p: str | Path, *, max_records: int, deadline_s: float) -> bytes:
        """Read a record device such as /dev/kmsg without blocking, one record per read, bounded in
        records and time. OSError when it cannot be opened."""
        fd = os.open(self.path(p), os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        chunks: list[bytes] = []
        try:
            end = time.monotonic() + deadline_s
            while len(chunks) < max_records and time.monotonic() < end:
                try:
                    chunk = os.read(fd, 8192)  # /dev/kmsg returns one record per read
                except BlockingIOError:
                    break  # EAGAIN: the end of the buffer
                except BrokenPipeError:
                    continue  # EPIPE: the record was overwritten while we read; the next read resumes
                if not chunk:
                    break
                chunks.append(chunk)
        finally:
            os.close(fd)
        return b"".join(chunks)

    # -- the Docker Engine ------------------------------------------------------------------
    @property
    def docker_url(self) -> str | None:
        """The Engine to talk to: DOCKER_HOST if set; the system socket on the live system; else None."""
        url = self.env.get("DOCKER_HOST")
        if url:
            return url
        return DEFAULT_DOCKER_SOCKET if self.live else None

    def engine_get(self, path: str, timeout: float, method: str = "GET",
                   data: Mapping[str, Any] | None = None) -> dockersock.Answer:
        """``METHOD path`` on the Engine (GET ``/info``, ``/version``, ``/_ping``; doctor's early CUDA container),
        ``data`` its JSON body, without docker-py (``dockersock``). Bounded by ``timeout``; OSError when the Engine
        does not answer. Remembers its ``Server`` header (``engine_server``)."""
        url = self.docker_url
        if url is None:
            raise RuntimeError("no Docker Engine for --root without DOCKER_HOST")
        if dockersock.speaks(url) and not self.env.get("DOCKER_TLS_VERIFY"):
            answer = dockersock.call(url, method, path, timeout, data)
        else:  # ssh://, TLS: docker-py's transports
            # _url: docker-py's own URL builder (the API version in the path), absent from types-docker.
            api = self.docker(timeout).api
            response = api.request(method, api._url(path), json=data, timeout=timeout)  # type: ignore[attr-defined]
            answer = dockersock.Answer(response.status_code, response.reason or "",
                                       dockersock.Headers(dict(response.headers)), response.content)
        self.engine_server = answer.header("Server") or self.engine_server
        return answer

    def engine_info(self, timeout: float) -> dict[str, Any]:
        """``docker info`` (``GET /info``) as a dict; OSError when the Engine does not answer or answers an error."""
        return self.engine_get("/info", timeout).json()

    def docker(self, timeout: float = 10) -> DockerClient:
        """The docker-py client, created once, with an explicit base_url and no context lookup. Creating
        it asks the Engine one ``/_ping``: an Engine that does not answer raises here."""
        import docker  # heavy: imported where used

        with self._docker_lock:
            if self._docker is None:
                url = self.docker_url
                if url is None:
                    raise RuntimeError("no Docker Engine for --root without DOCKER_HOST")
                # An explicit base_url: docker-py never consults DOCKER_CONTEXT or ~/.docker
                # (the equivalent of from_env(use_context=False)). The API version is the Engine's
                # own: a fixed one breaks on 20.10 (max 1.41) or on 29+ (min 1.44).
                headers = ping_engine(url, timeout, tls=bool(self.env.get("DOCKER_TLS_VERIFY")))
                self.engine_server = headers.get("Server")
                self._docker = docker.DockerClient(base_url=url, version=headers.get("API-Version") or "auto",
                                                   timeout=timeout)  # type: ignore[arg-type]  # as in ping_engine
            return self._docker

    def docker_api(self, timeout: float) -> APIClient:
        """A low-level client of its own, for calls that may outlast ``docker()``'s timeout: a container
        start runs the runtime's GPU init, 1-3 s per GPU without persistence mode (NVIDIA/nvidia-docker
        1279). Same Engine, explicit base_url, the API version ``docker()`` agreed on; the caller closes it."""
        import docker  # heavy: imported where used

        version = self.docker().api.api_version
        return docker.APIClient(base_url=self.docker_url, version=version,  # float: see ping_engine
                                timeout=timeout)  # type: ignore[arg-type]

    def sweep_litter(self, dirs: Sequence[str]) -> None:
        """Remove the temp files a killed run left in ``dirs``, under the run lock before the first step; a
        directory that cannot be walked (a link leading out) is left to the step that writes there."""
        for d in dirs:
            try:
                for path in rootfs.temp_files(str(self.root), d):
                    log.debug("removing %s, left by a killed run", path)
                    self.remove(path, base=d)
            except GpuprepError as exc:
                log.debug("not sweeping %s: %s", d, exc.message)

    def copy_out(self, d: str | Path, dest: str, add: Mapping[str, str] | None = None) -> None:
        """The regular files of the tree's directory ``d`` copied to ``dest`` on this machine, with ``add`` (rootfs)."""
        rootfs.copy_out(self.path(d), dest, add)

    def scratch(self) -> str:
        """A private directory on this machine, outside the root, removed by ``close``: where a
        read-only run sends what its tools insist on writing (dnf's logs and cache)."""
        if self._scratch is None:
            import tempfile

            self._scratch = tempfile.mkdtemp(prefix="gpuprep-")
        return self._scratch

    def close(self) -> None:
        if self._docker is not None:
            with contextlib.suppress(Exception):
                self._docker.close()
            self._docker = None
        if self._scratch is not None:
            shutil.rmtree(self._scratch, ignore_errors=True)
            self._scratch = None
