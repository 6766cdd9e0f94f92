"""gpu checks: is every GPU on the bus driven, visible, answering and healthy?

Views come from ``gpuprep.gpu`` probes (each read once per run). Checks that need only sysfs, /dev,
/proc or the driver's libraries work inside ``--root``; those that ask NVML or the kernel log are
needing ``LIVE``. A host with no NVIDIA GPU gets one critical finding (``gpu-pci``); the checks that
would only repeat it are skipped with that reason.
"""

from __future__ import annotations

from typing import Any

from gpuprep import fixes
from gpuprep.fixes import follows
from gpuprep.gpu import devices, inventory, kernel_log, nvml_fixes
from gpuprep.gpu import query as gpu_query
from gpuprep.gpu.inventory import driver_not_serving, module_not_loaded, persistence_fixes
from gpuprep.report import Status
from gpuprep.runner.checks import Check, NotApplicable, Probes, Verdict
from gpuprep.runner.needs import LIVE

NO_GPU = "no NVIDIA GPU on this host"
VIEW_NAMES = {"pci": "PCI", "dev": "/dev", "nvml": "NVML"}
QUERY_TIMEOUT = gpu_query.QUERY_TIMEOUT  # the timeout of each check that asks NVML
FILE_TIMEOUT = 3.0
NOUVEAU_CONF = "/etc/modprobe.d/blacklist-nouveau.conf"


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def _short_list(items: list[str], n: int = 4) -> str:
    return ", ".join(items[:n]) + (f", ... ({len(items) - n} more)" if len(items) > n else "")


def _pci_gpus(probes: Probes) -> devices.PciScan:
    """The PCI scan, or NotApplicable when there is nothing to check the GPUs of."""
    pci = inventory.probe_pci(probes)
    if pci.present and not pci.gpus:
        raise NotApplicable(NO_GPU)
    return pci


def _answered(probes: Probes) -> gpu_query.GpuQuery:
    """NVML's answer, or NotApplicable: gpu-nvml reports why it did not answer."""
    _pci_gpus(probes)
    query = inventory.probe_query(probes)
    if query.skipped:
        raise NotApplicable(query.skipped)
    if not query.answered:
        raise NotApplicable("NVML did not answer (see gpu-nvml)")
    return query


def _readable(gpus: list[gpu_query.GpuStatus]) -> list[gpu_query.GpuStatus]:
    return [x for x in gpus if not x.error]


def _reporting(probes: Probes, field: str, none_reason: str) -> list[gpu_query.GpuStatus]:
    """The readable GPUs whose NVML answer has ``field``; NotApplicable(``none_reason``) when none has."""
    gpus = [x for x in _readable(_answered(probes).gpus) if getattr(x, field) is not None]
    if not gpus:
        raise NotApplicable(none_reason)
    return gpus


def _label(x: gpu_query.GpuStatus) -> str:
    return f"GPU {x.index} ({x.pci_bus_id})" if x.pci_bus_id else f"GPU {x.index}"


# ---------------------------------------------------------------------------------------------
def check_pci(probes: Probes) -> Verdict:
    pci = inventory.probe_pci(probes)
    if not pci.present:
        root = probes.host.root
        raise NotApplicable(f"no sysfs in {root} (bind it: `mount --rbind /sys {root}/sys`)")
    if not pci.gpus:
        return Verdict(Status.CRITICAL, NO_GPU, data={"count": 0, "bus_ids": []}, fixes=[
            fixes.Fix("run on an instance type with NVIDIA GPUs (g4dn, g5, g6, p4d, p5, ...), or attach the GPU"),
            fixes.on_running_system(probes.host, "the NVIDIA PCI devices the instance has", ["lspci", "-d", "10de:"])])
    bus_ids = [f.bus_id for f in pci.gpus]
    data = {"count": len(pci.gpus), "bus_ids": bus_ids,
            "functions": [{"bus_id": f.bus_id, "device_id": f.device_id, "class": f.class_code, "driver": f.driver}
                          for f in pci.gpus]}
    nouveau = [f.bus_id for f in pci.gpus if f.driver == "nouveau"]
    if nouveau:
        found = [
            fixes.Fix(f"blacklist nouveau: write {probes.host.path(NOUVEAU_CONF)} with the two lines "
                      "'blacklist nouveau' and 'options nouveau modeset=0'"),
            fixes.rebuild_initramfs(probes.host, probes.platform),
            fixes.reboot(probes.host, "reboot so nvidia, not nouveau, takes the GPUs")]
        return Verdict(Status.CRITICAL, f"{_short_list(nouveau)} driven by nouveau, not nvidia", data=data,
                       fixes=[f for f in found if f is not None])
    module = inventory.probe_module(probes)
    unbound = [f.bus_id for f in pci.gpus if f.driver is None]
    if unbound and module.loaded:
        return Verdict(Status.CRITICAL, f"{_short_list(unbound)}: no driver bound although the nvidia module is loaded",
                       data=data, fixes=driver_not_serving(probes))
    others = sorted({f.driver for f in pci.gpus if f.driver is not None and f.driver != "nvidia"})
    summary = f"{_plural(len(pci.gpus), 'NVIDIA GPU')} on the PCI bus ({_short_list(bus_ids)})"
    if others:
        return Verdict(Status.WARNING, summary + f", some bound to {', '.join(others)}", data=data, fixes=[
            fixes.on_running_system(probes.host, "each GPU's driver: a GPU bound to another (vfio-pci for "
                                    "passthrough) is not usable by containers here", ["lspci", "-k", "-d", "10de:"]),
            fixes.Fix(f"release them from {', '.join(others)} (its ids= option or driver override), then reboot so "
                      "nvidia binds them"),
            fixes.reboot(probes.host, "reboot")])
    return Verdict(Status.OK, summary, data=data)


def check_device_nodes(probes: Probes) -> Verdict:
    nodes = inventory.probe_nodes(probes)
    if not nodes.present:
        root = probes.host.root
        raise NotApplicable(f"no device nodes in {root}/dev (bind it: `mount --rbind /dev {root}/dev`)")
    _pci_gpus(probes)
    data = {"count": len(nodes.gpus), "nodes": nodes.gpus, "nvidiactl": nodes.nvidiactl,
            "nvidia_uvm": nodes.nvidia_uvm}
    if not nodes.gpus:
        summary = "no /dev/nvidia[0-9]* device nodes: ecs-init will register this host with 0 GPUs"
        cause = module_not_loaded(probes)
        if cause:  # nvidia-modprobe cannot make nodes for a module that will not load: the module first
            return Verdict(Status.CRITICAL, summary, follows(cause, "the nvidia module is not loaded"), data,
                           cause=cause)
        return Verdict(Status.CRITICAL, summary, data=data, fixes=device_node_fixes(probes))
    return Verdict(Status.OK, f"{_plural(len(nodes.gpus), 'device node')} ({_short_list(nodes.gpus, 3)})",
                   data=data)


def device_node_fixes(probes: Probes) -> list[fixes.Fix]:
    """Device nodes of a loaded module: nvidia-smi makes one per GPU as it starts (through nvidia-modprobe), and
    nvidia-persistenced, enabled, makes them at every boot."""
    found = [fixes.on_running_system(probes.host, "make the nodes now: nvidia-smi creates one per GPU as it starts",
                                     ["nvidia-smi"]),
             fixes.service(probes.host, probes.platform, "enable", "nvidia-persistenced",
                           "make them at every boot: nvidia-persistenced creates them as it starts")]
    return [f for f in found if f is not None]


def check_kernel_module(probes: Probes) -> Verdict:
    module = inventory.probe_module(probes)
    if not module.procfs:
        root = probes.host.root
        raise NotApplicable(f"no /proc in {root} (mount it: `mount -t proc proc {root}/proc`)")
    data: dict[str, Any] = {"loaded": module.loaded, "version": module.version, "flavour": module.flavour}
    if not module.loaded:
        _pci_gpus(probes)
        return Verdict(Status.CRITICAL, "the NVIDIA kernel module is not loaded", data=data,
                       fixes=gpu_query.module_not_loaded_fixes(probes.host))
    if module.version is None:
        return Verdict(Status.WARNING, "the nvidia module is loaded but its version is unreadable",
                       data=data | {"text": module.text}, fixes=[
                           fixes.on_running_system(probes.host, "what the loaded module says of itself",
                                                   ["cat", "/proc/driver/nvidia/version"]),
                           fixes.on_running_system(probes.host, "the version of the module the kernel would load",
                                                   ["modinfo", "-F", "version", "nvidia"])])
    return Verdict(Status.OK, f"nvidia {module.version} loaded ({module.flavour} kernel module)", data=data)


def check_nvml(probes: Probes) -> Verdict:
    _pci_gpus(probes)
    query = inventory.probe_query(probes)
    if query.skipped:
        raise NotApplicable(query.skipped)
    data: dict[str, Any] = {"source": query.source, "duration_ms": round(query.duration_ms, 1)}
    if query.notes:
        data["notes"] = query.notes
    if not query.answered:
        data |= {"error": query.error, "code": query.error_code}
        if query.error_code == 9:  # the module not loaded: gpu-kernel-module's finding and its fixes
            cause = module_not_loaded(probes)
            return Verdict(Status.CRITICAL, query.error, follows(cause, "the nvidia module is not loaded") if cause
                           else "", data, [] if cause else gpu_query.module_not_loaded_fixes(probes.host), cause)
        if query.error_code == 18:
            return Verdict(Status.CRITICAL, query.error, data=data,
                           fixes=gpu_query.driver_mismatch_fixes(probes.host, probes.platform))
        return Verdict(Status.CRITICAL, query.error, data=data, fixes=nvml_fixes.nvml_fixes(
            probes.host, probes.platform, query, inventory.probe_module(probes).version))
    data |= {"count": len(query.gpus), "driver_version": query.driver_version,
             "gpus": [x.as_dict() for x in query.gpus]}
    lost = [x for x in query.gpus if x.error]
    if lost:
        return Verdict(Status.CRITICAL, "; ".join(x.error for x in lost), data=data,
                       fixes=nvml_fixes.gpu_error_fixes(probes.host, lost[0].error_code))
    via = "NVML" if query.source == "nvml" else "nvidia-smi (NVML through nvidia-ml-py unavailable)"
    names = sorted({x.name for x in query.gpus})
    return Verdict(
        Status.OK,
        f"{via} answers: {_plural(len(query.gpus), 'GPU')} ({', '.join(names)}), driver {query.driver_version}",
        data=data,
    )


def check_count(probes: Probes) -> Verdict:
    pci = _pci_gpus(probes)
    nodes = inventory.probe_nodes(probes)
    counts: dict[str, int] = {}
    not_consulted = []
    if pci.present:
        counts["pci"] = len(pci.gpus)
    else:
        not_consulted.append("PCI (no sysfs)")
    if nodes.present:
        counts["dev"] = len(nodes.gpus)
    else:
        not_consulted.append("/dev (no device nodes)")
    query = inventory.probe_query(probes)  # with --root it answers at once that it was not asked
    if query.answered:
        counts["nvml"] = len(query.gpus)
    else:
        not_consulted.append("NVML (--root)" if query.skipped else "NVML (did not answer)")
    data: dict[str, Any] = {"counts": counts, "not_consulted": not_consulted}
    if len(counts) < 2:
        raise NotApplicable("fewer than two views to compare: " + ", ".join(not_consulted))
    shown = ", ".join(f"{VIEW_NAMES[k]} {v}" for k, v in counts.items())
    suffix = f" ({', '.join(not_consulted)} not compared)" if not_consulted else ""
    if len(set(counts.values())) > 1:
        cause = module_not_loaded(probes)
        if cause:
            return Verdict(Status.CRITICAL, f"GPU counts disagree: {shown}{suffix}",
                           follows(cause, "the nvidia module is not loaded"), data, cause=cause)
        cause = inventory.nodes_missing(probes)
        if cause and len({v for k, v in counts.items() if k != "dev"}) == 1:  # /dev alone disagrees
            return Verdict(Status.CRITICAL, f"GPU counts disagree: {shown}{suffix}",
                           follows(cause, "no /dev/nvidia[0-9]* device nodes"), data, cause=cause)
        return Verdict(Status.CRITICAL, f"GPU counts disagree: {shown}{suffix}", data=data,
                       fixes=driver_not_serving(probes))
    return Verdict(Status.OK, f"{_plural(next(iter(counts.values())), 'GPU')} in every view: {shown}{suffix}",
                   data=data)


def check_driver_version(probes: Probes) -> Verdict:
    module = inventory.probe_module(probes)
    if not module.procfs:
        raise NotApplicable(f"no /proc in {probes.host.root}")
    if not module.loaded:
        _pci_gpus(probes)
        raise NotApplicable("the kernel module is not loaded (see gpu-kernel-module)")
    userland = inventory.probe_userland(probes)
    query = inventory.probe_query(probes)
    data: dict[str, Any] = {"kernel_module": module.version, "userland": userland.version,
                            "nvml_library": userland.nvml_lib, "installed": userland.installed}
    mismatch = gpu_query.NVML_CAUSES[18]
    mismatch_fixes = gpu_query.driver_mismatch_fixes(probes.host, probes.platform)
    if query.error_code == 18:
        return Verdict(Status.CRITICAL, f"{mismatch.summary}: {query.error}", data=data, fixes=mismatch_fixes)
    if userland.nvml_lib is None:
        no_lib = gpu_query.NVML_CAUSES[12]
        return Verdict(Status.CRITICAL, f"kernel module {module.version} loaded but {no_lib.summary}", data=data,
                       fixes=nvml_fixes.userland_fixes(probes.host, probes.platform, module.version))
    if query.answered:
        data["nvml"] = query.driver_version
    if userland.version and module.version and userland.version != module.version:
        return Verdict(
            Status.CRITICAL,
            f"NVRM API mismatch: kernel module {module.version}, userland {userland.version} "
            f"({userland.nvml_lib})",
            data=data, fixes=mismatch_fixes,
        )
    if userland.version is None:
        return Verdict(Status.WARNING, f"cannot tell the userland's version from {userland.nvml_lib}", data=data,
                       fixes=nvml_fixes.unreadable_userland_fixes(probes.host, probes.platform, userland.nvml_lib))
    stale = [v for v in userland.installed if v != userland.version]
    summary = f"kernel module and userland agree: {module.version}"
    if stale:
        data["stale"] = stale
        summary += f" (leftover libnvidia-ml {', '.join(stale)} unused)"
    return Verdict(Status.OK, summary, data=data)


def check_persistence(probes: Probes) -> Verdict:
    gpus = _readable(_answered(probes).gpus)
    off = [x for x in gpus if x.persistence_mode is False]
    data = {"gpus": {str(x.index): x.persistence_mode for x in gpus}}
    if off:
        return Verdict(Status.WARNING,
                       f"persistence mode off on {_short_list([_label(x) for x in off])}", data=data,
                       fixes=persistence_fixes(probes))
    return Verdict(Status.OK, f"persistence mode on for all {_plural(len(gpus), 'GPU')}", data=data)


def check_ecc(probes: Probes) -> Verdict:
    gpus = _readable(_answered(probes).gpus)
    data = {"uncorrected_volatile": {str(x.index): x.ecc_uncorrected_volatile for x in gpus}}
    bad = [x for x in gpus if (x.ecc_uncorrected_volatile or 0) > 0]
    if bad:
        return Verdict(
            Status.CRITICAL,
            "uncorrected ECC errors since the driver loaded: "
            + ", ".join(f"{_label(x)}: {x.ecc_uncorrected_volatile}" for x in bad),
            data=data, fixes=[*(fixes.gpu_reset(probes.host, x.index) for x in bad),
                              fixes.Fix("if they recur, have the GPU replaced: " + gpu_query.MOVE_HARDWARE)],
        )
    off = [x for x in gpus if x.ecc_uncorrected_volatile is None]
    note = f" (ECC off or unsupported on {_short_list([_label(x) for x in off])})" if off else ""
    return Verdict(Status.OK, f"no uncorrected ECC errors{note}", data=data)


def check_row_remap(probes: Probes) -> Verdict:
    gpus = _reporting(probes, "remapped_rows_pending",
                      "no GPU here remaps rows (A100 and newer do; gpu-retired-pages covers older ones)")
    data = {"gpus": {str(x.index): {"pending": x.remapped_rows_pending, "failure": x.remapped_rows_failure}
                     for x in gpus}}
    failed = [x for x in gpus if x.remapped_rows_failure]
    if failed:
        return Verdict(Status.CRITICAL, f"row remapping failed on {_short_list([_label(x) for x in failed])}: it has "
                       "run out of spare rows", data=data, fixes=[fixes.Fix(kernel_log.RMA_ADVICE)])
    pending = [x for x in gpus if x.remapped_rows_pending]
    if pending:
        return Verdict(
            Status.CRITICAL, f"row remap pending on {_short_list([_label(x) for x in pending])}",
            data=data, fixes=[fixes.gpu_reset(probes.host, x.index) for x in pending],  # the remap takes effect
        )
    return Verdict(Status.OK, f"no row remap pending or failed on {_plural(len(gpus), 'GPU')}", data=data)


def check_retired_pages(probes: Probes) -> Verdict:
    gpus = _reporting(probes, "retired_pages_pending",
                      "no GPU here reports page retirement (A100 and newer remap rows instead)")
    data = {"pending": {str(x.index): x.retired_pages_pending for x in gpus}}
    pending = [x for x in gpus if x.retired_pages_pending]
    if pending:
        return Verdict(
            Status.CRITICAL, f"page retirement pending on {_short_list([_label(x) for x in pending])}",
            data=data, fixes=[fixes.gpu_reset(probes.host, x.index) for x in pending],  # the driver reloads them
        )
    return Verdict(Status.OK, f"no page retirement pending on {_plural(len(gpus), 'GPU')}", data=data)


def check_clocks(probes: Probes) -> Verdict:
    gpus = _reporting(probes, "clock_events", "no clock event reasons reported")
    data = {"gpus": {str(x.index): {k: v for k, v in (x.clock_events or {}).items() if v} for x in gpus}}
    slowed = [(x, [k for k in gpu_query.CLOCK_EVENTS if (x.clock_events or {}).get(k)]) for x in gpus]
    slowed = [(x, ks) for x, ks in slowed if ks]
    if slowed:
        return Verdict(
            Status.WARNING,
            "clocks slowed: " + "; ".join(f"{_label(x)}: {', '.join(ks)}" for x, ks in slowed), data=data, fixes=[
                fixes.on_running_system(probes.host, "shows why (the clock event reasons, temperatures, power)",
                                        ["nvidia-smi", "-q", "-d", "PERFORMANCE,TEMPERATURE,POWER"]),
                fixes.Fix("HW slowdown or thermal on a cloud instance is a host fault: " + gpu_query.MOVE_HARDWARE
                          + "; SW thermal: the GPU is hot, lower its load")])
    return Verdict(Status.OK, f"no HW slowdown or thermal clock events on {_plural(len(gpus), 'GPU')}", data=data)


def check_xids(probes: Probes) -> Verdict:
    log = inventory.probe_kernel_log(probes)
    if log.skipped:
        raise NotApplicable(log.skipped)
    if log.error:
        doctor = fixes.gpuprep(probes.host, probes.platform, f"{log.hint}: doctor reads it then", "doctor")
        return Verdict(Status.UNKNOWN, log.error, fixes=[
            *([doctor] if doctor is not None else []),
            fixes.kernel_log(probes.host, "or read it by hand: its NVRM lines (Xid, API mismatch)")])
    counts: dict[str, int] = {}
    first: dict[str, kernel_log.KernelEvent] = {}  # each kind's first event, for its meaning and PCI address
    for e in log.events:
        key = f"Xid {e.code}" if e.kind == "xid" else e.kind
        counts[key] = counts.get(key, 0) + 1
        first.setdefault(key, e)
    data: dict[str, Any] = {"source": log.source, "lines": log.lines, "counts": counts,
                            "events": [e.as_dict() for e in log.events[: kernel_log.XID_SAMPLES]]}
    if not log.events:
        return Verdict(Status.OK, f"no XIDs or NVRM errors in this boot's kernel log ({log.source})", data=data)
    # The hint follows the gravest event: critical before warning, a replace-the-GPU action first.
    worst = max(log.events, key=lambda e: (e.severity == "critical", kernel_log.RMA_ADVICE in e.action))
    status = Status.CRITICAL if worst.severity == "critical" else Status.WARNING
    parts = [f"{k} ({e.meaning}{', ' + e.pci if e.pci else ''}) x{counts[k]}" for k, e in first.items()]
    return Verdict(status, "this boot: " + "; ".join(parts), data=data, fixes=_xid_fixes(probes, worst))


def _xid_fixes(probes: Probes, event: kernel_log.KernelEvent) -> list[fixes.Fix]:
    """The gravest event's action: the driver's own fixes for an API mismatch; else the action in words, the GPU's
    reset where it names one (its index from NVML, by PCI address) and the reboot where it says so; and the kernel
    log's lines."""
    host = probes.host
    if event.kind == "api-mismatch":
        return [*gpu_query.driver_mismatch_fixes(host, probes.platform),
                fixes.kernel_log(host, "the kernel log shows the lines (NVRM)")]
    found = [fixes.Fix(event.action), fixes.kernel_log(host, "the kernel log shows the lines (NVRM)")]
    if "reset" in event.action:
        index = _gpu_index(probes, event.pci)
        if index is not None:
            found.append(fixes.gpu_reset(host, index))
    if "reboot" in event.action:
        found.append(fixes.reboot(host, "or reboot"))
    return found


def _gpu_index(probes: Probes, pci: str) -> int | None:
    """The NVML index of the GPU at PCI address ``pci`` (None where NVML did not answer or names none)."""
    query = inventory.probe_query(probes)
    if not pci or not query.answered:
        return None
    return next((g.index for g in query.gpus if devices.normalize_bus_id(g.pci_bus_id).startswith(pci)), None)


CHECKS = [
    Check("gpu-pci", "gpu", "NVIDIA GPUs on the PCI bus (sysfs) and their bound driver", check_pci,
          timeout=FILE_TIMEOUT, boot=True),
    Check("gpu-device-nodes", "gpu", "/dev/nvidia[0-9]* device nodes exist (ecs-init needs them)",
          check_device_nodes, timeout=FILE_TIMEOUT, boot=True),
    Check("gpu-kernel-module", "gpu", "the nvidia kernel module is loaded, and its version", check_kernel_module,
          timeout=FILE_TIMEOUT, boot=True),
    Check("gpu-nvml", "gpu", "NVML (or nvidia-smi) answers for every GPU", check_nvml,
          timeout=QUERY_TIMEOUT, needs=(LIVE,), boot=True),
    Check("gpu-count", "gpu", "PCI, /dev and NVML count the same GPUs", check_count,
          timeout=QUERY_TIMEOUT, boot=True),
    Check("gpu-driver-version", "gpu", "driver userland and kernel module versions agree", check_driver_version,
          timeout=QUERY_TIMEOUT, boot=True),
    Check("gpu-persistence", "gpu", "persistence mode is on for every GPU", check_persistence,
          timeout=QUERY_TIMEOUT, needs=(LIVE,)),
    Check("gpu-ecc", "gpu", "no uncorrected ECC errors since the driver loaded", check_ecc,
          timeout=QUERY_TIMEOUT, needs=(LIVE,), boot=True),
    Check("gpu-row-remap", "gpu", "no row remap pending or failed (A100 and newer)", check_row_remap,
          timeout=QUERY_TIMEOUT, needs=(LIVE,), boot=True),
    Check("gpu-retired-pages", "gpu", "no page retirement pending (GPUs before A100)", check_retired_pages,
          timeout=QUERY_TIMEOUT, needs=(LIVE,)),
    Check("gpu-clocks", "gpu", "no HW slowdown or thermal clock events", check_clocks,
          timeout=QUERY_TIMEOUT, needs=(LIVE,)),
    Check("gpu-xid", "gpu", "XIDs and NVRM errors in this boot's kernel log, classified", check_xids,
          timeout=kernel_log.KERNEL_LOG_TIMEOUT_S + kernel_log.KMSG_DEADLINE_S + 1, needs=(LIVE,)),
]
