"""gpu checks of the boards and the services beside the driver (issue 28, items 4, 7, 8): each GPU's PCIe link,
one VBIOS across the GPUs, nvidia-persistenced's socket before ECS starts, MPS's pipe directory. (Item 10, the sources
that must list the GPUs, reads ecs-init's file too: ``ecs/gpu_sources.py``.)

Facts (docs/domain.md, "Added 2026-12-07"; the fleet tools facebookresearch/gcm, Azure/azurehpc-health-checks and
awslabs' GPU cluster health check run the same tests):
- sysfs gives each PCI function's ``current_link_width`` / ``max_link_width`` and ``current_link_speed`` /
  ``max_link_speed``. A width below the maximum is a degraded link (a bad riser or retimer), idle or not. The speed
  is not judged alone: an idle NVIDIA GPU drops its link to 2.5 GT/s to save power (``nvidia-smi -q -d PCIE``:
  "Link Generation Current"), so a lower speed is named in the data, and a warning only with a narrower link.
- The driver lists each GPU's VBIOS in ``/proc/driver/nvidia/gpus/<bus id>/information`` ("Video BIOS:").
- An MPS control daemon on the default pipe directory ``/tmp/nvidia-mps`` is bind-mounted by the NVIDIA runtime into
  every GPU container, so it captures work that never asked for sharing (aws/amazon-ecs-ami PR 771,
  aws/amazon-ecs-agent PR 5102); the AMI's nvidia-mps.service sets ``CUDA_MPS_PIPE_DIRECTORY=/run/mps-ecs``.
- A gate that passes when a source lists no GPU at all lets a GPU-less host into the cluster (the opposite of
  aws/eks-node-monitoring-agent issue 241): on a GPU instance type every source that must list GPUs must list some.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from gpuprep import fixes
from gpuprep.gpu import inventory
from gpuprep.gpu.checks import _pci_gpus, _short_list
from gpuprep.gpu.inventory import persistence_fixes
from gpuprep.gpu.query import MOVE_HARDWARE
from gpuprep.poll import poll_until
from gpuprep.report import Status
from gpuprep.runner.checks import Check, NotApplicable, Probes, Verdict, probe
from gpuprep.runner.needs import LIVE

# -- item 7: PCIe link ----------------------------------------------------------------------------------------------
_SPEED = re.compile(r"^([\d.]+)\s*GT/s")


def _read(probes: Probes, path: str) -> str | None:
    text = probes.host.read_text(path)
    return text.strip() if text is not None else None


def _speed(text: str | None) -> float | None:
    m = _SPEED.match(text or "")
    return float(m.group(1)) if m else None


def _width(text: str | None) -> int | None:
    return int(text) if text and text.isdigit() else None


def check_pcie_link(probes: Probes) -> Verdict:
    pci = _pci_gpus(probes)
    if not pci.present:
        raise NotApplicable("no sysfs to read the PCIe links from")
    links: dict[str, dict[str, Any]] = {}
    narrow, slow = [], []
    for f in pci.gpus:
        base = f"/sys/bus/pci/devices/{f.bus_id}"
        cur_w, max_w = (_width(_read(probes, f"{base}/{k}_link_width")) for k in ("current", "max"))
        cur_s, max_s = (_speed(_read(probes, f"{base}/{k}_link_speed")) for k in ("current", "max"))
        if cur_w is None and cur_s is None:
            continue
        links[f.bus_id] = {"width": cur_w, "max_width": max_w, "speed_gts": cur_s, "max_speed_gts": max_s}
        if cur_w is not None and max_w is not None and cur_w < max_w:
            narrow.append(f"{f.bus_id} x{cur_w} of x{max_w}"
                          + (f" at {cur_s:g} of {max_s:g} GT/s" if cur_s and max_s and cur_s < max_s else ""))
        elif cur_s is not None and max_s is not None and cur_s < max_s:
            slow.append(f"{f.bus_id} {cur_s:g} of {max_s:g} GT/s")
    if not links:
        raise NotApplicable("sysfs gives no PCIe link width or speed for the GPUs")
    data = {"links": links, "degraded": narrow, "below_max_speed": slow}
    if narrow:
        return Verdict(Status.WARNING, f"PCIe link degraded on {len(narrow)} of {len(links)} GPU(s): "
                       f"{_short_list(narrow)}: host-to-GPU transfers run at a fraction of their bandwidth",
                       data=data, fixes=[
                           fixes.reboot(probes.host, "a narrowed link does not recover on its own: reboot once"),
                           fixes.Fix("if it stays narrow, stop and start the instance to move to other hardware")])
    note = (f"; {len(slow)} below their maximum speed, as an idle GPU's link is" if slow else "")
    return Verdict(Status.OK, f"every GPU's PCIe link at its full width ({len(links)} GPU(s)){note}", data=data)


# -- item 8: one VBIOS; nvidia-persistenced's socket ---------------------------------------------------------------
def vbios_versions(probes: Probes) -> dict[str, str]:
    """bus id -> the VBIOS the driver reports for that GPU."""
    out = {}
    for f in inventory.probe_pci(probes).gpus:
        text = probes.host.read_text(f"/proc/driver/nvidia/gpus/{f.bus_id}/information") or ""
        m = re.search(r"^Video BIOS:\s*(\S+)", text, re.M)
        if m:
            out[f.bus_id] = m.group(1)
    return out


def check_vbios(probes: Probes) -> Verdict:
    _pci_gpus(probes)
    found = vbios_versions(probes)
    if len(found) < 2:
        raise NotApplicable("fewer than two GPUs report a VBIOS (/proc/driver/nvidia/gpus/*/information)")
    counts: dict[str, list[str]] = {}
    for bus, version in found.items():
        counts.setdefault(version, []).append(bus)
    data = {"vbios": found}
    if len(counts) > 1:
        common = max(counts, key=lambda v: len(counts[v]))
        odd = [f"{bus} {v}" for v, buses in counts.items() if v != common for bus in buses]
        return Verdict(Status.WARNING, f"the GPUs run {len(counts)} VBIOS versions: {_short_list(odd)} against "
                       f"{common} on the other {len(counts[common])}: a board was replaced or half-updated", data=data,
                       fixes=[fixes.on_running_system(probes.host, "each GPU's bus and VBIOS: report them to AWS "
                                                      "support (EC2 owns the firmware)", [
                                                          "nvidia-smi", "--query-gpu=pci.bus_id,vbios_version",
                                                          "--format=csv"]),
                              fixes.Fix("or move to other hardware: " + MOVE_HARDWARE)])
    return Verdict(Status.OK, f"one VBIOS ({next(iter(counts))}) across all {len(found)} GPUs", data=data)


PERSISTENCED_SOCKET = "/run/nvidia-persistenced/socket"
PERSISTENCED_UNIT = "nvidia-persistenced.service"
PERSISTENCED_WAIT_S = 15.0  # nvidia-persistenced makes its socket within a second or two of starting
PERSISTENCED_POLL_S = 0.1


def wait_for_socket(path: str, wait_s: float, poll_s: float = PERSISTENCED_POLL_S) -> tuple[bool, float]:
    """Whether ``path`` exists within ``wait_s`` seconds (polled), and how long that took."""
    waited = poll_until(lambda: os.path.exists(path), bool, what=path, timeout_s=wait_s, interval_s=poll_s,
                        max_interval_s=poll_s)
    return waited.met, waited.seconds


@probe
def persistenced_socket(p: Probes) -> tuple[bool, float]:
    """The socket is there (the boot gate waits for it, bounded, where persistence is required), and the wait."""
    from gpuprep.ec2.instance_types import lookup
    from gpuprep.ec2.probes import probe_instance_type

    it = probe_instance_type(p).value
    spec = lookup(it) if it else None
    wait = PERSISTENCED_WAIT_S if p.options.boot and spec is not None and spec.persistence_required else 0.0
    return wait_for_socket(str(p.host.path(PERSISTENCED_SOCKET)), wait)


def check_persistenced_socket(probes: Probes) -> Verdict:
    from gpuprep.ec2.instance_types import lookup
    from gpuprep.ec2.probes import probe_instance_type

    _pci_gpus(probes)
    it = probe_instance_type(probes).value
    spec = lookup(it) if it else None
    required = spec is not None and spec.persistence_required
    present, waited = persistenced_socket(probes)
    data = {"socket": PERSISTENCED_SOCKET, "present": present, "waited_s": round(waited, 2), "required": required,
            "instance_type": it}
    if present:
        return Verdict(Status.OK, f"{PERSISTENCED_SOCKET} is there: nvidia-persistenced serves the GPUs", data=data)
    if required:
        return Verdict(Status.CRITICAL, f"no {PERSISTENCED_SOCKET} on a {it}" + (f" after {waited:.0f} s" if waited
                       else "") + ": nvidia-persistenced is not running, and a cold GPU init outlasts the runtime's "
                       "timeout (`driver rpc error: timed out`)", data=data, fixes=persistence_fixes(probes))
    from gpuprep.services import Services

    if not Services(probes.host, probes.platform).state("nvidia-persistenced").is_enabled:
        raise NotApplicable(f"{PERSISTENCED_UNIT} is not enabled and {it or 'this host'} does not need it "
                            "(gpu-persistence says whether persistence mode is on)")
    return Verdict(Status.WARNING, f"{PERSISTENCED_UNIT} is enabled but {PERSISTENCED_SOCKET} is missing: the "
                   "daemon is not running, so each container start initialises the GPUs",
                   data=data, fixes=[f for f in (
                       fixes.service(probes.host, probes.platform, "restart", "nvidia-persistenced", "restart it"),
                       fixes.service_log(probes.host, probes.platform, "nvidia-persistenced", "its log says why it "
                                         "stopped")) if f is not None])


# -- item 4: MPS's pipe directory ---------------------------------------------------------------------------------
MPS_UNIT = "nvidia-mps.service"
DEFAULT_PIPE_DIR = "/tmp/nvidia-mps"
ECS_PIPE_DIR = "/run/mps-ecs"
MPS_DROP_IN = f"/etc/systemd/system/{MPS_UNIT}.d/10-pipe-directory.conf"
# The drop-in as package data, so that its fix is an argv (install -D), not a shell line that writes it.
MPS_DROP_IN_DATA = Path(__file__).resolve().parent.parent / "data" / "nvidia-mps-pipe-directory.conf"


def unit_pipe_directory(text: str) -> str:
    """CUDA_MPS_PIPE_DIRECTORY as the merged unit sets it (the last assignment wins), else MPS's default."""
    value = DEFAULT_PIPE_DIR
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("Environment="):
            for word in line.split("=", 1)[1].split():
                name, _, v = word.strip('"').partition("=")
                if name == "CUDA_MPS_PIPE_DIRECTORY" and v:
                    value = v
    return value.rstrip("/") or "/"


def check_mps_pipe(probes: Probes) -> Verdict:
    from gpuprep.services import unit_text

    path, text = unit_text(probes.host, MPS_UNIT)
    live_pipe = probes.host.live and os.path.exists(f"{DEFAULT_PIPE_DIR}/control")
    if path is None and not live_pipe:
        raise NotApplicable(f"no {MPS_UNIT} and no MPS daemon on {DEFAULT_PIPE_DIR}")
    pipe = unit_pipe_directory(text) if path else DEFAULT_PIPE_DIR
    data = {"unit": path, "pipe_directory": pipe, "live_pipe": live_pipe}
    if pipe == DEFAULT_PIPE_DIR or live_pipe:
        where = f"{path} runs the MPS daemon" if path and pipe == DEFAULT_PIPE_DIR else "an MPS daemon listens"
        return Verdict(Status.WARNING, f"{where} on the default pipe directory {DEFAULT_PIPE_DIR}: the NVIDIA runtime "
                       "mounts it into every GPU container, so MPS captures work that never asked for sharing",
                       data=data, fixes=_mps_pipe_fixes(probes, unit=path is not None))
    return Verdict(Status.OK, f"{MPS_UNIT} keeps its pipes in {pipe}, not {DEFAULT_PIPE_DIR}: only tasks that ask for "
                   "MPS share the GPU", data=data)


def _mps_pipe_fixes(probes: Probes, *, unit: bool) -> list[fixes.Fix]:
    """MPS's pipes moved to the ECS AMI's directory: a drop-in copied from gpuprep's package data into the target's
    unit directory, then, on the live host, systemd's units reloaded and the daemon restarted on it. An MPS daemon
    no unit runs is its starter's to move."""
    host = probes.host
    if not unit:
        return [fixes.Fix(f"start the MPS daemon with CUDA_MPS_PIPE_DIRECTORY={ECS_PIPE_DIR} (whoever started the one "
                          f"on {DEFAULT_PIPE_DIR}), or run it from {MPS_UNIT}")]
    found: list[fixes.Fix | None] = [fixes.Fix(f"keep its pipes in {ECS_PIPE_DIR} (a drop-in)", fixes.as_user(host, [
        "install", "-D", "-m", "0644", str(MPS_DROP_IN_DATA), str(host.path(MPS_DROP_IN))]))]
    if host.live:
        found += [fixes.daemon_reload(host),
                  fixes.service(host, probes.platform, "restart", MPS_UNIT.removesuffix(".service"),
                                "restart MPS on its new pipes")]
    return [f for f in found if f is not None]


CHECKS = [
    Check("gpu-pcie-link", "gpu", "each GPU's PCIe link at its maximum width (sysfs current_link_* vs max_link_*)",
          check_pcie_link, timeout=5),
    Check("gpu-vbios", "gpu", "one VBIOS version across the GPUs (/proc/driver/nvidia/gpus)", check_vbios, timeout=5),
    Check("gpu-persistenced-socket", "gpu", "nvidia-persistenced's socket is there before ECS starts (the boot gate "
          "waits for it, bounded, where persistence is required)", check_persistenced_socket,
          timeout=PERSISTENCED_WAIT_S + 5, needs=(LIVE,), boot=True),
    Check("gpu-mps-pipe", "gpu", "no MPS daemon on the default pipe directory /tmp/nvidia-mps (it captures every GPU "
          "container)", check_mps_pipe, timeout=5),
]
