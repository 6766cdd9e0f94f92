"""ecs checks: can this host join an ECS cluster with its GPUs, and does it carry another machine's state?

Facts (docs/domain.md): ``ECS_ENABLE_GPU_SUPPORT=true`` in ``/etc/ecs/ecs.config`` or ``/var/lib/ecs/ecs.config``
(``/etc`` wins); ecs-init writes ``/var/lib/ecs/gpu/nvidia-gpu-info.json`` from NVML at each start and
silently skips it without ``/dev/nvidia*``; a baked agent checkpoint makes instances fail to register
or join the old cluster (aws/amazon-ecs-agent 858, 2738); at first boot cloud-init may run yum and hold
its lock. The check that the installed Docker satisfies ecs-init's Requires lives with the packages code.
"""

from __future__ import annotations

import time
from datetime import datetime, timezone
from typing import Any

from gpuprep import fixes
from gpuprep.bootcheck import UNIT_NAME
from gpuprep.ecs import config as ecs_config
from gpuprep.ecs.config import GPU_INFO, GPU_SUPPORT_KEY, ecs_service, services
from gpuprep.ecs.gate import GateState, gate_state
from gpuprep.gpu import inventory
from gpuprep.gpu.query import QUERY_TIMEOUT
from gpuprep.host import Host
from gpuprep.image import stamp
from gpuprep.packages.lock import RPM_LOCKS
from gpuprep.packages.rpmdb import dpkg_installed, rpm_installed
from gpuprep.report import Status
from gpuprep.runner.checks import Check, NotApplicable, Probes, Verdict, probe
from gpuprep.seal_record import SEAL_JSON
from gpuprep.services import ServiceState


def gpu_support_fixes(probes: Probes) -> list[fixes.Fix]:
    """ECS_ENABLE_GPU_SUPPORT=true where the agent reads it: gpuprep's ecs-config step where install runs (RPM
    platforms), else the line added by hand; then ecs restarted where it runs (an image's starts at its boot)."""
    host, p = probes.host, probes.platform
    write = fixes.gpuprep(host, p, f"set {GPU_SUPPORT_KEY}=true in the ECS config", "install", "--only", "ecs-config")
    if write is None:
        write = fixes.edit_by_hand(str(host.path(p.ecs_config)), f"add the line {GPU_SUPPORT_KEY}=true")
    restart = fixes.service(host, p, "restart", ecs_service(p), "restart ecs so the agent reads it")
    return [write] + ([restart] if restart is not None and host.live else [])


def _restart(probes: Probes, why: str) -> list[fixes.Fix]:
    """ecs restarted (upstart's restart on Amazon Linux 1, systemctl elsewhere): on the running system."""
    fix = fixes.service(probes.host, probes.platform, "restart", ecs_service(probes.platform), why)
    return [fix] if fix is not None else []


# -- probes -------------------------------------------------------------------------------
@probe
def ecs_init_version(p: Probes) -> str | None:
    fmt = p.platform.package_format
    if fmt == "rpm":
        return rpm_installed(p.host, ("ecs-init",)).get("ecs-init")
    if fmt == "dpkg":
        if not p.host.live:
            raise NotApplicable("dpkg is not queried with --root")
        # Amazon publishes ecs-init for Ubuntu as the amazon-ecs-init .deb.
        version = dpkg_installed(p.host, ("amazon-ecs-init",)).get("amazon-ecs-init")
        return f"amazon-ecs-init-{version}" if version else None
    raise NotApplicable(f"no package format known for {p.platform.name}")


@probe
def boot_gate(p: Probes) -> GateState:
    return gate_state(p.host, p.platform)


def _ecs_init_missing(probes: Probes) -> bool:
    try:
        return ecs_init_version(probes) is None
    except NotApplicable:
        return False


@probe
def ecs_service_state(p: Probes) -> ServiceState:
    return services(p.host, p.platform).state(ecs_service(p.platform))


def _gpu_count(probes: Probes) -> int:
    pci = inventory.probe_pci(probes)
    if not pci.present:
        raise NotApplicable("no /sys/bus/pci/devices to count GPUs in")
    return len(pci.gpus)



@probe
def boot_time(p: Probes) -> float | None:
    """When the running system booted (epoch seconds); None inside --root, where no boot is ours."""
    return p.host.boot_time() if p.host.live else None


# -- checks -------------------------------------------------------------------------------
def check_ecs_init(probes: Probes) -> Verdict:
    version = ecs_init_version(probes)
    if version is None:
        from gpuprep.packages.probes import install_fixes, removed_since_seal

        summary = "ecs-init is not installed: this host cannot join an ECS cluster"
        cause = removed_since_seal(probes, ("ecs-init",))
        if cause:
            return Verdict(Status.WARNING, summary, f"removed since the seal: fix {cause} first (its fix clears this)",
                           cause=cause)
        found = install_fixes(probes)
        return Verdict(Status.WARNING, summary, "" if found else "install Amazon's amazon-ecs-init package",
                       fixes=found)
    return Verdict(Status.OK, f"{version} installed", data={"package": version})


def check_gpu_support(probes: Probes) -> Verdict:
    count = _gpu_count(probes)
    cfg = ecs_config.read_config(probes.host, probes.platform)
    value = cfg.get(GPU_SUPPORT_KEY)
    data = {"gpus": count, "value": value, "source": cfg.source.get(GPU_SUPPORT_KEY), "files": cfg.files}
    if count == 0:
        raise NotApplicable("no NVIDIA GPU on the PCI bus: ECS GPU support is not needed")
    if cfg.gpu_support:
        return Verdict(Status.OK, f"{GPU_SUPPORT_KEY}={value} in {data['source']}", data=data)
    if value is None and not cfg.files and _ecs_init_missing(probes):
        # A GPU host that is not an ECS host (yet): ecs-init's own check says so once, not twice.
        raise NotApplicable("ecs-init is not installed (see ecs-init): nothing reads ecs.config here")
    if value is None:
        where = " or ".join(ecs_config.config_paths(probes.platform))
        summary = f"{GPU_SUPPORT_KEY} is not set ({where}): the agent registers this host with no GPUs"
    elif value.strip("\"'") in ("true", "1", "True", "TRUE"):
        summary = (f"{GPU_SUPPORT_KEY}={value} in {data['source']}: the quotes are part of the value "
                   "for the agent (a Docker env-file), which then reads it as false")
    else:
        summary = f"{GPU_SUPPORT_KEY}={value} in {data['source']}: the agent registers this host with no GPUs"
    gpus = f"{count} GPU" + ("" if count == 1 else "s")
    if _ecs_init_missing(probes):  # the ecs-config step refuses a host without ecs: ecs-init's install first
        return Verdict(Status.CRITICAL, f"{summary} ({gpus} on the PCI bus)", "ecs-init is not installed: fix "
                       "ecs-init first (its fix clears this)", data, cause="ecs-init")
    return Verdict(Status.CRITICAL, f"{summary} ({gpus} on the PCI bus)", data=data, fixes=gpu_support_fixes(probes))


def check_gpu_info(probes: Probes) -> Verdict:
    host = probes.host
    fix = ecs_config.rewrite_gpu_info(host, probes.platform)
    try:
        info = ecs_config.read_gpu_info(host)
    except ValueError as exc:
        return Verdict(Status.CRITICAL, f"{GPU_INFO} is unreadable: {exc}", fixes=fix)
    if info is None:
        if host.live and ecs_service_state(probes).running and _gpu_count_or_zero(probes) > 0:
            return Verdict(Status.WARNING, f"ecs runs but ecs-init wrote no {GPU_INFO}: it found no /dev/nvidia* "
                           "when it started, so the agent registered no GPUs",
                           fixes=_restart(probes, "once the gpu checks pass, restart ecs so ecs-init writes it"))
        return Verdict(Status.OK, f"no {GPU_INFO} (ecs-init writes it when ecs starts)")
    data: dict[str, Any] = {"file_driver": info.driver_version, "file_gpus": list(info.gpu_ids)}
    module = inventory.probe_module(probes)
    query = inventory.probe_query(probes)
    host_driver = query.driver_version if query.answered else module.version
    data["host_driver"] = host_driver
    if not query.answered:
        if host_driver and host_driver != info.driver_version:
            return Verdict(Status.CRITICAL, f"{GPU_INFO} was written with driver {info.driver_version}, this host "
                           f"has {host_driver}: it comes from another machine or an older driver", data=data, fixes=fix)
        why = query.skipped or query.error or "NVML did not answer"
        status = Status.WARNING if not host.live else Status.UNKNOWN
        summary = (f"{GPU_INFO} lists {len(info.gpu_ids)} GPUs (driver {info.driver_version}); "
                   f"UUIDs not compared: {why}")
        if not host.live:
            return Verdict(status, summary, data=data, fixes=fix)
        return Verdict(status, summary, fixes.follows("gpu-nvml", "NVML does not answer"), data, cause="gpu-nvml")
    host_ids = [g.uuid for g in sorted(query.gpus, key=lambda g: g.index) if g.uuid]
    data["host_gpus"] = host_ids
    foreign = [i for i in info.gpu_ids if i not in host_ids]
    if foreign:
        return Verdict(Status.CRITICAL, f"{GPU_INFO} names {len(foreign)} GPU(s) this host does not have "
                       f"({', '.join(foreign[:2])}{', ...' if len(foreign) > 2 else ''}): written on another machine "
                       "(baked into the image?)", data=data, fixes=fix)
    missing = [i for i in host_ids if i not in info.gpu_ids]
    if missing:
        return Verdict(Status.WARNING, f"{GPU_INFO} lists {len(info.gpu_ids)} of this host's {len(host_ids)} GPUs: "
                       "the agent offers only those", data=data,
                       fixes=_restart(probes, "restart ecs so ecs-init lists them all"))
    if info.driver_version != host_driver:
        return Verdict(Status.WARNING, f"{GPU_INFO} was written with driver {info.driver_version}, the host runs "
                       f"{host_driver} (updated since ecs started)", data=data,
                       fixes=_restart(probes, "restart ecs so ecs-init rewrites it"))
    return Verdict(Status.OK, f"{GPU_INFO} matches this host: {len(host_ids)} GPUs, driver {host_driver}",
                   data=data)


def _gpu_count_or_zero(probes: Probes) -> int:
    try:
        return _gpu_count(probes)
    except NotApplicable:
        return 0


def check_service(probes: Probes) -> Verdict:
    name = ecs_service(probes.platform)
    state = ecs_service_state(probes)
    data = {"service": name, "active": state.active, "enabled": state.enabled}
    unit_files = (f"/usr/lib/systemd/system/{name}.service", f"/etc/systemd/system/{name}.service",
                  f"/lib/systemd/system/{name}.service", f"/etc/init/{name}.conf")
    if state.enabled == "not-found" or (state.enabled == "unknown" and not any(map(probes.host.exists, unit_files))):
        raise NotApplicable(f"no {name} service (ecs-init is not installed)")
    if state.enabled == "unknown" and state.active == "unknown":
        return Verdict(Status.UNKNOWN, f"the init system did not say whether {name} is enabled or running",
                       data=data, fixes=[f for f in [fixes.service(probes.host, probes.platform, "status", name,
                                                                   "ask it")] if f is not None])
    host, p = probes.host, probes.platform
    enable = fixes.service(host, p, "enable", name, f"enable {name} for every boot") or fixes.Fix(
        f"enable {name} for every boot", ("chkconfig", name, "on"))
    start = fixes.service(host, p, "start", name, f"start {name}")
    logs = fixes.service_log(host, p, name, f"its log says why {name} stopped; fix that first")
    if not host.live:
        if state.is_enabled:
            return Verdict(Status.OK, f"{name} enabled (whether it runs is not known with --root)", data=data)
        config = fixes.gpuprep(host, p, f"enable {name} (and set GPU support) as install does", "install", "--only",
                               "ecs-config")
        return Verdict(Status.WARNING, f"{name} is {state.enabled}: instances from this image will not join a cluster",
                       data=data, fixes=[config or enable])
    started = [start] if start is not None else []
    if not state.running and state.is_enabled:
        gate = boot_gate(probes)
        if gate.failed:
            return _held_by_gate(probes, gate, started, data)
    if state.active == "failed":
        return Verdict(Status.CRITICAL, f"{name} failed ({state.enabled})", data=data, fixes=[logs, *started])
    if not state.is_enabled:
        return Verdict(Status.WARNING, f"{name} is {state.enabled} ({state.active}): it will not start at boot",
                       data=data, fixes=[enable])
    if not state.running:
        return Verdict(Status.WARNING, f"{name} is enabled but {state.active}", data=data, fixes=[*started, logs])
    return Verdict(Status.OK, f"{name} {state.active}, {state.enabled}", data=data)


def _held_by_gate(probes: Probes, gate: GateState, start: list[fixes.Fix], data: dict[str, Any]) -> Verdict:
    """ecs is down because the boot gate failed: starting ecs runs the gate again, which fails again until the
    check that failed it is fixed. That check (the cause), and its own fix, come first."""
    name = data["service"]
    data = {**data, "held_by": UNIT_NAME, "gate_critical": gate.checks}
    again = [fixes.Fix(f"then start {name}: that runs the gate again and starts {name} when it passes", f.argv, f.runs)
             for f in start]
    if gate.checks:
        failing = ", ".join(gate.checks)
        return Verdict(Status.CRITICAL, f"{name} is held by the boot gate: {UNIT_NAME} failed on {failing}",
                       f"first clear {failing} (each one's fix is in this report), then "
                       + "; ".join(f"`{f.command}`" for f in again), data, again, cause=gate.checks[0])
    journal = fixes.Fix("the gate's journal names the critical check: fix it", fixes.as_user(
        probes.host, ["journalctl", "-u", UNIT_NAME, "-b", "--no-pager"]))
    return Verdict(Status.CRITICAL, f"{name} is held by the boot gate: {UNIT_NAME} failed", data=data,
                   fixes=[journal, *again])


_PACKAGE_PROCESSES = ("yum", "dnf", "rpm", "apt", "apt-get", "dpkg", "unattended-upgr", "packagekitd")


def _lock_users(host: Host) -> list[dict[str, Any]]:
    """Package managers running now, by name (dpkg's lock is an fcntl lock, not a pid file)."""
    now = time.time()
    return [{"pid": p.pid, "name": p.name, "cmdline": " ".join(p.cmdline)[:200],
             "since_s": round(max(0.0, now - p.started), 1) if p.started else None}
            for p in host.processes() if p.name in _PACKAGE_PROCESSES and not p.zombie]


def check_package_lock(probes: Probes) -> Verdict:
    """Who holds the package manager's lock: the same answer install waits on (yum's and dnf's pid files,
    rpm's fcntl lock on the database; with --root, only processes acting on the tree), plus, for dpkg,
    whose lock is an fcntl lock of its own, the package managers running by name."""
    from gpuprep.packages.lock import lock_holder

    host, locks = probes.host, probes.platform.package_locks
    if not locks:
        raise NotApplicable(f"no package manager lock known for {probes.platform.name}")
    rpm_locks = () if probes.platform.package_format == "dpkg" else RPM_LOCKS
    holder = lock_holder(host, locks, rpm_locks)
    held = [{"file": holder.file, "pid": holder.pid, "name": holder.name, "cmdline": holder.cmdline,
             "since_s": holder.since_s}] if holder else []
    if not held and probes.platform.package_format == "dpkg" and host.live:
        held = [{"file": locks[0], **h} for h in _lock_users(host)]
    stale = [path for path in locks if not held and _pid_in(host.read_text(path))]
    data = {"held": held, "stale": [{"file": path} for path in stale]}
    if held:
        h = held[0]
        running = f", running {h['since_s']:.0f} s" if h.get("since_s") is not None else ""
        return Verdict(Status.WARNING, f"{h['name']} (pid {h['pid']}{running}: {h['cmdline']}) holds {h['file']}",
                       data=data, fixes=[fixes.Fix("wait for it to finish (at first boot cloud-init's repo_upgrade "
                                                   "runs yum; gpuprep install waits for it, bounded); see what it "
                                                   "is", ("ps", "-fp", str(h["pid"])))])
    if stale:
        return Verdict(Status.OK, f"no package manager running (stale pid file {stale[0]})", data=data)
    return Verdict(Status.OK, "no package manager running", data=data)


def _unbake(probes: Probes, files: list[str]) -> list[fixes.Fix]:
    """Another machine's ECS state removed: by seal's ecs-state and gpu-info steps where seal runs (else the files
    themselves), with ecs stopped around it on a running host, whose image is then to be sealed again."""
    host, p = probes.host, probes.platform
    name = ecs_service(p)
    remove = fixes.gpuprep(host, p, "remove them", "seal", "--only", "ecs-state,gpu-info") or fixes.Fix(
        "remove them", fixes.as_user(host, ["rm", "-f", *(str(host.path(f)) for f in files)]))
    if not host.live:
        return [remove]
    stop = fixes.service(host, p, "stop", name, f"stop {name} so it does not write them again")
    start = fixes.service(host, p, "start", name, f"start {name}")
    return [*([stop] if stop else []), remove, *([start] if start else []),
            fixes.Fix("and seal the image again on the build machine, so no instance boots with them")]


def _pid_in(text: str | None) -> bool:
    """A pid file that names a pid (its process gone, or not acting on this tree: stale)."""
    return bool(text and text.strip() and text.strip().splitlines()[0].strip().isdigit())


def check_seal_stamp(probes: Probes) -> Verdict:
    if not probes.host.exists(SEAL_JSON):
        raise NotApplicable(f"not a sealed image (no {SEAL_JSON})")
    doc = stamp.seal_stamp(probes)
    if doc is None:
        reseal = fixes.gpuprep(probes.host, probes.platform, "or seal the image again, which rewrites it", "seal")
        return Verdict(Status.WARNING, f"{SEAL_JSON} is not a JSON object", fixes=[
            fixes.json_tool(probes.host, SEAL_JSON), *([reseal] if reseal is not None else [])])
    platform = (doc.get("platform") or {}).get("name", "?")
    packages = ", ".join(sorted((doc.get("packages") or {}).values())) or "no tracked packages"
    kept = doc.get("kept_images") or []
    driver = f"driver {doc['driver_version']}" if doc.get("driver_version") else "no NVIDIA driver seen"
    booted = _booted_since_seal(probes, doc)
    # Booted after the seal: this host was launched from the sealed image (or is its builder, rebooted).
    where = {True: "booted from an image sealed", False: "this host was sealed (not booted since)",
             None: "sealed"}[booted]
    data = {**doc, "booted_from_image": booted}
    return Verdict(Status.OK, f"{where} {doc.get('sealed_at', '?')} by gpuprep {doc.get('gpuprep', '?')} on "
                   f"{platform}; {packages}; {driver}; {len(kept)} kept image(s)", data=data)


def _booted_since_seal(probes: Probes, doc: dict[str, Any]) -> bool | None:
    """Whether this boot came after the seal: by boot identity when the stamp has one (exact), else by
    comparing the seal time with the boot time. None when neither can tell (--root)."""
    now = probes.host.boot_identity()
    stamped = doc.get("boot")
    if now is not None and isinstance(stamped, dict):
        return stamped != now
    sealed, boot = _parse_time(doc.get("sealed_at")), boot_time(probes)
    if sealed is None or boot is None:
        return None
    return boot > sealed


def _parse_time(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc).timestamp()
    except ValueError:
        return None


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def classify_state_files(mtimes: dict[str, float], sealed: float | None,
                         boot: float | None) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(baked, stale): files written no later than the seal, and the others written before this boot."""
    baked, stale = [], []
    for path, mtime in mtimes.items():
        entry = {"file": path, "mtime": _iso(mtime)}
        if sealed is not None and mtime <= sealed:
            baked.append(entry)
        elif boot is not None and mtime < boot:
            stale.append(entry)
    return baked, stale


def check_stale_state(probes: Probes) -> Verdict:
    host = probes.host
    doc = stamp.seal_stamp(probes)
    if doc is None:
        raise NotApplicable(f"no {SEAL_JSON}: not a sealed image, nothing to compare with")
    sealed = _parse_time(doc.get("sealed_at"))
    boot = boot_time(probes)
    if boot is None and sealed is None:
        raise NotApplicable(f"{SEAL_JSON} has no readable sealed_at to compare with")
    mtimes = {}
    for path in (*ecs_config.CHECKPOINTS, GPU_INFO):
        try:
            mtimes[path] = host.path(path).lstat().st_mtime
        except (FileNotFoundError, NotADirectoryError):
            continue
    baked, stale = classify_state_files(mtimes, sealed, boot)
    data = {"sealed_at": doc.get("sealed_at"), "boot": _iso(boot) if boot else None, "baked": baked, "stale": stale}
    if baked:
        files = ", ".join(e["file"] for e in baked)
        return Verdict(Status.CRITICAL, f"{files} predate(s) the seal ({doc.get('sealed_at')}): another machine's "
                       "state baked into the image (the instance may fail to register or join the build cluster)",
                       data=data, fixes=_unbake(probes, [str(e["file"]) for e in baked]))
    if stale:
        files = ", ".join(e["file"] for e in stale)
        return Verdict(Status.WARNING, f"{files} predate(s) this boot ({data['boot']}): not rewritten since",
                       data=data, fixes=_restart(probes, "restart ecs: ecs-init rewrites nvidia-gpu-info.json and "
                                                 "the agent its checkpoint"))
    ref = f"this boot ({data['boot']})" if boot else f"the seal ({doc.get('sealed_at')})"
    return Verdict(Status.OK, f"no agent checkpoint or gpu-info older than {ref}", data=data)


CHECKS = [
    Check("ecs-init", "ecs", "ecs-init is installed, and its version", check_ecs_init, timeout=10),
    Check("ecs-gpu-support", "ecs", "ECS_ENABLE_GPU_SUPPORT=true where the host has GPUs", check_gpu_support),
    # It shares the gpu checks' NVML query, which may take up to their QUERY_TIMEOUT on a many-GPU host without
    # persistence mode (gpu_query.init_allowance_s): a shorter bound would report slow as hung.
    Check("ecs-gpu-info", "ecs", "nvidia-gpu-info.json names this host's driver and GPU UUIDs", check_gpu_info,
          timeout=QUERY_TIMEOUT),
    Check("ecs-service", "ecs", "the ecs service is enabled, and its state", check_service, timeout=10),
    Check("package-lock", "ecs", "no package manager holds its lock (and which one does)", check_package_lock),
    Check("seal-stamp", "ecs", "provenance of a sealed image (/etc/gpuprep/seal.json)", check_seal_stamp),
    Check("ecs-stale-state", "ecs", "no agent checkpoint or gpu-info older than the seal or this boot",
          check_stale_state),
]
