"""The fabric of NVSwitch hosts (p4d, p4de, p5, p5e, p5en, p6-b200, p6-b300, p6e-gb200): fabric manager, NVML's fabric
state and health per GPU, the NVLinks, NVLink5's InfiniBand modules and nvlsm, GB200's IMEX.

Without the fabric, CUDA fails with 802 while nvidia-smi looks healthy (docs/domain.md, "The fabric"). On every other
type these checks skip, saying so ("g6.xlarge: no NVSwitch"). The instance type comes from the instance metadata
(``ec2/probes.probe_instance_type``); off EC2 the PCI bus decides (NVSwitch bridges are NVIDIA functions of class
0x0680, as on p4d and p5). In ``doctor --boot`` the fabric is waited for, bounded (``FABRIC_WAIT_S``), before it is
judged and before CUDA is proven: at boot fabric manager may still be training it.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Any

from gpuprep import fixes
from gpuprep.ec2.imds import InstanceType
from gpuprep.ec2.instance_types import lookup
from gpuprep.ec2.probes import probe_instance_type
from gpuprep.gpu import fabric, inventory
from gpuprep.gpu.devices import parse_modules
from gpuprep.gpu.fabric import COMPLETED, IN_PROGRESS, NOT_STARTED, NOT_SUPPORTED, FabricView
from gpuprep.gpu.query import MAX_INIT_S
from gpuprep.host import Host
from gpuprep.poll import poll_until
from gpuprep.report import Status
from gpuprep.runner.checks import Check, NotApplicable, Probes, Verdict, probe

log = logging.getLogger("gpuprep")

SERVICE = "nvidia-fabricmanager"
UNIT = f"{SERVICE}.service"
UNIT_DIRS = ("/etc/systemd/system", "/usr/lib/systemd/system", "/lib/systemd/system")
WANTS_LINK = f"/etc/systemd/system/multi-user.target.wants/{UNIT}"
# NVIDIA's packages: nvidia-fabric-manager (RPM, versioned as the driver), nvidia-fabricmanager-<branch> (Ubuntu).
RPM_NAME = "nvidia-fabric-manager"
# Fabric manager trains a p5's fabric in well under a minute after it starts; past this after boot a fabric still
# in progress is stuck (on NVLink5 without nvlsm it stays so forever: NVIDIA/gpu-operator 2781).
FABRIC_SETTLE_S = 300.0
FABRIC_WAIT_S = 90.0  # how long `doctor --boot` waits for the fabric before judging it (the unit allows 180 s)
POLL_S = 1.0
NVLINK5 = ("p6-b200", "p6-b300", "p6e-gb200")  # NVLink5: the switch trays are managed over InfiniBand by nvlsm
IB_MODULES = ("ib_umad", "mlx5_ib")
NVLSM_PATHS = ("/usr/bin/nvlsm", "/usr/sbin/nvlsm", "/opt/nvidia/nvlsm/sbin/nvlsm")
IMEX_FAMILIES = ("p6e-gb200",)  # Grace-Blackwell: multi-node NVLink memory shared through IMEX channels
IMEX_UNIT = "nvidia-imex.service"
IMEX_CHANNELS = "/dev/nvidia-caps-imex-channels"
NVLINK5_MODULES_LOAD = "/etc/modules-load.d/nvlink5.conf"
NVSWITCH_CLASS = "0x0680"


# -- is this an NVSwitch host? ---------------------------------------------------------------
@dataclass(frozen=True)
class FabricHost:
    label: str  # "p5.48xlarge", or "this host (N NVSwitch bridges on the PCI bus)"
    family: str  # "p5", "" off EC2


def _pci_nvswitches(host: Host) -> int:
    base = "/sys/bus/pci/devices"
    if not host.exists(base):
        return 0
    count = 0
    for entry in host.path(base).iterdir():
        vendor = host.read_text(f"{base}/{entry.name}/vendor") or ""
        klass = host.read_text(f"{base}/{entry.name}/class") or ""
        count += vendor.strip() == "0x10de" and klass.strip().startswith(NVSWITCH_CLASS)
    return count


def nvswitch_host(host: Host, it: InstanceType) -> FabricHost | str:
    """The NVSwitch host, or why this is not one (a string: the skip reason)."""
    if it.value is not None:
        spec = lookup(it.value)
        if spec is not None:
            return FabricHost(it.value, spec.family) if spec.nvswitch else f"{it.value}: no NVSwitch"
    switches = _pci_nvswitches(host)
    if switches:
        return FabricHost(f"this host ({switches} NVSwitch bridges on the PCI bus)", "")
    why = it.skipped if it.value is None else f"{it.value} is not in gpuprep's instance table"
    return f"no NVSwitch: {why}, and no NVSwitch on the PCI bus"


@probe
def fabric_host(p: Probes) -> FabricHost | str:
    return nvswitch_host(p.host, probe_instance_type(p))


def _host(probes: Probes, families: tuple[str, ...] = (), what: str = "") -> FabricHost:
    """The NVSwitch host, or NotApplicable; with ``families``, only a host of one of them (``what`` they are)."""
    host = fabric_host(probes)
    if isinstance(host, str):
        raise NotApplicable(host)
    if families and host.family not in families:
        raise NotApplicable(f"{host.label}: {what} ({', '.join(families)})")
    return host


def unit_file(host: Host, unit: str) -> str | None:
    return next((f"{d}/{unit}" for d in UNIT_DIRS if host.exists(f"{d}/{unit}")), None)


# -- fabric manager --------------------------------------------------------------------------
@dataclass
class FabricManager:
    unit: str | None  # the unit file's path, None: not installed
    enabled: bool
    active: str  # systemd's ActiveState; "unknown" with --root
    version: str | None  # the package's (or nv-fabricmanager's) version, None when unknown

    def as_dict(self) -> dict[str, Any]:
        return {"unit": self.unit, "enabled": self.enabled, "active": self.active, "version": self.version}


def _fm_version(p: Probes) -> str | None:
    from gpuprep.errors import CommandError

    if p.platform.package_format == "rpm":
        from gpuprep.packages.rpmdb import installed

        try:
            found = installed(p.host, [RPM_NAME])
        except CommandError:
            found = []
        if found:
            return found[0].evr.version
    exe = p.host.which("nv-fabricmanager") if p.host.live else None
    if exe:
        try:
            done = p.host.run([exe, "--version"], timeout=10, check=False)
        except CommandError:
            return None
        m = re.search(r"version is\s*:\s*(\S+)", done.stdout)  # "Fabric Manager version is : 580.95.05"
        return m.group(1) if m else None
    return None


@probe
def fabric_manager(p: Probes) -> FabricManager:
    from gpuprep.services import Services

    unit = unit_file(p.host, UNIT)
    enabled = p.host.lexists(WANTS_LINK)
    active = "unknown"
    if unit and p.host.live:
        state = Services(p.host, p.platform).state(SERVICE)
        active, enabled = state.active, enabled or state.is_enabled
    return FabricManager(unit, enabled, active, _fm_version(p) if unit else None)


def _install_fix(probes: Probes, version: str | None) -> fixes.Fix:
    """nvidia-fabricmanager of the driver's version, through this platform's package manager for the target; on
    apt its package is named by the driver's branch, which only a known driver version gives."""
    why = "install it (its version must be the driver's)"
    if probes.platform.package_manager in ("dnf", "yum"):
        pkg = f"{RPM_NAME}-{version}" if version else RPM_NAME
        return fixes.packages(probes.host, probes.platform, "install", (pkg,), why)
    if version:
        branch = version.split(".")[0]
        return fixes.packages(probes.host, probes.platform, "install", (f"nvidia-fabricmanager-{branch}",), why)
    return fixes.Fix(f"{why}: nvidia-fabricmanager-BRANCH, BRANCH the driver's major version")


def _start(probes: Probes, service: str) -> list[fixes.Fix]:
    """``service`` enabled for every boot (on the target) and started (the running system's)."""
    host, p = probes.host, probes.platform
    found = [fixes.service(host, p, "enable", service, f"enable {service} for every boot"),
             fixes.service(host, p, "start", service, f"start {service}")]
    return [f for f in found if f is not None]


def _fm_log(probes: Probes, why: str = "if it fails, its log says why") -> fixes.Fix:
    return fixes.service_log(probes.host, probes.platform, SERVICE, why)


def _smi(probes: Probes, why: str, *args: str) -> fixes.Fix:
    """nvidia-smi asking the running driver (under --root: on an instance booted from the image)."""
    return fixes.on_running_system(probes.host, why, ["nvidia-smi", *args])


def fabric_fixes(probes: Probes) -> list[fixes.Fix]:
    """The fabric started and waited for: fabric manager enabled and running, its State read until Completed, its
    log where it fails (its version must be the driver's; on NVLink5 types gpu-nvlink5 names what else it needs)."""
    return [*_start(probes, SERVICE),
            _smi(probes, "wait for it: the Fabric section's State must reach Completed (a minute or two after boot)",
                 "-q"),
            _fm_log(probes, "if fabric manager fails, its log says why (its version must be the driver's; on "
                            "NVLink5 types gpu-nvlink5 names the modules and nvlsm it also needs)")]


def check_fabric_manager(probes: Probes) -> Verdict:
    host = _host(probes)
    fm = fabric_manager(probes)
    driver = inventory.probe_module(probes).version
    data = {**fm.as_dict(), "driver": driver, "host": host.label}
    if fm.unit is None:
        return Verdict(Status.CRITICAL, f"nvidia-fabricmanager is not installed on {host.label}: without it the "
                       "NVSwitch fabric never starts and every CUDA program fails with 802 "
                       "(CUDA_ERROR_SYSTEM_NOT_READY)",
                       data=data, fixes=[_install_fix(probes, driver), *_start(probes, SERVICE)])
    if fm.version and driver and fm.version != driver:
        return Verdict(Status.CRITICAL, f"nvidia-fabricmanager {fm.version} does not match the driver {driver}: it "
                       "refuses to start, the fabric stays down and CUDA fails with 802",
                       data=data, fixes=[_install_fix(probes, driver), *_restart(probes, SERVICE)])
    if not fm.enabled:
        return Verdict(Status.CRITICAL, "nvidia-fabricmanager is installed but not enabled: after a reboot the "
                       "fabric stays down and CUDA fails with 802", data=data, fixes=_start(probes, SERVICE))
    # "unknown": not read (inside --root, the state is the running system's).
    if fm.active not in ("active", "activating", "reloading", "unknown"):
        return Verdict(Status.CRITICAL, f"nvidia-fabricmanager is {fm.active}, not running: the fabric is down and "
                       "every CUDA program fails with 802 (CUDA_ERROR_SYSTEM_NOT_READY)",
                       data=data, fixes=[*_start(probes, SERVICE), _fm_log(probes)])
    version = f" {fm.version}" if fm.version else ""
    running = "running" if probes.host.live else "its state is read on the running system only"
    matched = " (the driver's version)" if fm.version and driver else ""
    return Verdict(Status.OK, f"nvidia-fabricmanager{version}{matched} installed, enabled, {running}", data=data)


# -- NVML's view of the fabric ---------------------------------------------------------------
def _uptime(probes: Probes) -> float | None:
    text = probes.host.read_text("/proc/uptime") or ""
    try:
        return float(text.split()[0])
    except (IndexError, ValueError):
        return None


def _unsettled(view: FabricView) -> list[fabric.GpuFabric]:
    return [g for g in view.gpus if g.state in (NOT_STARTED, IN_PROGRESS)]


@probe
def probe_fabric(p: Probes) -> FabricView:
    """NVML's fabric view; in ``doctor --boot`` on an NVSwitch host, the first one in which no GPU is still
    starting or training, polled for at most FABRIC_WAIT_S."""
    if not p.host.live:
        return FabricView(skipped="NVML is asked on the running system only (acting on --root)")
    deadline_s = min(MAX_INIT_S, 3.0 + len(inventory.probe_pci(p).gpus))
    view = fabric.query_fabric(deadline_s)
    if not p.options.boot or isinstance(fabric_host(p), str) or not view.answered or not _unsettled(view):
        return view
    fm = fabric_manager(p)
    if fm.unit is None or fm.active in ("inactive", "failed", "deactivating"):
        return view  # nothing is training the fabric: waiting cannot help (gpu-fabric-manager says why)
    return settle(view, deadline_s)


def settle(view: FabricView, deadline_s: float) -> FabricView:
    """Poll NVML until no GPU is still starting or training its fabric, for at most FABRIC_WAIT_S."""
    first = [view]

    def look() -> FabricView:  # polling NVML's state: the fabric's training has no event to wait on
        return first.pop() if first else fabric.query_fabric(deadline_s)

    waited = poll_until(look, lambda seen: not seen.answered or not _unsettled(seen),
                        what=f"the NVSwitch fabric ({len(_unsettled(view))} GPUs not trained yet)",
                        timeout_s=FABRIC_WAIT_S, interval_s=POLL_S, max_interval_s=POLL_S)
    waited.value.waited_s = round(waited.seconds, 1)
    return waited.value


def wait_for_fabric(p: Probes) -> dict[str, Any]:
    """For the CUDA proof at boot: wait for the fabric as ``probe_fabric`` does; what was waited for."""
    if isinstance(fabric_host(p), str):
        return {}
    view = probe_fabric(p)
    return {"fabric": "unsettled" if _unsettled(view) else "settled", "seconds": view.waited_s}


def _fabric(probes: Probes) -> tuple[FabricHost, FabricView]:
    host = _host(probes)
    view = probe_fabric(probes)
    if view.skipped:
        raise NotApplicable(view.skipped)
    return host, view


def _gpus_word(gpus: list[fabric.GpuFabric]) -> str:
    return ", ".join(f"GPU {g.index}" for g in gpus[:4]) + (f" (+{len(gpus) - 4})" if len(gpus) > 4 else "")


def check_fabric(probes: Probes) -> Verdict:
    host, view = _fabric(probes)
    data: dict[str, Any] = {"host": host.label, **view.as_dict()}
    if not view.answered:
        return Verdict(Status.UNKNOWN, f"NVML gave no fabric state: {view.error}",
                       data=data, fixes=[_smi(probes, "see gpu-nvml; its Fabric section asks the same", "-q")])
    gpus = [g for g in view.gpus if not g.error]
    if gpus and all(g.state == NOT_SUPPORTED for g in gpus):
        raise NotApplicable(f"{host.label}: the GPUs report no fabric state (NVML gives it for Hopper and newer on "
                            "R550+ drivers); gpu-cuda proves the fabric by running CUDA")
    uptime = _uptime(probes)
    data["uptime_s"] = uptime
    not_started = [g for g in gpus if g.state == NOT_STARTED]
    if not_started:
        return Verdict(Status.CRITICAL, f"the NVSwitch fabric has not started on {_gpus_word(not_started)} of "
                       f"{len(gpus)}: nvidia-fabricmanager is not running or failed; CUDA fails with 802",
                       data=data, fixes=fabric_fixes(probes))
    training = [g for g in gpus if g.state == IN_PROGRESS]
    if training:
        when = f"{uptime:.0f}s after boot" if uptime is not None else "at an unknown time after boot"
        summary = f"the NVSwitch fabric is still in progress on {_gpus_word(training)} of {len(gpus)}, {when}"
        if uptime is not None and uptime < FABRIC_SETTLE_S:
            return Verdict(Status.WARNING, summary + ": CUDA fails with 802 until it completes",
                           data=data, fixes=[_smi(probes, "wait for it: the Fabric section's State must reach "
                                                  f"Completed; past {FABRIC_SETTLE_S:g}s after boot this is critical",
                                                  "-q")])
        return Verdict(Status.CRITICAL, summary + f" (more than {FABRIC_SETTLE_S:g}s): it is stuck and CUDA fails "
                       "with 802", data=data, fixes=fabric_fixes(probes))
    failed = [g for g in gpus if g.state == COMPLETED and g.status]
    if failed:
        g = failed[0]
        return Verdict(Status.CRITICAL, f"fabric registration failed on {_gpus_word(failed)}: status {g.status}"
                       + (f" ({g.status_text})" if g.status_text else ""), data=data, fixes=fabric_fixes(probes))
    sick = [(g, g.problems) for g in gpus if g.problems]
    if sick:
        text = "; ".join(f"GPU {g.index}: {', '.join(ps)}" for g, ps in sick[:4])
        recovering = all(p.endswith("in progress") for _, ps in sick for p in ps)
        return Verdict(Status.WARNING if recovering else Status.CRITICAL, f"fabric health: {text}",
                       data=data, fixes=[
                           _smi(probes, "the Fabric section shows the health", "-q"),
                           _fm_log(probes, "fabric manager's log and the kernel's (SXid, Xid 74) say the faults"),
                           fixes.kernel_log(probes.host, "the kernel's SXid and Xid 74 lines"),
                           *_restart(probes, SERVICE, "with no GPU work running, restart fabric manager"),
                           fixes.Fix("if it persists, drain the host and stop and start the instance")])
    cliques = sorted({g.clique_id for g in gpus if g.clique_id is not None})
    return Verdict(Status.OK, f"fabric completed and healthy on all {len(gpus)} GPUs (clique "
                   f"{', '.join(map(str, cliques)) or '-'})", data=data)


def check_nvlink(probes: Probes) -> Verdict:
    host, view = _fabric(probes)
    if not view.answered:
        raise NotApplicable(f"NVML gave no NVLink state (see gpu-fabric): {view.error}")
    gpus = [g for g in view.gpus if not g.error]
    data = {"host": host.label, "gpus": {str(g.index): {"up": len(g.links_up), "down": g.links_down} for g in gpus}}
    if not any(g.links_up or g.links_down for g in gpus):
        raise NotApplicable(f"{host.label}: NVML reports no NVLink on these GPUs")
    down = [g for g in gpus if g.links_down]
    if down:
        text = "; ".join(f"GPU {g.index}: link {', '.join(map(str, g.links_down))} down of "
                         f"{len(g.links_up) + len(g.links_down)}" for g in down[:4])
        return Verdict(Status.CRITICAL, f"NVLinks down: {text}",
                       data=data, fixes=_nvlink_fixes(probes))
    links = sorted({len(g.links_up) for g in gpus})
    return Verdict(Status.OK, f"every NVLink up: {'/'.join(map(str, links))} links on each of {len(gpus)} GPUs",
                   data=data)


# -- NVLink5 (p6): InfiniBand modules and nvlsm ------------------------------------------------
def check_nvlink5(probes: Probes) -> Verdict:
    host = _host(probes, NVLINK5, "not an NVLink5 type")
    modules_text = probes.host.read_text("/proc/modules")
    if modules_text is None:
        raise NotApplicable(f"no /proc in {probes.host.root}")
    loaded = parse_modules(modules_text)
    missing = [m for m in IB_MODULES if m not in loaded]
    nvlsm = next((x for x in NVLSM_PATHS if probes.host.exists(x)), None)
    data = {"host": host.label, "modules_missing": missing, "nvlsm": nvlsm}
    problems = ([f"module{'s' if len(missing) > 1 else ''} {', '.join(missing)} not loaded"] if missing else []) \
        + ([] if nvlsm else ["nvlsm is not installed"])
    if problems:
        found: list[fixes.Fix] = []
        if missing:
            found += [fixes.modprobe(probes.host, *missing),
                      fixes.edit_by_hand(str(probes.host.path(NVLINK5_MODULES_LOAD)), f"list {', '.join(IB_MODULES)} "
                                         "one a line, so they load at every boot")]
        if not nvlsm:
            found.append(fixes.packages(probes.host, probes.platform, "install", ("nvlsm",),
                                        "install NVIDIA's nvlsm package"))
        return Verdict(Status.CRITICAL, f"{host.label} (NVLink5): {'; '.join(problems)}: the fabric stays "
                       "\"in progress\" forever while the driver says ready (NVIDIA/gpu-operator 2781)", data=data,
                       fixes=[*found, *_restart(probes, SERVICE)])
    return Verdict(Status.OK, f"{host.label} (NVLink5): {' and '.join(IB_MODULES)} loaded, nvlsm at {nvlsm}",
                   data=data)


# -- IMEX (GB200) ------------------------------------------------------------------------------
def check_imex(probes: Probes) -> Verdict:
    from gpuprep.services import Services

    host = _host(probes, IMEX_FAMILIES, "IMEX is for Grace-Blackwell NVL72 types")
    unit = unit_file(probes.host, IMEX_UNIT)
    if unit is None:
        raise NotApplicable(f"{host.label}: nvidia-imex is not installed, so IMEX (GPU memory shared across the "
                            "NVL72 domain's instances) is not used here")
    channels = sorted(e.name for e in probes.host.path(IMEX_CHANNELS).iterdir()) \
        if probes.host.exists(IMEX_CHANNELS) else []
    state = Services(probes.host, probes.platform).state("nvidia-imex") if probes.host.live else None
    data = {"host": host.label, "unit": unit, "channels": channels, "active": state.active if state else "unknown"}
    if state is not None and not state.running:
        return Verdict(Status.CRITICAL, f"nvidia-imex is installed but {state.active}: multi-node NVLink memory "
                       "(IMEX) fails", data=data, fixes=[*_start(probes, "nvidia-imex"), fixes.service_log(
                           probes.host, probes.platform, "nvidia-imex", "its log says why it stopped (its "
                           "/etc/nvidia-imex/nodes_config.cfg lists the domain's nodes)")])
    if not channels:
        # The driver creates no channel node itself; they do not survive a reboot (docs.nvidia.com/
        # multi-node-nvlink-systems/imex-guide/imexchannels.html). Toolkit 1.20 refuses a container whose
        # NVIDIA_IMEX_CHANNELS names a missing one (docs/domain.md, "The fabric").
        return Verdict(Status.WARNING, f"no IMEX channel in {IMEX_CHANNELS}: CUDA's IMEX calls fail with a "
                       "permission error and containers asking for NVIDIA_IMEX_CHANNELS are refused",
                       data=data, fixes=_imex_channel_fixes(probes))
    return Verdict(Status.OK, f"nvidia-imex installed{' and running' if state else ''}; IMEX channels: "
                   f"{', '.join(channels)}", data=data)


def _restart(probes: Probes, service: str, why: str = "") -> list[fixes.Fix]:
    fix = fixes.service(probes.host, probes.platform, "restart", service, why or f"then restart {service}")
    return [fix] if fix is not None else []


def _nvlink_fixes(probes: Probes) -> list[fixes.Fix]:
    """A link stays down until the GPU is reset: each link's state, the kernel's Xid 74 lines, and the reset with
    fabric manager stopped around it (no GPU work may run), or the instance stopped and started."""
    host, p = probes.host, probes.platform
    stop = fixes.service(host, p, "stop", SERVICE, "drain the host, then stop fabric manager")
    start = fixes.service(host, p, "start", SERVICE, "start fabric manager again")
    return [_smi(probes, "each link's state", "nvlink", "-s"),
            fixes.kernel_log(host, "the kernel's Xid 74 lines are the link errors"),
            *([stop] if stop else []), _smi(probes, "reset the GPUs (a link stays down until then)", "-r"),
            *([start] if start else []), fixes.Fix("or stop and start the instance")]


def _imex_channel_fixes(probes: Probes) -> list[fixes.Fix]:
    """IMEX channel 0 made (the driver makes none; none survives a reboot): its major is the
    nvidia-caps-imex-channels line of /proc/devices, read here where the running kernel has one."""
    host = probes.host
    runs = fixes.running_system(host)
    major = next((line.split()[0] for line in (host.read_text("/proc/devices") or "").splitlines()
                  if line.split()[1:] == ["nvidia-caps-imex-channels"]), None) if host.live else None
    mkdir = fixes.Fix("make the channels' directory", fixes.as_user(host, ["mkdir", "-p", IMEX_CHANNELS], runs), runs)
    if major is None:
        return [fixes.Fix("the major number of the channels' device", fixes.as_user(
                    host, ["grep", "nvidia-caps-imex-channels", "/proc/devices"], runs), runs), mkdir,
                fixes.Fix(f"then, at every boot, channel 0: mknod {IMEX_CHANNELS}/channel0 c MAJOR 0", runs=runs)]
    return [mkdir, fixes.Fix("and channel 0 in it (again at every boot)", fixes.as_user(
        host, ["mknod", f"{IMEX_CHANNELS}/channel0", "c", major, "0"]))]


_WAIT_TIMEOUT = FABRIC_WAIT_S + MAX_INIT_S + 5
CHECKS = [
    Check("gpu-fabric-manager", "gpu", "NVSwitch hosts: nvidia-fabricmanager installed, enabled, running, at the "
          "driver's version", check_fabric_manager, timeout=15, boot=True),
    Check("gpu-fabric", "gpu", "NVSwitch hosts: NVML's fabric state, status and health mask per GPU (waited for at "
          "boot)", check_fabric, timeout=_WAIT_TIMEOUT, boot=True),
    Check("gpu-nvlink", "gpu", "NVSwitch hosts: every NVLink of every GPU is up", check_nvlink,
          timeout=_WAIT_TIMEOUT, boot=True),
    Check("gpu-nvlink5", "gpu", "NVLink5 hosts (p6): ib_umad and mlx5_ib loaded, nvlsm installed", check_nvlink5,
          timeout=5, boot=True),
    Check("gpu-imex", "gpu", "GB200 hosts: nvidia-imex running and IMEX channel devices present, where IMEX is "
          "installed", check_imex, timeout=15),
]
