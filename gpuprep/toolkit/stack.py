"""The NVIDIA stack of a Docker host as it stands: what is installed, how the runtime is registered, which mode it
runs in, whether Docker's own CDI is on, which CDI specs exist, whether nvidia-cdi-refresh is enabled.

Reported by install (its toolkit steps' data) and doctor (check ``toolkit-stack``); the toolkit steps and checks
decide from it. Everything here reads; nothing changes the host.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any

from gpuprep.engine.cdi import docker_cdi
from gpuprep.errors import GpuprepError
from gpuprep.host import Host
from gpuprep.platform import Platform
from gpuprep.toolkit import cdi
from gpuprep.toolkit.config import CDI_MODES, RuntimeConfig, read, resolve_mode

TOOLKIT = ("nvidia-container-toolkit", "nvidia-container-toolkit-base")
# The toolkit's units (1.18+): /etc/systemd/system in 1.18.0, the unit directory later
# (NVIDIA/nvidia-container-toolkit packaging/rpm/SPECS/nvidia-container-toolkit.spec).
REFRESH_UNITS = ("nvidia-cdi-refresh.path", "nvidia-cdi-refresh.service")
UNIT_DIRS = ("/etc/systemd/system", "/usr/lib/systemd/system", "/lib/systemd/system")
WANTS = "/etc/systemd/system/multi-user.target.wants"


@dataclass
class Registration:
    route: str  # "daemon.json" | "add-runtime" | "runtimes.d"
    where: str  # the file, or the flag as dockerd has it
    path: str  # the runtime binary (or wrapper) it names


@dataclass
class Stack:
    toolkit: str | None  # the toolkit package's version ("1.18.1-1"), None when not installed
    config: RuntimeConfig
    mode: str  # what the runtime resolves to: legacy | jit-cdi | cdi | csv | unknown
    mode_why: str
    registrations: list[Registration]
    engine_version: str | None
    docker_cdi: bool | None  # None: unknown (no Engine version)
    docker_cdi_why: str
    spec_dirs: list[str]
    specs: list[cdi.Spec]
    refresh: dict[str, str]  # unit -> "enabled" | "disabled" | "absent"

    @property
    def cdi_mode(self) -> bool:
        return self.mode in CDI_MODES

    @property
    def refresh_shipped(self) -> bool:
        return all(state != "absent" for state in self.refresh.values())

    @property
    def refresh_enabled(self) -> bool:
        return all(state == "enabled" for state in self.refresh.values())

    @property
    def spec_in_use(self) -> bool:
        """A route reads the spec files: the runtime in cdi mode, or Docker's own CDI (jit-cdi makes its specs in
        memory, NVIDIA/nvidia-container-toolkit internal/modifier/cdi.go)."""
        return self.mode == "cdi" or bool(self.docker_cdi)

    def summary(self) -> str:
        regs = ", ".join(f"{r.route} ({r.where})" for r in self.registrations) or "not registered"
        specs = ", ".join(s.path for s in self.specs) or "none"
        refresh = "enabled" if self.refresh_enabled else "shipped, not enabled" if self.refresh_shipped else "absent"
        cdi_on = {True: "on", False: "off", None: "unknown"}[self.docker_cdi]
        return (f"nvidia-container-toolkit {self.toolkit or 'not installed'}, runtime mode {self.mode} "
                f"({self.mode_why}); registered by {regs}; Docker's CDI {cdi_on}; CDI specs: {specs}; "
                f"nvidia-cdi-refresh {refresh}")

    def as_dict(self) -> dict[str, Any]:
        return {
            "toolkit": self.toolkit, "config": self.config.as_dict(), "mode": self.mode, "mode_why": self.mode_why,
            "registrations": [asdict(r) for r in self.registrations], "engine_version": self.engine_version,
            "docker_cdi": self.docker_cdi, "docker_cdi_why": self.docker_cdi_why, "spec_dirs": self.spec_dirs,
            "specs": [{"path": s.path, "kind": s.kind, "devices": sorted(s.devices), "error": s.error}
                      for s in self.specs],
            "refresh": self.refresh,
        }


def toolkit_version(host: Host, platform: Platform) -> str | None:
    """The installed toolkit's version from the package database (rpm, or dpkg on Ubuntu), else, on the live system,
    from its own ``nvidia-ctk --version`` (``binary_toolkit_version``)."""
    from gpuprep.packages.rpmdb import dpkg_installed, installed

    if platform.package_format == "dpkg":
        found = dpkg_installed(host, TOOLKIT)
        return next((found[n] for n in TOOLKIT if n in found), None) or binary_toolkit_version(host)
    if not (host.which("rpm") if host.live else host.tool("rpm")):
        return binary_toolkit_version(host)
    pkgs = {p.name: p for p in installed(host, TOOLKIT)}
    p = next((pkgs[n] for n in TOOLKIT if n in pkgs), None)
    return f"{p.evr.version}-{p.evr.release}" if p else binary_toolkit_version(host)


# `nvidia-ctk --version`'s first line (NVIDIA/nvidia-container-toolkit cmd/nvidia-ctk/main.go, every release seen:
# 1.17.8 to 1.20.0 in tests/fixtures/real-gpu/2026-12-07-toolkit).
_CTK_VERSION = re.compile(r"^NVIDIA Container Toolkit CLI version (\d+\.\d+\.\d+(?:[-~.][0-9A-Za-z.]+)?)\s*$", re.M)


def binary_toolkit_version(host: Host) -> str | None:
    """The toolkit's version from its own binary, where no package records it: a tarball or hand install, a
    container image's copy, NVIDIA's installer (seen on the accelerator machine: binaries in /usr/bin, no package;
    gpuprep then called the toolkit "not installed" and judged no security floor). Only on the live system: a
    program inside --root is never run. Bounded: nvidia-ctk prints its version without touching the driver."""
    if not host.live:
        return None
    ctk = host.which("nvidia-ctk")
    if not ctk:
        return None
    try:
        out = host.run([ctk, "--version"], timeout=5, check=False).stdout
    except GpuprepError:
        return None
    m = _CTK_VERSION.search(out)
    return m.group(1) if m else None


def registrations(host: Host, platform: Platform, config: dict[str, Any], add_runtimes: dict[str, str] | None
                  ) -> list[Registration]:
    from gpuprep.engine.daemon_config import RUNTIME_NAME, runtime_in_runtimes_dir

    out = []
    entry = (config.get("runtimes") or {}).get(RUNTIME_NAME)
    if isinstance(entry, dict):
        out.append(Registration("daemon.json", platform.daemon_json, str(entry.get("path") or "")))
    in_dir = runtime_in_runtimes_dir(host, platform.runtimes_dir)
    flag = (add_runtimes or {}).get(RUNTIME_NAME)
    if in_dir:
        # Amazon Linux's docker.service turns it into --add-runtime nvidia=<it> (docker-setup-runtimes.sh).
        out.append(Registration("runtimes.d", in_dir, in_dir))
    if flag and flag != in_dir:
        out.append(Registration("add-runtime", f"--add-runtime {RUNTIME_NAME}={flag}", flag))
    return out


def refresh_state(host: Host) -> dict[str, str]:
    """Each nvidia-cdi-refresh unit: absent (not shipped), enabled (its multi-user.target.wants link, what the
    RPM's preset makes; read directly so --root works the same) or disabled."""
    out = {}
    for unit in REFRESH_UNITS:
        if not any(host.exists(f"{d}/{unit}") for d in UNIT_DIRS):
            out[unit] = "absent"
        else:
            out[unit] = "enabled" if host.lexists(f"{WANTS}/{unit}") else "disabled"
    return out


def detect(host: Host, platform: Platform, *, daemon_config: dict[str, Any], engine_version: str | None,
           info: dict[str, Any] | None = None, add_runtimes: dict[str, str] | None = None,
           toolkit: str | None | bool = True) -> Stack:
    """The stack; ``toolkit`` True asks the package database, else it is the version already known."""
    version = toolkit_version(host, platform) if toolkit is True else (toolkit or None)
    config = read(host)
    mode, why = resolve_mode(config.mode, version)
    on, on_why = docker_cdi(daemon_config, engine_version, info)
    dirs = list((info or {}).get("CDISpecDirs") or cdi.spec_dirs(daemon_config))
    if mode == "cdi":
        # The runtime in cdi mode reads its own spec-dirs (config.toml), not Docker's: the dirs of the routes that
        # read spec files, Docker's own CDI's where it may be on.
        runtime_dirs = config.spec_dirs or list(cdi.DEFAULT_DIRS)
        dirs = [*(dirs if on is not False else []), *(d for d in runtime_dirs if on is False or d not in dirs)]
    return Stack(version, config, mode, why, registrations(host, platform, daemon_config, add_runtimes),
                 engine_version, on, on_why, dirs, cdi.find(host, dirs), refresh_state(host))


__all__ = ["Stack", "Registration", "detect", "docker_cdi", "toolkit_version"]
