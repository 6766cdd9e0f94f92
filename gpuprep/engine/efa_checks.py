"""platform check ``efa-devices`` (issue 28, item 5): EFA on the types that have it, and the memlock limit the Engine
gives containers for it. In the Engine's room because it reads daemon.json as the Engine does; the EFA devices
themselves are ``ec2/efa.py``'s.

EFA (awslabs' GPU cluster health check, ``2-efa-enumeration.sh``): EFA devices are PCI functions of vendor 0x1d0f
with device ids 0xefa0-0xefa3; the expected count per type is the knowledge table ec2-gpu-instances'; the ``efa``
and ``ib_uverbs`` modules must be loaded and ``/dev/infiniband/uverbs*`` present; NCCL over EFA registers memory, so
containers need a memlock limit of at least 16 GiB (unlimited is what the EKS and ECS GPU AMIs give).
"""

from __future__ import annotations

import os

from gpuprep import fixes
from gpuprep.ec2.efa import EFA_MODULES, efa_functions
from gpuprep.ec2.probes import probe_instance_type
from gpuprep.engine.memlock import MEMLOCK_MIN, container_memlock
from gpuprep.gpu.devices import parse_modules
from gpuprep.report import Status
from gpuprep.runner.checks import Check, NotApplicable, Probes, Verdict


def loaded_modules(probes: Probes) -> set[str]:
    return parse_modules(probes.host.read_text("/proc/modules") or "")


def check_efa(probes: Probes) -> Verdict:
    from gpuprep.ec2.instance_types import lookup

    it = probe_instance_type(probes).value
    spec = lookup(it) if it else None
    expected = spec.efa if spec is not None else None
    found = efa_functions(probes.host)
    if expected is None and not found:
        raise NotApplicable(f"{it or 'this host'} has no EFA device, and none is expected")
    if found is None:
        raise NotApplicable("no sysfs to count EFA devices in")
    modules = loaded_modules(probes)
    missing_modules = [m for m in EFA_MODULES if m not in modules] if probes.host.exists("/proc/modules") else []
    uverbs = sorted(n for n in os.listdir(probes.host.path("/dev/infiniband"))
                    if n.startswith("uverbs")) if probes.host.path("/dev/infiniband").is_dir() else []
    from gpuprep.engine.probes import daemon_json, daemon_json_path

    try:
        _, config = daemon_json(probes)
    except Exception:  # docker-daemon-json says what is wrong with it
        config = {}
    memlock, memlock_from = container_memlock(probes.host, config)
    data = {"instance_type": it, "expected": expected, "devices": len(found), "bus_ids": found,
            "modules_missing": missing_modules, "uverbs": uverbs, "memlock": memlock, "memlock_from": memlock_from}
    host = probes.host
    problems: list[str] = []
    found_fixes: list[fixes.Fix] = []
    if expected is not None and len(found) < expected:
        problems.append(f"{len(found)} EFA device(s) of the {expected} a {it} has")
        found_fixes += [fixes.Fix("a device missing from the bus does not come back on this host: stop and start "
                                  "the instance"),
                        fixes.Fix("on p5en a late one may still appear: look again in a minute",
                                  ("lspci", "-d", "1d0f:"), fixes.running_system(host))]
    if found and missing_modules:
        problems.append(f"module(s) {', '.join(missing_modules)} not loaded")
        found_fixes += [fixes.modprobe(host, *missing_modules),
                        fixes.Fix("where they are not installed, the EFA installer's packages ship them "
                                  "(https://efa-installer.amazonaws.com/aws-efa-installer-latest.tar.gz)")]
    if found and not uverbs and host.exists("/dev/null"):
        problems.append("no /dev/infiniband/uverbs* (containers cannot open EFA)")
        if "ib_uverbs" not in missing_modules:
            found_fixes.append(fixes.modprobe(host, "ib_uverbs"))
    if found and memlock is not None and memlock != -1 and memlock < MEMLOCK_MIN or found and memlock is None:
        problems.append(f"containers' memlock limit is {'unset' if memlock is None else f'{memlock >> 20} MiB'} "
                        f"({memlock_from}): NCCL over EFA needs 16 GiB or unlimited")
        why = "containers' memlock unlimited (daemon.json default-ulimits)"
        found_fixes.append(fixes.gpuprep(host, probes.platform, why, "install", "--only", "docker-memlock")
                           or fixes.edit_by_hand(str(host.path(daemon_json_path(probes))), why))
    if problems:
        return Verdict(Status.WARNING, "EFA: " + "; ".join(problems), data=data, fixes=found_fixes)
    return Verdict(Status.OK, f"EFA: {len(found)} device(s)" + (f" as a {it} has" if expected else "")
                   + f", {', '.join(EFA_MODULES)} loaded, {len(uverbs)} uverbs node(s), containers' memlock "
                   + ("unlimited" if memlock == -1 else f"{(memlock or 0) >> 30} GiB"), data=data)

CHECKS = [
    Check("efa-devices", "platform", "EFA on the types that have it: the device count the type has, efa and "
          "ib_uverbs loaded, /dev/infiniband/uverbs*, containers' memlock at least 16 GiB", check_efa, timeout=5),
]
