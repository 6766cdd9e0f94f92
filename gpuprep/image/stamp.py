"""seal's stamp: ``/etc/gpuprep/seal.json`` says when and how the image was sealed, with which packages
and driver; doctor reads it back (``read_seal``) and names every difference on a host booted from the image
(``image/drift.py``).

What the stamp records for that comparison: ``packages`` (the exact NEVRs of the runtime stack: ecs-init,
Docker, the NVIDIA runtime packages), ``driver`` (the userland's version, from libnvidia-ml's file name or
nvidia-smi, and the kernel module's, from /proc/driver/nvidia/version or modinfo of the installed module) and
``versionlock`` (the lock list's file and entries). A stamp written before these fields existed is still read:
what it lacks is "not recorded".
"""

from __future__ import annotations

import json
import logging
from datetime import datetime, timezone
from typing import Any

from gpuprep.engine.objects import SealEngineRun
from gpuprep.errors import CommandError
from gpuprep.host import Host
from gpuprep.packages.rpmdb import rpm_installed
from gpuprep.platform import Platform
from gpuprep.runner.checks import Probes, probe
from gpuprep.runner.steps import Applied, Change, Context, Converged, Step, file_diff
from gpuprep.seal_record import SEAL_JSON, parse_seal, read_seal

log = logging.getLogger("gpuprep")

NVIDIA_VERSION_FILE = "/proc/driver/nvidia/version"


# -- stamp --------------------------------------------------------------------------------
def stamp_packages() -> tuple[str, ...]:
    """The names install selects among (ecs-init, Docker, either NVIDIA stack): whichever are installed."""
    from gpuprep.packages.resolve import QUERY_NAMES

    return tuple(QUERY_NAMES)


def driver_version(host: Host) -> str | None:
    """The loaded kernel module's version, else nvidia-smi's (live only), else None."""
    from gpuprep.gpu.devices import parse_module_version

    version, _ = parse_module_version(host.read_text(NVIDIA_VERSION_FILE) or "")
    if version:
        return version
    return _smi_driver(host) if host.live else None


def driver_record(host: Host) -> dict[str, str | None]:
    """The driver as the image has it: the userland's version and the kernel module's, each with where it was read.

    The userland: what libnvidia-ml.so.1 links to (works inside --root), else nvidia-smi's answer (live). The
    module: the loaded one (/proc/driver/nvidia/version), else the one installed for the newest kernel
    (``modinfo``), which is the one an instance booted from the image loads.
    """
    from gpuprep.gpu.devices import parse_module_version, read_userland

    userland = read_userland(host).version
    userland_from = "libnvidia-ml" if userland else None
    if userland is None and host.live:
        userland = _smi_driver(host)
        userland_from = "nvidia-smi" if userland else None
    module, _ = parse_module_version(host.read_text(NVIDIA_VERSION_FILE) or "")
    module_from = NVIDIA_VERSION_FILE if module else None
    if module is None:
        module = _modinfo_version(host)
        module_from = "modinfo" if module else None
    return {"userland": userland, "userland_from": userland_from, "kernel_module": module,
            "kernel_module_from": module_from}


def _smi_driver(host: Host) -> str | None:
    if not host.which("nvidia-smi"):
        return None
    try:
        out = host.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"], timeout=15)
    except CommandError:
        return None
    first = out.stdout.strip().splitlines()
    return first[0].strip() if first else None


def _modinfo_version(host: Host) -> str | None:
    """``modinfo -F version nvidia`` for the newest kernel in /lib/modules (inside --root: ``-b ROOT``)."""
    import re

    try:
        kernels = sorted(p.name for p in host.path("/lib/modules").iterdir() if p.is_dir())
    except OSError:
        return None
    if not kernels or host.tool("modinfo") is None:
        return None
    natural = max(kernels, key=lambda k: [int(x) if x.isdigit() else x for x in re.split(r"(\d+)", k)])
    base = [] if host.live else ["-b", str(host.root)]
    try:
        done = host.run(["modinfo", *base, "-k", natural, "-F", "version", "nvidia"], timeout=10, check=False)
    except CommandError:
        return None
    version = done.stdout.strip().splitlines()[0].strip() if done.returncode == 0 and done.stdout.strip() else ""
    return version or None


def lock_record(host: Host, platform: Platform) -> dict[str, Any] | None:
    """The versionlock list's file and entries (read from the file), or None where no package manager is known."""
    from gpuprep.errors import PreconditionUnmet
    from gpuprep.packages.repo import backend_for

    if not platform.rpm:
        return None
    try:
        backend = backend_for(host, platform, read_only=True)
    except PreconditionUnmet:
        return None
    return {"file": backend.lock_list, "entries": sorted(backend.locks())}


@probe
def seal_stamp(p: Probes) -> dict[str, Any] | None:
    """doctor's probe of seal.json (``read_seal``), read once per run by every check that compares with it."""
    return read_seal(p.host)


class StampStep(Step[str]):
    """Its plan: seal.json's new text."""

    id = "stamp"
    title = "write /etc/gpuprep/seal.json: version, time, platform, packages, driver, version locks, kept images"
    confirmed = False  # it writes seal.json and removes nothing: not part of seal's question

    def plan(self, ctx: Context) -> Change[str] | Converged:

        from gpuprep import __version__

        host = ctx.host
        old = host.read_text(SEAL_JSON)
        existing = parse_seal(old)
        kept_now = ctx.shared(SealEngineRun).kept_images
        if kept_now is not None:
            kept = kept_now
        elif existing is not None and "kept_images" in existing:
            kept = existing["kept_images"]  # the images step did not run: what the last seal kept
        else:
            kept = [{"refs": [r]} for r in ctx.seal_options.keep_images]
        p = ctx.platform
        doc: dict[str, Any] = {
            "gpuprep": __version__,
            "platform": {"id": p.id, "version_id": p.version_id, "name": p.name},
            "packages": rpm_installed(host, stamp_packages()),
            "driver_version": driver_version(host),
            "driver": driver_record(host),
            "kept_images": kept,
        }
        locks = lock_record(host, p)
        if locks is not None:
            doc["versionlock"] = locks
        boot = host.boot_identity()
        if boot is not None:
            doc["boot"] = boot  # doctor tells a host booted from the image from the builder by this
        # Anything this run changed (containers, images, the agent's state, files) makes a new seal time.
        if existing is not None and all(existing.get(k) == v for k, v in doc.items()) and "sealed_at" in existing \
                and not ctx.applied:
            return Converged(f"{SEAL_JSON} up to date (sealed {existing['sealed_at']})", data=existing)
        new = {"gpuprep": doc["gpuprep"], "sealed_at": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
               **{k: v for k, v in doc.items() if k != "gpuprep"}}
        text = json.dumps(new, indent=2) + "\n"
        diff = file_diff(SEAL_JSON, old, text)
        return Change(f"{'write' if old is None else 'update'} {SEAL_JSON}", diff=diff, data={"seal": new},
                      payload=text)

    def apply(self, ctx: Context, change: Change[str]) -> Applied:
        ctx.host.write_atomic(SEAL_JSON, change.payload, mode=0o644)
        return Applied()
