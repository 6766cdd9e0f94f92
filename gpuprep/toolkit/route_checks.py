"""doctor's checks of what the Engine makes of the CDI specs and of the routes a GPU container takes (issue 28,
items 1-3): a spec the Engine cannot read, routes that disagree, and nvidia-cdi-refresh as it ran.

Facts (docs/domain.md, "Added 2026-12-07"):
- CDI spec ``cdiVersion`` 0.7.0 (toolkit 1.19+, device nodes with ``additionalGids``) needs Docker 26.1.0+
  (containerd 1.7.16+); Docker before 29.5.0 drops those gids (moby/moby 704210f9e6). The toolkit's workaround:
  ``--feature-flag no-additional-gids-for-device-nodes``.
- Docker 29.2+ serves ``--gpus`` from the static spec first when ``nvidia-cdi-hook`` is on PATH (moby/moby PR 50228,
  ``daemon/devices_nvidia_linux.go``), by the names ``nvidia.com/gpu=<index|uuid|all>``, and falls back to the
  prestart hook only where no spec names the device. ECS tasks take the runtime (``--runtime nvidia``), whose
  jit-cdi mode never reads the spec files: a stale spec breaks ``--gpus`` while ECS works.
- nvidia-cdi-refresh (toolkit 1.18+): the ``.path`` unit watches ``modules.dep`` and ``nvidia-ctk``; the ``.service``
  writes ``/var/run/cdi/nvidia.yaml``; it works at boot only ordered after nvidia-persistenced (toolkit issue 1611).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gpuprep import fixes
from gpuprep.engine.cdi import engine_since, generate_fix, since_text, version_tuple
from gpuprep.engine.gpu_container import CDI_ROUTE, DEFAULT_ROUTE, GPUS_ROUTE, IMAGE, ROUTE_WORDS, route_took
from gpuprep.engine.route_fixes import route_fixes
from gpuprep.report import Status
from gpuprep.runner.checks import Check, NotApplicable, Probes, Verdict, probe
from gpuprep.services import unit_text
from gpuprep.toolkit import cdi
from gpuprep.toolkit.checks import refresh_fixes, stack
from gpuprep.toolkit.stack import UNIT_DIRS, Stack

if TYPE_CHECKING:
    from gpuprep.engine.gpu_routes import Proof

# The Engine versions are the knowledge table docker-cdi's (gpuprep/knowledge/data/docker-cdi.json): the rows
# cdi-additional-gids (29.5) and gpus-through-cdi (29.2).
NAME_BOTH = ("--device-name-strategy=index", "--device-name-strategy=uuid")
NO_GIDS_FLAG = ("--feature-flag", "no-additional-gids-for-device-nodes")
PROOF_TIMEOUT_S = 30.0  # a container's nvidia-smi, a cold GPU init included (engine/gpu_container.py's own bound)
REFRESH_SERVICE = "nvidia-cdi-refresh.service"
PERSISTENCED = "nvidia-persistenced.service"
REFRESH_DROP_IN = f"/etc/systemd/system/{REFRESH_SERVICE}.d/10-after-persistenced.conf"
DROP_IN_DATA = Path(__file__).resolve().parent.parent / "data" / "nvidia-cdi-refresh-after-persistenced.conf"
# Where the driver's kernel module lands under /lib/modules/<kernel> (the NVIDIA driver RPMs, DKMS, the runfile).
MODULE_DIRS = ("extra", "kernel/drivers/video", "updates/dkms", "extra/nvidia")
MODULE_FILES = ("nvidia.ko", "nvidia.ko.xz", "nvidia.ko.zst", "nvidia.ko.gz")


def _engine(s: Stack) -> tuple[int, int] | None:
    return version_tuple(s.engine_version)


def module_mtime(probes: Probes) -> tuple[str, float] | None:
    """The newest NVIDIA kernel module file under /lib/modules (every kernel's): when the driver was last installed
    or updated. Paths resolved inside the root."""
    host = probes.host
    try:
        kernels = os.listdir(host.path("/lib/modules"))
    except OSError:
        return None
    found = []
    for kernel in kernels:
        for d in MODULE_DIRS:
            for name in MODULE_FILES:
                path = f"/lib/modules/{kernel}/{d}/{name}"
                try:
                    found.append((os.stat(host.path(path)).st_mtime, path))
                except OSError:
                    continue
    if not found:
        return None
    mtime, path = max(found)
    return path, mtime


def _spec_mtime(probes: Probes, path: str) -> float | None:
    try:
        return os.stat(probes.host.path(path)).st_mtime
    except OSError:
        return None


# -- item 2: a spec the Engine cannot read ------------------------------------------------------------------------
def check_engine_reads_spec(probes: Probes) -> Verdict:
    s = stack(probes)
    specs = [sp for sp in s.specs if not sp.error and sp.kind == cdi.NVIDIA_KIND]
    if not specs:
        raise NotApplicable("no NVIDIA CDI spec (toolkit-cdi-specs says whether one is needed)")
    engine = _engine(s)
    findings: list[tuple[Status, str, list[fixes.Fix]]] = []
    # cdiVersion 0.7.0 on an Engine before 26.1 is toolkit-cdi-specs' finding (critical where Docker's CDI is on).
    for sp in specs:
        if sp.additional_gids and engine is not None and engine < engine_since("cdi-additional-gids"):
            findings.append((Status.WARNING, f"{sp.path}: its device nodes carry additionalGids, which Docker "
                             f"{s.engine_version} drops (kept from {since_text('cdi-additional-gids')}): a non-root "
                             "container user is denied the device",
                             [generate_fix(probes.host, "write it without them", *NO_GIDS_FLAG)]))
    module = module_mtime(probes)
    if module is not None:
        for sp in specs:
            written = _spec_mtime(probes, sp.path)
            if written is not None and written < module[1]:
                findings.append((Status.WARNING, f"{sp.path} was written before the driver's module {module[0]} "
                                 "was installed: it names the old driver's files", refresh_fixes(probes, s)))
    data: dict[str, Any] = {"engine_version": s.engine_version, "docker_cdi": s.docker_cdi,
                            "specs": {sp.path: {"cdiVersion": sp.cdi_version, "additionalGids": sp.additional_gids}
                                      for sp in specs},
                            "module": module[0] if module else None,
                            "findings": [f[1] for f in findings]}
    if findings:
        worst = max(findings, key=lambda f: f[0] is Status.CRITICAL)
        more = f" (and {len(findings) - 1} more)" if len(findings) > 1 else ""
        return Verdict(worst[0], worst[1] + more, data=data, fixes=worst[2])
    versions = ", ".join(f"{sp.path} (cdiVersion {sp.cdi_version or '?'})" for sp in specs)
    return Verdict(Status.OK, f"Docker {s.engine_version or '(version unknown)'} reads {versions}; written after "
                   "the driver's module", data=data)


# -- item 1: the routes a GPU container takes ---------------------------------------------------------------------
def routes(probes: Probes, s: Stack) -> dict[str, str]:
    """Which route each of ECS, ``docker run --gpus`` and ``docker run --device nvidia.com/gpu=...`` takes here."""
    engine = _engine(s)
    hook = probes.host.which("nvidia-cdi-hook")
    out = {"ecs": f"the nvidia runtime in {s.mode} mode" + (" (reads no spec file)" if s.mode in ("jit-cdi", "legacy")
                                                             else "")}
    if s.docker_cdi and engine is not None and engine >= engine_since("gpus-through-cdi") and hook:
        out["gpus"] = "Docker's CDI: the static spec files (Docker 29.2+ with nvidia-cdi-hook on PATH)"
    elif probes.host.which("nvidia-container-runtime-hook"):
        out["gpus"] = "the prestart hook (nvidia-container-runtime-hook, legacy)"
    else:
        out["gpus"] = "none: no nvidia-container-runtime-hook and Docker does not serve --gpus from CDI"
    out["device"] = ("Docker's CDI: the static spec files in " + ", ".join(s.spec_dirs)) if s.docker_cdi else \
        "none: Docker's CDI is off"
    return out


def check_routes(probes: Probes) -> Verdict:
    from gpuprep.engine.probes import host_view
    from gpuprep.gpu.inventory import probe_module

    s = stack(probes)
    if s.toolkit is None and not s.registrations:
        raise NotApplicable("no NVIDIA container toolkit installed and no nvidia runtime registered")
    taken = routes(probes, s)
    data: dict[str, Any] = {"routes": taken, "engine_version": s.engine_version}
    from_spec = taken["gpus"].startswith("Docker's CDI")
    if from_spec:
        specs = [sp for sp in s.specs if sp.kind == cdi.NVIDIA_KIND and not sp.error]
        view = host_view(probes)
        findings, winners = cdi.judge(probes.host, specs, driver_version=probe_module(probes).version,
                                      host_uuids=view.uuids if view is not None else None)
        data["resolved_from"] = winners
        runtime_reads_spec = s.mode == "cdi"
        if findings and not runtime_reads_spec:
            f = findings[0]
            return Verdict(Status.WARNING, f"`docker run --gpus` reads {f.spec}, which is stale ({f.problem}), while "
                           f"ECS tasks take {taken['ecs']} and work: the two routes disagree", data=data,
                           fixes=refresh_fixes(probes, s))
        if winners and not any(name.split("=", 1)[1].isdigit() for name in winners):
            return Verdict(Status.WARNING, "the CDI spec names GPUs by UUID only: `docker run --gpus device=0` "
                           "finds no `nvidia.com/gpu=0` and fails, while ECS tasks (by UUID) work", data=data,
                           fixes=[generate_fix(probes.host, "write index names too", *NAME_BOTH)])
    summary = "; ".join(f"{k if k == 'ecs' else '--' + k}: {v}" for k, v in taken.items())
    proof = prove_routes(probes, s)
    if proof is not None:
        # Each route's line only: gpu-container carries the default route's whole view (its GPUs); twice would push
        # doctor's JSON on an 8-GPU host past the 24,000 characters SSM Run Command keeps (issue 26).
        data["proof"] = {"image": proof.main.image, "routes": [r.route_data() for r in proof.results]}
        by_route = {r.route: r for r in proof.results}
        ecs = by_route.get(DEFAULT_ROUTE)
        broken = [r for r in proof.results if r.route != DEFAULT_ROUTE and not r.ok and r.link != IMAGE]
        if ecs is not None and ecs.ok and broken:
            bad = broken[0]
            return Verdict(Status.WARNING, f"the routes disagree: ECS's route ({ROUTE_WORDS[DEFAULT_ROUTE]}) sees "
                           f"{len(ecs.gpus)} GPU(s), but {bad.summary}", data=data, fixes=route_fixes(probes, bad))
        if ecs is not None and ecs.ok and not broken:
            proven = ", ".join(route_took(r.route, r.seconds) for r in proof.results if r.ok)
            summary += f"; proven here: {proven}"
    return Verdict(Status.OK, f"the routes agree: ECS: {summary.split('ecs: ', 1)[1]}", data=data)


def prove_routes(probes: Probes, s: Stack) -> Proof | None:
    """Each route's container on the live Engine (the image present locally; nothing pulled), side by side; None
    where there is no Engine to ask or containers are not wanted (``--no-container``)."""
    from gpuprep.engine.gpu_routes import probe_routes
    from gpuprep.engine.probes import docker_info

    if probes.host.docker_url is None or probes.options.no_container:
        return None
    try:
        docker_info(probes)
    except Exception:  # docker-engine says the Engine is down
        return None
    from gpuprep.engine.check_image import image_choice

    wanted = [DEFAULT_ROUTE, GPUS_ROUTE] + ([CDI_ROUTE] if s.docker_cdi else [])
    choice = image_choice(probes)  # gpu-container's image; the local one the host was built with where it is absent
    return probe_routes(probes.host, choice.local or choice.image, wanted, pull=False, timeout=PROOF_TIMEOUT_S)


# -- item 3: nvidia-cdi-refresh -----------------------------------------------------------------------------------
def _ordered_after(text: str, unit: str) -> bool:
    return any(line.split("=", 1)[0].strip() == "After" and unit in line.split("=", 1)[1].split()
               for line in text.splitlines() if "=" in line)


def check_cdi_refresh(probes: Probes) -> Verdict:
    s = stack(probes)
    if not s.refresh_shipped:
        raise NotApplicable("the toolkit here ships no nvidia-cdi-refresh units (1.18+ does)")
    data: dict[str, Any] = {"units": s.refresh}
    if not s.refresh_enabled:
        off = [u for u, state in s.refresh.items() if state != "enabled"]
        return Verdict(Status.WARNING, f"{', '.join(off)} not enabled: a driver update leaves the CDI spec stale",
                       data=data, fixes=_enable_now(probes, list(s.refresh)))
    persistenced = any(probes.host.exists(f"{d}/{PERSISTENCED}") for d in UNIT_DIRS)
    if persistenced and not _ordered_after(unit_text(probes.host, REFRESH_SERVICE)[1], PERSISTENCED):
        return Verdict(Status.WARNING, f"{REFRESH_SERVICE} is not ordered after {PERSISTENCED}: at boot it can run "
                       "before the GPUs are initialised and write a spec that lacks them (toolkit issue 1611)",
                       data=data, fixes=_order_after(probes))
    module = module_mtime(probes)
    written = _spec_mtime(probes, cdi.GENERATED_SPEC)
    data.update(module=module[0] if module else None, spec=cdi.GENERATED_SPEC if written else None)
    if written is None:
        return Verdict(Status.WARNING, f"nvidia-cdi-refresh is enabled but {cdi.GENERATED_SPEC} does not exist: it "
                       "has not run since the driver was installed, or it failed", data=data,
                       fixes=[*refresh_fixes(probes, s), _refresh_log(probes)])
    if module is not None and written < module[1]:
        return Verdict(Status.WARNING, f"{cdi.GENERATED_SPEC} is older than the driver's module {module[0]}: "
                       "nvidia-cdi-refresh did not run after the driver update", data=data,
                       fixes=[*refresh_fixes(probes, s), _refresh_log(probes)])
    ran = refresh_ran(probes)
    if ran is not None:
        data["this_boot"] = ran
        service, persistenced_state = ran.get(REFRESH_SERVICE, {}), ran.get(PERSISTENCED, {})
        logged = ran.get("errors") or []
        if service.get("Result") not in (None, "", "success"):
            said = f": {logged[-1]}" if logged else ""
            return Verdict(Status.WARNING, f"{REFRESH_SERVICE} failed this boot ({service.get('Result')}, exit status "
                           f"{service.get('ExecMainStatus')}){said}", data=data,
                           fixes=[_refresh_log(probes), *_restart(probes, "then run it again")])
        started = _monotonic(service.get("ExecMainStartTimestampMonotonic"))
        if not started:
            return Verdict(Status.WARNING, f"{REFRESH_SERVICE} has not run this boot: the spec is the last boot's "
                           "(or the image's)", data=data, fixes=_restart(probes, "run it"))
        ready = _monotonic(persistenced_state.get("ActiveEnterTimestampMonotonic"))
        if persistenced and ready and started < ready:
            return Verdict(Status.WARNING, f"{REFRESH_SERVICE} ran {(ready - started) / 1e6:.1f} s before "
                           f"{PERSISTENCED} was up this boot: its spec may lack GPUs (toolkit issue 1611)",
                           data=data, fixes=[*_restart(probes, "run it again now"), *_order_after(probes)])
    return Verdict(Status.OK, f"nvidia-cdi-refresh enabled, ordered after {PERSISTENCED if persistenced else 'boot'}; "
                   f"{cdi.GENERATED_SPEC} newer than the driver's module", data=data)


def _enable_now(probes: Probes, units: list[str]) -> list[fixes.Fix]:
    host, p = probes.host, probes.platform
    found = [fixes.service(host, p, "enable", u, "enable it, so a driver update rewrites the spec") for u in units]
    found += [fixes.service(host, p, "start", u, "and start it") for u in units]
    return [f for f in found if f is not None]


def _restart(probes: Probes, why: str) -> list[fixes.Fix]:
    fix = fixes.service(probes.host, probes.platform, "restart", REFRESH_SERVICE, why)
    return [fix] if fix is not None else []


def _refresh_log(probes: Probes) -> fixes.Fix:
    return fixes.service_log(probes.host, probes.platform, REFRESH_SERVICE, "its log says why")


def _order_after(probes: Probes) -> list[fixes.Fix]:
    """The drop-in that orders nvidia-cdi-refresh after nvidia-persistenced at every boot, copied from gpuprep's
    package data into the target's unit directory; then systemd's units reloaded on the live host."""
    found = [fixes.Fix(f"order it after {PERSISTENCED} at every boot (a drop-in)", fixes.as_user(probes.host, [
        "install", "-D", "-m", "0644", str(DROP_IN_DATA), str(probes.host.path(REFRESH_DROP_IN))]))]
    if probes.host.live:
        found.append(fixes.daemon_reload(probes.host))
    return found


def _monotonic(value: str | None) -> int:
    return int(value) if value and value.isdigit() else 0


REFRESH_TIMEOUT_S = 3.0


@probe
def refresh_ran(p: Probes) -> dict[str, Any] | None:
    """This boot's record of nvidia-cdi-refresh and nvidia-persistenced (``systemctl show``) and the errors the
    refresh logged (``journalctl -b -p err``), each bounded; None off the live system (an image has no boot)."""
    if not p.host.live or not p.host.which("systemctl"):
        return None
    out: dict[str, Any] = {}
    for unit, props in ((REFRESH_SERVICE, "Result,ExecMainStatus,ExecMainStartTimestampMonotonic"),
                        (PERSISTENCED, "ActiveState,ActiveEnterTimestampMonotonic")):
        done = p.host.run(["systemctl", "show", unit, "-p", props], timeout=REFRESH_TIMEOUT_S, check=False)
        out[unit] = dict(line.split("=", 1) for line in (done.stdout or "").splitlines() if "=" in line)
    if p.host.which("journalctl"):
        done = p.host.run(["journalctl", "-b", "-u", REFRESH_SERVICE, "-p", "err", "-o", "cat", "-n", "5",
                           "--no-pager"], timeout=REFRESH_TIMEOUT_S, check=False)
        out["errors"] = [line for line in (done.stdout or "").splitlines() if line.strip()]
    return out


CHECKS = [
    Check("toolkit-cdi-engine-reads", "docker", "the Engine keeps what each NVIDIA CDI spec asks (additionalGids: "
          "Docker 29.5+; cdiVersion 0.7.0 is toolkit-cdi-specs') and each was written after the driver's module",
          check_engine_reads_spec,
          timeout=8),  # not at boot: ECS tasks take the runtime, which never asks Docker's CDI
    Check("toolkit-gpu-routes", "docker", "which route ECS, `--gpus` and `--device` take here, and where they "
          "disagree (a stale spec or UUID-only names breaking `--gpus` on Docker 29.2+); with an Engine, each proven "
          "by a container", check_routes, timeout=PROOF_TIMEOUT_S + 15),
    Check("toolkit-cdi-refresh", "docker", "nvidia-cdi-refresh enabled, ordered after nvidia-persistenced, its spec "
          "newer than the driver's module, no failure this boot", check_cdi_refresh, timeout=8),
]

__all__ = ["CHECKS", "routes"]
