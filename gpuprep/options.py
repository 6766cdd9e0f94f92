"""What the user asked for, per command. Built by the CLI, read by steps and checks."""

from __future__ import annotations

from dataclasses import dataclass, field

# The image gpu-check and doctor's container check run nvidia-smi in. The NVIDIA runtime mounts
# nvidia-smi and the driver libraries from the host, so any small glibc image does; Amazon's own
# image on ECR Public avoids Docker Hub's anonymous pull limits on EC2.
DEFAULT_IMAGE = "public.ecr.aws/amazonlinux/amazonlinux:2023"

RUNTIME_STACKS = ("auto", "legacy", "toolkit")


@dataclass
class InstallOptions:
    dry_run: bool = False
    only: list[str] = field(default_factory=list)
    skip: list[str] = field(default_factory=list)
    runtime: str = "auto"  # auto | legacy | toolkit
    docker_version: str | None = None  # --docker VERSION forces a Docker version
    repo_file: str | None = None  # --repo-file PATH instead of NVIDIA's repository
    versionlock: bool = True
    default_runtime: bool = True  # --no-default-runtime leaves default-runtime alone
    user: str | None = None  # --user NAME joins group docker
    image: str = DEFAULT_IMAGE
    gate: bool = True  # --no-gate: the boot check does not hold ECS back
    ecs_config: str | None = None  # default: the platform's /etc/ecs/ecs.config
    runtime_path: str | None = None  # default: the runtime binary of the installed stack
    allow_vulnerable: bool = False  # --allow-vulnerable: a toolkit below the security floor may be selected
    docker_cdi: bool = False  # --docker-cdi: turn on Docker's own CDI (Engine 25 to 28.1 need it in daemon.json)
    prom_dir: str | None = None  # --prom-dir DIR: step doctor-timer writes DIR/gpuprep.prom every 5 minutes


@dataclass
class SealOptions:
    dry_run: bool = False
    yes: bool = False
    keep_images: list[str] = field(default_factory=list)
    deep: bool = False
    only: list[str] = field(default_factory=list)
    skip: list[str] = field(default_factory=list)
    keep_cdi: bool = False  # --keep-cdi: leave CDI specs in /etc/cdi that name this machine's GPUs


@dataclass
class DoctorOptions:
    no_container: bool = False
    boot: bool = False
    prom: str | None = None
    image: str = DEFAULT_IMAGE
