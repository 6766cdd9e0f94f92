"""Drift from the sealed image: what seal.json recorded (``image/stamp.py``) against what this host runs now.

A boot-time update once replaced the NVIDIA userland under a loaded older kernel module (``NVRM: API mismatch``,
aws/amazon-ecs-ami 256): the image was sealed with one set of versions and booted with another. gpu-driver-drift
(in the boot gate) names the driver's half: critical when the userland no longer matches the loaded module,
a warning when both moved together. packages-drift names the runtime stack's packages (ecs-init, Docker, the
NVIDIA runtime) and the version locks that changed since the seal. A seal.json written before these fields existed
is read all the same: what it lacks is "not recorded".
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from gpuprep.gpu import inventory
from gpuprep.gpu.query import NVML_CAUSES
from gpuprep.image.stamp import seal_stamp
from gpuprep.packages.evr import EVR
from gpuprep.report import Status
from gpuprep.runner.checks import Check, NotApplicable, Probes, Verdict
from gpuprep.seal_record import SEAL_JSON

if TYPE_CHECKING:
    from gpuprep.packages.repo import Backend

LOCK_DRIVER = "sudo dnf versionlock add 'nvidia*' 'kmod*' 'libnvidia*'"  # as the ECS AMIs lock it (docs/domain.md)


def _seal(probes: Probes) -> dict[str, Any]:
    doc = seal_stamp(probes)
    if doc is None:
        raise NotApplicable(f"not a sealed image (no readable {SEAL_JSON}): nothing to compare with")
    return doc


# -- the driver ----------------------------------------------------------------------------------------
def _sealed_driver(doc: dict[str, Any]) -> tuple[str | None, str | None, str]:
    """(userland, kernel module, note) as sealed; an older stamp has one ``driver_version`` for both."""
    driver = doc.get("driver")
    if isinstance(driver, dict) and (driver.get("userland") or driver.get("kernel_module")):
        return _text(driver.get("userland")), _text(driver.get("kernel_module")), ""
    old = _text(doc.get("driver_version"))
    if old:
        return old, old, (f" ({SEAL_JSON} of gpuprep {doc.get('gpuprep', '?')} records one driver version, "
                          "not the userland and the module apart)")
    raise NotApplicable(f"{SEAL_JSON} has the driver not recorded (sealed by gpuprep {doc.get('gpuprep', '?')}, "
                        "or on a machine without the NVIDIA driver): nothing to compare with")


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def check_driver_drift(probes: Probes) -> Verdict:
    doc = _seal(probes)
    sealed_user, sealed_module, note = _sealed_driver(doc)
    module = inventory.probe_module(probes)
    if not module.procfs:
        raise NotApplicable(f"no /proc in {probes.host.root}: the loaded module is unknown")
    if not module.loaded:
        raise NotApplicable("the kernel module is not loaded (see gpu-kernel-module)")
    user = inventory.probe_userland(probes).version
    now_module = module.version
    data: dict[str, Any] = {"sealed": {"userland": sealed_user, "kernel_module": sealed_module,
                                       "sealed_at": doc.get("sealed_at")},
            "now": {"userland": user, "kernel_module": now_module}}
    changed = [f"{what} {was} -> {now}" for what, was, now in
               (("userland", sealed_user, user), ("kernel module", sealed_module, now_module))
               if was and now and was != now]
    data["changed"] = changed
    sealed = f"sealed {doc.get('sealed_at', '?')} with userland {sealed_user}, module {sealed_module}{note}"
    if user and now_module and user != now_module:
        moved = "; ".join(changed) or "no change recorded since the seal"
        return Verdict(
            Status.CRITICAL,
            f"NVRM API mismatch: driver userland {user} under the loaded kernel module {now_module} ({moved}; "
            f"{sealed}): an update replaced the driver after the image was made (aws/amazon-ecs-ami 256)",
            NVML_CAUSES[18].hint + f"; or put the sealed driver {sealed_user} back; rebuild the image so the "
            "driver is locked (`gpuprep seal` records the new one)", data)
    if changed:
        return Verdict(Status.WARNING, f"driver changed since the seal: {'; '.join(changed)} (userland and module "
                       f"agree; {sealed})",
                       f"if nobody meant to update it: `{LOCK_DRIVER}` (yum on Amazon Linux 2) and rebuild the image "
                       "with `gpuprep seal`; if it was meant, `gpuprep seal` on the build machine records it", data)
    return Verdict(Status.OK, f"driver as sealed: userland {user or '?'}, kernel module {now_module or '?'}{note}",
                   data=data)


# -- the runtime stack's packages and the locks -----------------------------------------------------------
def _installed(probes: Probes) -> dict[str, str]:
    from gpuprep.packages.probes import installed_rpm

    return {q.name: q.nevr for q in installed_rpm(probes)}


def _evr(nevr: str, name: str) -> EVR | None:
    try:
        return EVR.parse(nevr[len(name) + 1:])
    except ValueError:
        return None


def package_changes(sealed: dict[str, str], now: dict[str, str]) -> dict[str, list[str]]:
    """{"downgrade": [sealed NEVR, ...], "upgrade": [...], "install": [...], "added": [now NEVR, ...]}: what takes
    the packages back to the seal (downgrade: newer now; upgrade: older now; install: gone since)."""
    out: dict[str, list[str]] = {"downgrade": [], "upgrade": [], "install": [], "added": []}
    for name, was in sorted(sealed.items()):
        if not isinstance(was, str):
            continue
        if name not in now:
            out["install"].append(was)
        elif now[name] != was:
            a, b = _evr(now[name], name), _evr(was, name)
            out["downgrade" if a is None or b is None or a > b else "upgrade"].append(was)
    out["added"] = [now[n] for n in sorted(now) if n not in sealed]
    return out


def check_packages_drift(probes: Probes) -> Verdict:
    from gpuprep.packages.probes import package_backend

    if probes.platform.package_format != "rpm":
        raise NotApplicable("the runtime stack is compared through the RPM database")
    doc = _seal(probes)
    sealed_pkgs = doc.get("packages")
    if not isinstance(sealed_pkgs, dict):
        raise NotApplicable(f"{SEAL_JSON} has the packages not recorded")
    now = _installed(probes)
    changes = package_changes(sealed_pkgs, now)
    sealed_locks = doc.get("versionlock")
    b = package_backend(probes)
    lock_data: dict[str, Any] = {"recorded": isinstance(sealed_locks, dict)}
    gone_locks: list[str] = []
    new_locks: list[str] = []
    if isinstance(sealed_locks, dict) and isinstance(sealed_locks.get("entries"), list):
        then, current = set(sealed_locks["entries"]), set(b.locks())
        gone_locks, new_locks = sorted(then - current), sorted(current - then)
        lock_data |= {"file": sealed_locks.get("file"), "removed": gone_locks, "added": new_locks}
    data = {"sealed_at": doc.get("sealed_at"), "packages": changes, "now": now, "versionlock": lock_data}
    said = []
    for verb, shown in (("downgrade", "newer than sealed"), ("upgrade", "older than sealed"),
                        ("install", "removed since the seal")):
        if changes[verb]:
            said.append(f"{shown}: {', '.join(_now_for(n, now) for n in changes[verb])}")
    if changes["added"]:
        said.append(f"installed since the seal: {', '.join(changes['added'])}")
    if gone_locks:
        said.append(f"locks gone from {lock_data['file']}: {', '.join(gone_locks)}")
    if new_locks:
        said.append(f"locks added: {', '.join(new_locks)}")
    locks_note = "" if lock_data["recorded"] else "; version locks not recorded in the seal"
    if not said:
        return Verdict(Status.OK, f"the runtime stack is as sealed {doc.get('sealed_at', '?')}: "
                       f"{', '.join(sorted(now.values())) or 'none of its packages installed'}{locks_note}", data=data)
    return Verdict(Status.WARNING, f"changed since the seal ({doc.get('sealed_at', '?')}): " + "; ".join(said)
                   + locks_note, _restore(probes, b, changes, gone_locks, new_locks), data)


def _now_for(sealed_nevr: str, now: dict[str, str]) -> str:
    name = next((n for n in now if sealed_nevr.startswith(n + "-")), None)
    return f"{now[name]} (sealed {sealed_nevr})" if name else sealed_nevr


def _restore(probes: Probes, b: Backend, changes: dict[str, list[str]], gone_locks: list[str],
             new_locks: list[str]) -> str:
    """The commands that take the host back to the seal: locks first (a lock on the new version would refuse the
    downgrade), then the packages, then the sealed locks again. Inside --root the lock list is edited as a file:
    dnf reads its plugin configuration from the machine it runs on, even with --installroot."""
    host = probes.host
    manager = [b.manager] if host.live else [b.manager, f"--installroot={host.root}"]
    lock_list = str(host.path(b.lock_list))
    steps = []
    if new_locks:
        if host.live:
            steps.append(" ".join([b.manager, "versionlock", "delete", *(f"'{x}'" for x in new_locks)]))
        else:
            keep = " ".join(f"-e '{x}'" for x in new_locks)
            steps.append(f"grep -vxF {keep} {lock_list} > {lock_list}.new; mv {lock_list}.new {lock_list}")
    for verb in ("downgrade", "upgrade", "install"):
        if changes[verb]:
            steps.append(" ".join([*manager, "-y", verb, *changes[verb]]))
    if gone_locks:
        if host.live:
            steps.append(" ".join([b.manager, "versionlock", "add", *(f"'{x}'" for x in gone_locks)]))
        else:
            steps.append(f"printf '%s\\n' {' '.join(repr(x) for x in gone_locks)} >> {lock_list}")
    if not steps:
        return ("if these were meant: `gpuprep seal` on the build machine records them; otherwise remove what was "
                f"added with `{b.manager} remove`")
    prefix = "sudo " if host.live else ""
    return "back to the sealed image: `" + " && ".join(prefix + s for s in steps) + "`; if the change was meant, " \
        "rebuild the image (`gpuprep seal` records it)"


CHECKS = [
    Check("gpu-driver-drift", "gpu", "the driver's userland and kernel module are the ones sealed into the image, "
          "and still agree", check_driver_drift, timeout=5.0, boot=True),
    Check("packages-drift", "packages", "ecs-init, Docker, the NVIDIA runtime and the version locks are as sealed",
          check_packages_drift, timeout=30.0),
]
