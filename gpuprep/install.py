"""install: the steps that turn a GPU instance into an ECS / AWS Batch GPU container host."""

from __future__ import annotations

from gpuprep.options import InstallOptions
from gpuprep.runner import registry
from gpuprep.runner.steps import AnyStep

# Step ids that are gone, with why: never reused (docs/contract.md). None yet.
RETIRED: dict[str, str] = {}


def install_steps() -> list[AnyStep]:
    """In docs/contract.md's order; ids never change meaning."""
    from gpuprep.bootcheck import BootCheckStep
    from gpuprep.doctor_timer import DoctorTimerStep
    from gpuprep.ecs.steps import DockerGroupStep, EcsConfigStep
    from gpuprep.engine.memlock import DockerMemlockStep
    from gpuprep.engine.steps import DockerReloadStep, DockerRuntimeStep, DockerServiceStep, GpuCheckStep
    from gpuprep.gpu.fabric_steps import FabricManagerStep
    from gpuprep.packages.steps import PackagesStep, RepositoriesStep
    from gpuprep.preflight import PreflightStep
    from gpuprep.toolkit.steps import CdiSpecStep, DevCharLinksStep

    return registry.steps([
        PreflightStep(),
        RepositoriesStep(),
        PackagesStep(),
        DockerServiceStep(),
        DockerRuntimeStep(),
        DockerMemlockStep(),  # where EFA is present (issue 28)
        DockerReloadStep(),
        DevCharLinksStep(),
        CdiSpecStep(),
        FabricManagerStep(),  # before gpu-check: its CUDA proof needs the fabric (issue 25)
        EcsConfigStep(),
        DockerGroupStep(),
        GpuCheckStep(),
        BootCheckStep(),
        DoctorTimerStep(),  # off unless --prom-dir
    ], InstallOptions, RETIRED)
