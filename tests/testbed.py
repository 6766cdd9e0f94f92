"""The real components the tests drive, and what is simulated: the GPU, its driver and its nodes (docs/testbed.md).

- ``PrivateDockerd``: a real dockerd of the test's own (own socket, data-root, exec-root, pidfile,
  config file), never the system one. Networking off (``bridge: none``, ``iptables: false``) so it
  leaves the machine's network alone. Any Engine of ``ENGINES``: Debian 12's 20.10, trixie's 26.1.5 or sid's 28.5.2,
  unpacked by tests/provision.sh (docs/testbed.md 10, 12), each with the programs it starts found first on its PATH.
- ``tiny_image``: a busybox image built locally (no registry is reachable here).
- ``write_nvidia_runtime``: NVIDIA's real nvidia-container-runtime (docs/testbed.md 12) in cdi mode, with a config.toml
  and a CDI spec of the test's own naming stand-in device nodes and a stand-in nvidia-smi.
- ``write_fake_nvidia_smi``: SIMULATED nvidia-smi, because these machines have no GPU and no NVIDIA driver.
- ``write_runtime_shim``: a SIMULATED nvidia-container-runtime, kept only where NVIDIA's cannot run: inside the
  booted instances of tests/system, whose hosts are legacy-mode hosts (toolkit ``auto`` without NVML), and legacy mode
  needs the driver (libnvidia-container loads libnvidia-ml.so.1). On ``create --bundle B`` it bind-mounts the fake
  nvidia-smi into ``B/config.json`` and execs the real runc.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from contract import json_output

BASE_CONFIG = {"bridge": "none", "iptables": False, "ip-masq": False}
# Engine 26 starts with no bridge only with these too (docs/testbed.md 10).
BASE_CONFIG_26 = {"bridge": "none", "iptables": False, "ip6tables": False, "userland-proxy": False}
ENGINE26 = Path(os.environ.get("GPUPREP_ENGINE26", "/var/cache/gpuprep-tests/engine26"))
ENGINE28 = Path(os.environ.get("GPUPREP_ENGINE28", "/var/cache/gpuprep-tests/engine28"))


@dataclass(frozen=True)
class Engine:
    """A Docker Engine the tests start: its dockerd, the programs linked first on its PATH (the containerd,
    shim, docker-init and runc it starts by name), the daemon.json keys it needs to start with no network."""

    name: str
    dockerd: str
    links: tuple[tuple[str, str], ...] = ()
    base_config: tuple[tuple[str, object], ...] = tuple(BASE_CONFIG.items())

    @property
    def major(self) -> int:
        return int(self.name.split(".")[0])

    def available(self) -> str:
        """"" when it can start here, else what is missing."""
        if not os.access(self.dockerd, os.X_OK):
            return f"needs {self.dockerd} (run `make provision` as root)"
        missing = [t for _, t in self.links if not os.path.exists(t)]
        return f"needs {', '.join(missing)} (run `make provision` as root)" if missing else ""


def _debian_engine(name: str, tree: Path) -> Engine:
    """An Engine unpacked from Debian's packages by tests/provision.sh: its own containerd, shim, docker-init and
    docker-proxy first on PATH, and Debian 12's runc."""
    usr = tree / "usr"
    links = tuple((prog, str(usr / where / prog)) for where, prog in (
        ("bin", "containerd"), ("bin", "containerd-shim-runc-v2"), ("bin", "ctr"), ("bin", "docker-init"),
        ("sbin", "docker-proxy")))
    # trixie's and sid's runc need glibc 2.38 and Debian 12 has 2.36 ("version `GLIBC_2.38' not found", seen here):
    # Engines 26 and 28 run Debian 12's runc 1.1.5, which their containerd (1.7.24, 2.1.9) drives as it would its own.
    runc = shutil.which("runc") or "/usr/sbin/runc"
    return Engine(name, str(usr / "sbin/dockerd"), (*links, ("runc", runc)), tuple(BASE_CONFIG_26.items()))


# The Engines a test may run on, by the id pytest shows: Debian 12's docker.io, trixie's (docs/testbed.md 10) and
# sid's (docs/testbed.md 12: CDI on by default, as from 28.2).
ENGINES = {"20.10": Engine("20.10.24", shutil.which("dockerd") or "/usr/sbin/dockerd"),
           "26": _debian_engine("26.1.5", ENGINE26), "28": _debian_engine("28.5.2", ENGINE28)}

def with_gpus_hook(engine: Engine, directory: Path) -> Engine:
    """``engine`` with a STAND-IN ``nvidia-container-runtime-hook`` first on its PATH, which exits 0. Engines before
    29.2 serve ``docker run --gpus`` only where that hook is on dockerd's PATH (moby ``daemon/nvidia_linux.go``: it
    sets NVIDIA_VISIBLE_DEVICES and adds the hook as a prestart hook); the toolkit's package ships the real one, which
    needs a driver. The GPUs then come from the nvidia runtime, as NVIDIA_VISIBLE_DEVICES asks."""
    hook = directory / "nvidia-container-runtime-hook"
    hook.parent.mkdir(parents=True, exist_ok=True)
    hook.write_text("#!/bin/sh\n# STAND-IN for the toolkit's prestart hook (no driver here)\nexit 0\n")
    hook.chmod(0o755)
    return Engine(engine.name, engine.dockerd, (*engine.links, ("nvidia-container-runtime-hook", str(hook))),
                  engine.base_config)


# What the fake nvidia-smi describes unless a test says otherwise; shaped like docs/testbed.md 8.
DEFAULT_GPUS = (
    {"index": 0, "name": "NVIDIA H100 80GB HBM3", "uuid": "GPU-0e7d3af2-be49-affe-ae6c-f6fcf358f2ea",
     "pci": "00000000:00:06.0"},
    {"index": 1, "name": "NVIDIA H100 80GB HBM3", "uuid": "GPU-5a1b2c3d-4e5f-6071-8293-a4b5c6d7e8f9",
     "pci": "00000000:00:07.0"},
)
# The stand-in driver is at the R580 security floor (NVIDIA bulletin 5861, gpuprep/knowledge/data/
# driver-security.json), so a stand-in host meant as healthy is; the accelerator machine's real 580.159.04
# (docs/testbed.md 7) is below it.
DRIVER_VERSION = "580.178.04"


def gpuprep_json(root: Path, url: str, *args: str, timeout: float = 180) -> tuple[int, dict, str]:
    """``gpuprep --root ROOT --json ARGS`` with ``DOCKER_HOST=url``, as a pipeline runs it: (exit code, the report,
    stderr); fails the test when stdout holds no JSON."""
    import pytest

    repo = Path(__file__).resolve().parent.parent
    env = {**os.environ, "DOCKER_HOST": url, "PYTHONPATH": str(repo)}
    proc = subprocess.run([sys.executable, "-m", "gpuprep", "--root", str(root), "--json", *args],
                          capture_output=True, text=True, timeout=timeout, env=env)
    try:
        return proc.returncode, json_output(proc.stdout), proc.stderr
    except json.JSONDecodeError:
        pytest.fail(f"gpuprep printed no JSON (exit {proc.returncode}): {proc.stdout!r} {proc.stderr}")


def wait_until(predicate, *, what: str, timeout: float = 30.0, interval: float = 0.1):
    """Poll ``predicate`` until it returns a truthy value; bounded, and says what it waited for."""
    deadline = time.monotonic() + timeout
    last_exc: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except Exception as exc:  # the thing is not up yet
            last_exc = exc
        time.sleep(interval)
    raise TimeoutError(f"gave up after {timeout:g}s waiting for {what}" + (f": {last_exc}" if last_exc else ""))


def run_on_tty(argv: list[str], env: dict[str, str], *, timeout: float = 120,
               answer: tuple[bytes, str | bytes] | None = None) -> tuple[int, str]:
    """Run ``argv`` with stdin, stdout and stderr on one pseudo-terminal, as an admin at a shell would.

    ``answer``: (the question, the reply) -- the reply is typed once the question shows (a str with Enter
    after it; bytes as they are, b"\\x03" being Ctrl-C). Returns the exit code and everything the terminal
    showed; fails the test when it runs past ``timeout``.
    """
    code, shown, _ = run_on_tty_piped(argv, env, timeout=timeout, answer=answer, pipe_stdout=False)
    return code, shown


def run_on_tty_piped(argv: list[str], env: dict[str, str], *, timeout: float = 120,
                     answer: tuple[bytes, str | bytes] | None = None,
                     pipe_stdout: bool = True) -> tuple[int, str, str]:
    """As ``run_on_tty``, with stdout a pipe when ``pipe_stdout`` (`gpuprep seal | tee seal.log` at a terminal):
    the terminal is the process's controlling terminal (its own session), so Ctrl-C typed there is the
    kernel's SIGINT to it, as at a shell. Returns (exit code, what the terminal showed, what stdout carried)."""
    import fcntl
    import pty
    import select
    import termios

    def controlling_tty() -> None:  # runs in the child after start_new_session's setsid()
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    master, slave = pty.openpty()
    proc = subprocess.Popen(argv, stdin=slave, stdout=subprocess.PIPE if pipe_stdout else slave, stderr=slave,
                            env=env, close_fds=True, start_new_session=True, preexec_fn=controlling_tty)
    os.close(slave)
    streams = [master] + ([proc.stdout.fileno()] if pipe_stdout else [])
    got: dict[int, bytes] = {fd: b"" for fd in streams}
    answered, deadline = False, time.monotonic() + timeout
    try:
        while streams:
            left = deadline - time.monotonic()
            if left <= 0:
                proc.kill()
                raise AssertionError(f"{argv} on a tty did not finish within {timeout:g}s: {got[master][-2000:]!r}")
            ready = select.select(streams, [], [], min(left, 0.2))[0]
            if not ready and proc.poll() is not None:  # exited, and a grandchild may hold the terminal
                break
            for fd in ready:
                try:
                    chunk = os.read(fd, 65536)
                except OSError:  # EIO: the child closed the terminal
                    chunk = b""
                if not chunk:
                    streams.remove(fd)
                    continue
                got[fd] += chunk
            if answer is not None and not answered and answer[0] in got[master]:
                reply = answer[1]
                os.write(master, reply if isinstance(reply, bytes) else reply.encode() + b"\n")
                answered = True
        code = proc.wait(timeout=10)
        return code, got[master].decode(errors="replace"), got.get(proc.stdout.fileno() if pipe_stdout else -1,
                                                                    b"").decode(errors="replace")
    finally:
        os.close(master)
        if proc.stdout is not None:
            proc.stdout.close()


class PrivateDockerd:
    """A real dockerd on its own socket and folders.

    ``config_path`` lets a test point dockerd at the daemon.json gpuprep edits (``ROOT/etc/docker/
    daemon.json`` with ``--root``), so reloads and restarts read what gpuprep wrote.
    """

    def __init__(self, config_path: Path | None = None, config: dict | None = None,
                 engine: Engine | None = None, args: tuple[str, ...] = (), path_dirs: tuple[str, ...] = ()) -> None:
        self.engine = engine or ENGINES["20.10"]
        self.args = tuple(args)  # more flags, as a unit's ExecStart gives them (--add-runtime NAME=PATH)
        # Folders searched before this machine's PATH, after the Engine's own programs: where a runtime given by a bare
        # name (nvidia-ctk's "nvidia-container-runtime") is found, as docker.service's PATH finds /usr/bin's.
        self.path_dirs = tuple(path_dirs)
        # Unix socket paths are limited to 108 bytes: pytest's tmp paths are too long for them.
        self.dir = Path(tempfile.mkdtemp(prefix="gpd-", dir="/tmp"))
        self.socket = self.dir / "docker.sock"
        self.pidfile = self.dir / "docker.pid"
        self.data_root = self.dir / "data"
        self.exec_root = self.dir / "exec"
        self.config_path = config_path or (self.dir / "daemon.json")
        if config is not None or not self.config_path.exists():
            self.config_path.parent.mkdir(parents=True, exist_ok=True)
            self.config_path.write_text(json.dumps({**dict(self.engine.base_config), **(config or {})}, indent=2)
                                        + "\n")
        self.proc: subprocess.Popen | None = None
        self.log = self.dir / "dockerd.log"

    @property
    def url(self) -> str:
        return f"unix://{self.socket}"

    @property
    def argv(self) -> list[str]:
        return [
            self.engine.dockerd,
            "--config-file", str(self.config_path),
            "--data-root", str(self.data_root),
            "--exec-root", str(self.exec_root),
            "--pidfile", str(self.pidfile),
            "-H", self.url,
            *self.args,
        ]

    @property
    def env(self) -> dict[str, str]:
        """dockerd's environment: its Engine's programs first on PATH (gpuprep restarts it with the same)."""
        if not self.engine.links and not self.path_dirs:
            return dict(os.environ)
        bin_dir = self.dir / "bin"
        if not bin_dir.is_dir():
            bin_dir.mkdir()
            for name, target in self.engine.links:
                os.symlink(target, bin_dir / name)
        search = (str(bin_dir), *self.path_dirs, os.environ.get("PATH", "/usr/bin:/bin"))
        return {**os.environ, "PATH": ":".join(search)}

    def start(self, timeout: float = 60) -> PrivateDockerd:
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(self.argv, stdout=log, stderr=subprocess.STDOUT, env=self.env,
                                         stdin=subprocess.DEVNULL, start_new_session=True)
        self.wait_ready(timeout)
        return self

    def client(self):
        import docker

        return docker.DockerClient(base_url=self.url, version="auto", timeout=60)

    def ping(self) -> bool:
        import docker

        c = docker.APIClient(base_url=self.url, version="1.41", timeout=2)
        try:
            return bool(c.ping())
        finally:
            c.close()

    def wait_ready(self, timeout: float = 60) -> None:
        def up():
            if self.proc is not None and self.proc.poll() is not None and self.current_pid() is None:
                raise RuntimeError(f"dockerd exited {self.proc.returncode}: {self.log_tail()}")
            return self.ping()

        wait_until(up, what=f"dockerd on {self.socket} to answer ping", timeout=timeout, interval=0.05)

    def current_pid(self) -> int | None:
        """The pid of the dockerd serving our socket now (gpuprep may have restarted it)."""
        try:
            pid = int(self.pidfile.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        return pid

    def log_tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return ""

    def stop(self, timeout: float = 30) -> None:
        pid = self.current_pid()
        if pid is not None:
            os.kill(pid, signal.SIGTERM)
            try:
                wait_until(lambda: self.current_pid() is None and not _alive(pid),
                           what=f"dockerd {pid} to exit", timeout=timeout)
            except TimeoutError:
                os.kill(pid, signal.SIGKILL)
        if self.proc is not None:
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()

    def kill(self) -> None:
        """For an Engine that hangs (a deadlock inside dockerd answers nothing, SIGTERM included): SIGKILL
        dockerd, its containerd and every shim it started, and the containers' processes under them."""
        import psutil

        ours = [p for p in psutil.process_iter(["cmdline"]) if str(self.dir) in " ".join(p.info["cmdline"] or [])]
        victims = {p.pid: p for p in ours}
        for p in ours:
            with contextlib.suppress(psutil.Error):
                victims.update({c.pid: c for c in p.children(recursive=True)})
        for p in victims.values():
            with contextlib.suppress(psutil.Error):
                p.kill()
        psutil.wait_procs(list(victims.values()), timeout=10)
        if self.proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=5)

    def cleanup(self) -> None:
        self.stop()
        # Unmount what dockerd left (overlay mounts under data-root), then remove the folder.
        mounts = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()
                  if line.split()[1].startswith(str(self.dir))]
        for m in sorted(mounts, key=len, reverse=True):
            subprocess.run(["umount", "-l", m], check=False, capture_output=True)
        shutil.rmtree(self.dir, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie child of ours counts as gone.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def busybox_path() -> str | None:
    for candidate in ("/bin/busybox", "/usr/bin/busybox"):
        if os.path.exists(candidate):
            out = subprocess.run(["file", "-L", candidate], capture_output=True, text=True).stdout \
                if shutil.which("file") else "statically linked"
            if "dynamically" not in out:
                return candidate
    return None


APPLETS = ("sh", "echo", "cat", "ls", "sleep", "true", "env", "grep", "wc", "sed")


def busybox_rootfs_tar(applets=APPLETS, extra_files: dict[str, str] | None = None) -> bytes:
    """An uncompressed tar of a busybox-only root file system, plus ``extra_files`` {path: text}: the
    content of ``tiny_image`` and the layer of ``TinyRegistry``."""
    bb = busybox_path()
    if bb is None:
        raise RuntimeError("busybox-static is not installed")
    with tempfile.TemporaryDirectory(prefix="tiny-") as d:
        root = Path(d) / "rootfs"
        (root / "bin").mkdir(parents=True)
        shutil.copy2(bb, root / "bin" / "busybox")
        for applet in applets:
            os.symlink("busybox", root / "bin" / applet)
        for path, content in (extra_files or {}).items():
            p = root / path.lstrip("/")
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_text(content)
        return subprocess.run(["tar", "--owner=0", "--group=0", "-C", str(root), "-c", "."],
                              capture_output=True, check=True).stdout


def tiny_image(client, tag: str = "tiny:latest", *, extra_files: dict[str, str] | None = None) -> str:
    """Import a busybox-only image (docs/testbed.md 1); returns its tag. No registry needed."""
    repo, _, version = tag.partition(":")
    client.api.import_image_from_data(busybox_rootfs_tar(extra_files=extra_files), repository=repo,
                                      tag=version or "latest")
    return tag


# -- the simulated GPU side ----------------------------------------------------------------
def write_fake_nvidia_smi(path: Path, gpus=DEFAULT_GPUS, driver_version: str = DRIVER_VERSION,
                          exit_code: int = 0, needs_nodes: tuple[str, ...] = ()) -> Path:
    """SIMULATED nvidia-smi (no GPU here): answers -L, --query-gpu CSV and a plain table.

    A busybox ``sh`` script, so it runs inside the tiny image as well as on the host. ``exit_code``
    9 imitates "driver not loaded" (docs/domain.md: nvidia-smi exit codes). ``needs_nodes``: character devices
    it needs, as the real one needs /dev/nvidiactl and /dev/nvidiaN; without one it fails as the real one does
    without the driver (exit 9), so a container that got no device nodes is seen.
    """
    fields = {
        "index": lambda g: str(g["index"]),
        "name": lambda g: g["name"],
        "uuid": lambda g: g["uuid"],
        "driver_version": lambda g: driver_version,
        "persistence_mode": lambda g: g.get("persistence_mode", "Enabled"),
        "ecc.errors.uncorrected.volatile.total": lambda g: str(g.get("ecc_uncorrected", 0)),
        "pci.bus_id": lambda g: g["pci"],
        "count": lambda g: str(len(gpus)),
    }
    lines_L = "\n".join(f"GPU {g['index']}: {g['name']} (UUID: {g['uuid']})" for g in gpus)
    # Precompute the CSV rows per field so the script only selects columns.
    script = ["#!/bin/sh", "# SIMULATED nvidia-smi for tests: no GPU or driver on this machine.",
              f"if [ {exit_code} -ne 0 ]; then echo 'NVIDIA-SMI has failed because it couldn'\"'\"'t communicate "
              "with the NVIDIA driver. Make sure that the latest NVIDIA driver is installed and running.'; "
              f"exit {exit_code}; fi",
              *(f"[ -c {n} ] || {{ echo 'NVIDIA-SMI has failed because it couldn'\"'\"'t communicate with the NVIDIA "
                f"driver ({n} is missing).'; exit 9; }}" for n in needs_nodes),
              'q=""; noheader=0; nounits=0',
              'for a in "$@"; do case "$a" in',
              "  --query-gpu=*) q=${a#--query-gpu=} ;;",
              "  --format=*) case $a in *noheader*) noheader=1 ;; esac ;;",
              "  -L) cat <<'EOF'", lines_L, "EOF", "     exit 0 ;;",
              "esac; done",
              'if [ -n "$q" ]; then',
              '  hdr=$(echo "$q" | sed "s/,/, /g" 2>/dev/null || echo "$q")',
              '  [ $noheader -eq 1 ] || echo "$hdr"']
    # One branch per GPU: build each row from the requested fields with a small case table.
    for g in gpus:
        script.append('  row=""; IFS=,; for f in $q; do case "$f" in')
        for key, fn in fields.items():
            script.append(f"    {key}) v='{fn(g)}' ;;")
        script.append("    *) v='[N/A]' ;;")
        script.append('  esac; if [ -z "$row" ]; then row="$v"; else row="$row, $v"; fi; done; unset IFS')
        script.append('  echo "$row"')
    script += ["  exit 0", "fi",
               f"echo '| NVIDIA-SMI {driver_version}    Driver Version: {driver_version}    CUDA Version: 13.0 |'",
               "cat <<'EOF'", lines_L, "EOF"]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(script) + "\n")
    path.chmod(0o755)
    return path


def write_runtime_shim(path: Path, smi_path: Path, *, runc: str | None = None,
                       mounts: dict[str, str] | None = None, writable: dict[str, str] | None = None) -> Path:
    """SIMULATED nvidia-container-runtime: edit the OCI bundle like the real one, then exec runc.

    The real runtime adds a prestart hook that mounts the driver and nvidia-smi into the container;
    this shim adds a read-only bind mount of the fake nvidia-smi at /usr/bin/nvidia-smi (and
    ``mounts`` {host: container}) when NVIDIA_VISIBLE_DEVICES is set in the container's env; ``writable``
    {host: container}: read-write bind mounts beside them (a test's state folder).
    """
    runc = runc or shutil.which("runc") or "/usr/sbin/runc"
    all_mounts = {str(smi_path): ["/usr/bin/nvidia-smi", "ro"],
                  **{src: [dst, "ro"] for src, dst in (mounts or {}).items()},
                  **{src: [dst, "rw"] for src, dst in (writable or {}).items()}}
    code = f'''#!{"/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable}
# SIMULATED nvidia-container-runtime (tests only; no GPU on this machine).
import json, os, sys
args = sys.argv[1:]
if "create" in args and "--bundle" in args:
    bundle = args[args.index("--bundle") + 1]
    cfg_path = os.path.join(bundle, "config.json")
    with open(cfg_path) as f:
        cfg = json.load(f)
    env = cfg.get("process", {{}}).get("env", [])
    if any(e.startswith("NVIDIA_VISIBLE_DEVICES=") and e.split("=", 1)[1] not in ("", "void", "none") for e in env):
        for src, (dst, mode) in {json.dumps(all_mounts)}.items():
            cfg.setdefault("mounts", []).append(
                {{"destination": dst, "type": "bind", "source": src, "options": ["rbind", mode]}})
        with open(cfg_path, "w") as f:
            json.dump(cfg, f)
os.execv({runc!r}, [{runc!r}] + args)
'''
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(code)
    path.chmod(0o755)
    return path


def make_char_node(path: Path, like: str = "/dev/null") -> Path:
    """A character device node with ``like``'s major/minor at ``path`` (mknod: root): what a SIMULATED CDI spec
    names for a GPU's device node. Opening it is opening /dev/null: harmless."""
    rdev = os.stat(like).st_rdev
    path.parent.mkdir(parents=True, exist_ok=True)
    os.mknod(path, 0o666 | 0o020000, rdev)  # S_IFCHR
    return path


def write_cdi_spec(path: Path, smi: Path, nodes: dict[str, Path], gpus=DEFAULT_GPUS,
                   hooks: tuple[dict, ...] = ()) -> Path:
    """SIMULATED CDI spec of kind nvidia.com/gpu, shaped like ``nvidia-ctk cdi generate``'s (devices by index, by
    UUID and ``all``; common edits with the control node and the driver's tools): here the device nodes are
    ``nodes`` {container path: host node} (stand-ins from ``make_char_node``) and the one tool bound is ``smi``
    (a fake nvidia-smi) at /usr/bin/nvidia-smi; ``hooks``: OCI hooks of the common edits, as the generator's
    (nvidia-cdi-hook create-symlinks, update-ldcache). No GPU or driver here; Docker's CDI injection is real."""
    def node(container: str) -> dict:
        return {"path": container, "hostPath": str(nodes[container])}

    per_gpu = {g["index"]: [node(f"/dev/nvidia{g['index']}")] for g in gpus}
    devices = [{"name": name, "containerEdits": {"deviceNodes": per_gpu[g["index"]]}}
               for g in gpus for name in (str(g["index"]), g["uuid"])]
    devices.append({"name": "all", "containerEdits": {"deviceNodes": [n for ns in per_gpu.values() for n in ns]}})
    spec = {"cdiVersion": "0.5.0", "kind": "nvidia.com/gpu", "devices": devices,
            "containerEdits": {"env": ["NVIDIA_VISIBLE_DEVICES=void"], "deviceNodes": [node("/dev/nvidiactl")],
                               "mounts": [{"hostPath": str(smi), "containerPath": "/usr/bin/nvidia-smi",
                                           "options": ["ro", "nosuid", "nodev", "rbind", "rprivate"]}],
                               **({"hooks": list(hooks)} if hooks else {})}}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(spec, indent=2) + "\n")  # JSON is YAML; the CDI library reads both
    return path


# -- NVIDIA's real container runtime, with the GPU side stand-ins (docs/testbed.md 12) ---------------------------
TOOLKIT = Path(os.environ.get("GPUPREP_TOOLKIT", "/var/cache/gpuprep-tests/toolkit"))
# The toolkit the tests run unless they name another: the newest release (2026-08), the one above the 1.19.1 floor.
TOOLKIT_VERSION = "1.20.0"
SMI_LINK = "/usr/local/bin/nvidia-smi"  # made in the container by the spec's nvidia-cdi-hook (write_nvidia_runtime)


def toolkit_bin(version: str = TOOLKIT_VERSION) -> Path:
    """The folder of NVIDIA's real nvidia-ctk, nvidia-container-runtime, nvidia-cdi-hook and
    nvidia-container-runtime-hook ``version`` (built from NVIDIA's source; tests/provision.sh unpacks them)."""
    return TOOLKIT / version / "bin"


def toolkit_missing(version: str = TOOLKIT_VERSION) -> str:
    """"" when NVIDIA's toolkit ``version`` is unpacked here, else what to do."""
    if os.access(toolkit_bin(version) / "nvidia-container-runtime", os.X_OK):
        return ""
    return f"needs NVIDIA's toolkit {version} in {TOOLKIT / version} (run `make provision` as root)"


@dataclass
class NvidiaRuntime:
    """NVIDIA's real nvidia-container-runtime in ``cdi`` mode, registered through ``path`` (a two-line wrapper that
    gives it a config.toml of the test's own); what it injects comes from a CDI spec naming stand-in device nodes."""

    path: Path  # what daemon.json's runtimes.nvidia.path names
    config: Path  # its config.toml
    spec: Path  # the CDI spec it reads (cdi mode, kind nvidia.com/gpu)
    nodes: dict[str, Path]  # container path -> the stand-in character device on this machine
    log: Path  # its debug log
    version: str

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


def write_nvidia_runtime(folder: Path, smi: Path, *, gpus=DEFAULT_GPUS, version: str = TOOLKIT_VERSION,
                         runc: str | None = None) -> NvidiaRuntime:
    """NVIDIA's REAL nvidia-container-runtime (toolkit ``version``), set up as on a host in ``cdi`` mode.

    In ``folder``: ``xdg/nvidia-container-runtime/config.toml`` (the runtime reads
    ``$XDG_CONFIG_HOME/nvidia-container-runtime/config.toml`` before ``/etc/...``: NVIDIA/nvidia-container-toolkit
    ``internal/config/config.go``) with ``mode = "cdi"``, its spec dir and its low-level runtime (Debian 12's runc);
    ``cdi/nvidia.json``, a CDI spec of kind nvidia.com/gpu (``write_cdi_spec``) whose device nodes are STAND-IN
    character devices (``make_char_node``: no GPU or driver here), whose one tool is ``smi`` (a STAND-IN
    nvidia-smi) and whose hook is the toolkit's real nvidia-cdi-hook linking it at ``SMI_LINK``; and
    ``nvidia-container-runtime``, the wrapper to register, which sets XDG_CONFIG_HOME and execs the real binary with
    the toolkit's own nvidia-ctk and nvidia-cdi-hook first on PATH. As on a host, a container gets
    the spec's edits only when NVIDIA_VISIBLE_DEVICES names devices (``all``, an index, a UUID); ``void``, ``none``,
    empty or unset gives it nothing. The wrapper may be copied elsewhere (it names everything by absolute path).
    """
    folder.mkdir(parents=True, exist_ok=True)
    binary = toolkit_bin(version) / "nvidia-container-runtime"
    nodes = {"/dev/nvidiactl": make_char_node(folder / "dev/nvidiactl")}
    nodes.update({f"/dev/nvidia{g['index']}": make_char_node(folder / f"dev/nvidia{g['index']}") for g in gpus})
    # As `nvidia-ctk cdi generate`'s spec links the driver's files, a createContainer hook of NVIDIA's nvidia-cdi-hook
    # links the stand-in nvidia-smi at SMI_LINK: the runtime must find and run the hook the spec names.
    hook = {"hookName": "createContainer", "path": str(toolkit_bin(version) / "nvidia-cdi-hook"),
            "args": ["nvidia-cdi-hook", "create-symlinks", "--link", f"/usr/bin/nvidia-smi::{SMI_LINK}"]}
    spec = write_cdi_spec(folder / "cdi/nvidia.json", smi, nodes, gpus, hooks=(hook,))
    log = folder / "nvidia-container-runtime.log"
    runc = runc or shutil.which("runc") or "/usr/sbin/runc"
    config = folder / "xdg/nvidia-container-runtime/config.toml"
    config.parent.mkdir(parents=True, exist_ok=True)
    # The keys of `nvidia-ctk config default` (1.18-1.20) this test sets; the rest keep the toolkit's defaults.
    config.write_text("\n".join((
        "# NVIDIA's real runtime in cdi mode, for a test (tests/testbed.py write_nvidia_runtime).",
        "[nvidia-container-runtime]",
        f"debug = {json.dumps(str(log))}",
        'log-level = "debug"',
        'mode = "cdi"',
        f"runtimes = [{json.dumps(runc)}]",
        "[nvidia-container-runtime.modes.cdi]",
        'default-kind = "nvidia.com/gpu"',
        f"spec-dirs = [{json.dumps(str(spec.parent))}]",
        "[nvidia-ctk]",
        f"path = {json.dumps(str(toolkit_bin(version) / 'nvidia-ctk'))}",
        "")))
    wrapper = folder / "nvidia-container-runtime"
    wrapper.write_text("#!/bin/sh\n"
                       f"# NVIDIA's real nvidia-container-runtime {version} with this test's config.toml (cdi mode).\n"
                       f"export XDG_CONFIG_HOME={shlex.quote(str(config.parent.parent))} "
                       f"PATH={shlex.quote(str(toolkit_bin(version)))}:\"$PATH\"\n"
                       f"exec {shlex.quote(str(binary))} \"$@\"\n")
    wrapper.chmod(0o755)
    return NvidiaRuntime(wrapper, config, spec, nodes, log, version)


@dataclass
class SimulatedGpuHost:
    """A private dockerd whose daemon.json lives in a --root tree, plus the simulated GPU side."""

    root: Path
    dockerd: PrivateDockerd
    smi: Path
    shim: Path


# -- a tiny local registry: SIMULATES the network (no registry is reachable from these machines) --
class _LocalServer:
    """A socketserver on 127.0.0.1 served by a daemon thread: ``_serve`` starts it, ``stop`` ends it."""

    _server = None
    port = 0

    def _serve(self, server, name: str) -> None:
        import threading

        server.daemon_threads = True
        self._server, self.port = server, server.server_address[1]
        threading.Thread(target=server.serve_forever, name=name, daemon=True).start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


class TinyRegistry(_LocalServer):
    """A Docker Registry HTTP API v2 of one image, on 127.0.0.1, serving only the pull path.

    SIMULATED: it stands in for the network and the registry (ECR Public, Docker Hub) these machines
    cannot reach, so the pull a real dockerd makes for gpu-check can be exercised. Docker treats
    registries on 127.0.0.0/8 as insecure, so ``127.0.0.1:PORT/NAME:TAG`` is pulled over plain HTTP.

    Served: ``GET /v2/`` (200 with ``Docker-Distribution-API-Version``), ``HEAD``/``GET
    /v2/NAME/manifests/REF`` (REF the tag or the manifest's digest) answering an image manifest
    schema 2 with its ``Docker-Content-Digest``, and ``HEAD``/``GET /v2/NAME/blobs/DIGEST`` for the
    image config and one gzipped layer (a busybox root file system); every digest is the sha256 of
    the bytes served, as dockerd verifies. ``fail_pulls=N`` answers the manifest requests of the
    first N pulls 503 (a registry having a bad moment); ``-1`` fails every pull (one that is down).
    A pull is counted at its ``GET /v2/``: dockerd 20.10 starts each pull with it, then asks the
    manifest with HEAD and, when that fails, again with GET. ``requests`` records (method, path,
    status) of everything asked; ``pulls`` counts the pulls begun.
    """

    MANIFEST_TYPE = "application/vnd.docker.distribution.manifest.v2+json"

    def __init__(self, name: str = "tiny", tag: str = "latest", *, fail_pulls: int = 0) -> None:
        import gzip
        import hashlib

        self.name, self.tag = name, tag
        self.fail_pulls = fail_pulls
        self.pulls = 0
        self.requests: list[tuple[str, str, int]] = []
        layer_tar = busybox_rootfs_tar()
        layer = gzip.compress(layer_tar, mtime=0)
        digest = lambda b: "sha256:" + hashlib.sha256(b).hexdigest()  # noqa: E731
        config = json.dumps({
            "architecture": "amd64", "os": "linux", "created": "2024-01-01T00:00:00Z",
            "config": {"Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
                       "Cmd": ["/bin/sh"]},
            "rootfs": {"type": "layers", "diff_ids": [digest(layer_tar)]},
            "history": [{"created": "2024-01-01T00:00:00Z", "created_by": "tests/testbed.py TinyRegistry"}],
        }).encode()
        self.blobs = {digest(config): config, digest(layer): layer}
        self.manifest = json.dumps({
            "schemaVersion": 2, "mediaType": self.MANIFEST_TYPE,
            "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "size": len(config),
                       "digest": digest(config)},
            "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "size": len(layer),
                        "digest": digest(layer)}],
        }).encode()
        self.manifest_digest = digest(self.manifest)


    @property
    def image(self) -> str:
        return f"127.0.0.1:{self.port}/{self.name}:{self.tag}"

    def manifest_requests(self) -> list[tuple[str, str, int]]:
        return [r for r in self.requests if "/manifests/" in r[1]]

    def _answer(self, method: str, path: str) -> tuple[int, dict[str, str], bytes]:
        if path in ("/v2/", "/v2"):
            if method == "GET":
                self.pulls += 1
            return 200, {"Content-Type": "application/json"}, b"{}"
        prefix = f"/v2/{self.name}/"
        if not path.startswith(prefix):
            return 404, {}, b'{"errors":[{"code":"NAME_UNKNOWN","message":"repository name not known"}]}'
        kind, _, ref = path[len(prefix):].partition("/")
        if kind == "manifests":
            if self.fail_pulls < 0 or self.pulls <= self.fail_pulls:
                return 503, {}, b'{"errors":[{"code":"UNAVAILABLE","message":"service unavailable"}]}'
            if ref not in (self.tag, self.manifest_digest):
                return 404, {}, b'{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}'
            return 200, {"Content-Type": self.MANIFEST_TYPE, "Docker-Content-Digest": self.manifest_digest}, \
                self.manifest
        if kind == "blobs" and ref in self.blobs:
            return 200, {"Content-Type": "application/octet-stream", "Docker-Content-Digest": ref}, self.blobs[ref]
        return 404, {}, b'{"errors":[{"code":"BLOB_UNKNOWN","message":"blob unknown"}]}'

    def start(self) -> TinyRegistry:
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        registry = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _serve(self, body_too: bool) -> None:
                status, headers, body = registry._answer(self.command, self.path.split("?", 1)[0])
                registry.requests.append((self.command, self.path, status))
                self.send_response(status)
                self.send_header("Docker-Distribution-API-Version", "registry/2.0")
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if body_too:
                    self.wfile.write(body)

            def do_GET(self) -> None:  # noqa: N802 (http.server's names)
                self._serve(True)

            def do_HEAD(self) -> None:  # noqa: N802
                self._serve(False)

            def log_message(self, *args) -> None:  # quiet: ``requests`` records what was asked
                pass

        self._serve(ThreadingHTTPServer(("127.0.0.1", 0), Handler), "tiny-registry")
        return self

    def __enter__(self) -> TinyRegistry:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


class UnreachableRegistries(_LocalServer):
    """An HTTP(S) proxy that reaches nothing: every ``CONNECT host:port`` it is asked is answered ``502 Bad Gateway``
    and recorded in ``asked``.

    SIMULATED, and deliberately: a dockerd started with ``HTTPS_PROXY``/``HTTP_PROXY`` naming it (Go's proxy
    environment, which dockerd's registry client honours) cannot reach any registry (ECR Public, Docker Hub), and
    the test counts each attempt. These machines reach no registry anyway; the proxy makes that certain, fast
    (a refusal, not a DNS or TCP timeout) and observable. Go never proxies loopback addresses, so a ``TinyRegistry``
    on 127.0.0.1 stays reachable beside it.
    """

    def __init__(self) -> None:
        self.asked: list[str] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def env(self) -> dict[str, str]:
        """What to add to dockerd's environment."""
        return {"HTTPS_PROXY": self.url, "HTTP_PROXY": self.url, "https_proxy": self.url, "http_proxy": self.url}

    def start(self) -> UnreachableRegistries:
        import socketserver

        outer = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                outer.asked.append(self.rfile.readline().decode(errors="replace").strip())
                self.wfile.write(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")

        self._serve(socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler), "unreachable-registries")
        return self


# SIMULATED ecs-init's unit on AL2/AL2023 (amazon-ecs-init packaging/amazon-linux-ami-integrated/ecs.service),
# with After=cloud-final.service dropped (no cloud-init here). post-stop (the real one cleans up
# the credentials proxy's iptables rules) is a no-op in the stand-in.
ECS_SERVICE = """[Unit]
Description=Amazon Elastic Container Service - container agent
Documentation=https://aws.amazon.com/documentation/ecs/
Requires=docker.service
After=docker.service

[Service]
Type=simple
Restart=on-failure
RestartPreventExitStatus=5
RestartSec=10s
EnvironmentFile=-/var/lib/ecs/ecs.config
EnvironmentFile=-/etc/ecs/ecs.config
ExecStartPre=/usr/libexec/amazon-ecs-init pre-start
ExecStart=/usr/libexec/amazon-ecs-init start
ExecStop=/usr/libexec/amazon-ecs-init stop
ExecStopPost=/usr/libexec/amazon-ecs-init post-stop

[Install]
WantedBy=multi-user.target
"""
