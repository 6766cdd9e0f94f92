"""platform checks that EC2 alone can answer (issue 28, items 5 and 6): scheduled maintenance, and EFA on the types
that have it.

Scheduled events: IMDSv2 ``GET /latest/meta-data/events/maintenance/scheduled`` answers a JSON list of
``{"Code", "Description", "NotBefore", "NotAfter", "State", "EventId"}``; ``Code`` is ``instance-reboot``,
``system-reboot``, ``system-maintenance``, ``instance-retirement`` or ``instance-stop``; ``State`` ``active`` is
pending, ``completed`` / ``canceled`` are done (docs.aws.amazon.com/AWSEC2/latest/UserGuide/
viewing_scheduled_events.html). Asked within a second, straight to the service (no proxy), and fail-open: no answer
is ``skipped``, never a finding (facebookresearch/gcm and awslabs' GPU cluster health check do the same).

EFA (awslabs' GPU cluster health check, ``2-efa-enumeration.sh``): EFA devices are PCI functions of vendor 0x1d0f
with device ids 0xefa0-0xefa3; the expected count per type is the knowledge table ec2-gpu-instances'; the ``efa``
and ``ib_uverbs`` modules must be loaded and ``/dev/infiniband/uverbs*`` present; NCCL over EFA registers memory, so
containers need a memlock limit of at least 16 GiB (unlimited is what the EKS and ECS GPU AMIs give).
"""

from __future__ import annotations

import json
import os
import re
import time
from typing import Any

from gpuprep.ec2.checks import probe_instance_type
from gpuprep.gpu.devices import parse_modules
from gpuprep.host import Host
from gpuprep.report import Status
from gpuprep.runner.checks import Check, NotApplicable, Probes, Verdict, probe

SCHEDULED = "/latest/meta-data/events/maintenance/scheduled"
MAINTENANCE_BUDGET_S = 1.0

# EFA devices per instance type: the knowledge table ec2-gpu-instances' ``efa`` column (instance_types.lookup).
EFA_VENDOR = 0x1D0F
EFA_DEVICE_IDS = (0xEFA0, 0xEFA1, 0xEFA2, 0xEFA3)
EFA_MODULES = ("efa", "ib_uverbs")
MEMLOCK_MIN = 16 << 30  # bytes
DEFAULT_ULIMIT = {"Name": "memlock", "Hard": -1, "Soft": -1}


# -- item 6: scheduled maintenance --------------------------------------------------------------------------------
@probe
def probe_scheduled_events(p: Probes) -> list[dict[str, Any]] | str:
    """The scheduled events, or why none could be read (a string: fail-open)."""
    from gpuprep.ec2.imds import endpoint_for, get_metadata, on_ec2

    endpoint, named = endpoint_for(p.host)
    if endpoint is None or (not named and not on_ec2(p.host)):
        return "not an EC2 instance, or its metadata turned off"
    import http.client

    try:
        status, body, _ = get_metadata(endpoint, time.monotonic() + MAINTENANCE_BUDGET_S, SCHEDULED)
    except (OSError, http.client.HTTPException, ValueError) as exc:
        why = str(exc) or type(exc).__name__
        return f"the instance metadata service did not answer within {MAINTENANCE_BUDGET_S:g}s ({why})"
    if status == 404:
        return []  # no event was ever scheduled
    if status != 200:
        return f"{SCHEDULED} answered HTTP {status}"
    try:
        events = json.loads(body or "[]")
    except ValueError:
        return f"{SCHEDULED} is not JSON: {body[:60]!r}"
    return [e for e in events if isinstance(e, dict)] if isinstance(events, list) else f"{SCHEDULED}: not a list"


def check_maintenance(probes: Probes) -> Verdict:
    events = probe_scheduled_events(probes)
    if isinstance(events, str):
        raise NotApplicable(events)
    pending = [e for e in events if str(e.get("State", "active")).lower() == "active"
               and not str(e.get("Description", "")).startswith(("[Completed]", "[Canceled]"))]
    data = {"events": events}
    if pending:
        said = "; ".join(f"{e.get('Code', 'event')} not before {e.get('NotBefore', '?')} ({e.get('EventId', '')})"
                         for e in pending)
        return Verdict(Status.WARNING, f"EC2 scheduled maintenance: {said}",
                       "drain the instance before the date (`aws ecs update-container-instances-state --cluster C "
                       "--container-instances ARN --status DRAINING`), then stop and start it to move to other "
                       "hardware now, or reschedule: `aws ec2 modify-instance-event-start-time --instance-id ID "
                       f"--instance-event-id {pending[0].get('EventId', 'EVENT')} --not-before DATE`", data)
    return Verdict(Status.OK, "no EC2 maintenance scheduled for this instance", data=data)


# -- item 5: EFA --------------------------------------------------------------------------------------------------
def efa_functions(host: Host) -> list[str] | None:
    """The EFA devices' PCI bus ids; None where there is no sysfs to look in."""
    devices = host.path("/sys/bus/pci/devices")
    if not devices.is_dir():
        return None
    out = []
    for dev in sorted(devices.iterdir()):
        try:
            vendor = int((dev / "vendor").read_text().strip(), 16)
            device = int((dev / "device").read_text().strip(), 16)
        except (OSError, ValueError):
            continue
        if vendor == EFA_VENDOR and device in EFA_DEVICE_IDS:
            out.append(dev.name)
    return out


def loaded_modules(probes: Probes) -> set[str]:
    return parse_modules(probes.host.read_text("/proc/modules") or "")


def _memlock_bytes(value: Any) -> int | None:
    """A ulimit value as Docker or systemd gives it: -1 / "infinity" / "unlimited" is unlimited; K/M/G suffixes."""
    if value in (-1, "-1") or str(value).lower() in ("infinity", "unlimited"):
        return -1
    m = re.fullmatch(r"(\d+)([KMGT]?)", str(value).strip(), re.I)
    if not m:
        return None
    return int(m.group(1)) << {"": 0, "K": 10, "M": 20, "G": 30, "T": 40}[m.group(2).upper()]


def container_memlock(host: Host, config: dict[str, Any]) -> tuple[int | None, str]:
    """The memlock limit a container gets (bytes, -1 unlimited): daemon.json's default-ulimits, else
    docker.service's LimitMEMLOCK (a container inherits dockerd's through containerd), else None: unset."""
    entry = (config.get("default-ulimits") or {}).get("memlock") if isinstance(config, dict) else None
    if isinstance(entry, dict):
        return _memlock_bytes(entry.get("Soft")), "daemon.json default-ulimits.memlock"
    from gpuprep.services import unit_text

    unit, text = unit_text(host, "docker.service")
    found = re.findall(r"^LimitMEMLOCK=(\S*)", text, re.M)
    if found and found[-1]:  # the last assignment wins; an empty one resets it
        return _memlock_bytes(found[-1].split(":")[0]), f"docker.service LimitMEMLOCK ({unit or 'a drop-in'})"
    return None, "nothing sets it (a container gets the kernel's default, 8 MiB)"


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
    from gpuprep.engine.checks import daemon_json

    try:
        _, config = daemon_json(probes)
    except Exception:  # docker-daemon-json says what is wrong with it
        config = {}
    memlock, memlock_from = container_memlock(probes.host, config)
    data = {"instance_type": it, "expected": expected, "devices": len(found), "bus_ids": found,
            "modules_missing": missing_modules, "uverbs": uverbs, "memlock": memlock, "memlock_from": memlock_from}
    problems, fixes = [], []
    if expected is not None and len(found) < expected:
        problems.append(f"{len(found)} EFA device(s) of the {expected} a {it} has")
        fixes.append("a device missing from the bus does not come back on this host: stop and start the instance "
                     "(on p5en a late one may still appear: `lspci -d 1d0f:` again in a minute)")
    if found and missing_modules:
        problems.append(f"module(s) {', '.join(missing_modules)} not loaded")
        fixes.append(f"`modprobe -a {' '.join(missing_modules)}` (the EFA installer's packages ship them: "
                     "`curl -O https://efa-installer.amazonaws.com/aws-efa-installer-latest.tar.gz`)")
    if found and not uverbs and probes.host.exists("/dev/null"):
        problems.append("no /dev/infiniband/uverbs* (containers cannot open EFA)")
        fixes.append("`modprobe ib_uverbs` makes them")
    if found and memlock is not None and memlock != -1 and memlock < MEMLOCK_MIN or found and memlock is None:
        problems.append(f"containers' memlock limit is {'unset' if memlock is None else f'{memlock >> 20} MiB'} "
                        f"({memlock_from}): NCCL over EFA needs 16 GiB or unlimited")
        gp = "gpuprep" if probes.host.live else f"gpuprep --root {probes.host.root}"
        fixes.append(f"`{gp} install --only docker-memlock` (daemon.json default-ulimits memlock unlimited)")
    if problems:
        return Verdict(Status.WARNING, "EFA: " + "; ".join(problems), "; ".join(fixes), data)
    return Verdict(Status.OK, f"EFA: {len(found)} device(s)" + (f" as a {it} has" if expected else "")
                   + f", {', '.join(EFA_MODULES)} loaded, {len(uverbs)} uverbs node(s), containers' memlock "
                   + ("unlimited" if memlock == -1 else f"{(memlock or 0) >> 30} GiB"), data=data)


CHECKS = [
    Check("ec2-maintenance", "platform", "no EC2 scheduled maintenance (retirement, reboot, stop) pending for this "
          "instance (IMDSv2, within 1 s, fail-open)", check_maintenance, timeout=4),
    Check("efa-devices", "platform", "EFA on the types that have it: the device count the type has, efa and "
          "ib_uverbs loaded, /dev/infiniband/uverbs*, containers' memlock at least 16 GiB", check_efa, timeout=5),
]
