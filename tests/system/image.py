"""The simulated instance's base tree: Debian bookworm made to look like Amazon Linux 2023.

docs/testbed.md 5: a debootstrap tree with systemd, a real Docker Engine (docker.io 20.10, as the
Engine Amazon Linux shipped for years), real dnf and rpm, and a python3 that is CPython 3.9 as AL2023's
is: Debian bullseye's python3.9 (bookworm has none), installed from its .debs (tests/distkit.py) at
/usr/bin/python3.9, with /usr/local/bin/python3 naming it. Debian's own python3.11 stays at
/usr/bin/python3 for the tools written in it (dnf, as AL2023's dnf is written in its python3).
gpuprep is not in the tree: each instance installs it the way the README's user-data does, from the
wheelhouse `make dist` builds, into a venv of that python3 (tests/system/sim.py).

What it imitates, and what it cannot:
- Amazon Linux 2023's /etc/os-release (gpuprep decides on ID and VERSION_ID only, docs/domain.md).
- docker.service is Debian's; /etc/docker/daemon.json keeps dockerd working inside a container:
  no bridge and no iptables (no network namespace of its own), vfs storage (no overlay-on-overlay).
- No GPU and no NVIDIA driver: the fixture RPMs install a simulated runtime and a fake nvidia-smi.

The tree is cached under ``cache_root()`` keyed by a hash of this file and the python3.9 packages:
any change to the recipe builds a new one. Building takes a few minutes; reuse takes none.
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
import tempfile
import time
from pathlib import Path

import distkit

log = logging.getLogger("gpuprep.tests")

REPO = Path(__file__).resolve().parents[2]
SUITE = "bookworm"
MIRROR = "http://deb.debian.org/debian"
# Included by debootstrap: what boots (systemd as PID 1, dbus for systemctl), python for gpuprep.
BOOTSTRAP_INCLUDE = ("systemd", "systemd-sysv", "dbus", "python3")
# Installed with apt inside: the real components gpuprep drives on an instance. dnf-plugins-core
# brings `dnf versionlock` (dnf-command(versionlock) on AL2023); util-linux for nsenter's peers.
APT_PACKAGES = ("docker.io", "iptables", "dnf", "rpm", "dnf-plugins-core", "ca-certificates", "procps", "iproute2")
DAEMON_JSON = {"bridge": "none", "iptables": False, "storage-driver": "vfs"}
# Amazon Linux 2023's /etc/os-release (as on al2023-ami-2023.4), trimmed to what tools read.
AL2023_OS_RELEASE = """NAME="Amazon Linux"
VERSION="2023"
ID="amzn"
ID_LIKE="fedora"
VERSION_ID="2023"
PLATFORM_ID="platform:al2023"
PRETTY_NAME="Amazon Linux 2023.4.20240611"
ANSI_COLOR="0;33"
CPE_NAME="cpe:2.3:o:amazon:amazon_linux:2023"
HOME_URL="https://aws.amazon.com/linux/amazon-linux-2023/"
SUPPORT_END="2028-03-15"
"""
# Amazon Linux 2's, for scenario 5 (yum 3 there; in this tree yum is dnf, the one thing we lack).
AL2_OS_RELEASE = """NAME="Amazon Linux"
VERSION="2"
ID="amzn"
ID_LIKE="centos rhel fedora"
VERSION_ID="2"
PRETTY_NAME="Amazon Linux 2"
ANSI_COLOR="0;33"
CPE_NAME="cpe:2.3:o:amazon:amazon_linux:2"
HOME_URL="https://amazonlinux.com/"
"""


def cache_root() -> Path:
    """Where built trees live: outlives a checkout (CI clones afresh), git-ignored either way."""
    return distkit.cache_root()


def recipe_key() -> str:
    h = hashlib.sha256()
    h.update(Path(__file__).read_bytes())
    h.update(json.dumps([distkit.BULLSEYE, distkit.BULLSEYE_PYTHON, distkit.BULLSEYE_PYTHON_UNPACKED]).encode())
    return h.hexdigest()[:16]


def _run(argv: list[str], *, timeout: float, env: dict | None = None) -> None:
    started = time.monotonic()
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})}, stdin=subprocess.DEVNULL)
    log.info("build: %s (%.1fs)", " ".join(argv[:6]), time.monotonic() - started)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")


def _chroot(tree: Path, *argv: str, timeout: float = 600) -> None:
    env = {"DEBIAN_FRONTEND": "noninteractive", "LC_ALL": "C.UTF-8",
           "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
    _run(["chroot", str(tree), *argv], timeout=timeout, env=env)


def _seed_debs(tree: Path) -> None:
    """Copy the host's cached .debs in, so debootstrap and apt reuse what this machine already fetched.

    Only a speed-up: apt checks every file against its own index and fetches what does not match.
    """
    src = Path("/var/cache/apt/archives")
    dst = tree / "var/cache/apt/archives"
    dst.mkdir(parents=True, exist_ok=True)
    for deb in src.glob("*.deb"):
        with contextlib.suppress(OSError):
            shutil.copy2(deb, dst / deb.name)


@contextlib.contextmanager
def _mounted_api(tree: Path):
    """/proc, /sys and /dev inside the chroot for apt's maintainer scripts; always unmounted."""
    mounts = []
    try:
        for fs, where, opts in (("proc", "proc", []), ("sysfs", "sys", []), ("devtmpfs", "dev", [])):
            target = tree / where
            target.mkdir(exist_ok=True)
            subprocess.run(["mount", "-t", fs, *opts, fs, str(target)], check=True)
            mounts.append(target)
        yield
    finally:
        for target in reversed(mounts):
            subprocess.run(["umount", "-l", str(target)], check=False)


def build(tree: Path) -> None:
    """Build the base tree at ``tree`` (which must not exist)."""
    tree.mkdir(parents=True)
    _seed_debs(tree)
    _run(["debootstrap", "--variant=minbase", f"--include={','.join(BOOTSTRAP_INCLUDE)}", SUITE, str(tree), MIRROR],
         timeout=900)
    shutil.copy2("/etc/resolv.conf", tree / "etc/resolv.conf")
    (tree / "usr/sbin/policy-rc.d").write_text("#!/bin/sh\n# no service starts while building the tree\nexit 101\n")
    (tree / "usr/sbin/policy-rc.d").chmod(0o755)
    with _mounted_api(tree):
        _chroot(tree, "apt-get", "update", "-qq", timeout=300)
        _chroot(tree, "apt-get", "install", "-y", "-qq", "--no-install-recommends", *APT_PACKAGES, timeout=900)
        # AL2023's python3 is CPython 3.9: Debian bullseye's, its dependencies resolved by bookworm's apt, and
        # the parts Debian splits off unpacked (tests/distkit.py says why).
        debs = tree / "var/cache/gpuprep-debs"
        debs.mkdir(parents=True)
        for deb in distkit.bullseye_python_debs():
            shutil.copy2(deb, debs / deb.name)
        inside = [f"/var/cache/gpuprep-debs/{d.name}" for d in sorted(debs.iterdir())]
        _chroot(tree, "apt-get", "install", "-y", "-qq", "--no-install-recommends",
                *[d for d in inside if not distkit.unpacked_only(Path(d))], timeout=600)
        for deb in (d for d in inside if distkit.unpacked_only(Path(d))):
            _chroot(tree, "dpkg-deb", "-x", deb, "/", timeout=60)
        _chroot(tree, "apt-get", "clean", timeout=120)
    shutil.rmtree(debs)
    (tree / "usr/sbin/policy-rc.d").unlink()
    _configure(tree)


def _configure(tree: Path) -> None:
    etc = tree / "etc"
    (etc / "docker").mkdir(exist_ok=True)
    (etc / "docker/daemon.json").write_text(json.dumps(DAEMON_JSON, indent=2) + "\n")
    # /etc/os-release is a link to ../usr/lib/os-release on Debian: replace the link with AL2023's file.
    (etc / "os-release").unlink()
    (etc / "os-release").write_text(AL2023_OS_RELEASE)
    (tree / "usr/lib/os-release").write_text(AL2023_OS_RELEASE)
    # Debian's dnf enables its `local` plugin, which breaks every install (docs/testbed.md 4).
    local = etc / "dnf/plugins/local.conf"
    if local.exists():
        local.write_text(local.read_text().replace("enabled = true", "enabled = false")
                         .replace("enabled=1", "enabled=0").replace("enabled = 1", "enabled = 0"))
    (etc / "yum.repos.d").mkdir(exist_ok=True)
    # Debian's rpm keeps its database in ~/.rpmdb; Amazon Linux's (and dnf's) is /var/lib/rpm.
    (etc / "rpm").mkdir(exist_ok=True)
    (etc / "rpm/macros.dbpath").write_text("%_dbpath /var/lib/rpm\n")
    (tree / "var/lib/rpm").mkdir(parents=True, exist_ok=True)
    # Amazon Linux 2's yum is yum 3; here yum is dnf (scenario 5 says so).
    yum = tree / "usr/bin/yum"
    if not yum.exists():
        yum.symlink_to("dnf")
    # Units a container does not need, or that cannot work in one, and slow the boot.
    for unit in ("systemd-networkd-wait-online.service", "apt-daily.timer", "apt-daily-upgrade.timer",
                 "e2scrub_all.timer", "fstrim.timer", "getty@tty1.service", "console-getty.service"):
        (etc / "systemd/system" / unit).unlink(missing_ok=True)
        link = etc / "systemd/system" / unit
        link.symlink_to("/dev/null")
    # `python3` on root's PATH is 3.9, as on AL2023 (/usr/local/bin comes first in it); Debian's
    # /usr/bin/python3 (3.11) stays what dnf's `#!/usr/bin/python3` runs.
    python3 = tree / "usr/local/bin/python3"
    python3.parent.mkdir(parents=True, exist_ok=True)
    python3.symlink_to("/usr/bin/python3.9")
    (etc / "hostname").write_text("ip-10-0-0-10\n")
    (etc / "machine-id").write_text("")


def base_tree() -> Path:
    """The cached base tree for the current recipe, built once (a lock keeps two builders apart)."""
    root = cache_root()
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"tree-{recipe_key()}"
    if (final / ".built").exists():
        return final
    with open(root / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (final / ".built").exists():
            return final
        work = Path(tempfile.mkdtemp(prefix="building-", dir=root))
        try:
            started = time.monotonic()
            build(work / "tree")
            (work / "tree" / ".built").write_text(f"{time.monotonic() - started:.0f}s\n")
            shutil.rmtree(final, ignore_errors=True)
            os.rename(work / "tree", final)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        _prune(root, keep=final)
    return final


def _prune(root: Path, keep: Path) -> None:
    """Older recipes' trees go: each is several hundred MB."""
    for old in root.glob("tree-*"):
        if old != keep:
            shutil.rmtree(old, ignore_errors=True)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    t0 = time.monotonic()
    print(base_tree(), f"{time.monotonic() - t0:.0f}s")
