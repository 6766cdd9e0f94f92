"""docker checks: the Engine answers, daemon.json parses, the nvidia runtime is registered, runnable,
the default, and defined once; what `nvidia-ctk runtime configure` left wrong in daemon.json.

``docker info`` and the dockerd process are probed once per run (``Probes.get``). The runtime checks
and the binary check are part of ``doctor --boot``: a host whose Engine lost the runtime must not
join the cluster.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
from collections.abc import Callable
from typing import Any

from gpuprep import fixes
from gpuprep.engine import daemon_config
from gpuprep.engine.daemon_config import DEFAULT_RUNTIME_PATH, RUNTIME_NAME
from gpuprep.engine.dockerd import EngineDown
from gpuprep.engine.probes import (  # noqa: F401 (docker_info and engine_process: what tests preset here)
    daemon_json,
    daemon_json_path,
    docker_info,
    engine_is_local,
    engine_process,
    process_or_none,
)
from gpuprep.errors import BadInput
from gpuprep.host import SYSTEM_PATH
from gpuprep.report import Status
from gpuprep.runner.checks import Check, NotApplicable, Probes, Verdict, needs_root
from gpuprep.runner.needs import ENGINE


def runtime_fixes(probes: Probes, why: str, *extra: str, ctk: list[str] | None = None) -> list[fixes.Fix]:
    """daemon.json's nvidia runtime made right: gpuprep's docker-runtime and docker-reload steps where install runs
    (RPM platforms); elsewhere NVIDIA's own `nvidia-ctk runtime configure` with ``ctk`` (None: no flag of it does
    this, so an edit by hand) and a dockerd restart."""
    host, p = probes.host, probes.platform
    fix = fixes.gpuprep(host, p, why, "install", "--only", "docker-runtime,docker-reload", *extra)
    if fix is not None:
        return [fix]
    if ctk is None:
        return [fixes.edit_by_hand(str(host.path(daemon_json_path(probes))), why)]
    restart = fixes.service(host, p, "restart", p.docker_service, "restart dockerd so it reads daemon.json")
    return [fixes.in_image(host, why, ["nvidia-ctk", "runtime", "configure", "--runtime=docker", *ctk]),
            *([restart] if restart is not None else [])]


DAEMON_JSON_CHECK = "docker-daemon-json"


class EngineUnanswered(Exception):
    """Raised to checks that need ``docker info`` when the Engine does not answer."""


def _info(probes: Probes) -> dict[str, Any]:
    try:
        return docker_info(probes)
    except EngineDown as exc:
        raise EngineUnanswered(exc.hint) from None


ENGINE_FIRST = EngineDown.SEE_CHECK


def needs_engine(fn: Callable[[Probes], Verdict]) -> Callable[[Probes], Verdict]:
    """A check that needs ``docker info``: skipped, pointing at docker-engine, when the Engine is down. The cause
    and its one fix are docker-engine's; a second problem with the same impossible fix would only repeat it."""

    @functools.wraps(fn)
    def run(probes: Probes) -> Verdict:
        try:
            return fn(probes)
        except EngineUnanswered:
            raise NotApplicable(ENGINE_FIRST) from None

    return run


def _socket_denied(exc: Exception) -> bool:
    return "permission denied on its socket" in str(exc)


def engine_down(probes: Probes, exc: EngineDown) -> Verdict:
    """docker-engine's verdict on an Engine that does not answer: why, when this host can tell, and its fix.

    dockerd refuses to start with a daemon.json it cannot read, so a broken file is the cause to fix first
    (its line and column), before a start that would fail again."""
    host, url = probes.host, probes.host.docker_url or ""
    data: dict[str, Any] = {"url": probes.host.docker_url}
    if _socket_denied(exc) and not host.is_root:
        raise NotApplicable(needs_root(host, f"the Docker socket {url[len('unix://'):]}"))
    local = host.live and not host.env.get("DOCKER_HOST")
    failed = False
    if local and probes.platform.init == "systemd":
        from gpuprep.services import Services

        # Failed, or restarting into its start limit (a config it refuses): a plain start is refused until reset.
        failed = Services(host, probes.platform).state(probes.platform.docker_service).active in ("failed",
                                                                                                   "activating")
        data["service_failed"] = failed
    if local:
        try:
            daemon_json(probes)
        except BadInput as bad:
            # The file's fault is docker-daemon-json's finding, said there once: here its first fix (the same value,
            # so listed once) and the start that follows it.
            data["daemon_json"] = bad.message
            return Verdict(Status.CRITICAL, f"{exc.message}; dockerd cannot start with "
                           f"{host.path(daemon_json_path(probes))}", data=data, cause=DAEMON_JSON_CHECK,
                           fixes=[*daemon_json_fixes(probes), *engine_start_fixes(probes, failed=failed)])
    if probes.platform is not None and not host.env.get("DOCKER_HOST"):
        return Verdict(Status.CRITICAL, exc.message, data=data, fixes=engine_start_fixes(probes, failed=failed))
    return Verdict(Status.CRITICAL, exc.message, data=data, fixes=docker_host_fixes(probes))


def docker_host_fixes(probes: Probes) -> list[fixes.Fix]:
    """An Engine named by DOCKER_HOST that does not answer: the dockerd that listens there started (how it was started
    is its owner's, not the platform's init: no command gpuprep can know), or doctor without DOCKER_HOST: the system's
    Engine asked instead, or under --root none (the docker checks are then skipped)."""
    host = probes.host
    why = "or ask the system's Engine" if host.live else "or leave the Engine out (the docker checks are skipped)"
    again = fixes.gpuprep(host, probes.platform, f"{why}: doctor without DOCKER_HOST", "doctor")
    found = [fixes.Fix(f"start the dockerd that listens on {host.docker_url} (its -H)")]
    if again is not None:
        found.append(fixes.Fix(again.why, ("env", "-u", "DOCKER_HOST", *again.argv)))
    return found


def engine_start_fixes(probes: Probes, *, failed: bool) -> list[fixes.Fix]:
    """The Engine started by this platform's init (``failed``: systemd gave up on docker.service, whose start
    limit refuses a plain start until reset), and where it says why when it does not stay up."""
    host, p = probes.host, probes.platform
    name = p.docker_service
    found = [fixes.service(host, p, "reset-failed", name, "clear the start limit systemd hit")
             if failed and p.init == "systemd" else None,
             fixes.service(host, p, "start", name, "start the Docker Engine"),
             fixes.service_log(host, p, name, "if it does not stay up, its log says why")]
    return [f for f in found if f is not None]


def daemon_json_fixes(probes: Probes) -> list[fixes.Fix]:
    """A daemon.json dockerd cannot read: where the fault is, and the edit only a person can make."""
    path = str(probes.host.path(daemon_json_path(probes)))
    return [fixes.json_tool(probes.host, daemon_json_path(probes)),
            fixes.edit_by_hand(path, '"runtimes" must be an object of {"path": ..., "runtimeArgs": [...]} entries, '
                               '"default-runtime" a string; gpuprep will not edit a file it cannot read')]


# -- checks -----------------------------------------------------------------------------------
def check_engine(probes: Probes) -> Verdict:
    try:
        info = docker_info(probes)
    except EngineDown as exc:
        return engine_down(probes, exc)
    version = info.get("ServerVersion", "?")
    data = {"url": probes.host.docker_url, "server_version": version, "containers": info.get("Containers"),
            "storage_driver": info.get("Driver")}
    return Verdict(Status.OK, f"Docker {version} answers at {probes.host.docker_url}", data=data)


def check_daemon_json(probes: Probes) -> Verdict:
    path = daemon_json_path(probes)
    try:
        text, config = daemon_json(probes)
    except BadInput as exc:
        return Verdict(Status.CRITICAL, f"{exc.message}: dockerd will not start with it", data={"path": path},
                       fixes=daemon_json_fixes(probes))
    names: list[str] = sorted(config.get("runtimes") or {})
    data = {"path": path, "exists": text is not None, "runtimes": names,
            "default_runtime": config.get("default-runtime")}
    if text is None:
        return Verdict(Status.OK, f"{path} does not exist (dockerd uses its defaults)", data=data)
    runtimes = ", ".join(names) or "none"
    return Verdict(Status.OK, f"{path} parses (runtimes: {runtimes}; default-runtime: "
                   f"{config.get('default-runtime') or 'not set'})", data=data)


@needs_engine
def check_runtime_registered(probes: Probes) -> Verdict:
    runtimes = _info(probes).get("Runtimes") or {}
    data = {"runtimes": {k: (v or {}).get("path") for k, v in runtimes.items()}}
    if RUNTIME_NAME in runtimes:
        return Verdict(Status.OK, f"runtime nvidia is registered ({runtimes[RUNTIME_NAME].get('path')})", data=data)
    return Verdict(Status.CRITICAL, f"dockerd has no nvidia runtime (it has: {', '.join(sorted(runtimes))}); "
                   "GPU containers fail with `unknown or invalid runtime name: nvidia`", data=data,
                   fixes=register_fixes(probes))


def register_fixes(probes: Probes) -> list[fixes.Fix]:
    """The nvidia runtime registered with dockerd: added to daemon.json, or where daemon.json has it already,
    dockerd reloaded (restarted where a reload does not show the runtime)."""
    try:
        _, config = daemon_json(probes)
    except BadInput:
        config = {}
    if RUNTIME_NAME not in (config.get("runtimes") or {}):
        return runtime_fixes(probes, "add runtimes.nvidia to daemon.json and reload dockerd", ctk=[])
    why = ("daemon.json defines it but dockerd has not loaded it: reload dockerd (restarted where a reload does not "
           "show the runtime)")
    reload = fixes.gpuprep(probes.host, probes.platform, why, "install", "--only", "docker-reload")
    return [reload or fixes.service(probes.host, probes.platform, "restart", probes.platform.docker_service, why)
            or fixes.Fix(why)]


@needs_engine
def check_runtime_binary(probes: Probes) -> Verdict:
    runtimes = _info(probes).get("Runtimes") or {}
    if RUNTIME_NAME not in runtimes:
        raise NotApplicable("runtime nvidia is not registered (see docker-nvidia-runtime)")
    if not engine_is_local(probes):
        raise NotApplicable(f"the Engine at {probes.host.docker_url} is not on this machine")
    path = str(runtimes[RUNTIME_NAME].get("path") or "")
    resolved = _resolve_binary(probes, path)
    data = {"path": path, "resolved": resolved}
    if resolved is None:
        return Verdict(Status.CRITICAL, f"the nvidia runtime's binary {path} does not exist"
                       + ("" if path.startswith("/") else " on dockerd's PATH"), data=data,
                       fixes=runtime_binary_fixes(probes, path))
    if not os.access(resolved, os.X_OK) or not os.path.isfile(resolved):
        return Verdict(Status.CRITICAL, f"the nvidia runtime's binary {resolved} is not an executable file",
                       data=data, fixes=runtime_binary_fixes(probes, resolved))
    return Verdict(Status.OK, f"the nvidia runtime's binary {resolved} is executable", data=data)


def runtime_binary_fixes(probes: Probes, path: str) -> list[fixes.Fix]:
    """What brings back the runtime's binary ``path``: reinstalling the package that owns it (the package
    database still lists a deleted file). Installing packages again would not: they are installed."""
    from gpuprep.packages.rpmdb import owner

    host, platform = probes.host, probes.platform
    candidates = [path] if path.startswith("/") else [f"{d}/{path}" for d in SYSTEM_PATH]
    for candidate in candidates:
        package = owner(host, candidate, platform.package_format)
        if package:
            return [fixes.packages(host, platform, "reinstall", (package,), f"reinstall {package}: it owns "
                                   f"{candidate}, and reinstalling puts the file back as packaged")]
    install = (fixes.gpuprep(host, platform, "no package owns it: install the NVIDIA container runtime", "install",
                             "--only", "packages")
               or fixes.packages(host, platform, "install", ("nvidia-container-toolkit",), "no package owns it: "
                                 "install the NVIDIA container toolkit"))
    point = fixes.edit_by_hand(str(host.path(daemon_json_path(probes))), "or point runtimes.nvidia.path at the "
                               "installed runtime (command -v nvidia-container-runtime names it), then reload docker")
    reload = fixes.service(host, platform, "reload", platform.docker_service, "reload docker") if host.live else None
    return [install, point, *([reload] if reload is not None else [])]


def _resolve_binary(probes: Probes, path: str) -> str | None:
    """The file dockerd runs: an absolute path as it is; a bare name on dockerd's own PATH."""
    if path.startswith("/"):
        return path if os.path.exists(path) else None
    proc = process_or_none(probes)
    search = (proc.env.get("PATH") if proc is not None else None) or os.pathsep.join(SYSTEM_PATH)
    return shutil.which(path, mode=os.F_OK, path=search)


@needs_engine
def check_default_runtime(probes: Probes) -> Verdict:
    info = _info(probes)
    default = info.get("DefaultRuntime") or "?"
    data = {"default_runtime": default}
    if default == RUNTIME_NAME:
        return Verdict(Status.OK, "nvidia is Docker's default runtime", data=data)
    # A warning, not critical: ECS passes --runtime nvidia for GPU tasks (ECS_NVIDIA_RUNTIME); what
    # breaks is every container started without it (AWS Batch jobs, plain `docker run`).
    return Verdict(Status.WARNING, f"Docker's default runtime is {default}, not nvidia: containers started "
                   "without --runtime see no GPU", data=data, fixes=default_runtime_fixes(probes, info))


def default_runtime_fixes(probes: Probes, info: dict[str, Any]) -> list[fixes.Fix]:
    """Make nvidia the default, keeping the nvidia runtime dockerd has where it is (without --runtime-path the
    edit would point runtimes.nvidia at the toolkit's default path instead)."""
    path = str(((info.get("Runtimes") or {}).get(RUNTIME_NAME) or {}).get("path") or "")
    keep = ["--runtime-path", path] if path.startswith("/") and path != DEFAULT_RUNTIME_PATH else []
    return runtime_fixes(probes, 'set "default-runtime": "nvidia" in daemon.json and reload dockerd', *keep,
                         ctk=["--set-as-default"])


def check_defined_once(probes: Probes) -> Verdict:
    """Engine 20.10 accepts a runtime from both daemon.json and --add-runtime, and daemon.json's path
    silently wins (docs/domain.md): the same name must come from one place."""
    try:
        _, config = daemon_json(probes)
    except BadInput:
        raise NotApplicable("daemon.json does not parse (see docker-daemon-json)") from None
    in_file = {k: (v or {}).get("path") for k, v in (config.get("runtimes") or {}).items()}
    elsewhere: dict[str, str] = {}  # name -> where it is defined
    other_path: dict[str, str] = {}  # name -> the path that definition gives
    proc = process_or_none(probes)
    if proc is not None:
        for n, p in proc.add_runtimes.items():
            elsewhere[n], other_path[n] = f"--add-runtime {n}={p}", p
    runtimes_dir = probes.host.path(probes.platform.runtimes_dir)
    if runtimes_dir.is_dir():
        for entry in sorted(runtimes_dir.iterdir()):
            if daemon_config.runtime_in_runtimes_dir(probes.host, probes.platform.runtimes_dir, entry.name):
                # docker-setup-runtimes.sh passes --add-runtime NAME=/etc/docker-runtimes.d/NAME
                where = f"{probes.platform.runtimes_dir}/{entry.name}"
                elsewhere.setdefault(entry.name, where)
                other_path.setdefault(entry.name, where)
    both = sorted(set(in_file) & set(elsewhere))
    # The same path in both is harmless, and needed on Engines before 23, which check daemon.json's
    # default-runtime before they add the flags' runtimes. Different paths are the trap: daemon.json wins.
    twice = [n for n in both if in_file[n] != other_path[n]]
    data = {"daemon_json": in_file, "elsewhere": elsewhere, "twice": twice, "same_path": [n for n in both
                                                                                          if n not in twice]}
    if not twice:
        return Verdict(Status.OK, "each runtime has one definition"
                       + (f" ({', '.join(sorted({**in_file, **elsewhere}))})" if in_file or elsewhere else ""),
                       data=data)
    where = "; ".join(f"{n}: daemon.json ({in_file[n]}) and {elsewhere[n]}" for n in twice)
    return Verdict(Status.WARNING, f"runtime defined twice with different paths, daemon.json's silently wins: {where}",
                   data=data, fixes=runtime_fixes(probes, f"remove runtimes.{twice[0]} from daemon.json and keep the "
                                                  "flag/runtimes.d entry"))


def check_nvidia_ctk_edits(probes: Probes) -> Verdict:
    """What `nvidia-ctk runtime configure` leaves wrong in daemon.json (engine/daemon_config.py says what it writes):
    arguments under ``args``, which Docker never passes, and what it dropped (features, the entry's runtimeArgs) that
    gpuprep's newest backup still holds. Its own ``"args": []`` and bare runtime name are harmless and pass."""
    try:
        _, config = daemon_json(probes)
    except BadInput:
        raise NotApplicable("daemon.json does not parse (see docker-daemon-json)") from None
    args = daemon_config.ignored_args(config)
    lost = daemon_config.find_ctk_losses(probes.host, daemon_json_path(probes), config)
    data = {"ignored_args": args, "lost_features": sorted(lost.features) if lost else [],
            "lost_runtime_args": lost.runtime_args if lost else [], "backup": lost.backup if lost else None}
    problems = []
    if args:
        problems.append(f'runtimes.nvidia holds its arguments {json.dumps(args)} under "args", which Docker ignores '
                        "(its key is runtimeArgs; `nvidia-ctk runtime configure` writes args)")
    if lost:
        problems.append(f"daemon.json lost {' and '.join(lost.describe())}; {lost.backup} has them")
    if not problems:
        return Verdict(Status.OK, "no runtime arguments under nvidia-ctk's args key and nothing nvidia-ctk dropped "
                       "that gpuprep's backup holds", data=data)
    return Verdict(Status.WARNING, "; ".join(problems), data=data, fixes=runtime_fixes(
        probes, "move the arguments to runtimeArgs and put back what nvidia-ctk dropped, keeping every other key of "
                "daemon.json, then reload dockerd"))


CHECKS = [
    Check("docker-engine", "docker", "the Docker Engine answers (GET /info on the explicit socket, with a timeout)",
          check_engine, timeout=8, needs=(ENGINE,), boot=True),
    Check("docker-daemon-json", "docker", "daemon.json parses and has the shape dockerd expects",
          check_daemon_json, timeout=3),
    Check("docker-nvidia-runtime", "docker", "runtime nvidia is registered with dockerd (docker info)",
          check_runtime_registered, timeout=8, needs=(ENGINE,), boot=True),
    Check("docker-runtime-binary", "docker", "the nvidia runtime's binary exists and is executable",
          check_runtime_binary, timeout=8, needs=(ENGINE,), boot=True),
    Check("docker-default-runtime", "docker", "nvidia is Docker's default runtime (no --runtime needed)",
          check_default_runtime, timeout=8, needs=(ENGINE,), boot=True),
    Check("docker-runtime-once", "docker", "no runtime defined in daemon.json and by --add-runtime / "
          "/etc/docker-runtimes.d with different paths", check_defined_once, timeout=5),
    Check("docker-nvidia-ctk-edits", "docker", "daemon.json has no runtime arguments under nvidia-ctk's ignored args "
          "key and lacks nothing `nvidia-ctk runtime configure` dropped (features, runtimeArgs) that gpuprep's backup "
          "holds", check_nvidia_ctk_edits, timeout=3),
]
