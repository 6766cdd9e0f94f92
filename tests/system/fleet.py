"""A fleet of simulated GPU instances, and the wheelhouse gpuprep is installed from (integrations/).

Each ``FleetHost`` is a ``sim.Instance`` (an AL2023-like booted host; the GPU, NVIDIA's and Amazon's
packages and the ECS agent simulated, as sim.py says) with three things more:

- **An ssh server, python's venv and node_exporter**, from a layer built once on top of the cached base tree:
  Debian's openssh-server (Ansible's connection, as to an EC2 instance), python3-venv (AL2023's python3
  ships venv and ensurepip; Debian splits them out) and prometheus-node-exporter (1.5.0, the real exporter,
  listening on 127.0.0.1:9100 inside the host). The layer is an overlay upper directory cached beside the
  base tree and mounted above it, so the base tree every other system test uses stays as it is: nothing
  is rebuilt for them, and a change here rebuilds only the layer (about a minute).
- **A network namespace of its own**, reached over a veth pair: the host side gets 10.N.I.1/24, the
  instance 10.N.I.2/24 on its ``eth0`` (N from this process id, I the host's index), and
  ``systemd-nspawn --network-namespace-path`` boots it there. Ansible reaches it with plain ssh at that
  address, as it reaches an instance by its private IP.
- **Root's authorized_keys** with the test's own key, written before the first boot (EC2 puts the key pair's
  public key there).

The wheelhouse is what ``make dist`` (issue 16) will build; until it lands it is built here: a wheel of
this checkout (``pip wheel --no-deps``) plus its dependencies' wheels for the instances' python (3.11,
manylinux), fetched once from PyPI and cached.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import image
from sim import Instance, copy_checkout

log = logging.getLogger("gpuprep.tests")

REPO = image.REPO
LAYER_PACKAGES = ("openssh-server", "openssh-sftp-server", "python3-venv", "prometheus-node-exporter")
NODE_EXPORTER = "127.0.0.1:9100"
# Debian's node_exporter reads its textfile directory from its own default (Debian's build sets it).
TEXTFILE_DIR = "/var/lib/prometheus/node-exporter"
SSHD_CONFIG = """# gpuprep tests: root logs in with the test's key only, as on an EC2 instance with a key pair.
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UseDNS no
"""
# The layer's recipe: any change to it builds a new layer (the file's other code does not).
RECIPE = json.dumps({"packages": LAYER_PACKAGES, "sshd": SSHD_CONFIG, "node_exporter": NODE_EXPORTER, "v": 1})


def _sh(argv: Sequence[str], *, timeout: float = 60, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited {proc.returncode}: {proc.stderr.strip()[-2000:]}")
    return proc


# -- the layer -------------------------------------------------------------------------------------
def layer() -> Path:
    """The fleet layer for the current base tree, built once (a lock keeps two builders apart)."""
    base = image.base_tree()
    root = image.cache_root()
    key = hashlib.sha256(f"{base.name}\n{RECIPE}".encode()).hexdigest()[:16]
    final = root / f"fleet-layer-{key}"
    if (final / ".built").exists():
        return final
    with open(root / ".fleet-layer.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (final / ".built").exists():
            return final
        work = Path(tempfile.mkdtemp(prefix="building-fleet-", dir=root))
        try:
            started = time.monotonic()
            _build_layer(base, work)
            (work / "upper/.built").write_text(f"{time.monotonic() - started:.0f}s\n")
            shutil.rmtree(final, ignore_errors=True)
            os.rename(work / "upper", final)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        _prune(root, keep=final)
    return final


def _build_layer(base: Path, work: Path) -> None:
    upper, scratch, merged = work / "upper", work / "work", work / "merged"
    for d in (upper, scratch, merged):
        d.mkdir()
    _sh(["mount", "-t", "overlay", "overlay", "-o", f"lowerdir={base},upperdir={upper},workdir={scratch}",
         str(merged)])
    try:
        shutil.copy2("/etc/resolv.conf", merged / "etc/resolv.conf")
        policy = merged / "usr/sbin/policy-rc.d"
        policy.write_text("#!/bin/sh\n# no service starts while building the layer\nexit 101\n")
        policy.chmod(0o755)
        with image._mounted_api(merged):
            image._chroot(merged, "apt-get", "update", "-qq", timeout=300)
            image._chroot(merged, "apt-get", "install", "-y", "-qq", "--no-install-recommends", *LAYER_PACKAGES,
                          timeout=900)
            image._chroot(merged, "apt-get", "clean", timeout=120)
        shutil.rmtree(merged / "var/lib/apt/lists", ignore_errors=True)
        (merged / "var/lib/apt/lists/partial").mkdir(parents=True)
        policy.unlink()
        _configure_layer(merged)
    finally:
        _sh(["umount", str(merged)], check=False)


def _configure_layer(tree: Path) -> None:
    (tree / "etc/ssh/sshd_config.d").mkdir(parents=True, exist_ok=True)
    (tree / "etc/ssh/sshd_config.d/gpuprep-tests.conf").write_text(SSHD_CONFIG)
    (tree / "etc/default/prometheus-node-exporter").write_text(
        f'# gpuprep tests: loopback only, as a scrape through a local agent would have it\n'
        f'ARGS="--web.listen-address={NODE_EXPORTER}"\n')
    assert (tree / TEXTFILE_DIR.lstrip("/")).is_dir(), "prometheus-node-exporter made no textfile directory"


def _prune(root: Path, keep: Path) -> None:
    """Older layers go, unless a running test has one mounted (a lower layer of a booted host)."""
    mounts = Path("/proc/self/mountinfo").read_text()
    for old in root.glob("fleet-layer-*"):
        if old != keep and str(old) not in mounts:
            shutil.rmtree(old, ignore_errors=True)


# -- the network ------------------------------------------------------------------------------------
class Netns:
    """A network namespace with a veth pair to this machine: 10.N.I.1 here, 10.N.I.2 inside."""

    def __init__(self, index: int) -> None:
        tag = os.getpid() % 100000
        self.name = f"gpuprep-fleet-{tag}-{index}"
        self.path = f"/run/netns/{self.name}"
        self.host_if = f"gpf{tag}h{index}"  # at most 15 characters (IFNAMSIZ)
        net = f"10.{100 + tag % 100}.{index}"
        self.host_address, self.address = f"{net}.1", f"{net}.2"
        self.up = False

    def create(self) -> None:
        if self.up:
            return
        self.delete()  # what a killed earlier run of the same pid left
        _sh(["ip", "netns", "add", self.name])
        self.up = True
        _sh(["ip", "link", "add", self.host_if, "type", "veth", "peer", "name", "eth0", "netns", self.name])
        _sh(["ip", "addr", "add", f"{self.host_address}/24", "dev", self.host_if])
        _sh(["ip", "link", "set", self.host_if, "up"])
        _sh(["ip", "-n", self.name, "addr", "add", f"{self.address}/24", "dev", "eth0"])
        _sh(["ip", "-n", self.name, "link", "set", "eth0", "up"])
        _sh(["ip", "-n", self.name, "link", "set", "lo", "up"])

    def delete(self) -> None:
        _sh(["ip", "netns", "del", self.name], check=False)  # takes the veth pair with it
        _sh(["ip", "link", "del", self.host_if], check=False)
        self.up = False


# -- a host of the fleet ---------------------------------------------------------------------------
class FleetHost(Instance):
    """A simulated instance on the fleet layer, in its own network namespace, with an authorized key."""

    def __init__(self, base: Path, fleet_layer: Path, repos: dict[str, Path], index: int, *,
                 public_key: str = "", **kwargs) -> None:
        super().__init__(base, repos, name=f"gpuprep-fleet-{index}", **kwargs)
        self.lowers = [fleet_layer, base]
        self.netns = Netns(index)
        self.nspawn_flags = [f"--network-namespace-path={self.netns.path}"]
        self.address = self.netns.address
        self.public_key = public_key

    def prepare(self) -> None:
        super().prepare()
        if self.public_key:
            self.write("/root/.ssh/authorized_keys", self.public_key + "\n", mode=0o600)
            self.path("/root/.ssh").chmod(0o700)

    def boot(self, timeout: float = 90) -> float:
        self.netns.create()
        return super().boot(timeout)

    def close(self) -> None:
        try:
            super().close()
        finally:
            self.netns.delete()

    def wait_ssh(self, timeout: float = 30) -> None:
        """sshd answers on the instance's address (ssh.service starts with multi-user, not before)."""
        import socket

        from nspawn import wait

        def answers() -> bool:
            with contextlib.closing(socket.socket()) as s:
                s.settimeout(2)
                return s.connect_ex((self.address, 22)) == 0
        wait(f"sshd on {self.address}:22 in {self.name}", timeout, answers, interval=0.3)

    # -- what a pipeline does to an instance ------------------------------------------------------
    # /tmp inside is a tmpfs of the booted host's own (docs/testbed.md 5): files bound for it are staged
    # in the overlay under /var/tmp and copied in from inside, as an upload over ssh would land them.
    def upload(self, local: Path, inside: str) -> None:
        """Copy file or directory ``local`` to ``inside`` (a directory's contents into that directory)."""
        stage = f"/var/tmp/gpuprep-upload-{time.monotonic_ns()}"
        if local.is_dir():
            shutil.copytree(local, self.path(stage))
            self.run(["sh", "-c", 'mkdir -p "$1" && cp -a "$2"/. "$1"/ && rm -rf "$2"', "upload", inside, stage])
        else:
            self.path(stage).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(local, self.path(stage))
            self.run(["sh", "-c", 'mkdir -p "$(dirname "$1")" && mv "$2" "$1"', "upload", inside, stage])

    def read_inside(self, inside: str) -> bytes:
        """A file's bytes as the running instance sees it (its own /tmp included)."""
        proc = subprocess.run(["nsenter", "-t", str(self.leader), "-m", "cat", inside], capture_output=True,
                              timeout=30)
        if proc.returncode != 0:
            raise AssertionError(f"inside {self.name}: cannot read {inside}: {proc.stderr.decode()[-500:]}")
        return proc.stdout

    def run_script(self, text: str, env: dict[str, str] | None = None, *, shell: str = "/bin/sh",
                   timeout: float = 600) -> subprocess.CompletedProcess:
        """Write ``text`` to a file inside and run it as root with ``env`` added: what Packer's shell
        provisioner, SSM Agent and AWSTOE each do with a script (none of them adds `set -e`)."""
        path = f"/var/tmp/gpuprep-script-{time.monotonic_ns()}.sh"
        self.write(path, text, mode=0o700)
        try:
            return self.run(["env", *(f"{k}={v}" for k, v in (env or {}).items()), shell, path], check=False,
                            timeout=timeout)
        finally:
            self.path(path).unlink(missing_ok=True)

    def scrape(self, address: str = NODE_EXPORTER) -> str:
        """node_exporter's /metrics, fetched inside the instance (it listens on its loopback only)."""
        code = ("import sys, urllib.request; "
                f"sys.stdout.write(urllib.request.urlopen('http://{address}/metrics', timeout=10).read().decode())")
        return self.run(["python3", "-c", code], timeout=30).stdout


def ssh_key(directory: Path) -> tuple[Path, str]:
    """A key pair of the test's own: (private key path, public key line)."""
    key = directory / "id_ed25519"
    _sh(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "gpuprep-fleet-tests", "-f", str(key)])
    return key, key.with_suffix(".pub").read_text().strip()


# -- the wheelhouse -----------------------------------------------------------------------------------
def wheelhouse(dest: Path) -> Path:
    """gpuprep's wheel and its dependencies' wheels in ``dest``, installable offline with pip --no-index."""
    deps = _dependency_wheels()
    dest.mkdir(parents=True, exist_ok=True)
    for whl in deps.glob("*.whl"):
        shutil.copy2(whl, dest / whl.name)
    with tempfile.TemporaryDirectory(prefix="gpuprep-src-") as src:
        copy_checkout(Path(src))
        _sh([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(dest), src], timeout=300)
    if not list(dest.glob("gpuprep-*.whl")):
        raise RuntimeError(f"pip wheel made no gpuprep wheel in {dest}")
    return dest


def _dependency_wheels() -> Path:
    root = image.cache_root()
    key = hashlib.sha256(json.dumps(image.requirements()).encode()).hexdigest()[:16]
    final = root / f"wheels-{key}"
    if (final / ".built").exists():
        return final
    with open(root / ".wheels.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (final / ".built").exists():
            work = Path(tempfile.mkdtemp(prefix="building-wheels-", dir=root))
            try:
                image._download_wheels(work)
                (work / ".built").write_text("")
                shutil.rmtree(final, ignore_errors=True)
                os.rename(work, final)
            finally:
                shutil.rmtree(work, ignore_errors=True)
    return final


@contextlib.contextmanager
def booted(base: Path, repos: dict[str, Path], count: int, *, public_key: str = "", before_boot=None,
           first: int = 1):
    """``count`` fleet hosts, prepared and booted (in parallel: a boot mostly waits); all closed after.
    ``first`` is the first host's index (its name, network namespace and subnet): modules use their own."""
    from concurrent.futures import ThreadPoolExecutor

    fleet_layer = layer()
    hosts = [FleetHost(base, fleet_layer, repos, first + i, public_key=public_key) for i in range(count)]
    try:
        for host in hosts:
            host.prepare()
            if before_boot is not None:
                before_boot(host)
        with ThreadPoolExecutor(max_workers=count) as pool:
            list(pool.map(lambda h: h.first_boot(), hosts))
        yield hosts
    finally:
        for host in hosts:
            host.close()
