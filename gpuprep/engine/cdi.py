"""Docker's own CDI (the Container Device Interface): from which Engine it exists and is on by default, whether it
is on here and why, and the NVIDIA spec file its GPU route reads.

Facts about the Engine, so they live in its room: the toolkit's stack and checks, and the Engine's own GPU routes and
steps, read them here (tests/unit/test_layout.py keeps the rooms without cycles).
"""

from __future__ import annotations

import re
from typing import Any

from gpuprep import fixes
from gpuprep.fixes import Fix
from gpuprep.host import Host
from gpuprep.platform import Platform

GENERATED_SPEC = "/var/run/cdi/nvidia.yaml"  # where nvidia-cdi-refresh.service writes (toolkit 1.18+)


def engine_since(feature: str) -> tuple[int, int]:
    """The first Engine (major, minor) with ``feature`` ("cdi", "cdi-default", ...): the knowledge table
    ``docker-cdi`` (Docker's CDI opt-in and its default from moby/moby PR 49963, and what came after)."""
    from gpuprep import knowledge

    row = next(r for r in knowledge.table("docker-cdi").rows if r["feature"] == feature)
    major, minor = row["since"].split(".")[:2]
    return int(major), int(minor)


def since_text(feature: str) -> str:
    major, minor = engine_since(feature)
    return f"{major}.{minor}"


def cdi_opt_in_range() -> str:
    """``25.0 to 28.1``: the Engines where features.cdi turns Docker's CDI on (off by default)."""
    major, minor = engine_since("cdi-default")
    last = f"{major}.{minor - 1}" if minor else f"{major - 1}.x"
    return f"{since_text('cdi')} to {last}"


def version_tuple(version: str | None) -> tuple[int, int] | None:
    m = re.match(r"(\d+)\.(\d+)", version or "")
    return (int(m.group(1)), int(m.group(2))) if m else None


def docker_cdi(config: dict[str, Any], engine_version: str | None, info: dict[str, Any] | None = None
               ) -> tuple[bool | None, str]:
    """Whether Docker's own CDI is on, and why: the running Engine's ``docker info`` (``CDISpecDirs`` is empty
    when CDI is off) wins; else ``features.cdi`` in daemon.json, else the Engine's default."""
    if info is not None and "CDISpecDirs" in info:
        dirs = info.get("CDISpecDirs") or []
        return bool(dirs), ("docker info lists CDISpecDirs " + ", ".join(dirs)) if dirs else \
            "docker info lists no CDISpecDirs"
    version = version_tuple(engine_version)
    features = f if isinstance(f := config.get("features"), dict) else {}
    if version is not None and version < engine_since("cdi"):
        return False, f"Engine {engine_version} has no CDI ({since_text('cdi')}+)"
    if "cdi" in features:
        return bool(features["cdi"]), f"features.cdi = {str(bool(features['cdi'])).lower()} in daemon.json"
    if version is None:
        return None, "the Engine's version is unknown"
    on = version >= engine_since("cdi-default")
    return on, f"Engine {engine_version}: " + (f"on by default from {since_text('cdi-default')}" if on else
                                               f"off unless features.cdi ({cdi_opt_in_range()})")


def generate_fix(host: Host, why: str, *flags: str) -> Fix:
    """This host's CDI spec written anew by NVIDIA's generator (``nvidia-ctk cdi generate``). It asks the running
    driver (NVML) for the GPUs, so under --root it is for an instance booted from the image (and /var/run is not
    kept in an image)."""
    runs = fixes.running_system(host)
    argv = ["nvidia-ctk", "cdi", "generate", *flags, f"--output={GENERATED_SPEC}"]
    return Fix(why, fixes.as_user(host, argv, runs), runs)


def spec_fixes(host: Host, platform: Platform, why: str, *flags: str) -> list[Fix]:
    """The spec written anew now, and gpuprep's cdi-spec step where install runs here (it also keeps the spec
    written at every boot)."""
    step = fixes.gpuprep(host, platform, "or let gpuprep write it and keep it written at every boot", "install",
                         "--only", "cdi-spec")
    return [generate_fix(host, why, *flags), *([step] if step is not None and not flags else [])]
