"""Hints as commands of the host they are for: its init system, its package manager, its ``--root``.

A hint is what a user runs to clear a finding (docs/adding-a-check.md), so it names only commands of the
platform at hand (never "X, or Y on Amazon Linux 1"), keeps ``--root DIR`` on gpuprep's own commands, and
says ``sudo`` only where the run was not root. Fixes built as values (gpuprep/fixes.py) are made so where the
finding is made; a hint still written as prose passes through ``for_target`` on its way out, so a hint written
as ``gpuprep install ...`` keeps the run's ``--root``.
"""

from __future__ import annotations

import re
import shlex

from gpuprep.fixes import sysv_log
from gpuprep.host import Host
from gpuprep.platform import Platform
from gpuprep.services import Services

# `gpuprep` as a command word followed by a subcommand or an option (not gpuprep-boot-check, not
# `pip3 install gpuprep`, not a path's /gpuprep), and not already given a --root.
_GPUPREP = re.compile(r"(?<![\w/.-])gpuprep(?= (?!--root\b)(?:install|seal|doctor|-[-\w]))")


def for_target(host: Host, text: str) -> str:
    """``text`` with every gpuprep command in it acting on ``host``'s root: ``--root DIR`` added under --root."""
    if host.live or not text:
        return text
    return _GPUPREP.sub(f"gpuprep --root {shlex.quote(str(host.root))}", text)


def systemd(host: Host, platform: Platform | None) -> bool:
    """Whether systemd runs the services here. Without a platform (the Engine's own errors), whether systemd
    booted this machine decides, as sd_booted() does."""
    if platform is not None:
        return platform.init == "systemd"
    return not host.live or host.exists("/run/systemd/system")


def service(host: Host, platform: Platform | None, verb: str, name: str) -> str:
    """The command that does ``verb`` to service ``name`` here: systemctl, or upstart/SysV on Amazon Linux 1."""
    if platform is None:
        argv = ["systemctl", verb, name] if systemd(host, None) else ["service", name, verb]
    else:
        argv = Services(host, platform).argv(verb, name)
        if argv == ["true"]:
            return ""
    return privileged(host, " ".join(shlex.quote(a) for a in argv))


def service_log(host: Host, platform: Platform | None, name: str) -> str:
    """Where service ``name`` says why it stopped."""
    if not systemd(host, platform):
        return sysv_log(name)
    return f"`{privileged(host, f'journalctl -u {name} -n 50 --no-pager')}`"


def privileged(host: Host, command: str) -> str:
    """``command`` as the user who ran gpuprep must type it: through sudo when that was not root."""
    return command if host.is_root else f"sudo {command}"
