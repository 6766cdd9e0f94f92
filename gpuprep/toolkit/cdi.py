"""CDI specifications as a Docker host has them: where they are, what they say, and whether they fit this host.

The rules are the CDI library's (cncf-tags/container-device-interface ``pkg/cdi``): the spec directories are
``/etc/cdi`` then ``/var/run/cdi`` (Docker's ``cdi-spec-dirs`` overrides them), each scanned without recursion for
``*.json`` and ``*.yaml``; a directory later in the list has the higher priority, so for a device defined in both,
``/var/run/cdi``'s definition wins (``doc.go``: "dynamically generated Spec files ... take precedence over static
ones in /etc/cdi"), and two files of one directory defining the same device make it unusable ("conflicting device").

YAML: PyYAML (``safe_load``), a dependency of gpuprep. A spec is YAML as NVIDIA's generator and people write it
(quoting, flow and block styles, anchors); a small parser of our own would misread the ones it does not expect,
and a missing parser is no reason to leave a stale spec unchecked. JSON specs go through ``json``.

What fits this host (toolkit issues 1239, 1828, 1895): every device node a spec names exists as a character
device with the spec's major/minor where it gives them; every library it mounts exists, and a driver library's
version suffix is the loaded module's; a device named by a GPU UUID is one of this host's GPUs.
"""

from __future__ import annotations

import json
import os
import re
import stat
from dataclasses import dataclass, field
from typing import Any

# The file nvidia-cdi-refresh writes is the one the Engine's CDI route reads: a fact of the Engine's room, named here
# too for the toolkit's steps and checks that write and judge it.
from gpuprep.engine.cdi import GENERATED_SPEC as GENERATED_SPEC
from gpuprep.host import Host

DEFAULT_DIRS = ("/etc/cdi", "/var/run/cdi")
NVIDIA_KIND = "nvidia.com/gpu"
_UUID = re.compile(r"^(GPU|MIG)-[0-9a-fA-F-]{8,}")
# A driver library's file name carries the driver's version: libnvidia-ml.so.580.95.05, libcuda.so.580.95.05.
_DRIVER_LIB = re.compile(r"^lib(?:nvidia-[\w-]+|cuda|nvcuvid|nvoptix)\.so\.(\d+\.\d+(?:\.\d+)?)$")


@dataclass
class Node:
    path: str  # in the container
    host_path: str  # on the host (hostPath, else path)
    major: int | None = None
    minor: int | None = None


@dataclass
class Spec:
    path: str  # host path of the file
    directory: str
    priority: int  # the directory's index: higher wins
    kind: str = ""
    cdi_version: str = ""  # the spec format's version (toolkit 1.19+ writes 0.7.0)
    devices: dict[str, list[Node]] = field(default_factory=dict)  # device name -> its own device nodes
    common_nodes: list[Node] = field(default_factory=list)
    mounts: list[str] = field(default_factory=list)  # host paths
    error: str = ""
    additional_gids: bool = False  # a device node carries additionalGids (CDI 0.7.0)

    @property
    def uuid_devices(self) -> list[str]:
        return [d for d in self.devices if _UUID.match(d)]

    def qualified(self) -> list[str]:
        return [f"{self.kind}={d}" for d in self.devices]


def spec_dirs(daemon_config: dict[str, Any] | None) -> list[str]:
    """The directories Docker reads, in priority order (lowest first)."""
    dirs = (daemon_config or {}).get("cdi-spec-dirs")
    return list(dirs) if isinstance(dirs, list) and dirs else list(DEFAULT_DIRS)


def find(host: Host, dirs: list[str]) -> list[Spec]:
    """Every spec file in ``dirs``, read (a file that does not parse comes back with ``error``)."""
    specs = []
    for priority, d in enumerate(dirs):
        real = host.path(d)
        try:
            names = sorted(os.listdir(real))
        except OSError:
            continue
        for name in names:
            if os.path.splitext(name)[1] in (".json", ".yaml") and not (real / name).is_dir():
                specs.append(load(host, f"{d.rstrip('/')}/{name}", d, priority))
    return specs


def _nodes(edits: Any) -> list[Node]:
    out = []
    for n in (edits or {}).get("deviceNodes") or []:
        if isinstance(n, dict) and isinstance(n.get("path"), str):
            major, minor = n.get("major"), n.get("minor")
            out.append(Node(n["path"], n.get("hostPath") or n["path"], major if isinstance(major, int) else None,
                            minor if isinstance(minor, int) else None))
    return out


def load(host: Host, path: str, directory: str, priority: int) -> Spec:
    spec = Spec(path, directory, priority)
    raw = host.read_bytes(path, limit=16 << 20)
    try:
        text = (raw or b"").decode("utf-8")
        if path.endswith(".json"):
            doc = json.loads(text)
        else:
            import yaml  # PyYAML: imported where used

            doc = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except Exception as exc:  # any parser's error is the file's problem, said as it is
        spec.error = f"does not parse: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
        return spec
    if not isinstance(doc, dict) or not isinstance(doc.get("kind"), str) or not isinstance(doc.get("devices"), list):
        spec.error = "not a CDI spec (needs cdiVersion, kind and a list of devices)"
        return spec
    spec.kind = doc["kind"]
    spec.cdi_version = str(doc.get("cdiVersion") or "")
    edits = [doc.get("containerEdits") or {}]
    for dev in doc["devices"]:
        if isinstance(dev, dict) and isinstance(dev.get("name"), (str, int)):
            spec.devices[str(dev["name"])] = _nodes(dev.get("containerEdits"))
            edits.append(dev.get("containerEdits") or {})
    spec.common_nodes = _nodes(doc.get("containerEdits"))
    spec.additional_gids = any(isinstance(n, dict) and n.get("additionalGids") for e in edits if isinstance(e, dict)
                               for n in e.get("deviceNodes") or [])
    spec.mounts = sorted({m["hostPath"] for e in edits if isinstance(e, dict) for m in e.get("mounts") or []
                          if isinstance(m, dict) and isinstance(m.get("hostPath"), str)})
    return spec


@dataclass
class Finding:
    severity: str  # "critical" | "warning"
    spec: str
    problem: str


def judge(host: Host, specs: list[Spec], *, driver_version: str | None, host_uuids: list[str] | None
          ) -> tuple[list[Finding], dict[str, str]]:
    """What is wrong with each spec on this host, and which file each NVIDIA device resolves to."""
    findings: list[Finding] = []
    winners: dict[str, Spec] = {}
    for spec in specs:
        if spec.error:
            findings.append(Finding("critical", spec.path, spec.error))
            continue
        for device in spec.qualified():
            old = winners.get(device)
            if old is not None and old.priority == spec.priority:
                findings.append(Finding("critical", spec.path, f"{device} is also defined by {old.path} in the "
                                        "same directory: the CDI library refuses both (conflicting device)"))
            if old is None or spec.priority >= old.priority:
                winners[device] = spec
        for node in [*spec.common_nodes, *(n for nodes in spec.devices.values() for n in nodes)]:
            problem = _node_problem(host, node)
            if problem:
                findings.append(Finding("critical", spec.path, problem))
        for mount in spec.mounts:
            problem = _mount_problem(host, mount, driver_version)
            if problem:
                findings.append(Finding("critical", spec.path, problem))
        if host_uuids is not None:
            foreign = [u for u in spec.uuid_devices if u not in host_uuids]
            if foreign:
                findings.append(Finding("critical", spec.path, f"names GPU(s) this host does not have: "
                                        f"{', '.join(foreign)} (a spec from another host, the image's build machine)"))
    return findings, {d: s.path for d, s in sorted(winners.items())}


def _node_problem(host: Host, node: Node) -> str:
    try:
        st = os.stat(host.path(node.host_path))
    except FileNotFoundError:
        return f"device node {node.host_path} does not exist"
    except OSError as exc:
        return f"device node {node.host_path}: {exc.strerror}"
    if not stat.S_ISCHR(st.st_mode):
        return f"{node.host_path} is not a character device"
    have = (os.major(st.st_rdev), os.minor(st.st_rdev))
    if node.major is not None and node.major != have[0] or node.minor is not None and node.minor != have[1]:
        return (f"device node {node.host_path} is {have[0]}:{have[1]}, the spec says "
                f"{node.major}:{node.minor} (a spec from before the driver was reloaded)")
    return ""


def _mount_problem(host: Host, mount: str, driver_version: str | None) -> str:
    if not os.path.lexists(host.path(mount, follow=False)):
        return f"mounts {mount}, which does not exist (the driver was updated after the spec was written)"
    m = _DRIVER_LIB.match(os.path.basename(mount))
    if m and driver_version and m.group(1) != driver_version:
        return f"mounts {mount}: driver {m.group(1)}, the loaded module is {driver_version}"
    return ""
