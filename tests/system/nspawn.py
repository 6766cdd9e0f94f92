"""Boot the simulated instance with systemd-nspawn, run commands in it, reboot it, always clean up.

Each ``Machine`` boots its own overlay of the cached base tree (``image.base_tree()``): writes land in
a per-test upper directory, so scenarios never change the base and need no copy of it. A reboot is a
poweroff and a new boot of the same overlay, which is how a boot-time unit is tested (docs/testbed.md 5).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from tenacity import RetryError, Retrying, retry_if_result, stop_after_delay, wait_fixed

log = logging.getLogger("gpuprep.tests")

# docs/testbed.md 5, exactly: without the cgroup bind containers fail on a read-only cgroup fs; without
# the syscall filter they fail to create a session keyring.
NSPAWN_FLAGS = ("-q", "--register=no", "--keep-unit", "--capability=all", "--bind=/sys/fs/cgroup",
                "--system-call-filter=add_key keyctl request_key")
INSIDE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
BOOT_TIMEOUT = 90
POWEROFF_TIMEOUT = 45


class BootError(RuntimeError):
    pass


def wait(what: str, timeout: float, poll, interval: float = 0.2):
    """Call ``poll()`` until it returns something truthy, at most ``timeout`` s; say what we waited for.

    An exception from ``poll`` is not retried: it ends the wait (nspawn died, say).
    """
    retryer = Retrying(stop=stop_after_delay(timeout), wait=wait_fixed(interval),
                       retry=retry_if_result(lambda r: not r), reraise=True)
    try:
        return retryer(poll)
    except RetryError:
        raise BootError(f"gave up after {timeout:g}s waiting for {what}") from None


class Machine:
    """One simulated instance: an overlay of ``base`` under ``workdir``, booted on demand."""

    def __init__(self, base: Path, workdir: Path | None = None, *, name: str = "gpuprep-sim") -> None:
        self.base = base
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="gpuprep-machine-"))
        self.name = name
        self.root = self.workdir / "merged"
        self.proc: subprocess.Popen | None = None
        self.leader: int | None = None
        self.boots = 0
        self._mounted = False
        self.timings: dict[str, float] = {}
        # Overlay lower layers, top first (a layer built on the base tree goes before it), and nspawn
        # flags of this machine's own (a network namespace, say): tests/system/fleet.py sets both.
        self.lowers: list[Path] = [base]
        self.nspawn_flags: list[str] = []

    # -- the tree --------------------------------------------------------------------------
    def mount(self) -> None:
        upper, work = self.workdir / "upper", self.workdir / "work"
        for d in (upper, work, self.root):
            d.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        subprocess.run(["mount", "-t", "overlay", "overlay", "-o",
                        f"lowerdir={':'.join(map(str, self.lowers))},upperdir={upper},workdir={work}", str(self.root)],
                       check=True, capture_output=True, text=True)
        self._mounted = True
        self.timings["mount"] = time.monotonic() - started

    def path(self, p: str) -> Path:
        """The host-side path of ``p`` inside the machine (valid while mounted)."""
        return self.root / p.lstrip("/")

    def write(self, p: str, text: str, mode: int = 0o644) -> None:
        target = self.path(p)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
        target.chmod(mode)

    # -- boot and power off ----------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def boot(self, timeout: float = BOOT_TIMEOUT) -> float:
        """Boot and wait until multi-user is reached (running or degraded); returns the seconds it took."""
        if not self._mounted:
            self.mount()
        self.boots += 1
        console = open(self.workdir / f"console-{self.boots}.log", "wb")
        started = time.monotonic()
        self.proc = subprocess.Popen(
            ["systemd-nspawn", *NSPAWN_FLAGS, *self.nspawn_flags, f"--machine={self.name}", "-D", str(self.root), "-b"],
            stdin=subprocess.DEVNULL, stdout=console, stderr=subprocess.STDOUT, start_new_session=True,
        )
        console.close()
        try:
            self.leader = wait("the container's systemd (PID 1 inside) to appear", 20, self._find_leader)
            state = wait("systemd inside to reach multi-user (`systemctl is-system-running`)", timeout,
                          self._settled, interval=0.3)
        except BootError as exc:
            tail = self.console_tail()
            self.kill()
            raise BootError(f"{exc}\n--- console ---\n{tail}") from None
        took = time.monotonic() - started
        self.timings[f"boot-{self.boots}"] = took
        log.info("machine %s booted (%s) in %.1fs", self.name, state, took)
        return took

    def _find_leader(self) -> int | None:
        if not self.running:
            raise BootError(f"systemd-nspawn exited {self.proc.returncode}\n{self.console_tail()}")
        for stat in Path("/proc").glob("[0-9]*/stat"):
            with contextlib.suppress(OSError, ValueError, IndexError):
                fields = stat.read_text().rsplit(")", 1)[1].split()
                if int(fields[1]) == self.proc.pid:
                    pid = int(stat.parent.name)
                    if Path(f"/proc/{pid}/comm").read_text().strip() == "systemd":
                        return pid
        return None

    def _settled(self) -> str | None:
        if not self.running:
            raise BootError(f"systemd-nspawn exited {self.proc.returncode} during boot")
        proc = self.run(["systemctl", "is-system-running"], check=False, timeout=10)
        state = proc.stdout.strip()
        return state if state in ("running", "degraded") else None

    def poweroff(self, timeout: float = POWEROFF_TIMEOUT) -> None:
        """`systemctl poweroff` inside and wait for nspawn to exit; killed if it does not in time."""
        if not self.running:
            return
        self.run(["systemctl", "poweroff"], check=False, timeout=10)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            log.warning("machine %s did not power off in %gs: killing it", self.name, timeout)
            self.kill()
        self.leader = None

    def reboot(self, timeout: float = BOOT_TIMEOUT) -> float:
        self.poweroff()
        return self.boot(timeout)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(15)
        self.leader = None

    def close(self) -> None:
        """Power off (or kill), unmount the overlay, remove the per-test upper dir."""
        try:
            if self.running:
                self.poweroff(timeout=20)
        finally:
            self.kill()
            if self._mounted:
                proc = subprocess.run(["umount", str(self.root)], capture_output=True, text=True)
                if proc.returncode != 0:
                    subprocess.run(["umount", "-l", str(self.root)], capture_output=True)
                self._mounted = False
            if not os.environ.get("GPUPREP_KEEP_MACHINE"):
                shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> Machine:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- inside ----------------------------------------------------------------------------
    def run(self, argv: Sequence[str], *, check: bool = True, timeout: float = 300, input: str | None = None,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        """Run ``argv`` inside the booted machine (all its namespaces) with a clean environment."""
        if self.leader is None:
            raise BootError("the machine is not booted")
        envs = [f"{k}={v}" for k, v in {"PATH": INSIDE_PATH, "LANG": "C.UTF-8", "HOME": "/root",
                                         "TERM": "dumb", **(env or {})}.items()]
        proc = subprocess.run(["nsenter", "-t", str(self.leader), "-a", "env", "-i", *envs, *argv],
                              capture_output=True, text=True, timeout=timeout, input=input,
                              stdin=None if input is not None else subprocess.DEVNULL)
        if check and proc.returncode != 0:
            raise AssertionError(f"inside {self.name}: {' '.join(argv)} exited {proc.returncode}\n"
                                 f"--- stdout ---\n{proc.stdout[-4000:]}\n--- stderr ---\n{proc.stderr[-4000:]}")
        return proc

    def unit_state(self, unit: str) -> dict[str, str]:
        proc = self.run(["systemctl", "show", unit, "--property=ActiveState,SubState,Result,MainPID,"
                         "ExecMainStatus,LoadState,UnitFileState"], check=False, timeout=15)
        return dict(line.split("=", 1) for line in proc.stdout.splitlines() if "=" in line)

    def journal(self, unit: str, lines: int = 50) -> str:
        return self.run(["journalctl", "-b", "-u", unit, "-n", str(lines), "--no-pager", "-o", "cat"],
                        check=False, timeout=15).stdout

    def console_tail(self, n: int = 40) -> str:
        logs = sorted(self.workdir.glob("console-*.log"))
        if not logs:
            return ""
        return "\n".join(logs[-1].read_text(errors="replace").splitlines()[-n:])


@contextlib.contextmanager
def machine(base: Path, name: str = "gpuprep-sim") -> Iterator[Machine]:
    m = Machine(base, name=name)
    try:
        m.mount()
        yield m
    finally:
        m.close()
