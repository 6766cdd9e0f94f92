"""Doctor's probes over a fake host tree, for unit tests of checks: a tree from ``tests/hosttree.py`` (a named host
with fields changed) and ``Probes`` of it with some answers seeded, as the running system would give them (NVML,
``rpm -q``, the instance metadata), each seed named by its probe function (``probe_query=...``)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import hosttree

from gpuprep.ec2 import probes as ec2_probes
from gpuprep.ecs import checks as ecs_checks
from gpuprep.engine import checks as engine_checks
from gpuprep.engine import container_checks
from gpuprep.gpu import inventory
from gpuprep.gpu import security as gpu_security
from gpuprep.host import Host
from gpuprep.options import DoctorOptions
from gpuprep.packages import advisories
from gpuprep.packages import checks as packages_checks
from gpuprep.platform import detect
from gpuprep.runner.checks import Probes
from gpuprep.toolkit import checks as toolkit_checks

# The probes a test answers in place of the host, by the function's name.
SEEDABLE = {f.__name__: f for f in (
    engine_checks.docker_info, engine_checks.engine_process, container_checks.host_view,
    ecs_checks.ecs_init_version, ecs_checks.ecs_service_state, ecs_checks.boot_gate, inventory.probe_kernel_log,
    inventory.probe_query,
    packages_checks.installed_rpm, packages_checks.installed_deb, toolkit_checks.toolkit_version,
    ec2_probes.probe_instance_type, gpu_security.dcgm_packages, advisories.pending)}


def tree(tmp_path: Path, name: str, **changes) -> Path:
    """``tests/fixtures/hosts/NAME.json`` with ``changes`` (HostSpec fields), built at ``tmp_path/root``."""
    return hosttree.build(tmp_path / "root", dataclasses.replace(hosttree.load_spec(name), **changes))


def seed(p: Probes, **seeds) -> Probes:
    """Answer the probes named in ``seeds`` (probe function name: value) as given; an exception as the value
    is what the probe raises."""
    for name, value in seeds.items():
        if isinstance(value, Exception):
            p.preset_error(SEEDABLE[name], value)
        else:
            p.preset(SEEDABLE[name], value)
    return p


def probes(root: Path, env: dict | None = None, **seeds) -> Probes:
    host = Host(root, env=env or {})
    return seed(Probes(host, detect(host), DoctorOptions()), **seeds)
