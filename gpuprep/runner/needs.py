"""What a step or a check needs of the place it runs in, declared as data and applied by the runners.

A step (``Step.needs``) or a check (``Check.needs``) lists its needs; before calling it, the runner asks each in
order and reports the step or check ``skipped`` with the first unmet one's reason. This is cloud-init's module
``meta`` (``cloudinit/config/cc_*.py``: ``distros``, ``activate_by_schema_keys``) applied by its runner
(``cloudinit/config/modules.py``), so no plan repeats "is this --root, is there an Engine, is this systemd" and
no mechanism names a step id or a check group to decide it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, Union

from gpuprep.host import Host
from gpuprep.options import DoctorOptions, InstallOptions, SealOptions
from gpuprep.platform import Platform

Options = Union[InstallOptions, SealOptions, DoctorOptions]  # Union: gpuprep runs on Python 3.9


class Need(Protocol):
    """A need: ``unmet`` says why this run cannot meet it, or None."""

    def unmet(self, host: Host, platform: Platform, options: Options) -> str | None: ...


@dataclass(frozen=True)
class Live:
    """The running system (its processes, NVML, its services): unmet when acting on ``--root``."""

    reason: str = "needs the running system (acting on --root)"

    def unmet(self, host: Host, platform: Platform, options: Options) -> str | None:
        return None if host.live else self.reason


@dataclass(frozen=True)
class Engine:
    """A Docker Engine: the running system's, or ``DOCKER_HOST`` with ``--root``."""

    reason: str = "no Docker Engine with --root (set DOCKER_HOST to use one)"

    def unmet(self, host: Host, platform: Platform, options: Options) -> str | None:
        return None if host.docker_url is not None else self.reason


@dataclass(frozen=True)
class Systemd:
    """systemd as the platform's init (Amazon Linux 1 has upstart and SysV); ``what`` says why it is needed."""

    what: str  # "the boot check is a systemd unit"

    def unmet(self, host: Host, platform: Platform, options: Options) -> str | None:
        return None if platform.init == "systemd" else f"{platform.name} uses {platform.init}: {self.what}"


@dataclass(frozen=True)
class Option:
    """An option that turns the step on (cloud-init's ``activate_by_schema_keys``): unmet while it is unset."""

    name: str  # the options field: "deep", "prom_dir"
    reason: str  # "only with --deep"

    def unmet(self, host: Host, platform: Platform, options: Options) -> str | None:
        return None if getattr(options, self.name, None) else self.reason


@dataclass(frozen=True)
class Containers:
    """Leave to start a container: ``doctor --no-container`` withholds it."""

    reason: str = "--no-container"

    def unmet(self, host: Host, platform: Platform, options: Options) -> str | None:
        return self.reason if getattr(options, "no_container", False) else None


LIVE = Live()
ENGINE = Engine()
CONTAINERS = Containers()


def unmet(needs: Sequence[Need], host: Host, platform: Platform, options: Options) -> str | None:
    """The reason of the first of ``needs`` this run does not meet, or None when it meets them all."""
    for need in needs:
        reason = need.unmet(host, platform, options)
        if reason is not None:
            return reason
    return None
