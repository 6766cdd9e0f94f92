"""doctor: every check of every domain, in report order; the runner is ``runner/checks.py``.

Each domain exports its checks as ``CHECKS`` from its own ``checks.py`` (``gpu/checks.py``,
``ec2/checks.py``, ``engine/checks.py``, ``ecs/checks.py``, ``packages/checks.py``) and the platform's from
``platform_checks.py``; this module only puts them in order.
"""

from __future__ import annotations

from collections.abc import Sequence

from gpuprep.host import Host
from gpuprep.options import DoctorOptions
from gpuprep.platform import Platform
from gpuprep.report import DoctorReport
from gpuprep.runner.checks import Check
from gpuprep.runner.checks import run_checks as run

GROUPS = ("platform", "gpu", "docker", "container", "ecs", "packages")


def all_checks() -> list[Check]:
    from gpuprep import platform_checks
    from gpuprep.ec2 import checks as ec2
    from gpuprep.ec2 import host_checks as ec2_host
    from gpuprep.ecs import agent_gpu
    from gpuprep.ecs import checks as ecs
    from gpuprep.engine import checks as docker
    from gpuprep.engine import container_checks as container
    from gpuprep.engine import cuda_container
    from gpuprep.gpu import board_checks, cuda_checks, fabric_checks
    from gpuprep.gpu import checks as gpu
    from gpuprep.gpu import security as gpu_security
    from gpuprep.image import drift
    from gpuprep.knowledge import checks as knowledge
    from gpuprep.packages import advisories
    from gpuprep.packages import checks as packages
    from gpuprep.toolkit import checks as toolkit
    from gpuprep.toolkit import route_checks

    return [
        *platform_checks.CHECKS, *ec2_host.CHECKS, *gpu.CHECKS, *ec2.CHECKS, *board_checks.CHECKS,
        *fabric_checks.CHECKS, *cuda_checks.CHECKS,
        *drift.GPU_CHECKS, *toolkit.GPU_CHECKS, *docker.CHECKS,
        *toolkit.DOCKER_CHECKS, *route_checks.DOCKER_CHECKS, *container.CHECKS,
        *cuda_container.CHECKS,
        *ecs.CHECKS, *agent_gpu.CHECKS, *packages.ECS_CHECKS, *packages.CHECKS, *drift.PACKAGE_CHECKS,
        *toolkit.SECURITY_CHECKS, *gpu_security.CHECKS, *advisories.CHECKS,
        *knowledge.CHECKS,
    ]


def run_checks(host: Host, platform: Platform, options: DoctorOptions,
               checks: Sequence[Check] | None = None) -> DoctorReport:
    """Run ``checks`` (default: all of them; the boot set with ``--boot``) and gather the report."""
    return run(host, platform, options, all_checks() if checks is None else checks)
