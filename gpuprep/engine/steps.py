"""install steps on the Engine side: docker-service, docker-runtime, docker-reload, gpu-check.

What they hand each other is ``DaemonJsonRun`` (docker-runtime's edit, for docker-reload's decision and
rollback); what they read of the package steps is ``PackagesRun`` (the runtime binary of the selected stack,
and whether a transaction may have replaced daemon.json: nvidia-docker2 <= 2.4.0 ships it as a plain file,
2.5.0+ push an existing one aside as .rpmorig/.rpmsave).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from gpuprep import hints
from gpuprep.engine import daemon_config
from gpuprep.engine.daemon_config import DEFAULT_RUNTIME_PATH, RUNTIME_NAME
from gpuprep.errors import StepFailed
from gpuprep.packages.steps import PackagesRun
from gpuprep.report import StepResult
from gpuprep.runner.needs import Engine
from gpuprep.runner.steps import Applied, Change, Context, Converged, Step, Verify

if TYPE_CHECKING:
    from gpuprep.engine.dockerd import EngineProcess, Rollback
    from gpuprep.engine.gpu_routes import Routes
    from gpuprep.host import Host

log = logging.getLogger("gpuprep")


@dataclass
class DaemonJsonRun:
    """docker-runtime's edit of daemon.json in this run, for docker-reload (``ctx.shared(DaemonJsonRun)``)."""

    planned: bool = False  # the plan changes the file (what a dry run's docker-reload goes by)
    changed: bool = False  # the file was changed
    rollback: Rollback | None = None  # what restores the file if the Engine refuses it
    engine: EngineProcess | None = None  # the dockerd that docker-reload signalled or restarted in this run
    verified: bool = False  # the Engine showed the change: daemon.json is the last good config now
    docker_cdi_planned: bool = False  # --docker-cdi turns features.cdi on in this edit (a restart, not SIGHUP)
    restart: bool = False  # an edit of keys dockerd reads only at start (default-ulimits: docker-memlock)


def runtime_path(ctx: Context) -> str:
    return ctx.install_options.runtime_path or ctx.shared(PackagesRun).runtime_path or DEFAULT_RUNTIME_PATH


def wants_default(ctx: Context) -> bool:
    return ctx.install_options.default_runtime


# install's words for it (seal's containers and images say runner/needs.py's ENGINE's)
NO_ENGINE = Engine("needs a running Docker Engine: acting on --root (set DOCKER_HOST to use one)")


# -- docker-service -------------------------------------------------------------------------
@dataclass
class _ServicePlan:
    """The docker-service step's plan: the init system's verbs for the service ("enable", "start"); or, for a
    SysV image in --root, ``chkconfig NAME on`` run inside the image (``_chkconfig_in_root``)."""

    verbs: list[str] = field(default_factory=list)
    chkconfig_in_root: bool = False


class DockerServiceStep(Step[_ServicePlan]):
    id = "docker-service"
    title = "Docker enabled at boot and running (systemd, or upstart/SysV on Amazon Linux 1)"

    def plan(self, ctx: Context) -> Change[_ServicePlan] | Converged:
        from gpuprep.engine.dockerd import docker_info
        from gpuprep.services import Services

        host = ctx.host
        if host.env.get("DOCKER_HOST"):
            info = docker_info(host)  # EngineDown (exit 1) with the hint when it does not answer
            return Converged(f"the Engine at {host.docker_url} answers (Docker {info.get('ServerVersion', '?')})",
                             {"server_version": info.get("ServerVersion")})
        services = Services(host, ctx.platform)
        name = ctx.platform.docker_service
        _readable_daemon_json(ctx)
        if ctx.platform.init == "upstart" and not host.live:
            return _plan_sysv_in_root(ctx, name)
        state = services.state(name)
        if state.enabled == "not-found":
            if ctx.dry_run:
                verbs = ["enable", "start"] if host.live else ["enable"]
                return Change(f"enable and start {name} once the packages step installed it",
                              commands=[services.argv(v, name) for v in verbs], payload=_ServicePlan(verbs))
            raise StepFailed(f"{name} is not installed here", "install Docker first: `gpuprep install --only packages`")
        todo = [] if state.is_enabled else ["enable"]
        if host.live and not state.running:
            todo.append("start")
        where = "" if host.live else " (in --root: enabled for the next boot only)"
        if not todo:
            return Converged(f"{name} is enabled" + (" and running" if host.live else "") + where,
                             {"enabled": state.enabled, "active": state.active})
        return Change(f"{' and '.join(todo)} {name}{where}", commands=[services.argv(v, name) for v in todo],
                      data={"enabled": state.enabled, "active": state.active}, payload=_ServicePlan(todo))

    def apply(self, ctx: Context, change: Change[_ServicePlan]) -> Applied:
        from gpuprep.engine.dockerd import DockerdDidNotStart, wait_ready
        from gpuprep.services import Services

        name = ctx.platform.docker_service
        if change.payload.chkconfig_in_root:
            argv = _chkconfig_in_root(ctx.host, name)
            ctx.host.run(argv, timeout=120, hint=f"run `{' '.join(argv)}` by hand to see why")
            return Applied()
        services = Services(ctx.host, ctx.platform)
        for verb in change.payload.verbs:
            getattr(services, verb)(name)
        if "start" in change.payload.verbs and ctx.host.docker_url:
            try:
                wait_ready(ctx.host.docker_url)
            except DockerdDidNotStart as exc:
                raise StepFailed(f"{name} started but {exc}", f"see `journalctl -u {name} -n 50`") from None
        return Applied()


def _readable_daemon_json(ctx: Context) -> None:
    """dockerd refuses to start with a daemon.json it cannot read, and says so only in its journal: the file is
    read first, so a trailing comma is named (file, line, column) before a start that cannot work (exit 2)."""
    from gpuprep.errors import BadInput

    try:
        daemon_config.read_config(ctx.host, ctx.platform.daemon_json)
    except BadInput as exc:
        raise BadInput(f"{exc.message}: dockerd would not start with it", exc.hint, data=exc.data) from None


def _chkconfig_in_root(host: Host, name: str) -> list[str]:
    return ["chroot", str(host.root), "chkconfig", name, "on"]


def _plan_sysv_in_root(ctx: Context, name: str) -> Change[_ServicePlan] | Converged:
    """Amazon Linux 1 inside --root: docker is a SysV script; ``chkconfig docker on`` records "on" as
    /etc/rc.d/rcN.d/S..docker links. chkconfig has no --root, and run outside the image it would
    enable the build machine's docker, so it runs inside the image through chroot."""
    host = ctx.host
    if not any(host.exists(f"{d}/{name}") for d in ("/etc/rc.d/init.d", "/etc/init.d")):
        if ctx.dry_run:
            return Change(f"enable {name} once the packages step installed it (in --root: for the next boot only)",
                          commands=[_chkconfig_in_root(host, name)], payload=_ServicePlan(chkconfig_in_root=True))
        raise StepFailed(f"{name} is not installed in {host.root}: no /etc/rc.d/init.d/{name}",
                         "install Docker first: `gpuprep install --only packages`")
    links = [p for level in "345" for d in (f"/etc/rc.d/rc{level}.d", f"/etc/rc{level}.d")
             if host.path(d).is_dir() for p in host.path(d).glob(f"S[0-9][0-9]{name}")]
    if links:
        return Converged(f"{name} is enabled (in --root: for the next boot; {links[0].name} in runlevels 3-5)")
    return Change(f"enable {name} (in --root: enabled for the next boot only)",
                  commands=[_chkconfig_in_root(host, name)], payload=_ServicePlan(chkconfig_in_root=True))


# -- docker-runtime -------------------------------------------------------------------------
class DockerRuntimeStep(Step[daemon_config.DaemonJsonEdit]):
    id = "docker-runtime"
    title = "daemon.json: register the nvidia runtime and make it Docker's default (backup, atomic write)"

    def plan(self, ctx: Context) -> Change[daemon_config.DaemonJsonEdit] | Converged:
        host, path = ctx.host, ctx.platform.daemon_json
        elsewhere = daemon_config.runtime_in_runtimes_dir(host, ctx.platform.runtimes_dir)
        flag_path = _flag_path_for_old_engine(ctx) if elsewhere and wants_default(ctx) else None
        if flag_path is not None:
            elsewhere = None  # defined in daemon.json too, with the flag's own path (see below)
        copies = daemon_config.user_copies(
            host, path, before_packages=ctx.shared(PackagesRun).daemon_json_before,
            packages_changed=ctx.shared(PackagesRun).changed)
        cdi_flag = _docker_cdi_flag(ctx)
        edit = daemon_config.plan_edit(host, path, flag_path or runtime_path(ctx), set_default=wants_default(ctx),
                                       runtime_elsewhere=elsewhere, copies=copies, docker_cdi=cdi_flag)
        data: dict[str, Any] = {"path": str(edit.real), "runtime_path": runtime_path(ctx),
                                "default_runtime": wants_default(ctx)}
        if elsewhere:
            data["runtime_registered_by"] = elsewhere
        if not edit.changed:
            what = f"registered by {elsewhere}" if elsewhere else f"{runtime_path(ctx)}"
            return Converged(f"{path} already has runtime nvidia ({what})"
                             + (" as the default" if wants_default(ctx) else ""), data)
        run = ctx.shared(DaemonJsonRun)
        run.planned, run.docker_cdi_planned = edit.changes_file, cdi_flag
        commands = [["mv", str(c.leftover), str(daemon_config.merged_name(c.leftover))]
                    for c in edit.merged if c.leftover is not None]
        return Change(edit.summary, diff=edit.diff, commands=commands,
                      data={**data, "merged": [c.label for c in edit.merged]}, payload=edit)

    def apply(self, ctx: Context, change: Change[daemon_config.DaemonJsonEdit]) -> Applied:
        from gpuprep.engine.dockerd import Rollback

        edit = change.payload
        note = daemon_config.validate_with_dockerd(ctx.host, edit.after, *_validator(ctx)) \
            if edit.changes_file else ""
        previous = edit.before.encode() if edit.before is not None else None
        run = ctx.shared(DaemonJsonRun)
        if edit.changes_file:
            # Registered before the write (certbot's reverter.py, register_file_creation): a signal during the
            # write finds what to put back.
            run.rollback = Rollback(edit.path, previous)
        backup = daemon_config.apply_edit(ctx.host, edit)
        run.changed = edit.changes_file
        if edit.changes_file and run.rollback is not None:  # registered above
            run.rollback.backup = str(backup) if backup else None
        extra = [f"backup {backup}" if backup else "", note]
        return Applied(edit.summary + "".join(f"; {e}" for e in extra if e))

    def undo(self, ctx: Context, failed: StepResult) -> str | None:
        return recover_if_interrupted(ctx, failed)


def recover_if_interrupted(ctx: Context, failed: StepResult) -> str | None:
    """A signal ended the run before the Engine showed this run's daemon.json: the file as it was, and a dockerd
    this run touched running again on it (docker-runtime's and docker-reload's undo; the second finds it done)."""
    from gpuprep.engine.dockerd import recover

    run = ctx.shared(DaemonJsonRun)
    if "interrupted" not in failed.data or run.verified or (run.rollback is None and run.engine is None):
        return None
    rollback, engine = run.rollback, run.engine
    run.rollback = run.engine = None
    return recover(ctx.host, rollback, engine)


def _engine_version(ctx: Context) -> str | None:
    """The Engine's version: the running one's, else the image's docker package's."""
    from gpuprep.engine.dockerd import EngineDown, docker_info

    if ctx.host.docker_url is not None:
        try:
            return str(docker_info(ctx.host).get("ServerVersion") or "") or None
        except EngineDown:
            pass
    return daemon_config.image_engine_version(ctx.host)


def _docker_cdi_flag(ctx: Context) -> bool:
    """--docker-cdi: whether daemon.json needs features.cdi (off by default before the Engine the knowledge table
    docker-cdi names, moby/moby PR 49963; an explicit false is turned true). StepFailed on an Engine without CDI."""
    if not ctx.install_options.docker_cdi:
        return False
    from gpuprep.engine.cdi import engine_since, since_text

    version = _engine_version(ctx)
    parts = tuple(int(x) for x in (version or "").split(".")[:2] if x.isdigit())
    if len(parts) == 2 and parts < engine_since("cdi"):
        raise StepFailed(f"--docker-cdi: Docker Engine {version} has no CDI ({since_text('cdi')} and newer have it)",
                         f"update Docker (`gpuprep install --only packages --docker VERSION` with {since_text('cdi')} "
                         "or newer), or leave --docker-cdi out")
    _, config = daemon_config.read_config(ctx.host, ctx.platform.daemon_json)
    explicit = (config.get("features") or {}).get("cdi")
    return not (len(parts) == 2 and parts >= engine_since("cdi-default") and explicit is None)


def _flag_path_for_old_engine(ctx: Context) -> str | None:
    """The path ``--add-runtime nvidia=PATH`` gives, when the Engine is older than 23, else None.

    Engines before 23 validate daemon.json on its own before merging the flags ("configuration
    validation from file failed: specified default runtime 'nvidia' does not exist", seen with 20.10
    here), so a default-runtime naming a runtime only the flag registers stops dockerd. There the
    runtime is defined in daemon.json too, with the flag's own path: one meaning, whichever wins.
    Newer Engines validate the merged configuration; without an Engine to ask, define it once.
    """
    from gpuprep.engine.dockerd import EngineDown, docker_info, find_engine_process

    if ctx.host.docker_url is None:
        # An image (--root): the Engine its docker package will run at boot.
        version = daemon_config.image_engine_version(ctx.host) or ""
    else:
        try:
            version = str(docker_info(ctx.host).get("ServerVersion") or "")
        except EngineDown:
            return None
    major = version.split(".")[0]
    if not major.isdigit() or int(major) >= 23:
        return None
    proc = find_engine_process(ctx.host) if ctx.host.docker_url is not None else None
    return (proc.add_runtimes.get(RUNTIME_NAME) if proc else None) or \
        f"{ctx.platform.runtimes_dir.rstrip('/')}/{RUNTIME_NAME}"


def _validator(ctx: Context) -> tuple[str | None, str]:
    """The dockerd to validate with, or None and why there is none: the one serving the Engine, else
    the live system's; inside --root, this machine's dockerd when its major version is the image's
    (the keys and checks of ``--validate`` change between majors: 26 knows keys 20.10 refuses)."""
    from gpuprep.engine.dockerd import find_engine_process

    host = ctx.host
    if host.docker_url is not None:
        proc = find_engine_process(host)
        if proc is not None:
            return proc.exe, ""
    if host.live:
        return host.which("dockerd"), ""
    image = daemon_config.image_engine_version(host)
    local = host.tool("dockerd")
    if image is None:
        return None, "not validated: the image has no docker package installed to match a dockerd with"
    if local is None:
        return None, f"not validated: this machine has no dockerd (the image's Engine is {image})"
    mine = daemon_config.dockerd_version(host, local) or "an unknown version"
    if mine.split(".")[0] != image.split(".")[0]:
        return None, (f"not validated: this machine's {local} is {mine}, the image's Engine {image} "
                      "(another major version reads daemon.json differently)")
    return local, ""


# -- docker-reload --------------------------------------------------------------------------
@dataclass
class _Reload:
    """The docker-reload step's plan: how dockerd takes up daemon.json, and what docker info must then show."""

    proc: EngineProcess | None  # None only in a dry run: a real run without it stops in plan
    action: str  # "reload" (SIGHUP) or "restart"
    unit_changed: bool  # docker.service changed on disk: systemctl daemon-reload first
    want_default: str
    want_path: str | None


class DockerReloadStep(Step[_Reload]):
    id = "docker-reload"
    title = "dockerd takes up daemon.json: SIGHUP or restart, verified by docker info, rolled back on failure"
    needs = (NO_ENGINE,)

    def plan(self, ctx: Context) -> Change[_Reload] | Converged:
        from gpuprep.engine.dockerd import docker_info, find_engine_process, need_daemon_reload, runtimes_of

        host = ctx.host
        _, config = daemon_config.read_config(host, ctx.platform.daemon_json)
        proc = find_engine_process(host)
        info = docker_info(host)
        engine_runtimes, engine_default = runtimes_of(info)

        file_entry = (config.get("runtimes") or {}).get(RUNTIME_NAME)
        flag_path = proc.add_runtimes.get(RUNTIME_NAME) if proc else None
        elsewhere = daemon_config.runtime_in_runtimes_dir(host, ctx.platform.runtimes_dir)
        want_default = config.get("default-runtime") or ""
        # Where the runtime comes from a flag, the flag's path is what docker info shows.
        want_path = None if (flag_path or elsewhere or file_entry is None) else file_entry.get("path")
        wants_runtime = bool(file_entry or flag_path or elsewhere)

        lacking = []
        if wants_runtime and RUNTIME_NAME not in engine_runtimes:
            lacking.append("runtime nvidia")
        elif want_path and (engine_runtimes.get(RUNTIME_NAME) or {}).get("path") != want_path:
            lacking.append(f"runtime nvidia at {want_path}")
        # SIGHUP cannot unset a default runtime (docs/testbed.md 3): that takes a restart.
        cannot_unset = not want_default and engine_default not in ("", "runc")
        if want_default and engine_default != want_default:
            lacking.append(f"default-runtime {want_default} (it runs with {engine_default})")
        elif cannot_unset:
            lacking.append(f"no default-runtime (it runs with {engine_default})")
        edit = ctx.shared(DaemonJsonRun)
        # Docker's CDI is set up at start: SIGHUP does not turn features.cdi on (Engine 26 here); a restart does.
        wants_cdi = (config.get("features") or {}).get("cdi") is True or edit.docker_cdi_planned
        cdi_off = wants_cdi and "CDISpecDirs" in info and not info.get("CDISpecDirs")
        if cdi_off:
            lacking.append("Docker's CDI (features.cdi)")
        changed = edit.changed or (ctx.dry_run and edit.planned)
        unit_changed = need_daemon_reload(host, proc)

        reasons = (["daemon.json changed in this run"] if changed else []) \
            + ([f"dockerd does not show {', '.join(lacking)} yet"] if lacking else []) \
            + (["docker.service changed on disk"] if unit_changed else [])
        action = "restart" if unit_changed or cannot_unset or cdi_off or edit.restart else "reload"
        decision = {"action": action if reasons else "none", "reasons": reasons,
                    "pid": proc.pid if proc else None, "systemd_unit": proc.systemd_unit if proc else None,
                    "engine_default": engine_default, "engine_runtimes": sorted(engine_runtimes),
                    "want_default": want_default, "want_path": want_path}
        if not reasons:
            return Converged(f"dockerd (pid {decision['pid']}) already runs with what daemon.json says"
                             f" (default runtime {engine_default})", decision)
        if proc is None and not ctx.dry_run:
            raise StepFailed(f"cannot find the dockerd process serving {host.docker_url} to reload it",
                             f"restart it by hand (`{hints.service(host, ctx.platform, 'restart', 'docker')}`), "
                             "then run gpuprep again")
        commands = _commands(host, action, proc, unit_changed)
        return Change(f"{action} dockerd: {'; '.join(reasons)}", commands=commands, data=decision,
                      payload=_Reload(proc, action, unit_changed, want_default, want_path))

    def apply(self, ctx: Context, change: Change[_Reload]) -> Applied:
        from gpuprep.engine.dockerd import apply_config

        plan, edit = change.payload, ctx.shared(DaemonJsonRun)
        assert plan.proc is not None  # plan raised StepFailed without it (a dry run never applies)
        rollback = edit.rollback if edit.changed else None
        edit.engine = plan.proc  # before the signal: a run interrupted from here on brings dockerd back
        outcome = apply_config(ctx.host, plan.proc, action=plan.action, name=RUNTIME_NAME,
                               default=plan.want_default == RUNTIME_NAME, path=plan.want_path,
                               daemon_reload=plan.unit_changed, rollback=rollback)
        edit.verified = True
        data = {**change.data, "done": outcome.action, "pid_before": outcome.pid_before,
                "pid_after": outcome.pid_after}
        return Applied(outcome.summary, commands=outcome.commands, data=data)

    def undo(self, ctx: Context, failed: StepResult) -> str | None:
        return recover_if_interrupted(ctx, failed)


def _commands(host: Host, action: str, proc: EngineProcess | None, unit_changed: bool) -> list[list[str]]:
    """What docker-reload will run, as ``restart`` decides it (listed by --dry-run)."""
    from gpuprep.engine.dockerd import SYSV_RESTART, sysv_managed

    pid = str(proc.pid) if proc else "<dockerd pid>"
    if action == "reload":
        return [["kill", "-HUP", pid]]  # what reload() sends, systemd-managed or not
    if sysv_managed(host, proc):
        return [list(SYSV_RESTART)]
    if proc is not None and proc.systemd_unit:
        return ([["systemctl", "daemon-reload"]] if unit_changed else []) + \
            [["systemctl", "restart", proc.systemd_unit]]
    return [["kill", "-TERM", pid], [*(proc.argv if proc else ["dockerd", "..."])]]


# -- gpu-check ------------------------------------------------------------------------------
class GpuCheckStep(Verify["Routes"]):
    id = "gpu-check"
    title = ("Prove it: nvidia-smi in a container with no --runtime flag, and through CDI where Docker's CDI is on, "
             "sees the host's GPUs; and a CUDA kernel runs in it (where the image has python3)")

    def plan(self, ctx: Context) -> Change[Routes]:
        from gpuprep.engine.cuda_container import run_argv as cuda_argv
        from gpuprep.engine.dockerd import EngineDown, docker_info
        from gpuprep.engine.gpu_container import ROUTE_WORDS, run_argv
        from gpuprep.engine.gpu_routes import CDI_ROUTE, configured_routes

        image = ctx.install_options.image
        try:
            info = docker_info(ctx.host)
        except EngineDown:
            info = None  # the proof itself says the Engine does not answer
        _, config = daemon_config.read_config(ctx.host, ctx.platform.daemon_json)
        routes = configured_routes(info, config)
        if ctx.shared(DaemonJsonRun).docker_cdi_planned and CDI_ROUTE not in routes.routes:
            routes.routes.append(CDI_ROUTE)  # a dry run of --docker-cdi: docker-reload restarts dockerd with it on
            routes.why = "--docker-cdi turns it on in this run"
        how = " and ".join(ROUTE_WORDS[r] for r in routes.routes)
        return Change(f"would run nvidia-smi in {image} {how} and compare its GPUs with the host's, then the CUDA "
                      "proof in it", commands=[*(run_argv(image, r) for r in routes.routes), cuda_argv(image)],
                      data={"routes": routes.routes, "cdi_why": routes.why}, payload=routes)

    def verify(self, ctx: Context, change: Change[Routes]) -> Converged:
        from concurrent.futures import ThreadPoolExecutor

        from gpuprep.engine import cuda_container
        from gpuprep.engine.gpu_routes import probe_routes

        routes = change.payload
        image = ctx.install_options.image
        with ThreadPoolExecutor(max_workers=1) as pool:
            # The CUDA proof's container runs beside nvidia-smi's: the step costs about one container, not two.
            cuda_run = pool.submit(cuda_container.prove, ctx.host, image)
            proof = probe_routes(ctx.host, image, routes.routes, pull=True, progress=ctx.interactive,
                                 cdi_hint=routes.cdi_hint)
            cuda = cuda_run.result()
        data = {**proof.as_data(), "cdi_why": routes.why}
        if not proof.ok:
            # The data says which route and link broke, in --json too: what a fleet's collector groups failures by.
            raise StepFailed(proof.summary(), proof.main.hint, data=data)
        match = " (UUIDs match the host's)" if proof.main.host_uuids is not None else \
            " (no host view of the GPUs to compare with)"
        # nvidia-smi seeing the GPUs is not CUDA working (802 on an NVSwitch host without its fabric): the image
        # is proven to run a kernel too, or said not to be provable (issue 25). Once more where the image was
        # pulled only meanwhile.
        if not cuda.started:
            cuda = cuda_container.prove(ctx.host, image)
        data["cuda"] = cuda.as_data()
        if cuda.outcome == cuda_container.FAILED:
            raise StepFailed(cuda.summary, cuda.hint, data=data)
        return Converged(f"{proof.summary()}{match}; {cuda.summary}", data)
