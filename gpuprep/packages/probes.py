"""The package probes for doctor's checks: the package manager (read-only) and what it says is installed, asked
once per run. Checks of every room ask them here, never through a checks module (tests/unit/test_layout.py).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from gpuprep.packages.resolve import QUERY_NAMES, Package
from gpuprep.packages.rpmdb import dpkg_installed
from gpuprep.runner.checks import Probes, probe

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
