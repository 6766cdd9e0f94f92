"""doctor's security floors of the GPU's own software: the driver (NVIDIA's bulletins per driver branch, the knowledge
table ``driver-security``) and DCGM (``dcgm-security``), beside the toolkit's (toolkit/checks.py).

The driver is judged twice: the loaded kernel module (/proc/driver/nvidia/version) and the userland
(libnvidia-ml.so.<version>), since an update that replaced one without a reboot leaves the other behind. The fix
respects the image's versionlock (the ECS GPU AMI locks ``nvidia*`` and ``kmod*``): the lock entries that hold the
driver are named, lifted for the update and put back, then the host reboots into the new module.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from gpuprep import fixes
from gpuprep.packages.evr import vercmp
from gpuprep.report import Status
from gpuprep.runner.checks import Check, NotApplicable, Probes, Verdict, probe

if TYPE_CHECKING:
    from gpuprep.host import Host
    from gpuprep.platform import Platform

DRIVER_TABLE = "driver-security"
DCGM_TABLE = "dcgm-security"


@dataclass(frozen=True)
class DriverFinding:
    version: str
    branch: str
    floor: str | None  # the highest fixed version of the branch any bulletin names; None: no bulletin names it
    bulletins: list[dict[str, Any]]  # the bulletins whose fix the version predates, oldest first

    @property
    def below(self) -> bool:
        return bool(self.bulletins)


def branch_of(version: str) -> str:
    return version.split(".", 1)[0]


def judge_driver(version: str) -> DriverFinding:
    """``580.159.03`` against every bulletin that names branch R580."""
    from gpuprep import knowledge

    branch = branch_of(version)
    rows = [r for r in knowledge.table(DRIVER_TABLE).rows if branch in r["fixed"]]
    below = [r for r in rows if vercmp(version, r["fixed"][branch]) < 0]
    fixes = sorted((r["fixed"][branch] for r in rows), key=_BY_VERSION)
    ordered = sorted(below, key=lambda r: _BY_VERSION(r["fixed"][branch]))
    return DriverFinding(version, branch, fixes[-1] if fixes else None,
                         [{"bulletin": r["bulletin"], "fixed_in": r["fixed"][branch], "cves": r["cves"],
                           "source": r["source"]} for r in ordered])


_BY_VERSION = functools.cmp_to_key(vercmp)  # versions in rpm's order


def _bulletin_text(found: list[dict[str, Any]]) -> str:
    """``NVIDIA bulletin 5861 (CVE-...), 5821``: the newest first."""
    parts = []
    for b in reversed(found):
        cves = f" ({', '.join(b['cves'])})" if b["cves"] else ""
        parts.append(f"{b['bulletin']}{cves}")
    return "NVIDIA bulletin " + ", ".join(parts) if len(parts) == 1 else "NVIDIA bulletins " + ", ".join(parts)


def driver_locks(host: Host, platform: Platform, versions: set[str]) -> list[str]:
    """The versionlock entries that hold the driver: those at one of its versions (kmod-nvidia-*, nvidia-driver-*,
    libnvidia-* of the driver; never the container toolkit's, which has versions of its own)."""
    from gpuprep.packages.repo import lock_entries

    path = platform.versionlock_list
    if not path:
        return []
    text = host.read_text(path) or ""
    return [e for e in lock_entries(text) if any(f"{v}-" in e or f":{v}" in e for v in versions)]


def driver_update_fixes(host: Host, platform: Platform, floor: str, versions: set[str]) -> tuple[list[fixes.Fix],
                                                                                                list[str]]:
    """The driver updated to ``floor`` or newer in the target, and the reboot that loads its module (a running
    kernel's act: under --root on the booted instance); (fixes, the lock entries that hold the driver). A lock is
    lifted for the update and the new driver locked again, through the image's own package manager (chroot: the
    lock list is the image's, packages/checks.py _lock_fix)."""
    from gpuprep.packages.repo import lock_name

    locks = driver_locks(host, platform, versions)
    reboot = fixes.reboot(host, "reboot to load the new kernel module")
    if platform.package_format == "dpkg":
        branch = branch_of(floor)
        return [fixes.in_image(host, f"update the driver to {floor} or newer (its branch's nvidia-driver-{branch}-"
                               "server packages)", ["apt-get", "install", "--only-upgrade", f"nvidia-*-{branch}*"]),
                reboot], locks
    pm = platform.package_manager or "dnf"
    if not locks:
        return [fixes.packages(host, platform, "update", ("nvidia-driver*", "kmod-nvidia*"),
                               f"update the driver packages to {floor} or newer"), reboot], locks
    names = sorted({lock_name(e) or e for e in locks})
    # yum's versionlock deletes an entry by the entry itself, dnf's by the package name.
    delete = list(locks) if pm == "yum" else names
    return [fixes.in_image(host, "lift the versionlock that holds the driver", [pm, "versionlock", "delete", *delete]),
            fixes.packages(host, platform, "update", tuple(names), f"update the driver to {floor} or newer"),
            fixes.in_image(host, "lock the new driver", [pm, "versionlock", "add", *names]),
            reboot], locks


def assess_driver(host: Host, platform: Platform, module: str | None, userland: str | None) -> Verdict | None:
    """The loaded module's and the userland's versions against their branch's floor; None without a driver."""
    seen = {"kernel module": module, "userland": userland}
    versions = {k: v for k, v in seen.items() if v}
    if not versions:
        return None
    findings = {k: judge_driver(v) for k, v in versions.items()}
    data: dict[str, Any] = {k.replace(" ", "_"): {"version": f.version, "branch": f.branch, "floor": f.floor,
                                                 "bulletins": f.bulletins} for k, f in findings.items()}
    below = {k: f for k, f in findings.items() if f.below}
    if below:
        worst = max(below.values(), key=lambda f: _BY_VERSION(f.bulletins[-1]["fixed_in"]))
        floor = worst.bulletins[-1]["fixed_in"]
        which = " and ".join(below) if len({f.version for f in below.values()}) == 1 and len(below) > 1 else None
        parts = [f"{k} {f.version}" for k, f in below.items()]
        what = f"driver {worst.version} ({which})" if which else "driver " + ", ".join(parts)
        found, locks = driver_update_fixes(host, platform, floor, {f.version for f in below.values()})
        data.update(floor=floor, cves=sorted({c for f in below.values() for b in f.bulletins for c in b["cves"]}),
                    locks=locks)
        return Verdict(Status.WARNING, f"{what} is below {floor}, the fix for branch R{worst.branch} in "
                       f"{_bulletin_text(worst.bulletins)}", data=data, fixes=found)
    known = [f for f in findings.values() if f.floor]
    if not known:
        f = next(iter(findings.values()))
        return Verdict(Status.OK, f"driver {f.version}: no bulletin in gpuprep's knowledge names branch R{f.branch}",
                       data=data)
    f = known[0]
    return Verdict(Status.OK, f"driver {' / '.join(sorted(set(versions.values())))} is at or above {f.floor}, "
                   f"the R{f.branch} floor of NVIDIA's bulletins", data=data)


def check_driver_security(probes: Probes) -> Verdict:
    from gpuprep.gpu.inventory import probe_module, probe_userland

    verdict = assess_driver(probes.host, probes.platform, probe_module(probes).version,
                            probe_userland(probes).version)
    if verdict is None:
        raise NotApplicable("no NVIDIA driver: neither a loaded kernel module nor libnvidia-ml")
    return verdict


@probe
def dcgm_packages(p: Probes) -> dict[str, str]:
    """Installed DCGM packages -> their version (rpm, or dpkg on Ubuntu)."""
    from gpuprep.packages import security
    from gpuprep.packages.rpmdb import dpkg_installed, installed

    names = security.packages(DCGM_TABLE)
    if p.platform.package_format == "dpkg":
        return dpkg_installed(p.host, names)
    if not (p.host.which("rpm") if p.host.live else p.host.tool("rpm")):
        return {}
    return {pkg.name: pkg.evr.version for pkg in installed(p.host, names)}


def check_dcgm_security(probes: Probes) -> Verdict:
    from gpuprep.packages import security

    found = dcgm_packages(probes)
    if not found:
        raise NotApplicable("DCGM (datacenter-gpu-manager) is not installed")
    bad = {n: security.advisories_for(v, DCGM_TABLE) for n, v in found.items()}
    bad = {n: a for n, a in bad.items() if a}
    data = {"installed": found, "vulnerable": {n: [a.as_dict() for a in adv] for n, adv in bad.items()}}
    if bad:
        from gpuprep.packages.probes import held

        name, adv = next(iter(bad.items()))
        locked = held(probes, sorted(bad))
        found_fixes = [
            fixes.unlock(probes.host, probes.platform, locked, "lift the versionlock that holds it")
            if locked else None,
            fixes.packages(probes.host, probes.platform, "update", tuple(sorted(bad)),
                           f"update DCGM to {adv[-1].fixed_in} or newer")]
        return Verdict(Status.WARNING, f"{name} {security.describe(found[name], DCGM_TABLE)}", data=data,
                       fixes=[f for f in found_fixes if f is not None])
    return Verdict(Status.OK, ", ".join(f"{n} {v}" for n, v in found.items()) + ": no DCGM bulletin applies", data=data)


CHECKS = [
    Check("driver-security", "packages", "the loaded driver module and its userland at or above their branch's "
          "security floor (NVIDIA's bulletins)", check_driver_security),
    Check("dcgm-security", "packages", "DCGM, where installed, at or above its security floor (NVIDIA's bulletins)",
          check_dcgm_security, timeout=10.0),
]
