"""What `nvidia-ctk runtime configure --runtime=docker` does to daemon.json, and what gpuprep makes of it.

NVIDIA/nvidia-container-toolkit ``pkg/config/engine/docker`` (1.18.0 and 1.20.0 run here, tests/integration/
test_nvidia_ctk_coexist.py): it replaces runtimes.nvidia with ``{"args": [], "path": "nvidia-container-runtime"}``
(Docker reads a runtime's arguments only from ``runtimeArgs``: moby/moby api/types/system Runtime, so a user's
runtimeArgs are dropped), with ``--set-as-default`` sets default-runtime, with ``--cdi.enabled`` replaces the whole
``features`` object with ``{"cdi": true}`` (its map[string]bool type assertion fails on the decoded JSON object),
sorts the keys and keeps no backup. ``engine/daemon_config.py`` keeps its bare name where dockerd finds the toolkit's
runtime by it, moves arguments under ``args`` to ``runtimeArgs`` and puts back what it dropped from gpuprep's newest
backup; doctor's ``docker-nvidia-ctk-edits`` names each.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from gpuprep.host import SYSTEM_PATH, Host

CTK_ARGS = "args"


def ignored_args(entry: Any) -> list[Any]:
    """The arguments a runtime entry holds under nvidia-ctk's ``args`` where it has no ``runtimeArgs``: Docker never
    passes them. Empty when there are none (nvidia-ctk's own ``"args": []`` is harmless and left alone)."""
    if not isinstance(entry, dict) or "runtimeArgs" in entry:
        return []
    args = entry.get(CTK_ARGS)
    return list(args) if isinstance(args, list) else []


def marked(entry: Any) -> bool:
    """Whether the nvidia runtime entry bears nvidia-ctk's mark, its ``args`` key."""
    return isinstance(entry, dict) and CTK_ARGS in entry


@dataclass
class CtkLosses:
    """What `nvidia-ctk runtime configure` dropped from daemon.json that gpuprep's newest backup still holds."""

    features: dict[str, Any]  # features keys its CDI switch dropped, with their values
    runtime_args: list[Any]  # runtimes.nvidia.runtimeArgs it dropped when it replaced the entry
    backup: str  # the host path of the backup they come from

    def describe(self) -> list[str]:
        said = [f"features {', '.join(sorted(self.features))} (`nvidia-ctk runtime configure --cdi.enabled` "
                "replaces the whole features object)"] if self.features else []
        if self.runtime_args:
            said.append(f"runtimes.nvidia.runtimeArgs {json.dumps(self.runtime_args)} (`nvidia-ctk runtime "
                        'configure` replaces the entry with its own {"args": [], "path": ...})')
        return said


def newest_backup(host: Host, path: str) -> str | None:
    """The host path of gpuprep's newest backup of ``path`` (``NAME.gpuprep-YYYYmmddTHHMMSSffffffZ``: the file as it
    was before gpuprep last wrote it), or None."""
    real = host.path(path)
    stamp = re.compile(re.escape(real.name) + r"\.gpuprep-\d{8}T\d{12}Z$")
    backups = sorted(p.name for p in real.parent.glob(real.name + ".gpuprep-*") if stamp.match(p.name))
    return f"{path}{backups[-1][len(real.name):]}" if backups else None


def losses(entry: dict[str, Any], features: Any, previous_entry: Any, previous_features: Any,
           backup: str) -> CtkLosses | None:
    """What nvidia-ctk dropped that the backup holds: features only where ``features`` is exactly ``{"cdi": true}``
    (what its CDI switch leaves), runtimeArgs only where the entry has its empty ``args`` and no runtimeArgs."""
    dropped: dict[str, Any] = {}
    if features == {"cdi": True} and isinstance(previous_features, dict):
        dropped = {k: v for k, v in previous_features.items() if k not in features}
    runtime_args: list[Any] = []
    if entry.get(CTK_ARGS) == [] and "runtimeArgs" not in entry and isinstance(previous_entry, dict):
        runtime_args = list(previous_entry.get("runtimeArgs") or [])
    return CtkLosses(dropped, runtime_args, backup) if dropped or runtime_args else None


def bare_name_resolves_to(host: Host, runtime_path: str) -> Callable[[str], bool]:
    """Whether a runtime path is a bare name that dockerd, searching docker.service's PATH (systemd's default, the
    order of ``SYSTEM_PATH``), finds at ``runtime_path`` in this tree (nvidia-ctk's ``nvidia-container-runtime`` for
    ``/usr/bin/...``)."""
    def same(path: str) -> bool:
        if not path or "/" in path:
            return False
        found = next((f"{d}/{path}" for d in SYSTEM_PATH if host.path(f"{d}/{path}").is_file()), None)
        return found is not None and os.path.normpath(found) == os.path.normpath(runtime_path)
    return same
