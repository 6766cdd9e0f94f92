"""What the user asked for, per command. Built by the CLI, read by steps and checks."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from gpuprep.errors import BadInput

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
    image: str | None = None  # --image; None: the image the host was built with (engine/check_image.py)


# -- values judged on their own, before the lock is taken or anything is touched (cli) --------------------
def file_path(flag: str, value: str | None) -> None:
    """A file named on the command line: a path ending in / names a directory."""
    if value is not None and value.endswith("/"):
        raise BadInput(f"{flag} {value}: names a directory (it ends in /)", f"give {flag} the path of a file")


# A Docker version as the repositories spell it (20.10.25, 25.0.8-1.amzn2023.0.2, 19.03.13ce, 1:25.0.8).
DOCKER_VERSION = re.compile(r"(\d+:)?\d[0-9A-Za-z.+~_-]*")
# shadow-utils' useradd default NAME_REGEX (login names of at most 32 characters).
USER_NAME = re.compile(r"[a-z_][a-z0-9_-]{0,31}\$?")


def check_values(*, docker: str | None = None, user: str | None = None, images: Sequence[str] = (),
                  image_flag: str = "--image", repo_file: Path | None = None) -> None:
    """Values that can be judged on their own, before the lock is taken or anything is touched, whichever
    steps --only selects: BadInput (exit 2) naming the value."""
    if docker is not None and not DOCKER_VERSION.fullmatch(docker):
        raise BadInput(f"--docker {docker!r}: not a Docker version", "give a version the repositories offer, such "
                       "as 25.0.8 (`dnf --showduplicates list docker` lists them)")
    if user is not None and not USER_NAME.fullmatch(user):
        raise BadInput(f"--user {user!r}: not a user name", "give the login name of an existing user, e.g. ec2-user")
    for image in images:
        if not image or any(c.isspace() for c in image):
            raise BadInput(f"{image_flag} {image!r}: not an image reference",
                           f"give {image_flag} an image such as public.ecr.aws/docker/library/busybox:1.36")
    if repo_file is not None and not repo_file.is_file():
        why = "is a directory" if repo_file.is_dir() else "no such file"
        raise BadInput(f"--repo-file {repo_file}: {why}", "give the path of a readable .repo file on this machine")


def absolute(flag: str, value: str | None) -> None:
    """A path of the target system given on the command line must be absolute (it is read inside --root)."""
    if value is not None and not value.startswith("/"):
        raise BadInput(f"{flag} {value}: not an absolute path", f"give {flag} as a path of the target system, "
                       f"starting with / (inside --root it is read relative to the root)")
