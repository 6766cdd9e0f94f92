"""What seal recorded: ``/etc/gpuprep/seal.json`` read back, its fields type-checked. A module of its own, above no
room: the stamp (image/) writes it, and checks in several rooms read it (drift in image/, the kept image doctor's
container checks run in, in engine/), so no room imports another's step machinery to read a file."""

from __future__ import annotations

import json
from typing import Any

from gpuprep.host import Host

SEAL_JSON = "/etc/gpuprep/seal.json"

# The types of the seal.json fields gpuprep reads back (doctor's checks, the next seal's stamp).
SEAL_TYPES: dict[str, type | tuple[type, ...]] = {
    "gpuprep": str, "sealed_at": str, "platform": dict, "packages": dict, "driver_version": (str, type(None)),
    "kept_images": list, "boot": dict, "driver": dict, "versionlock": dict,
}


def read_seal(host: Host) -> dict[str, Any] | None:
    return parse_seal(host.read_text(SEAL_JSON))


def parse_seal(text: str | None) -> dict[str, Any] | None:
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
