"""seal's stamp: ``/etc/gpuprep/seal.json`` says when and how the image was sealed, with which packages
and driver; doctor reads it back (``read_seal``)."""

from __future__ import annotations

import json
import logging
from datetime import datetime, timezone
from typing import Any

from gpuprep.engine.objects import SealEngineRun
from gpuprep.errors import CommandError
from gpuprep.host import Host
from gpuprep.packages.rpmdb import rpm_installed
from gpuprep.runner.steps import Applied, Change, Context, Converged, Step, file_diff

log = logging.getLogger("gpuprep")

SEAL_JSON = "/etc/gpuprep/seal.json"
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
    if host.live and host.which("nvidia-smi"):
        try:
            out = host.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"], timeout=15)
        except CommandError:
            return None
        first = out.stdout.strip().splitlines()
        return first[0].strip() if first else None
    return None


# The types of the seal.json fields gpuprep reads back (doctor's checks, the next seal's stamp).
SEAL_TYPES: dict[str, type | tuple[type, ...]] = {
    "gpuprep": str, "sealed_at": str, "platform": dict, "packages": dict, "driver_version": (str, type(None)),
    "kept_images": list, "boot": dict,
}


def read_seal(host: Host) -> dict | None:
    return _parse_seal(host.read_text(SEAL_JSON))


def _parse_seal(text: str | None) -> dict | None:
    """seal.json's object; None when absent or unreadable (a later seal rewrites it). Fields of the wrong
    type are dropped, so every reader can trust the type of what it finds."""
    if text is None:
        return None
    try:
        doc = json.loads(text)
    except (ValueError, RecursionError):
        return None
    if not isinstance(doc, dict):
        return None
    return {k: v for k, v in doc.items() if k not in SEAL_TYPES or isinstance(v, SEAL_TYPES[k])}


class StampStep(Step):
    id = "stamp"
    title = "write /etc/gpuprep/seal.json: version, time, platform, packages, driver, kept images"

    def plan(self, ctx: Context) -> Change | Converged:

        from gpuprep import __version__

        host = ctx.host
        old = host.read_text(SEAL_JSON)
        existing = _parse_seal(old)
        kept_now = ctx.shared(SealEngineRun).kept_images
        if kept_now is not None:
            kept = kept_now
        elif existing is not None and "kept_images" in existing:
            kept = existing["kept_images"]  # the images step did not run: what the last seal kept
        else:
            kept = [{"refs": [r]} for r in ctx.options.keep_images]
        p = ctx.platform
        doc: dict[str, Any] = {
            "gpuprep": __version__,
            "platform": {"id": p.id, "version_id": p.version_id, "name": p.name},
            "packages": rpm_installed(host, stamp_packages()),
            "driver_version": driver_version(host),
            "kept_images": kept,
        }
        boot = host.boot_identity()
        if boot is not None:
            doc["boot"] = boot  # doctor tells a host booted from the image from the builder by this
        same = existing is not None and all(existing.get(k) == v for k, v in doc.items()) and "sealed_at" in existing
        # Anything this run changed (containers, images, the agent's state, files) makes a new seal time.
        if same and not ctx.applied:
            return Converged(f"{SEAL_JSON} up to date (sealed {existing['sealed_at']})", data=existing)
        new = {"gpuprep": doc["gpuprep"], "sealed_at": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
               **{k: v for k, v in doc.items() if k != "gpuprep"}}
        text = json.dumps(new, indent=2) + "\n"
        diff = file_diff(SEAL_JSON, old, text)
        return Change(f"{'write' if old is None else 'update'} {SEAL_JSON}", diff=diff, data={"seal": new},
                      payload=text)

    def apply(self, ctx: Context, change: Change) -> Applied:
        ctx.host.write_atomic(SEAL_JSON, change.payload, mode=0o644)
        return Applied()
