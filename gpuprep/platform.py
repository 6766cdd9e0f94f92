"""Which system this is, as a small profile the steps and checks reuse.

Decided on os-release ``ID`` and ``VERSION_ID`` only (docs/domain.md: "Amazon Linux release 2023" starts
with "Amazon Linux release 2", so never match on the pretty name). Read through ``distro`` with the
host's root, so ``--root`` and fixture trees work the same as the live system.
"""

from __future__ import annotations

import io
import logging
import os
from dataclasses import asdict, dataclass, field
from typing import Any

from gpuprep.errors import GpuprepError
from gpuprep.host import Host
from gpuprep.rootfs import LinkEscapes

log = logging.getLogger("gpuprep")

OS_RELEASE = ("/etc/os-release", "/usr/lib/os-release")

RHEL_LIKE = ("rhel", "centos", "rocky", "almalinux")
# The fix for an os-release that is itself bad input (Platform.broken).
OS_RELEASE_HINT = ("os-release(5) needs ID= and VERSION_ID= lines: restore the image's /etc/os-release (on Amazon "
                   "Linux it comes from the system-release package), then run again")


@dataclass(frozen=True)
class Platform:
    id: str  # os-release ID ("amzn", "rhel", "ubuntu", ...), "" when unknown
    version_id: str  # os-release VERSION_ID as written ("2", "2023", "2018.03", "8.9", "22.04")
    name: str  # what we call it in messages ("Amazon Linux 2023", "Rocky Linux 9", ...)
    family: str  # "amzn" | "rhel" | "ubuntu" | "unknown"
    major: str = ""  # "2", "2023", "2018.03", "8", "22.04"
    supported: bool = False  # doctor supports it
    rpm: bool = False  # install and seal support it (an RPM platform we know)
    package_format: str = ""  # "rpm" | "dpkg" | ""
    package_manager: str = ""  # "yum" | "dnf" | "apt" | ""
    init: str = "systemd"  # "systemd" | "upstart"
    docker_service: str = "docker"
    ecs_service: str = "ecs"
    daemon_json: str = "/etc/docker/daemon.json"
    ecs_config: str = "/etc/ecs/ecs.config"
    # The AMI-owned file, read too; /etc/ecs/ecs.config wins (docs/domain.md).
    ecs_config_ami: str = "/var/lib/ecs/ecs.config"
    # Amazon Linux's docker.service registers every executable here with --add-runtime.
    runtimes_dir: str = "/etc/docker-runtimes.d"
    versionlock_list: str = ""  # the package manager's lock list, host path
    package_locks: tuple[str, ...] = field(default_factory=tuple)  # pid files of a running manager
    reason: str = ""  # why it is unsupported, when it is
    broken: bool = False  # the os-release itself is bad input (no ID=, an ID without VERSION_ID=): exit 2, not 3

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["package_locks"] = list(self.package_locks)
        return d


YUM_LOCKS = ("/var/run/yum.pid",)
# yum 3 writes its pid to INSTALLROOT/var/run/yum.pid (yum/__init__.py doLock). dnf 4 has no such file: it
# writes its pid to one file per lock (dnf/lock.py), removed on exit: rpmdb_lock.pid under persistdir for the
# transaction, metadata_lock.pid and download_lock.pid under cachedir (all under the installroot).
DNF_LOCKS = ("/var/lib/dnf/rpmdb_lock.pid", "/var/cache/dnf/metadata_lock.pid", "/var/cache/dnf/download_lock.pid")
# yum 3 (Amazon Linux 1 and 2, RHEL 7) with yum-plugin-versionlock; dnf 4 (AL2023, RHEL 8+) with its plugin.
_YUM = dict(package_manager="yum", versionlock_list="/etc/yum/pluginconf.d/versionlock.list", package_locks=YUM_LOCKS)
_DNF = dict(package_manager="dnf", versionlock_list="/etc/dnf/plugins/versionlock.list", package_locks=DNF_LOCKS)


def _amzn(version_id: str) -> dict[str, Any] | None:
    if version_id.startswith(("2017.", "2018.")):
        return dict(name=f"Amazon Linux AMI {version_id}", major="2018.03", init="upstart", **_YUM)
    if version_id == "2":
        return dict(name="Amazon Linux 2", major="2", **_YUM)
    if version_id == "2023":
        return dict(name="Amazon Linux 2023", major="2023", **_DNF)
    return None


def _rhel(id_: str, version_id: str) -> dict[str, Any] | None:
    major = version_id.split(".")[0]
    if major not in ("7", "8", "9"):
        return None
    names = {"rhel": "RHEL", "centos": "CentOS", "rocky": "Rocky Linux", "almalinux": "AlmaLinux"}
    return dict(name=f"{names[id_]} {major}", major=major, **(_YUM if major == "7" else _DNF))


UBUNTU_VERSIONS = ("20.04", "22.04", "24.04")


def detect(host: Host) -> Platform:
    """The platform of ``host``; an unknown one comes back with ``family="unknown"``, never raises."""
    import distro  # imported here: only commands that need the platform pay for it

    # The os-release file of the tree, each link on the way resolved inside the root (an image's
    # /etc/os-release is often an absolute link to /usr/lib/os-release, which on this machine would be
    # the build machine's own). os-release(5): /etc/os-release first, else /usr/lib/os-release.
    try:
        source = next((p for p in OS_RELEASE if host.path(p).is_file()), None)
        if source is None:
            missing = " and ".join(str(host.path(p, follow=False)) for p in OS_RELEASE)
            return Platform("", "", "unknown", "unknown", reason=f"no os-release: neither {missing} is a file")
        where = host.path(source)
        # A FIFO or device there is refused before distro opens it; an os-release is a few hundred bytes.
        data = host.read_bytes(source, limit=64 << 10)
        if data is None:
            return Platform("", "", "unknown", "unknown", reason=f"no os-release: {where} went away while read")
        try:
            data.decode("utf-8")
        except UnicodeDecodeError:
            # os-release(5) asks for UTF-8, but a vendor's VARIANT or PRETTY_NAME is sometimes edited in a
            # Latin-1 terminal. ID and VERSION_ID are ASCII either way: read it as Latin-1 (every byte decodes).
            log.warning("%s is not UTF-8; read as Latin-1", where)
            props = distro.LinuxDistribution._parse_os_release_content(io.StringIO(data.decode("latin-1")))
            id_ = props.get("id", "").lower().replace(" ", "_")  # as distro's id() has it
            version_id = props.get("version_id", "")
            pretty = props.get("pretty_name") or props.get("name", "")
        else:
            info = distro.LinuxDistribution(
                root_dir=str(host.root) if not host.live else None,
                os_release_file=str(where),
                # No /etc/*-release scan: os-release decides (and the scan would not resolve links in the root).
                distro_release_file=os.devnull,
                include_lsb=False,
                include_uname=False,
                include_oslevel=False,
            )
            id_ = info.id()
            # VERSION_ID only: distro's version() falls back to digits in PRETTY_NAME ("2023.6.20241212"), which
            # named a platform that does not exist.
            version_id = info.os_release_attr("version_id")
            pretty = info.name(pretty=True)
    except LinkEscapes:
        raise  # exit 2 naming the link: the image's os-release points outside it
    except GpuprepError as exc:
        return Platform("", "", "unknown", "unknown", reason=f"cannot read os-release: {exc.message}")
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        return Platform("", "", "unknown", "unknown", reason=f"cannot read {source or 'os-release'}: {exc}")

    if not id_:
        return Platform("", "", "unknown", "unknown", reason=f"{where}: no ID= line", broken=True)
    if not version_id and (id_ in ("amzn", "ubuntu") or id_ in RHEL_LIKE):
        return Platform(id_, "", "unknown", "unknown", reason=f"{where}: ID={id_} but no VERSION_ID= line",
                        broken=True)
    if id_ == "amzn":
        profile = _amzn(version_id)
        if profile:
            return Platform(id_, version_id, family="amzn", supported=True, rpm=True,
                            package_format="rpm", **profile)
    elif id_ in RHEL_LIKE:
        profile = _rhel(id_, version_id)
        if profile:
            return Platform(id_, version_id, family="rhel", supported=True, rpm=True,
                            package_format="rpm", **profile)
    elif id_ == "ubuntu" and version_id in UBUNTU_VERSIONS:
        return Platform(
            id_, version_id, name=f"Ubuntu {version_id}", family="ubuntu", major=version_id,
            supported=True, package_format="dpkg", package_manager="apt",
            versionlock_list="", package_locks=("/var/lib/dpkg/lock-frontend",),
        )
    name = pretty or f"{id_} {version_id}".strip()
    said = f"ID={id_}" + (f" VERSION_ID={version_id}" if version_id else "") + (f" ({pretty})" if pretty else "")
    return Platform(id_, version_id, name=name, family="unknown",
                    reason=f"{where}: {said} is not a platform gpuprep supports")
