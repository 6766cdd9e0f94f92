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

from gpuprep.ecs.config import GPU_INFO
from gpuprep.gpu import inventory
from gpuprep.gpu.query import MOVE_HARDWARE, QUERY_TIMEOUT
from gpuprep.report import Status
from gpuprep.runner.checks import Check, NotApplicable, Probes, Verdict, probe

GPU_METRICS = "/var/run/ecs/gpu-metrics.json"
STALE_AFTER_S = 180  # the agent's gpuStalenessThreshold: 3x dcgm-init's 60 s tick
RESTART_DCGM_INIT = "`sudo systemctl restart dcgm-init` (it writes the file on its next 60 s tick)"

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
                       RESTART_DCGM_INIT, {"file": GPU_METRICS})
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
            "(ACCELERATED_COMPUTE) and it should take no GPU tasks",
            "drain it (`aws ecs update-container-instances-state --cluster CLUSTER --container-instances ID "
            "--status DRAINING`), then `journalctl -k -b | grep NVRM` for the XID; reset the GPU (`sudo nvidia-smi "
            "-r -i N`) or reboot, and if it recurs " + MOVE_HARDWARE, data)
    if stale:
        return Verdict(Status.WARNING, f"{GPU_METRICS} is stale ({when}; dcgm-init writes every 60 s): the agent "
                       "reports INSUFFICIENT_DATA", f"`systemctl status dcgm-init`; {RESTART_DCGM_INIT}", data)
    if doc.get("connection_lost"):
        return Verdict(Status.WARNING, f"dcgm-init lost its DCGM connection ({when}): GPU health unknown, the agent "
                       "reports INSUFFICIENT_DATA", f"`journalctl -u dcgm-init -n 50`; {RESTART_DCGM_INIT}", data)
    note = f"; restart-the-application XIDs: {', '.join(f'{u} x{n}' for u, n in xids.items())}" if xids else ""
    return Verdict(Status.OK, f"dcgm-init reports the GPUs healthy ({len(gpus)} GPU(s), {when}){note}", data=data)


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
        return Verdict(Status.WARNING, "the ECS agent will not advertise ecs.capability.gpu-sharing-mps: "
                       + "; ".join(MPS_REASONS[c] for c in unmet), " ".join(MPS_FIXES[c] for c in unmet), data)
    said = f" ({', '.join(unknown)} not checked: {query.skipped or 'NVML did not answer'})" if unknown else ""
    restart = ""
    if info and not all(info.get(k) for k in ("MpsControlBinaryPresent", "MpsServiceEnabled")):
        restart = (f"; {GPU_INFO} still has ecs-init's facts from before: `sudo systemctl restart ecs` so it "
                   "gathers them again")
        return Verdict(Status.WARNING, "MPS is ready, but ecs-init recorded otherwise at its last start" + said,
                       restart.lstrip("; "), data)
    whole = f", {len(gpus)} whole GPU(s) with their memory" if gpus else ""
    return Verdict(Status.OK, f"MPS ready as the ECS agent gates it: {MPS_CONTROL}, {MPS_UNIT} {enabled}{whole}{said}",
                   data=data)


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
MPS_FIXES = {
    "gpu-present": "Use a GPU instance type (see gpu-pci).",
    "mps-binary-present": f"Install the driver package that ships it: `dnf provides {MPS_CONTROL}` names it, "
                          "then `sudo dnf install` that package.",
    "mps-service-enabled": f"`sudo systemctl enable --now {MPS_UNIT} && sudo systemctl restart ecs` (ecs-init "
                           "gathers the MPS facts at its start; the AL2023 ECS GPU AMI ships the unit, "
                           "aws/amazon-ecs-ami PR #744).",
    "not-vgpu": "MPS needs whole GPUs: use an instance type with pass-through GPUs, not a fractional (vGPU) one.",
    "all-gpus-have-memory": "`nvidia-smi --query-gpu=index,memory.total,memory.reserved --format=csv` shows which; "
                            "reset it (`sudo nvidia-smi -r -i N`) or reboot.",
}


CHECKS = [
    Check("ecs-gpu-health", "ecs", "dcgm-init's GPU health (/var/run/ecs/gpu-metrics.json), as ECS's "
          "ACCELERATED_COMPUTE check reads it", check_gpu_health, timeout=2.0),
    Check("ecs-gpu-sharing-mps", "ecs", "where MPS is installed: every condition the agent needs to advertise "
          "ecs.capability.gpu-sharing-mps", check_mps, timeout=QUERY_TIMEOUT),
]
