"""Doctor's probes over a fake host tree, for unit tests of checks: a tree from ``tests/hosttree.py`` (a named host
with fields changed) and ``Probes`` of it with some answers seeded, as the running system would give them (NVML,
``rpm -q``, the instance metadata), keyed by probe key with ``__`` for ``.``."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import hosttree

from gpuprep.host import Host
from gpuprep.options import DoctorOptions
from gpuprep.platform import detect
from gpuprep.runner.checks import Probes


def tree(tmp_path: Path, name: str, **changes) -> Path:
    """``tests/fixtures/hosts/NAME.json`` with ``changes`` (HostSpec fields), built at ``tmp_path/root``."""
    return hosttree.build(tmp_path / "root", dataclasses.replace(hosttree.load_spec(name), **changes))


def probes(root: Path, env: dict | None = None, **seeds) -> Probes:
    host = Host(root, env=env or {})
    p = Probes(host, detect(host), DoctorOptions())
    for key, value in seeds.items():
        p.get(key.replace("__", "."), lambda _p, v=value: v)
    return p
