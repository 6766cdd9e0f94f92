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

The steps that act on these are in ``ecs/steps.py``; doctor's checks of them in ``ecs/checks.py``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

from gpuprep import fixes
from gpuprep.errors import BadInput
from gpuprep.host import Host
from gpuprep.platform import Platform
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

    >>> parse_config('''ECS_CLUSTER=gpu-batch
    ... # ECS_ENABLE_GPU_SUPPORT=false
    ... ECS_ENABLE_GPU_SUPPORT=true
    ... ECS_INSTANCE_ATTRIBUTES={"stack": "nvidia"}
    ... ECS_CLUSTER="batch-2"
    ... ''')
    {'ECS_CLUSTER': '"batch-2"', 'ECS_ENABLE_GPU_SUPPORT': 'true', 'ECS_INSTANCE_ATTRIBUTES': '{"stack": "nvidia"}'}
    """
    values: dict[str, str] = {}
    for line in _lines(text):
        line = line.rstrip("\r\n")
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
    lines = _lines(text)
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


def _lines(text: str) -> list[str]:
    """The file's lines as the agent reads them, line ends kept: split at \\n only (Go's bufio.ScanLines, which
    drops a \\r before it). str.splitlines also splits at a lone \\r, form feeds, NEL and U+2028, which made
    gpuprep rewrite the tail of another key's value (issue 23)."""
    parts = text.split("\n")
    return [p + "\n" for p in parts[:-1]] + ([parts[-1]] if parts[-1] else [])


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
    """ecs-init's ``{"DriverVersion": ..., "GPUIDs": [...]}``; ValueError naming what is wrong.

    >>> parse_gpu_info('{"DriverVersion":"580.95.05","GPUIDs":["GPU-5a1c2f4e-0b7d-3e8a-9c61-2f0d4b7e8a10"]}')
    GpuInfo(driver_version='580.95.05', gpu_ids=('GPU-5a1c2f4e-0b7d-3e8a-9c61-2f0d4b7e8a10',))
    >>> parse_gpu_info('{"DriverVersion":"580.95.05"}')
    Traceback (most recent call last):
    ValueError: GPUIDs missing or not a list of strings
    """
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


def rewrite_gpu_info(host: Host, platform: Platform) -> list[fixes.Fix]:
    """A GPU info file that is not this host's: on a running host removed and ecs restarted (ecs-init writes it anew
    from NVML); in an image removed by seal's gpu-info step (an image should not carry one), or by hand where seal
    does not run."""
    if not host.live:
        seal = fixes.gpuprep(host, platform, "remove it: an image should not carry it", "seal", "--only", "gpu-info")
        return [seal or fixes.Fix("remove it: an image should not carry it", ("rm", "-f", str(host.path(GPU_INFO))))]
    restart = fixes.service(host, platform, "restart", ecs_service(platform), "restart ecs: ecs-init writes it anew")
    return [fixes.Fix("remove it", ("rm", "-f", GPU_INFO) if host.is_root else ("sudo", "rm", "-f", GPU_INFO)),
            *([restart] if restart is not None else [])]


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
