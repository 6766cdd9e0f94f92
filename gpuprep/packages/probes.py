"""The package probes for doctor's checks: the package manager (read-only) and what it says is installed, asked
once per run. Checks of every room ask them here, never through a checks module (tests/unit/test_layout.py).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from gpuprep import fixes
from gpuprep.packages.resolve import QUERY_NAMES, Package
from gpuprep.packages.rpmdb import dpkg_installed
from gpuprep.runner.checks import Probes, probe
from gpuprep.seal_record import read_seal

if TYPE_CHECKING:
    from gpuprep.packages.repo import Backend

DEB_NAMES = ("docker.io", "docker-ce", "nvidia-docker2", "nvidia-container-runtime", "nvidia-container-toolkit")


@probe
def installed_rpm(pr: Probes) -> list[Package]:
    return package_backend(pr).installed(QUERY_NAMES)


@probe
def installed_deb(pr: Probes) -> dict[str, str]:
    return dpkg_installed(pr.host, DEB_NAMES)


@probe
def package_backend(pr: Probes) -> Backend:
    from gpuprep.packages.repo import backend_for  # imported when asked: doctor's start stays fast

    return backend_for(pr.host, pr.platform, read_only=True)


def held(pr: Probes, names: list[str]) -> list[str]:
    """Which of ``names`` the target's version-lock list holds (RPM platforms; [] elsewhere): an update of them
    needs the lock lifted first."""
    if pr.platform.package_format != "rpm":
        return []
    from gpuprep.packages.repo import lock_name

    locked = {lock_name(e) for e in package_backend(pr).locks()}
    return [n for n in names if n in locked]


# -- what packages-installed and ecs-init's check share: the cause of a package gone, and the install -------------
def removed_since_seal(probes: Probes, names: tuple[str, ...]) -> str:
    """packages-drift's id where the seal recorded one of ``names`` and it is gone now: its fix (the sealed versions
    back, image/drift.py) is the fix then, where a plain install would pick today's versions and contradict it."""
    if probes.platform.package_format != "rpm":
        return ""
    doc = read_seal(probes.host)
    sealed = doc.get("packages") if doc is not None else None
    if not isinstance(sealed, dict):
        return ""
    now = {q.name for q in installed_rpm(probes)}
    return "packages-drift" if any(n in sealed and n not in now for n in names) else ""


def install_fixes(probes: Probes) -> list[fixes.Fix]:
    """``gpuprep install`` where it runs (RPM platforms), for the packages it installs; one value, so ecs-init's
    and packages-installed's findings list it once."""
    fix = fixes.gpuprep(probes.host, probes.platform, "install ecs-init, Docker and the NVIDIA runtime", "install")
    return [fix] if fix is not None else []
