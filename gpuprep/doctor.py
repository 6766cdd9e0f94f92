"""doctor: every check of every domain, in report order; the runner is ``runner/checks.py``.

Each domain exports its checks as ``CHECKS`` from its own modules (``gpu/checks.py``, ``ec2/checks.py``,
``engine/checks.py``, ...) and the platform's from ``platform_checks.py``; this module only puts them in order:
by group (``GROUPS``, the user's view), then in each group in the order the modules come below.
"""

from __future__ import annotations

from collections.abc import Sequence

from gpuprep.host import Host
from gpuprep.options import DoctorOptions
from gpuprep.platform import Platform
from gpuprep.report import DoctorReport
from gpuprep.runner import registry
from gpuprep.runner.checks import Check
from gpuprep.runner.checks import run_checks as run

GROUPS = ("platform", "gpu", "docker", "container", "ecs", "packages")

# Check ids that are gone, with why: never reused (docs/contract.md). None yet.
RETIRED: dict[str, str] = {}


def all_checks() -> list[Check]:
    from gpuprep import platform_checks
    from gpuprep.ec2 import host_checks as ec2_host
    from gpuprep.ecs import agent_gpu, gpu_sources
    from gpuprep.ecs import checks as ecs
    from gpuprep.engine import checks as docker
    from gpuprep.engine import container_checks as container
    from gpuprep.engine import cuda_container, efa_checks
    from gpuprep.gpu import board_checks, cuda_checks, fabric_checks, instance_checks
    from gpuprep.gpu import checks as gpu
    from gpuprep.gpu import security as gpu_security
    from gpuprep.image import drift
    from gpuprep.knowledge import checks as knowledge
    from gpuprep.packages import advisories
    from gpuprep.packages import checks as packages
    from gpuprep.toolkit import checks as toolkit
    from gpuprep.toolkit import route_checks

    modules = (platform_checks, ec2_host, efa_checks, gpu, instance_checks, board_checks, gpu_sources, fabric_checks,
               cuda_checks, docker, ecs, agent_gpu, packages, drift, toolkit, route_checks, container, cuda_container,
               gpu_security, advisories, knowledge)
    return registry.checks([c for m in modules for c in m.CHECKS], GROUPS, DoctorOptions, RETIRED)


def run_checks(host: Host, platform: Platform, options: DoctorOptions,
               checks: Sequence[Check] | None = None) -> DoctorReport:
    """Run ``checks`` (default: all of them; the boot set with ``--boot``) and gather the report."""
    return run(host, platform, options, all_checks() if checks is None else checks)
