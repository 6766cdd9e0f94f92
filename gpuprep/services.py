"""Service control through the platform's init system: systemd, or upstart/SysV on Amazon Linux 1.

On the live system every verb acts; inside ``--root`` only enable/disable act (``systemctl --root``
edits the unit symlinks offline), start/stop/restart raise ``ServiceUnavailable`` (a precondition, exit 3) and
daemon-reload does nothing (no manager is running there to reload).
"""

from __future__ import annotations

from dataclasses import dataclass

from gpuprep.errors import PreconditionUnmet, StepFailed
from gpuprep.host import Host
from gpuprep.platform import Platform

SYSTEMCTL_TIMEOUT = 120  # a docker restart with many containers can take a while


class ServiceUnavailable(PreconditionUnmet):
    """The verb needs the running system (we act on --root) or an init system that is not there: exit 3."""

    reference = "service-unavailable"


@dataclass(frozen=True)
class ServiceState:
    name: str
    active: str  # "active", "inactive", "failed", "activating", "unknown", ...
    enabled: str  # "enabled", "disabled", "static", "masked", "not-found", "unknown", ...

    @property
    def running(self) -> bool:
        return self.active in ("active", "reloading", "activating")

    @property
    def is_enabled(self) -> bool:
        return self.enabled in ("enabled", "enabled-runtime", "static", "alias", "indirect")


class Services:
    def __init__(self, host: Host, platform: Platform) -> None:
        self.host = host
        self.platform = platform

    @property
    def upstart(self) -> bool:
        return self.platform.init == "upstart"

    def _unit(self, name: str) -> str:
        return name if "." in name else f"{name}.service"

    # -- queries -----------------------------------------------------------------------------
    def state(self, name: str) -> ServiceState:
        if self.upstart:
            return self._upstart_state(name)
        if not self.host.live:
            asked = self.host.run(["systemctl", f"--root={self.host.root}", "is-enabled", self._unit(name)],
                                  check=False, timeout=SYSTEMCTL_TIMEOUT)
            return ServiceState(name, "unknown", asked.stdout.strip() or "not-found")
        if self.host.which("systemctl") is None:
            return ServiceState(name, "unknown", "unknown")
        proc = self.host.run(
            ["systemctl", "show", self._unit(name), "--property=ActiveState,UnitFileState,LoadState"],
            check=False, timeout=30,
        )
        props = dict(line.split("=", 1) for line in proc.stdout.splitlines() if "=" in line)
        enabled = props.get("UnitFileState") or ("not-found" if props.get("LoadState") == "not-found" else "unknown")
        return ServiceState(name, props.get("ActiveState", "unknown"), enabled)

    def _upstart_state(self, name: str) -> ServiceState:
        # Amazon Linux 1: ecs is an upstart job (/etc/init/ecs.conf), docker a SysV script.
        if not self.host.live:
            enabled = "enabled" if self.host.exists(f"/etc/init/{name}.conf") else "unknown"
            return ServiceState(name, "unknown", enabled)
        if self.host.exists(f"/etc/init/{name}.conf"):
            proc = self.host.run(["status", name], check=False, timeout=30)
            active = "active" if "start/running" in proc.stdout else "inactive"
            return ServiceState(name, active, "enabled")
        proc = self.host.run(["service", name, "status"], check=False, timeout=30)
        chk = self.host.run(["chkconfig", name], check=False, timeout=30)
        return ServiceState(name, "active" if proc.returncode == 0 else "inactive",
                            "enabled" if chk.returncode == 0 else "disabled")

    # -- verbs -------------------------------------------------------------------------------
    def argv(self, verb: str, name: str) -> list[str]:
        """The command a verb runs, for --dry-run listings."""
        if self.upstart:
            if self.host.exists(f"/etc/init/{name}.conf"):
                return {"enable": ["true"], "start": ["start", name], "stop": ["stop", name],
                        "restart": ["restart", name]}.get(verb, [verb, name])
            if verb in ("enable", "disable"):
                argv = ["chkconfig", name, "on" if verb == "enable" else "off"]
                # Inside --root, chkconfig must edit the image's rc links, not the build machine's.
                return argv if self.host.live else ["chroot", str(self.host.root), *argv]
            return ["service", name, verb]
        root = [] if self.host.live else [f"--root={self.host.root}"]
        return ["systemctl", *root, verb, self._unit(name)]

    def _act(self, verb: str, name: str, *, offline_ok: bool = False) -> None:
        if not self.host.live and not offline_ok:
            raise ServiceUnavailable(f"`{verb} {name}` needs the running system, not --root",
                                     "run it on the instance booted from the image, without --root")
        argv = self.argv(verb, name)
        if argv == ["true"]:
            return  # upstart jobs with a start-on stanza are enabled by their file
        proc = self.host.run(argv, check=False, timeout=SYSTEMCTL_TIMEOUT)
        if proc.returncode != 0:
            detail = (proc.stderr or proc.stdout).strip().splitlines()
            raise StepFailed(
                f"`{' '.join(argv)}` failed: {detail[-1] if detail else f'exit {proc.returncode}'}",
                self._journal_hint(name),
            )

    def _journal_hint(self, name: str) -> str:
        if self.upstart:
            return f"see /var/log/{name}.log or /var/log/messages"
        return f"see `journalctl -u {self._unit(name)} -n 50 --no-pager`"

    def enable(self, name: str) -> None:
        self._act("enable", name, offline_ok=True)

    def disable(self, name: str) -> None:
        self._act("disable", name, offline_ok=True)

    def start(self, name: str) -> None:
        self._act("start", name)

    def stop(self, name: str) -> None:
        self._act("stop", name)

    def restart(self, name: str) -> None:
        self._act("restart", name)

    def daemon_reload(self) -> None:
        if self.upstart or not self.host.live:
            return
        self.host.run(["systemctl", "daemon-reload"], timeout=SYSTEMCTL_TIMEOUT)


UNIT_DIRS = ("/etc/systemd/system", "/usr/lib/systemd/system", "/lib/systemd/system")


def unit_text(host: Host, unit: str) -> tuple[str | None, str]:
    """``unit``'s file (the first of UNIT_DIRS that has it, as systemd picks it) and its text with every drop-in
    (``<dir>/<unit>.d/*.conf``, in name order) after it: what systemd merges. Read through the root."""
    import os

    path, texts = None, []
    for d in UNIT_DIRS:
        text = host.read_text(f"{d}/{unit}")
        if text is not None:
            path, texts = f"{d}/{unit}", [text]
            break
    drop_ins: dict[str, str] = {}
    for d in reversed(UNIT_DIRS):  # /etc last: a drop-in there overrides one of the same name elsewhere
        try:
            names = os.listdir(host.path(f"{d}/{unit}.d"))
        except OSError:
            continue
        drop_ins |= {n: f"{d}/{unit}.d/{n}" for n in names if n.endswith(".conf")}
    texts += [host.read_text(drop_ins[n]) or "" for n in sorted(drop_ins)]
    return path, "\n".join(texts)
