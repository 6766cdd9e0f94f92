"""ecs checks of what the ECS agent concludes about the GPUs: the ACCELERATED_COMPUTE instance health that dcgm-init
feeds it, and whether it may advertise GPU sharing with MPS.

GPU health (aws/amazon-ecs-agent, branch feature/gpu-metrics): ``dcgm-init`` (``dcgm-init.service``) writes
``/var/run/ecs/gpu-metrics.json`` every 60 s, atomically (``dcgm-init/engine/engine.go``): ``{"timestamp" (RFC 3339),
"healthy", "unhealthy_reason" (e.g. "XID_48"), "connection_lost", "gpus": [{"gpu_uuid", "restart_app_xid_count",
...}]}``. The agent's check (``agent/doctor/gpu_healthcheck.go``, PR #5057) reports INSUFFICIENT_DATA when the
file is missing, older than 180 s (3 ticks) or says the DCGM connection is lost, IMPAIRED when not healthy. doctor
reads the file and never writes it.

MPS (PR #5053, #5075; amazon-ecs-ami PR #744): the agent advertises ``ecs.capability.gpu-sharing-mps`` only when
an NVIDIA GPU is present, ``/usr/bin/nvidia-cuda-mps-control`` exists, ``systemctl is-enabled nvidia-mps.service``
prints ``enabled`` or ``enabled-runtime``, no GPU is in NVML's vGPU virtualization mode, and every GPU reports its
memory (total less reserved, all or none). ecs-init gathers these facts at its start into nvidia-gpu-info.json
(``ecs-init/gpu/nvidia_gpu_manager.go``); an admin otherwise learns why the capability is missing from one agent
log line.
"""

from __future__ import annotations

import json
import time
from datetime import datetime
from typing import Any

from gpuprep import fixes
from gpuprep.ecs.config import GPU_INFO
from gpuprep.gpu import inventory
from gpuprep.gpu.query import MOVE_HARDWARE, QUERY_TIMEOUT
from gpuprep.report import Status
from gpuprep.runner.checks import Check, NotApplicable, Probes, Verdict, probe

GPU_METRICS = "/var/run/ecs/gpu-metrics.json"
STALE_AFTER_S = 180  # the agent's gpuStalenessThreshold: 3x dcgm-init's 60 s tick
DCGM_INIT = "dcgm-init"


def _dcgm_init(probes: Probes, first: fixes.Fix | None = None) -> list[fixes.Fix]:
    """dcgm-init restarted (it writes the file on its next 60 s tick), after ``first`` (what says why it stopped)."""
    restart = fixes.service(probes.host, probes.platform, "restart", DCGM_INIT,
                            "restart dcgm-init (it writes the file on its next 60 s tick)")
    return [f for f in (first, restart) if f is not None]

MPS_CONTROL = "/usr/bin/nvidia-cuda-mps-control"
MPS_UNIT = "nvidia-mps.service"
UNIT_DIRS = ("/etc/systemd/system", "/usr/lib/systemd/system", "/lib/systemd/system")


# -- GPU health from dcgm-init ----------------------------------------------------------------------------
def _parse_time(value: Any) -> float | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def check_gpu_health(probes: Probes) -> Verdict:
    text = probes.host.read_text(GPU_METRICS)
    if text is None:
        raise NotApplicable(f"no {GPU_METRICS}: dcgm-init (the ECS agent's GPU health, ACCELERATED_COMPUTE) does "
                            "not run here")
    try:
        doc = json.loads(text)
    except ValueError as exc:
        doc, error = None, str(exc)
    else:
        error = "not a JSON object"
    if not isinstance(doc, dict):
        return Verdict(Status.WARNING, f"{GPU_METRICS} is unreadable ({error}): the agent reports INSUFFICIENT_DATA",
                       data={"file": GPU_METRICS}, fixes=_dcgm_init(probes))
    written = _parse_time(doc.get("timestamp"))
    age = None if written is None else round(time.time() - written)
    gpus = [g for g in doc.get("gpus") or [] if isinstance(g, dict)]
    xids = {str(g.get("gpu_uuid", "?")): g.get("restart_app_xid_count") for g in gpus
            if g.get("restart_app_xid_count")}
    data = {"file": GPU_METRICS, "timestamp": doc.get("timestamp"), "age_s": age, "healthy": doc.get("healthy"),
            "unhealthy_reason": doc.get("unhealthy_reason"), "connection_lost": bool(doc.get("connection_lost")),
            "gpus": len(gpus), "restart_app_xids": xids}
    stale = age is None or age > STALE_AFTER_S
    when = f"written {doc.get('timestamp')!s}" + (f", {age} s ago" if age is not None else " (no readable time)")
    if doc.get("healthy") is False:
        reason = doc.get("unhealthy_reason") or "no reason given"
        return Verdict(
            Status.CRITICAL,
            f"dcgm-init reports the GPUs unhealthy ({reason}; {when}): ECS marks this instance IMPAIRED "
            "(ACCELERATED_COMPUTE) and it should take no GPU tasks", data=data, fixes=_unhealthy_fixes(probes))
    if stale:
        return Verdict(Status.WARNING, f"{GPU_METRICS} is stale ({when}; dcgm-init writes every 60 s): the agent "
                       "reports INSUFFICIENT_DATA", data=data, fixes=_dcgm_init(probes, fixes.service(
                           probes.host, probes.platform, "status", DCGM_INIT, "ask whether it runs")))
    if doc.get("connection_lost"):
        return Verdict(Status.WARNING, f"dcgm-init lost its DCGM connection ({when}): GPU health unknown, the agent "
                       "reports INSUFFICIENT_DATA", data=data, fixes=_dcgm_init(probes, fixes.service_log(
                           probes.host, probes.platform, DCGM_INIT, "its log says why")))
    note = f"; restart-the-application XIDs: {', '.join(f'{u} x{n}' for u, n in xids.items())}" if xids else ""
    return Verdict(Status.OK, f"dcgm-init reports the GPUs healthy ({len(gpus)} GPU(s), {when}){note}", data=data)


def _unhealthy_fixes(probes: Probes) -> list[fixes.Fix]:
    """An instance dcgm-init found unhealthy: drained, the XID read, a reboot, other hardware if it recurs (the log
    and the reboot are the running instance's: under --root marked for it)."""
    host = probes.host
    return [fixes.Fix("drain the instance so ECS places no task on it", (
                "aws", "ecs", "update-container-instances-state", "--cluster", "CLUSTER", "--container-instances",
                "ID", "--status", "DRAINING")),
            fixes.kernel_log(host, "the kernel log names the XID (NVRM: Xid lines)"),
            fixes.reboot(host, "reboot to reset the GPUs"),
            fixes.Fix("if it recurs: " + MOVE_HARDWARE)]


# -- MPS readiness, as the agent gates it ----------------------------------------------------------------
def _mps_unit_exists(probes: Probes) -> bool:
    return any(probes.host.exists(f"{d}/{MPS_UNIT}") for d in UNIT_DIRS)


@probe
def _mps_enabled(p: Probes) -> str:
    from gpuprep.services import Services

    return Services(p.host, p.platform).state(MPS_UNIT).enabled


def check_mps(probes: Probes) -> Verdict:
    host = probes.host
    binary = host.exists(MPS_CONTROL)
    unit = _mps_unit_exists(probes)
    if not binary and not unit:
        raise NotApplicable(f"MPS is not installed ({MPS_CONTROL} and {MPS_UNIT} absent): GPUs are not shared")
    pci = inventory.probe_pci(probes)
    conditions: dict[str, bool | None] = {"gpu-present": bool(pci.gpus) if pci.present else None,
                                          "mps-binary-present": binary}
    enabled = _mps_enabled(probes) if unit else "not-found"
    conditions["mps-service-enabled"] = enabled in ("enabled", "enabled-runtime")
    query = inventory.probe_query(probes)
    gpus = [g for g in query.gpus if not g.error] if query.answered else []
    if gpus:
        conditions["not-vgpu"] = not any(g.virtualization_mode == "vgpu" for g in gpus)
        usable = [g.usable_memory_mib for g in gpus]
        conditions["all-gpus-have-memory"] = all(m is not None and m > 0 for m in usable)
    else:
        conditions["not-vgpu"] = conditions["all-gpus-have-memory"] = None  # NVML not asked, or no answer
    data: dict[str, Any] = {"conditions": conditions, "service": enabled,
                            "gpus": {str(g.index): {"virtualization_mode": g.virtualization_mode,
                                                    "usable_memory_mib": g.usable_memory_mib} for g in gpus}}
    info = _gpu_info_facts(probes)
    if info:
        data["ecs_init"] = info
    unmet = [c for c, ok in conditions.items() if ok is False]
    unknown = [c for c, ok in conditions.items() if ok is None]
    if unmet:
        summary = "the ECS agent will not advertise ecs.capability.gpu-sharing-mps: " + "; ".join(
            MPS_REASONS[c] for c in unmet)
        if unmet == ["mps-service-enabled"]:
            return Verdict(Status.WARNING, summary, data=data, fixes=_mps_service_fixes(probes))
        return Verdict(Status.WARNING, summary, data=data,
                       fixes=[f for c in unmet for f in _mps_condition_fixes(probes, c)])
    said = f" ({', '.join(unknown)} not checked: {query.skipped or 'NVML did not answer'})" if unknown else ""
    if info and not all(info.get(k) for k in ("MpsControlBinaryPresent", "MpsServiceEnabled")):
        restart = fixes.service(probes.host, probes.platform, "restart", "ecs", f"{GPU_INFO} still has ecs-init's "
                                "facts from before: restart ecs so it gathers them again")
        return Verdict(Status.WARNING, "MPS is ready, but ecs-init recorded otherwise at its last start" + said,
                       data=data, fixes=[restart] if restart is not None else [])
    whole = f", {len(gpus)} whole GPU(s) with their memory" if gpus else ""
    return Verdict(Status.OK, f"MPS ready as the ECS agent gates it: {MPS_CONTROL}, {MPS_UNIT} {enabled}{whole}{said}",
                   data=data)


def _mps_service_fixes(probes: Probes) -> list[fixes.Fix]:
    """nvidia-mps.service enabled (in an image through systemctl --root), and on a running host started and ecs
    restarted: ecs-init gathers the MPS facts at its start (the AL2023 ECS GPU AMI ships the unit,
    aws/amazon-ecs-ami PR #744)."""
    host, p = probes.host, probes.platform
    enable = fixes.service(host, p, "enable", MPS_UNIT, f"enable {MPS_UNIT} for every boot")
    if not host.live:
        return [enable] if enable is not None else []
    then = [fixes.service(host, p, "start", MPS_UNIT, f"start {MPS_UNIT}"),
            fixes.service(host, p, "restart", "ecs", "restart ecs: ecs-init gathers the MPS facts at its start")]
    return [f for f in (enable, *then) if f is not None]


def _gpu_info_facts(probes: Probes) -> dict[str, Any]:
    try:
        doc = json.loads(probes.host.read_text(GPU_INFO) or "null")
    except (ValueError, PermissionError):
        return {}
    if not isinstance(doc, dict):
        return {}
    return {k: doc[k] for k in ("MpsControlBinaryPresent", "MpsServiceEnabled", "HasVGPU") if k in doc}


# The agent's own words for each unmet condition (ecs-agent/utils/gpu, MpsGateCondition.UnmetReason).
MPS_REASONS = {
    "gpu-present": "no NVIDIA GPU present",
    "mps-binary-present": f"MPS control binary not present on host ({MPS_CONTROL})",
    "mps-service-enabled": f"{MPS_UNIT} is not enabled on host",
    "not-vgpu": "instance has an NVIDIA vGPU slice, where MPS is not supported",
    "all-gpus-have-memory": "a GPU does not report its memory",
}


def _mps_condition_fixes(probes: Probes, condition: str) -> list[fixes.Fix]:
    """What meets one of the agent's MPS conditions here."""
    host, p = probes.host, probes.platform
    if condition == "mps-service-enabled":
        return _mps_service_fixes(probes)
    if condition == "mps-binary-present":
        if p.package_manager in ("dnf", "yum"):
            return [fixes.Fix("the driver package that ships it: install that package", (
                *fixes.package_manager_args(host, p), "provides", MPS_CONTROL))]
        return [fixes.Fix(f"install the driver package that ships {MPS_CONTROL}")]
    if condition == "all-gpus-have-memory":
        runs = fixes.running_system(host)
        return [fixes.Fix("shows which GPU reports no memory: reset it or reboot", fixes.as_user(
            host, ["nvidia-smi", "--query-gpu=index,memory.total,memory.reserved", "--format=csv"], runs), runs)]
    return [fixes.Fix({"gpu-present": "use a GPU instance type (see gpu-pci)",
                       "not-vgpu": "MPS needs whole GPUs: use an instance type with pass-through GPUs, not a "
                                   "fractional (vGPU) one"}.get(condition, MPS_REASONS.get(condition, condition)))]


CHECKS = [
    Check("ecs-gpu-health", "ecs", "dcgm-init's GPU health (/var/run/ecs/gpu-metrics.json), as ECS's "
          "ACCELERATED_COMPUTE check reads it", check_gpu_health, timeout=2.0),
    Check("ecs-gpu-sharing-mps", "ecs", "where MPS is installed: every condition the agent needs to advertise "
          "ecs.capability.gpu-sharing-mps", check_mps, timeout=QUERY_TIMEOUT),
]
