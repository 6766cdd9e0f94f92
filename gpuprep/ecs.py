"""The ECS agent's side of a host: ecs.config, the agent's state files, nvidia-gpu-info.json, the service.

Facts encoded here (docs/domain.md, "ECS agent and ecs-init"):
- GPU support is ``ECS_ENABLE_GPU_SUPPORT=true`` in ``/etc/ecs/ecs.config`` or the AMI-owned
  ``/var/lib/ecs/ecs.config``; where both set a key, the ``/etc`` file wins.
- ecs-init's pre-start writes ``/var/lib/ecs/gpu/nvidia-gpu-info.json`` from NVML:
  ``{"DriverVersion": "<ver>", "GPUIDs": ["GPU-<uuid>", ...]}``.
- The agent's checkpoint is ``/var/lib/ecs/data/ecs_agent_data.json`` up to agent 1.44.0 and the BoltDB
  ``/var/lib/ecs/data/agent.db`` since; task metadata lives under ``/var/lib/ecs/data/metadata/``.
- The service is systemd's ``ecs.service`` (AL2, AL2023) or the upstart job ``ecs`` (Amazon Linux 1);
  the agent itself runs as the container ``ecs-agent``.

Also the two install steps that belong here: ``ecs-config`` and ``docker-group``.
"""

from __future__ import annotations

import difflib
import grp
import json
import pwd
import re
from dataclasses import dataclass, field
from pathlib import Path

from gpuprep.errors import BadInput, StepFailed
from gpuprep.host import Host
from gpuprep.platform import Platform
from gpuprep.runner.steps import Change, Context, Converged, Step
from gpuprep.services import Services

ECS_CONFIG = "/etc/ecs/ecs.config"
ECS_CONFIG_AMI = "/var/lib/ecs/ecs.config"
ECS_DATA_DIR = "/var/lib/ecs/data"
CHECKPOINT_JSON = f"{ECS_DATA_DIR}/ecs_agent_data.json"  # agent < 1.44.0
CHECKPOINT_BOLT = f"{ECS_DATA_DIR}/agent.db"  # agent >= 1.44.0
METADATA_DIR = f"{ECS_DATA_DIR}/metadata"
CHECKPOINTS = (CHECKPOINT_BOLT, CHECKPOINT_JSON)
GPU_INFO = "/var/lib/ecs/gpu/nvidia-gpu-info.json"
AGENT_CONTAINER = "ecs-agent"
GPU_SUPPORT_KEY = "ECS_ENABLE_GPU_SUPPORT"
DOCKER_GROUP = "docker"
# The agent parses booleans with Go's strconv.ParseBool.
_GO_TRUE = ("1", "t", "T", "TRUE", "true", "True")

_LINE = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*=(.*)$")


# -- ecs.config ---------------------------------------------------------------------------
def config_paths(platform: Platform | None = None) -> tuple[str, str]:
    """(the file gpuprep edits, the AMI-owned file); the first wins where both set a key."""
    if platform is None:
        return ECS_CONFIG, ECS_CONFIG_AMI
    return platform.ecs_config or ECS_CONFIG, platform.ecs_config_ami or ECS_CONFIG_AMI


def parse_config(text: str) -> dict[str, str]:
    """KEY=VALUE lines of an env file; ``#`` comments and blank lines ignored; the last line of a key wins.

    Values are literal (no quote removal): the agent container reads the file as a Docker env-file.
    """
    values: dict[str, str] = {}
    for line in text.splitlines():
        if line.lstrip().startswith("#"):
            continue
        m = _LINE.match(line)
        if m:
            values[m.group(1)] = m.group(2).strip()
    return values


def set_config_key(text: str, key: str, value: str) -> str:
    """``text`` with ``key`` set to ``value``: every active line of the key rewritten, or one appended.

    Every other line, comments and blank lines included, stays byte for byte.
    """
    lines = text.splitlines(keepends=True)
    found = False
    for i, line in enumerate(lines):
        if line.lstrip().startswith("#"):
            continue
        m = _LINE.match(line.rstrip("\r\n"))
        if m and m.group(1) == key:
            ending = line[len(line.rstrip("\r\n")):] or "\n"
            lines[i] = f"{key}={value}{ending}"
            found = True
    if not found:
        if lines and not lines[-1].endswith("\n"):
            lines[-1] += "\n"
        lines.append(f"{key}={value}\n")
    return "".join(lines)


@dataclass
class EcsConfig:
    """The effective agent configuration: values and which file each came from."""

    values: dict[str, str] = field(default_factory=dict)
    source: dict[str, str] = field(default_factory=dict)  # key -> host path of the file that set it
    files: list[str] = field(default_factory=list)  # the files that exist, host paths

    def get(self, key: str) -> str | None:
        return self.values.get(key)

    @property
    def gpu_support(self) -> bool:
        return self.values.get(GPU_SUPPORT_KEY, "") in _GO_TRUE


def read_config(host: Host, platform: Platform | None = None, edited: str | None = None) -> EcsConfig:
    """Both config files merged, ``/etc/ecs/ecs.config`` (or ``edited``) over the AMI-owned one."""
    main, ami = config_paths(platform)
    main = edited or main
    cfg = EcsConfig()
    for path in (ami, main):  # later wins
        text = host.read_text(path)
        if text is None:
            continue
        cfg.files.append(path)
        for k, v in parse_config(text).items():
            cfg.values[k] = v
            cfg.source[k] = path
    return cfg


# -- nvidia-gpu-info.json ------------------------------------------------------------------
@dataclass(frozen=True)
class GpuInfo:
    driver_version: str
    gpu_ids: tuple[str, ...]


def parse_gpu_info(text: str) -> GpuInfo:
    """ecs-init's ``{"DriverVersion": ..., "GPUIDs": [...]}``; ValueError naming what is wrong."""
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not JSON ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(doc, dict):
        raise ValueError("not a JSON object")
    driver = doc.get("DriverVersion")
    ids = doc.get("GPUIDs")
    if not isinstance(driver, str):
        raise ValueError("DriverVersion missing or not a string")
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        raise ValueError("GPUIDs missing or not a list of strings")
    return GpuInfo(driver, tuple(ids))


def read_gpu_info(host: Host) -> GpuInfo | None:
    """The file's content, None when absent; ValueError when it does not parse."""
    text = host.read_text(GPU_INFO)
    return None if text is None else parse_gpu_info(text)


def state_files(host: Host) -> list[str]:
    """Host paths of the agent's checkpoint files that exist (both formats)."""
    return [p for p in CHECKPOINTS if host.path(p).is_file()]


# -- the service --------------------------------------------------------------------------
def ecs_service(platform: Platform) -> str:
    return platform.ecs_service or "ecs"


def services(host: Host, platform: Platform) -> Services:
    return Services(host, platform)


# -- install step: ecs-config -------------------------------------------------------------
@dataclass
class _EcsConfigPlan:
    path: str
    new_bytes: bytes | None  # None: the file is right
    enable: bool
    old_bytes: bytes | None = None  # what the file held when planned (None: absent)


# Control bytes that no env file holds (tab, line ends and form feed aside): a file with them is not
# an ecs.config, and appending a line to it would hide the damage.
_BINARY = re.compile(rb"[\x00-\x08\x0e-\x1f\x7f]")
# An ecs.config is a few hundred bytes.
MAX_CONFIG_BYTES = 1 << 20


def read_config_bytes(host: Host, path: str) -> bytes | None:
    """The bytes of the env file ``path`` (None when absent); BadInput for binary content."""
    data = host.read_bytes(path, limit=MAX_CONFIG_BYTES)
    if data is not None:
        m = _BINARY.search(data)
        if m:
            raise BadInput(f"{path}: binary content (byte 0x{data[m.start()]:02x} at offset {m.start()}), "
                           "not an env file of KEY=VALUE lines",
                           f"look at {host.path(path)}: restore it from its backup or remove it, then run again")
    return data


def set_config_key_bytes(data: bytes, key: str, value: str) -> bytes:
    """``set_config_key`` on bytes: every byte but the key's own line comes back as it was, whatever
    the encoding (a Latin-1 cluster name stays Latin-1; surrogateescape carries the bytes through)."""
    text = data.decode("utf-8", errors="surrogateescape")
    return set_config_key(text, key, value).encode("utf-8", errors="surrogateescape")


class EcsConfigStep(Step):
    id = "ecs-config"
    title = f"{GPU_SUPPORT_KEY}=true in the ECS config; ecs enabled for the next boot (not started)"

    def _path(self, ctx: Context) -> str:
        return getattr(ctx.options, "ecs_config", None) or config_paths(ctx.platform)[0]

    def plan(self, ctx: Context) -> Change | Converged:
        host, path = ctx.host, self._path(ctx)
        old_bytes = read_config_bytes(host, path)
        wanted_bytes = set_config_key_bytes(old_bytes or b"", GPU_SUPPORT_KEY, "true")
        old = old_bytes.decode("utf-8", errors="replace") if old_bytes is not None else None
        if parse_config(old or "").get(GPU_SUPPORT_KEY) == "true":
            wanted_bytes = old_bytes  # set already (possibly several lines): leave the file as it is
        wanted = wanted_bytes.decode("utf-8", errors="replace") if wanted_bytes is not None else None
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
            diff = "".join(difflib.unified_diff(
                (old or "").splitlines(keepends=True), wanted.splitlines(keepends=True),
                fromfile=path if old is not None else "/dev/null", tofile=path))
            parts.append(f"{'set' if old is not None else 'create'} {GPU_SUPPORT_KEY}=true in {path}")
        if enable:
            commands.append(services(host, ctx.platform).argv("enable", svc))
            parts.append(f"enable {svc} for the next boot")
        return Change("; ".join(parts), diff=diff, commands=commands,
                      payload=_EcsConfigPlan(path, wanted_bytes if wanted_bytes != old_bytes else None, enable,
                                             old_bytes))

    def apply(self, ctx: Context, change: Change) -> str | None:
        plan: _EcsConfigPlan = change.payload
        backup = None
        if plan.new_bytes is not None:
            # Backed up like daemon.json: the agent's whole configuration is in this file. A missing
            # /etc/ecs is created 0755 and the file 0644 (ecs-init's own packaging modes); the write is
            # abandoned if the file changed since planning.
            backup = ctx.host.backup(plan.path) if plan.old_bytes is not None else None
            ctx.host.write_atomic(plan.path, plan.new_bytes, mode=0o644, expect=plan.old_bytes)
        if plan.enable:
            services(ctx.host, ctx.platform).enable(ecs_service(ctx.platform))
        return f"{change.summary}; backup {backup}" if backup else None


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


class DockerGroupStep(Step):
    id = "docker-group"
    title = "--user NAME joins group docker (root-equivalent; nobody by default)"

    def plan(self, ctx: Context) -> Change | Converged:
        user = getattr(ctx.options, "user", None)
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
        root = [] if host.live else ["-R", str(host.root)]
        commands = []
        if group is None:
            # The docker package creates the group; a host without it gets it the same way (system group).
            commands.append(["groupadd", *root, "-r", DOCKER_GROUP])
        commands.append(["usermod", *root, "-aG", DOCKER_GROUP, user])
        return Change(f"add {user} to group {DOCKER_GROUP} (effective at their next login)", commands=commands)

    def apply(self, ctx: Context, change: Change) -> str | None:
        for argv in change.commands:
            ctx.host.run(argv, timeout=60, hint="check /etc/group and /etc/gshadow are writable and not locked")
        return None


def real_path_under(path: Path, base: Path) -> bool:
    """True when ``path``, resolved, is ``base`` or lies below it (both resolved)."""
    try:
        Path(path).resolve().relative_to(Path(base).resolve())
    except ValueError:
        return False
    return True


# -- installed packages -------------------------------------------------------------------
def rpm_installed(host: Host, names: tuple[str, ...] | list[str]) -> dict[str, str]:
    """``name -> name-[epoch:]version-release`` for each of ``names`` installed (``rpm -q``, inside --root).

    Nothing is asked when the host has no rpm or the root holds no rpm database: ``rpm -q --root``
    would create an empty database inside the image.
    """
    if not names or not _which_rpm(host):
        return {}
    from gpuprep.packages.rpmdb import db_args

    root = db_args(host)
    if root is None:
        return {}
    proc = host.run(["rpm", "-q", *root, "--qf", "%{NAME}|%{EPOCH}|%{VERSION}|%{RELEASE}\\n", *names],
                    check=False, timeout=30)
    found: dict[str, str] = {}
    for line in proc.stdout.splitlines():
        parts = line.split("|")
        if len(parts) != 4 or parts[0] not in names:
            continue
        name, epoch, version, release = parts
        evr = f"{epoch}:{version}-{release}" if epoch not in ("", "(none)", "0") else f"{version}-{release}"
        found[name] = f"{name}-{evr}"  # the newest wins where several are installed
    return found


def _which_rpm(host: Host) -> bool:
    import shutil

    # rpm runs on this machine even with --root (rpm --root reads the image's database).
    return (host.which("rpm") if host.live else shutil.which("rpm")) is not None
