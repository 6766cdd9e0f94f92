"""The ECS steps: install's ``ecs-config`` and ``docker-group``; seal's ``stop-ecs``, ``ecs-state`` and
``gpu-info``."""

from __future__ import annotations

import grp
import logging
import pwd
from dataclasses import dataclass

from gpuprep.ecs import config as ecs_config
from gpuprep.ecs.config import (
    AGENT_CONTAINER,
    DOCKER_GROUP,
    GPU_SUPPORT_KEY,
    config_paths,
    ecs_service,
    parse_config,
    read_config_bytes,
    services,
    set_config_key_bytes,
)
from gpuprep.engine.objects import engine
from gpuprep.errors import BadInput, StepFailed
from gpuprep.host import Host
from gpuprep.image.tree import FileStep, Item, remove_items
from gpuprep.poll import poll_until
from gpuprep.runner.needs import Live
from gpuprep.runner.steps import Applied, Change, Context, Converged, Skip, Step, file_diff

log = logging.getLogger("gpuprep")

# -- install step: ecs-config -------------------------------------------------------------
@dataclass
class _EcsConfigPlan:
    path: str
    new_bytes: bytes | None  # None: the file is right
    enable: bool
    old_bytes: bytes | None = None  # what the file held when planned (None: absent)


class EcsConfigStep(Step[_EcsConfigPlan]):
    id = "ecs-config"
    title = f"{GPU_SUPPORT_KEY}=true in the ECS config; ecs enabled for the next boot (not started)"

    def _path(self, ctx: Context) -> str:
        return ctx.install_options.ecs_config or config_paths(ctx.platform)[0]

    def plan(self, ctx: Context) -> Change[_EcsConfigPlan] | Converged:
        host, path = ctx.host, self._path(ctx)
        old_bytes = read_config_bytes(host, path)
        wanted_bytes = set_config_key_bytes(old_bytes or b"", GPU_SUPPORT_KEY, "true")
        old = old_bytes.decode("utf-8", errors="replace") if old_bytes is not None else None
        if parse_config(old or "").get(GPU_SUPPORT_KEY) == "true" and old_bytes is not None:
            wanted_bytes = old_bytes  # set already (possibly several lines): leave the file as it is
        wanted = wanted_bytes.decode("utf-8", errors="replace")
        svc = ecs_service(ctx.platform)
        if ctx.platform.init == "upstart":
            # Amazon Linux 1: ecs is an upstart job whose `start on` stanza enables it; no job file, no ecs-init.
            # (Nothing to run: asking chkconfig inside --root would act on the build machine.)
            found = host.exists(f"/etc/init/{svc}.conf")
            enable, not_found = False, not found
        else:
            state = services(host, ctx.platform).state(svc)
            enable, not_found = not state.is_enabled, state.enabled == "not-found"
        if not_found and not ctx.dry_run:
            # In a dry run the packages step may be about to install it; for real, nothing is written.
            raise StepFailed(f"{svc} is not installed: no {svc} service to enable",
                             "install ecs-init first (gpuprep install --only packages)")
        if wanted_bytes == old_bytes and not enable:
            return Converged(f"{GPU_SUPPORT_KEY}=true in {path}; {svc} enabled")
        parts, commands, diff = [], [], ""
        if wanted_bytes != old_bytes:
            diff = file_diff(path, old, wanted)
            parts.append(f"{'set' if old is not None else 'create'} {GPU_SUPPORT_KEY}=true in {path}")
        if enable:
            commands.append(services(host, ctx.platform).argv("enable", svc))
            parts.append(f"enable {svc} for the next boot")
        return Change("; ".join(parts), diff=diff, commands=commands,
                      payload=_EcsConfigPlan(path, wanted_bytes if wanted_bytes != old_bytes else None, enable,
                                             old_bytes))

    def apply(self, ctx: Context, change: Change[_EcsConfigPlan]) -> Applied:
        plan = change.payload
        backup = None
        if plan.new_bytes is not None:
            # Backed up like daemon.json: the agent's whole configuration is in this file. A missing
            # /etc/ecs is created 0755 and the file 0644 (ecs-init's own packaging modes); the write is
            # abandoned if the file changed since planning.
            backup = ctx.host.backup(plan.path) if plan.old_bytes is not None else None
            ctx.host.write_atomic(plan.path, plan.new_bytes, mode=0o644, expect=plan.old_bytes)
        if plan.enable:
            services(ctx.host, ctx.platform).enable(ecs_service(ctx.platform))
        return Applied(f"{change.summary}; backup {backup}" if backup else None)


# -- install step: docker-group -----------------------------------------------------------
def _passwd_users(host: Host) -> dict[str, int]:
    """user -> primary gid from the host's /etc/passwd (used inside --root, where NSS is not ours)."""
    users: dict[str, int] = {}
    for line in (host.read_text("/etc/passwd") or "").splitlines():
        parts = line.split(":")
        if len(parts) >= 4 and parts[3].isdigit():
            users[parts[0]] = int(parts[3])
    return users


def _group_entry(host: Host, name: str) -> tuple[int, list[str]] | None:
    """(gid, members) of group ``name`` from the host's /etc/group, or None."""
    for line in (host.read_text("/etc/group") or "").splitlines():
        parts = line.split(":")
        if len(parts) >= 4 and parts[0] == name and parts[2].isdigit():
            return int(parts[2]), [m for m in parts[3].split(",") if m]
    return None


def user_primary_gid(host: Host, user: str) -> int | None:
    if host.live:
        try:
            return pwd.getpwnam(user).pw_gid  # NSS: LDAP/SSSD users count too
        except KeyError:
            return None
    return _passwd_users(host).get(user)


def group_members(host: Host, group: str) -> tuple[int, list[str]] | None:
    if host.live:
        try:
            g = grp.getgrnam(group)
        except KeyError:
            return None
        return g.gr_gid, list(g.gr_mem)
    return _group_entry(host, group)


@dataclass
class _GroupJoin:
    """The docker-group step's plan: who joins, and whether the group must be made first."""

    user: str
    create_group: bool


def _group_argv(host: Host, join: _GroupJoin) -> list[list[str]]:
    """What carries out ``join``: shown by the plan, run by apply."""
    root = [] if host.live else ["-R", str(host.root)]
    # The docker package creates the group; a host without it gets it the same way (system group).
    create = [["groupadd", *root, "-r", DOCKER_GROUP]] if join.create_group else []
    return [*create, ["usermod", *root, "-aG", DOCKER_GROUP, join.user]]


class DockerGroupStep(Step[_GroupJoin]):
    id = "docker-group"
    title = "--user NAME joins group docker (root-equivalent; nobody by default)"

    def plan(self, ctx: Context) -> Change[_GroupJoin] | Converged:
        user = ctx.install_options.user
        if not user:
            return Converged("no --user given")
        host = ctx.host
        gid = user_primary_gid(host, user)
        if gid is None:
            raise BadInput(f"--user {user}: no such user on this host",
                           f"create the user first (useradd {user}) or name an existing one")
        group = group_members(host, DOCKER_GROUP)
        if group is not None and (user in group[1] or gid == group[0]):
            return Converged(f"{user} is in group {DOCKER_GROUP}")
        join = _GroupJoin(user, create_group=group is None)
        return Change(f"add {user} to group {DOCKER_GROUP} (effective at their next login)",
                      commands=_group_argv(host, join), payload=join)

    def apply(self, ctx: Context, change: Change[_GroupJoin]) -> Applied:
        for argv in _group_argv(ctx.host, change.payload):
            ctx.host.run(argv, timeout=60, hint="check /etc/group and /etc/gshadow are writable and not locked")
        return Applied()


ECS_STOP_TIMEOUT = 90  # ecs-init stops the agent with `docker stop` (30 s grace) and then exits


class EcsStateStep(FileStep):
    id = "ecs-state"
    title = "remove the ECS agent's state: /var/lib/ecs/data/* (checkpoints, metadata/)"
    what = "agent state"

    def items(self, ctx: Context) -> list[Item]:
        return remove_items(ctx.host, f"{ecs_config.ECS_DATA_DIR}/*")

    def nothing(self, ctx: Context) -> str:
        return f"{ecs_config.ECS_DATA_DIR} holds no agent state"


class GpuInfoStep(FileStep):
    id = "gpu-info"
    title = "remove /var/lib/ecs/gpu/nvidia-gpu-info.json (this machine's GPU UUIDs; ecs-init rewrites it)"
    what = "gpu info"

    def items(self, ctx: Context) -> list[Item]:
        items = remove_items(ctx.host, ecs_config.GPU_INFO)
        for i in items:
            if i.kind == "dir":
                raise StepFailed(f"{ecs_config.GPU_INFO} is a directory, expected ecs-init's file",
                                 f"look at it and remove it by hand (rm -r {ecs_config.GPU_INFO})")
        return items

    def nothing(self, ctx: Context) -> str:
        return f"no {ecs_config.GPU_INFO}"


# -- stop-ecs -----------------------------------------------------------------------------
def _ecs_init_pids(host: Host) -> list[int]:
    # A zombie has exited, only not reaped yet: it runs nothing.
    return [p.pid for p in host.processes() if not p.zombie and
            (p.name in ("amazon-ecs-init", "ecs-init") or p.exe.endswith("/amazon-ecs-init"))]


def _agent_running(ctx: Context) -> bool | None:
    """Whether the agent container runs; None when no Engine answers (then it cannot run either)."""
    try:
        client = engine(ctx)
    except (Skip, StepFailed):
        return None
    return bool(client.api.containers(filters={"name": f"^/{AGENT_CONTAINER}$", "status": "running"}))


@dataclass
class _StopEcs:
    """The stop-ecs step's plan: stop the service (ecs-init runs), or only the agent container it left."""

    stop_service: bool


class StopEcsStep(Step[_StopEcs]):
    id = "stop-ecs"
    title = "stop ECS (ecs-init and the ecs-agent container) through the init system; leave it enabled"

    needs = (Live("ECS does not run inside --root (an agent container there goes with `containers`)"),)

    def plan(self, ctx: Context) -> Change[_StopEcs] | Converged:
        host = ctx.host
        name = ecs_config.ecs_service(ctx.platform)
        svc = ecs_config.services(host, ctx.platform)
        state = svc.state(name)
        init_pids = _ecs_init_pids(ctx.host)
        agent = _agent_running(ctx)
        enabled = "enabled" if state.is_enabled else state.enabled
        if not state.running and not init_pids and not agent:
            if state.enabled == "not-found":
                return Converged(f"{name} is not installed; no agent container running")
            return Converged(f"{name} is stopped ({enabled} for the next boot)")
        commands, stop_service = [], bool(state.running or init_pids)
        if stop_service:
            # ecs-init's own stop (ExecStop / the upstart job) runs `docker stop ecs-agent`.
            commands.append(svc.argv("stop", name))
        elif agent:
            commands.append(["docker", "stop", AGENT_CONTAINER])
        return Change(f"stop {name} and wait until neither ecs-init nor {AGENT_CONTAINER} runs",
                      commands=commands, payload=_StopEcs(stop_service))

    def apply(self, ctx: Context, change: Change[_StopEcs]) -> Applied:
        host = ctx.host
        name = ecs_config.ecs_service(ctx.platform)
        svc = ecs_config.services(host, ctx.platform)
        ran: list[list[str]] = []  # what this run did, for the report (not what the plan guessed)
        if change.payload.stop_service:
            ran.append(svc.argv("stop", name))
            svc.stop(name)
        if _agent_running(ctx):
            # ecs-init's own stop runs `docker stop ecs-agent`; an agent left running (ecs-init killed,
            # or started by hand) gets the same.
            ran.append(["docker", "stop", AGENT_CONTAINER])
            engine(ctx).api.stop(AGENT_CONTAINER, timeout=30)

        def still_running() -> list[str]:
            left = []
            if svc.state(name).running:
                left.append(f"{name} service")
            if _ecs_init_pids(ctx.host):
                left.append("ecs-init")
            if _agent_running(ctx):
                left.append(f"container {AGENT_CONTAINER}")
            return left

        left = poll_until(still_running, lambda left: not left, what=f"ecs-init and the {AGENT_CONTAINER} container "
                          "to stop", timeout_s=ECS_STOP_TIMEOUT, interval_s=0.1).value
        if left:
            raise StepFailed(f"still running after {ECS_STOP_TIMEOUT}s: {', '.join(left)}",
                             f"see `journalctl -u {name}` and `docker ps`; stop them, then run seal again")
        state = svc.state(name)
        if state.enabled in ("not-found", "unknown"):
            summary = f"{AGENT_CONTAINER} stopped; no {name} service to leave enabled here"
        else:
            note = "still enabled for the next boot" if state.is_enabled else (
                f"NOT enabled ({state.enabled}): instances from the image will not start it; "
                "run `gpuprep install --only ecs-config`")
            summary = f"{name} stopped; {note}"
        return Applied(summary, commands=ran)
