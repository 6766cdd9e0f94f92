"""gpuprep-cdi-generate.service: the CDI spec written at every boot where the toolkit has no nvidia-cdi-refresh.

The unit ships as package data (``gpuprep/data/gpuprep-cdi-generate.service``; ``systemd/`` links to it); the step
changes only the generator's path where the host's nvidia-ctk is not NVIDIA's ``/usr/bin/nvidia-ctk``. Which hosts
get it is the cdi-spec step's decision (``toolkit/steps.py``); this module knows the file, its links and the plan.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from gpuprep.host import Host
from gpuprep.platform import Platform
from gpuprep.runner.steps import file_diff

UNIT_NAME = "gpuprep-cdi-generate.service"
UNIT_PATH = f"/etc/systemd/system/{UNIT_NAME}"
UNIT_TEMPLATE = Path(__file__).resolve().parent.parent / "data" / UNIT_NAME
# What `systemctl enable` makes of its [Install] section; read directly, so --root works the same.
WANTS_LINK = f"/etc/systemd/system/multi-user.target.wants/{UNIT_NAME}"
SHIPPED_CTK = "/usr/bin/nvidia-ctk"  # where NVIDIA's toolkit packages put it


def render(nvidia_ctk: str = SHIPPED_CTK) -> str:
    """The unit gpuprep wants: the shipped file, with the host's generator where it is not at NVIDIA's path."""
    return UNIT_TEMPLATE.read_text().replace(SHIPPED_CTK, nvidia_ctk)


@dataclass
class UnitChange:
    """What the cdi-spec step does to the unit: write it (``content``) and enable it, or take it away."""

    content: str | None = None  # write this (None: leave the file as it is)
    enable: bool = False
    remove: bool = False
    reload: bool = False  # systemd runs here and its view of the unit files changes
    todo: list[str] = field(default_factory=list)
    commands: list[list[str]] = field(default_factory=list)
    diff: str = ""


def plan(host: Host, platform: Platform, *, wanted: bool, why_not: str = "") -> UnitChange:
    """The change that leaves the unit installed and enabled when ``wanted``, else absent (``why_not`` says why)."""
    from gpuprep.services import Services

    services = Services(host, platform)
    current = host.read_text(UNIT_PATH)
    enabled = host.lexists(WANTS_LINK)
    reload = host.live and host.exists("/run/systemd/system")  # sd_booted(): systemd is PID 1 here
    change = UnitChange()
    if wanted:
        content = render(host.which("nvidia-ctk") or SHIPPED_CTK)
        if current != content:
            change.content, change.diff, change.reload = content, file_diff(UNIT_PATH, current, content), reload
            change.todo.append(f"{'write' if current is None else 'update'} {UNIT_PATH}")
            change.commands += [["systemctl", "daemon-reload"]] if reload else []
        if not enabled or change.content is not None:
            change.enable = True
            change.commands.append(services.argv("enable", UNIT_NAME))
            if not enabled:
                change.todo.append(f"enable {UNIT_NAME} (writes the spec at every boot)")
    elif current is not None or enabled:
        change.remove, change.reload = True, reload
        if enabled:
            change.commands.append(services.argv("disable", UNIT_NAME))
        change.commands += [["rm", UNIT_PATH]] + ([["systemctl", "daemon-reload"]] if reload else [])
        change.todo.append(f"remove {UNIT_NAME} ({why_not})")
    return change


def apply(host: Host, platform: Platform, change: UnitChange) -> None:
    from gpuprep.services import Services

    services = Services(host, platform)
    if change.content is not None:
        host.write_atomic(UNIT_PATH, change.content, mode=0o644)
        if change.reload:
            services.daemon_reload()
    if change.enable:
        services.enable(UNIT_NAME)  # also after a rewrite: the [Install] section may have changed
    if change.remove:
        if host.lexists(WANTS_LINK):
            services.disable(UNIT_NAME)
        host.remove(UNIT_PATH)
        if change.reload:
            services.daemon_reload()
