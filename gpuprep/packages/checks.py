"""packages checks: which Docker and NVIDIA runtime packages are installed, and are they locked?

Plus one in the ecs group: does the installed Docker satisfy ecs-init's Requires,
decided with the same RPM semantics the resolver uses. Every answer comes from one ``rpm -q`` (or
``dpkg-query`` on Ubuntu) and the lock list file, memoised in ``Probes``: no repository metadata.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from gpuprep import fixes
from gpuprep.packages.probes import install_fixes, installed_deb, installed_rpm, package_backend, removed_since_seal
from gpuprep.packages.resolve import DOCKER_NAMES, ECS_INIT, QUERY_NAMES, Package
from gpuprep.report import Status
from gpuprep.runner.checks import Check, NotApplicable, Probes, Verdict

if TYPE_CHECKING:
    from gpuprep.packages.repo import Backend

SHOWN = ("docker", "docker-ce", "nvidia-docker2", "nvidia-container-runtime", "nvidia-container-toolkit", ECS_INIT)


def check_installed(probes: Probes) -> Verdict:
    p = probes.platform
    if p.package_format == "dpkg":
        deb = installed_deb(probes)
        summary = ", ".join(f"{n} {v}" for n, v in deb.items()) or "none of docker / the NVIDIA runtime installed"
        status = Status.OK if deb else Status.WARNING
        # Ubuntu's own docker.io; the toolkit from NVIDIA's apt repository. gpuprep install exits 3 here (its
        # preflight is RPM-only), so the runtime is registered by NVIDIA's own tool, as NVIDIA's install guide does.
        found = [] if deb else [
            fixes.packages(probes.host, p, "install", ("docker.io", "nvidia-container-toolkit"),
                           "install Docker and NVIDIA's container toolkit (after adding NVIDIA's apt repository: "
                           "docs.nvidia.com/datacenter/cloud-native/container-toolkit)"),
            fixes.in_image(probes.host, "register the nvidia runtime in Docker's daemon.json",
                           ["nvidia-ctk", "runtime", "configure", "--runtime=docker"])]
        return Verdict(status, summary, data={"installed": deb}, fixes=found)
    if p.package_format != "rpm":
        raise NotApplicable(f"no package database gpuprep reads on {p.name}")
    pkgs = {q.name: q for q in installed_rpm(probes)}
    data = {"installed": {n: pkgs[n].nevr for n in QUERY_NAMES if n in pkgs}}
    docker = next((pkgs[n] for n in DOCKER_NAMES if n in pkgs), None)
    runtime = pkgs.get("nvidia-container-toolkit") or pkgs.get("nvidia-container-runtime")
    shown = ", ".join(pkgs[n].nevr for n in SHOWN if n in pkgs)
    if docker is None or runtime is None:
        missing = [w for w, have in (("docker", docker), ("an NVIDIA runtime package", runtime)) if have is None]
        summary = f"not installed: {', '.join(missing)}" + (f" (have {shown})" if shown else "")
        cause = removed_since_seal(probes, QUERY_NAMES)
        if cause:  # a sealed image lost them: the sealed versions back, not today's (packages-drift's fix)
            return Verdict(Status.WARNING, summary, f"removed since the seal: fix {cause} first (its fix clears "
                           "this)", data, cause=cause)
        return Verdict(Status.WARNING, summary, data=data, fixes=install_fixes(probes))
    return Verdict(Status.OK, shown, data=data)


def _lock_fixes(probes: Probes, b: Backend, unlocked: list[Package], plugin: bool) -> list[fixes.Fix]:
    """What enforces the locks. On the running system the plugin installed where it is missing, then its own command
    adding the missing entries (both plugins take NAME-[E:]V-R and lock exactly that version, not the name). Under
    --root gpuprep's packages step, which installs the plugin into the image and writes the image's lock list
    itself: dnf reads its plugin configuration (and so its lock list) from the machine it runs on even with
    --installroot, so no dnf command of the builder's locks the image; its dry run first says whether it would also
    move a package to the selection."""
    host = probes.host
    if not host.live:
        steps = [fixes.gpuprep(host, probes.platform, "see what locking would change (the plugin, the lock list, a "
                               "package the selection moves)", "install", "--only", "packages", "--dry-run"),
                 fixes.gpuprep(host, probes.platform, "lock them", "install", "--only", "packages")]
        return [f for f in steps if f is not None]
    found: list[fixes.Fix] = []
    if not plugin:
        found.append(fixes.Fix(f"install the versionlock plugin ({b.plugin_package})", fixes.as_user(
            host, [b.manager, *b.root_args(), "-y", "install", b.plugin_spec])))
    if unlocked:
        found.append(fixes.Fix("lock them at their installed versions", fixes.as_user(
            host, [b.manager, "versionlock", "add", *(q.nevr for q in unlocked)])))
    return found


def check_locked(probes: Probes) -> Verdict:
    from gpuprep.packages.repo import lock_entry

    if probes.platform.package_format != "rpm":
        raise NotApplicable("version locks are checked on RPM platforms")
    b = package_backend(probes)
    pkgs = [q for q in installed_rpm(probes) if q.name in QUERY_NAMES]
    if not pkgs:
        raise NotApplicable("none of the packages gpuprep pins is installed")
    unlocked = b.unlocked(pkgs)
    plugin = b.plugin_installed()
    data = {"lock_list": b.lock_list, "unlocked": [q.nevr for q in unlocked],
            "locked": [q.nevr for q in pkgs if q not in unlocked], "plugin": plugin}
    if unlocked or not plugin:
        what = []
        if unlocked:
            what.append(f"not version-locked: {', '.join(q.nevr for q in unlocked)}")
        if not plugin:
            what.append(f"the versionlock plugin ({b.plugin_spec}) is not installed, so nothing enforces "
                        f"{b.lock_list}")
        return Verdict(Status.WARNING, "; ".join(what) + " (a routine update can break the Docker/runtime pins)",
                       data=data, fixes=_lock_fixes(probes, b, unlocked, plugin))
    return Verdict(Status.OK, f"{len(pkgs)} packages locked in {b.lock_list}",
                   data={**data, "entries": [lock_entry(q, b.target_manager) for q in pkgs]})


def check_ecs_docker(probes: Probes) -> Verdict:
    """The installed Docker satisfies the installed ecs-init's Requires (rpm semantics: ranges,
    ``=`` without release matching any release, epochs, Provides)."""
    if probes.platform.package_format != "rpm":
        raise NotApplicable("ecs-init's Requires are read from the RPM database")
    pkgs = {q.name: q for q in installed_rpm(probes)}
    ecs = pkgs.get(ECS_INIT)
    if ecs is None:
        raise NotApplicable("ecs-init is not installed")
    reqs = [d for d in ecs.requires if d.name in DOCKER_NAMES]
    providers = [q for q in pkgs.values() if any(n in DOCKER_NAMES for n, _ in q.provided())]
    data = {"ecs_init": ecs.nevr, "requires": [str(d) for d in reqs], "docker": [q.nevr for q in providers]}
    unmet = [d for d in reqs if not any(n == d.name and d.matches(evr) for q in providers for n, evr in q.provided())]
    if not unmet:
        docker = providers[0].nevr if providers else "no Docker needed"
        return Verdict(Status.OK, f"{ecs.nevr} accepts {docker}", data=data)
    have = ", ".join(q.nevr for q in providers) or "no Docker installed"
    # ecs-docker-requires runs on RPM platforms only (above), where gpuprep install runs: neither is None.
    found = [fixes.gpuprep(probes.host, probes.platform, "see the Docker that agrees", "install", "--dry-run"),
             fixes.gpuprep(probes.host, probes.platform, "then install it", "install")]
    return Verdict(Status.CRITICAL, f"{ecs.nevr} requires {', '.join(map(str, unmet))}; installed: {have}",
                   data=data, fixes=[f for f in found if f is not None])


CHECKS: list[Check] = [
    Check("ecs-docker-requires", "ecs", "the installed Docker satisfies ecs-init's Requires", check_ecs_docker),
    Check("packages-installed", "packages", "installed versions of docker, nvidia-docker2, "
          "nvidia-container-runtime, nvidia-container-toolkit", check_installed),
    Check("packages-locked", "packages", "those packages are version-locked (a routine update cannot break the pins)",
          check_locked),
]
