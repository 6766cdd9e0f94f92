"""install's last step: the boot-time GPU gate, a systemd unit running ``gpuprep doctor --boot``.

The unit ships as package data (``gpuprep/data/gpuprep-boot-check.service``; ``systemd/`` in the
source tree links to it), so a pip-installed gpuprep can install it. That file is the one source of
truth: the step changes only the program path in ``ExecStart=`` (where this gpuprep lives) and, with
``--no-gate``, drops ``RequiredBy=ecs.service``. ``Before=ecs.service`` alone only orders the two
units; RequiredBy is what keeps ECS from starting when the check fails (docs/domain.md, GPU health).
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

from gpuprep.errors import StepFailed
from gpuprep.options import DEFAULT_IMAGE
from gpuprep.runner.needs import Systemd
from gpuprep.runner.steps import Applied, Change, Context, Converged, Step, file_diff
from gpuprep.services import Services

UNIT_NAME = "gpuprep-boot-check.service"
UNIT_PATH = f"/etc/systemd/system/{UNIT_NAME}"
UNIT_TEMPLATE = Path(__file__).parent / "data" / UNIT_NAME
# The path written in the shipped file: where the wheelhouse's install.sh links the script (docs/packaging.md:
# /usr/sbin is in sudo's secure_path on RHEL-family hosts, /usr/local/bin is not).
DEFAULT_PROGRAM = "/usr/sbin/gpuprep"
GATE_LINE = "RequiredBy=ecs.service"
# What `systemctl enable` makes of the [Install] section; read directly, so --root works the same.
WANTS_LINK = f"/etc/systemd/system/multi-user.target.wants/{UNIT_NAME}"
REQUIRES_LINK = f"/etc/systemd/system/ecs.service.requires/{UNIT_NAME}"


@dataclass(frozen=True)
class UnitPlan:
    content: str
    current: str | None  # the unit file as it is, None when absent
    relink: bool  # the enable links differ (not enabled, or the gate link is wrong)
    gate: bool

    @property
    def rewrite(self) -> bool:
        """The file differs from what we want."""
        return self.current != self.content


def render_unit(program: str, gate: bool, image: str | None = None) -> str:
    """The unit gpuprep wants: the shipped file with this gpuprep's path, and the gate line or not.

    ``image``: the image install's gpu-check used, when not the default, so the boot check's
    container check runs the same one (it runs only when the image is present locally).
    """
    text = UNIT_TEMPLATE.read_text()
    command = f"{program} doctor --boot" + (f" --image {_quote(image)}" if image else "")
    text = text.replace(f"ExecStart={DEFAULT_PROGRAM} doctor --boot", f"ExecStart={command}", 1)
    if not gate:
        text = "".join(line for line in text.splitlines(keepends=True) if line.strip() != GATE_LINE)
    return text


def _quote(word: str) -> str:
    # systemd splits ExecStart= on whitespace unless the word is quoted.
    return f'"{word}"' if any(c.isspace() for c in word) else word


def resolve_program(ctx: Context) -> str:
    """How the unit runs this gpuprep: the script being run, one on PATH, or this interpreter's module.

    Inside --root only a gpuprep installed in the image will exist at boot (Packer's chroot builder
    runs gpuprep from outside the image): without one, the unit would fail every boot and hold ECS.
    """
    host = ctx.host
    if host.live:
        argv0 = sys.argv[0] if sys.argv else ""
        if os.path.basename(argv0) == "gpuprep" and os.path.isabs(argv0) and os.path.isfile(argv0):
            return _quote(argv0)
        found = host.which("gpuprep")
        if found:
            return _quote(found)
        return f"{_quote(sys.executable)} -m gpuprep"
    found = host.which("gpuprep")
    if found is None:
        raise StepFailed(
            f"gpuprep is not installed inside {host.root}: the boot check could not run at boot",
            f"install it in the image from the wheelhouse `make dist` builds: copy it to {host.root}/tmp and run "
            f"`chroot {host.root} /tmp/gpuprep-wheelhouse-py3.9/install.sh` (docs/packaging.md); or --skip boot-check",
        )
    return _quote(found)


def _is_link(ctx: Context, path: str) -> bool:
    return ctx.host.path(path).is_symlink() or ctx.host.exists(path)


class BootCheckStep(Step[UnitPlan]):
    id = "boot-check"
    title = f"install and enable {UNIT_NAME}: `gpuprep doctor --boot` before ecs.service, holding it on failure"
    needs = (Systemd("the boot check is a systemd unit"),)

    def _want(self, ctx: Context) -> UnitPlan:
        gate, image = ctx.install_options.gate, ctx.install_options.image
        content = render_unit(resolve_program(ctx), gate, image if image and image != DEFAULT_IMAGE else None)
        relink = not _is_link(ctx, WANTS_LINK) or _is_link(ctx, REQUIRES_LINK) != gate
        return UnitPlan(content, ctx.host.read_text(UNIT_PATH), relink, gate)

    def plan(self, ctx: Context) -> Change[UnitPlan] | Converged:
        want = self._want(ctx)
        gate_words = "gate on (RequiredBy=ecs.service)" if want.gate else "gate off (reports only)"
        if not want.rewrite and not want.relink:
            return Converged(f"{UNIT_NAME} enabled, {gate_words}", data={"unit": UNIT_PATH, "gate": want.gate})
        current = want.current
        diff = file_diff(UNIT_PATH, current, want.content)
        services = Services(ctx.host, ctx.platform)
        commands: list[list[str]] = []
        if want.rewrite and self._systemd_running(ctx):
            commands.append(["systemctl", "daemon-reload"])
        if want.relink and _is_link(ctx, WANTS_LINK):
            # Enabled with the other gate setting: `enable` adds links but never removes one.
            commands.append(services.argv("disable", UNIT_NAME))
        if want.relink or want.rewrite:
            commands.append(services.argv("enable", UNIT_NAME))
        verb = "write" if current is None else "update"
        return Change(f"{verb} {UNIT_PATH} and enable it, {gate_words}", diff=diff, commands=commands,
                      data={"unit": UNIT_PATH, "gate": want.gate}, payload=want)

    def apply(self, ctx: Context, change: Change[UnitPlan]) -> Applied:
        want = change.payload
        services = Services(ctx.host, ctx.platform)
        if want.rewrite:
            ctx.host.write_atomic(UNIT_PATH, want.content, mode=0o644)
            if self._systemd_running(ctx):
                services.daemon_reload()
        if want.relink and _is_link(ctx, WANTS_LINK):
            services.disable(UNIT_NAME)
        # Also after a rewrite: the [Install] section may have changed.
        services.enable(UNIT_NAME)
        return Applied()

    @staticmethod
    def _systemd_running(ctx: Context) -> bool:
        return systemd_running(ctx)


def systemd_running(ctx: Context) -> bool:
    """sd_booted(): a live host where systemd is PID 1 (not a container build or a chroot)."""
    return ctx.host.live and ctx.host.exists("/run/systemd/system")
