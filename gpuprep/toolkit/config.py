"""The NVIDIA container runtime's config.toml, and the mode its runtime resolves to.

``/etc/nvidia-container-runtime/config.toml`` (written by ``nvidia-ctk config``, NVIDIA/nvidia-container-toolkit
``api/config/v1``): ``[nvidia-container-runtime] mode`` (``auto`` by default), ``debug`` (the AL2023 ECS AMI sets
``/var/log/ecs/nvidia-container-runtime.log``, aws/amazon-ecs-ami ``scripts/al2023/gpu/
enable-ecs-agent-gpu-support-al2023.sh``), ``[nvidia-container-cli] ldconfig`` (``@/sbin/ldconfig``: the host's),
``[nvidia-container-runtime.modes.cdi] spec-dirs`` (where the runtime reads CDI specs in cdi mode; ``/etc/cdi``,
``/var/run/cdi`` by default, as `nvidia-ctk config default` prints).

TOML without a dependency: Python 3.8-3.10 (AL2023's python3 is 3.9) have no ``tomllib``, and gpuprep reads
three string keys and one list. ``parse`` reads the subset nvidia-ctk writes (tables, dotted and quoted keys, basic
and literal strings, one-line arrays of strings, booleans, integers, comments) and skips any value it does not need
(other arrays, inline tables, multi-line strings) without guessing; tests/unit/toolkit/test_toolkit.py checks it
against ``tomllib`` where Python has it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from gpuprep.errors import BadInput
from gpuprep.host import Host
from gpuprep.packages.security import upstream

CONFIG_TOML = "/etc/nvidia-container-runtime/config.toml"
MODES = ("auto", "legacy", "cdi", "jit-cdi", "csv")
CDI_MODES = ("cdi", "jit-cdi")
# NVIDIA/nvidia-container-toolkit internal/info/auto.go: from v1.18.0 the runtime's auto mode defaults to
# jit-cdi ("Default to jit-cdi mode in the nvidia runtime", 2025-02); before, auto resolved to legacy.
JIT_CDI_SINCE = "1.18.0~"  # its release candidates too (v1.18.0-rc.1 has the change)

_KEY = r'(?:[A-Za-z0-9_-]+|"(?:[^"\\]|\\.)*"|\'[^\']*\')'
_DOTTED = re.compile(rf"\s*({_KEY}(?:\s*\.\s*{_KEY})*)\s*")
_ESCAPES = {"b": "\b", "t": "\t", "n": "\n", "f": "\f", "r": "\r", '"': '"', "\\": "\\"}


class Skipped:
    """A value the subset does not read (an array, an inline table, a multi-line string): present, unread."""

    def __repr__(self) -> str:
        return "<not read>"


def _keys(text: str) -> list[str]:
    parts = re.findall(_KEY, text)
    return [p[1:-1] if p[:1] in "\"'" else p for p in parts]


def _basic(text: str, where: str) -> tuple[str, str]:
    """A basic string at the start of ``text`` (after its opening quote): (value, the rest)."""
    out: list[str] = []
    i = 0
    while i < len(text):
        c = text[i]
        if c == '"':
            return "".join(out), text[i + 1:]
        if c == "\\" and i + 1 < len(text):
            n = text[i + 1]
            if n in _ESCAPES:
                out.append(_ESCAPES[n])
                i += 2
                continue
            if n in "uU":
                width = 4 if n == "u" else 8
                out.append(chr(int(text[i + 2:i + 2 + width], 16)))
                i += 2 + width
                continue
            raise ValueError(f"{where}: unknown escape \\{n}")
        out.append(c)
        i += 1
    raise ValueError(f"{where}: unterminated string")


def _string_array(text: str, where: str) -> tuple[list[str], str] | None:
    """A one-line array of strings at the start of ``text`` (after its ``[``), as nvidia-ctk writes ``spec-dirs`` and
    ``runtimes``: (the strings, the rest); None for any other array (then skipped)."""
    items: list[str] = []
    rest = text.lstrip()
    try:
        while not rest.startswith("]"):
            if rest.startswith('"'):
                value, rest = _basic(rest[1:], where)
            elif rest.startswith("'") and "'" in rest[1:]:
                end = rest.index("'", 1)
                value, rest = rest[1:end], rest[end + 1:]
            else:
                return None
            items.append(value)
            rest = rest.lstrip()
            if rest.startswith(","):
                rest = rest[1:].lstrip()
            elif not rest.startswith("]"):
                return None
    except ValueError:
        return None
    return items, rest[1:]


def _value(text: str, where: str) -> tuple[Any, str]:
    text = text.strip()
    if text.startswith("[") and not text.startswith("[["):
        strings = _string_array(text[1:], where)
        if strings is not None:
            return strings
    if text.startswith(('"""', "'''", "[", "{")):
        return Skipped(), ""
    if text.startswith('"'):
        return _basic(text[1:], where)
    if text.startswith("'"):
        end = text.index("'", 1)
        return text[1:end], text[end + 1:]
    word = re.match(r"[^\s#]+", text)
    token = word.group(0) if word else ""
    if token in ("true", "false"):
        return token == "true", text[len(token):]
    if re.fullmatch(r"[+-]?\d[\d_]*", token):
        return int(token.replace("_", "")), text[len(token):]
    return Skipped(), ""


def parse(text: str, where: str = CONFIG_TOML) -> dict[str, Any]:
    """Tables of ``text`` as nested dicts; ValueError naming the line for what is not TOML."""
    root: dict[str, Any] = {}
    table = root
    lines = text.splitlines()
    depth = 0  # inside a multi-line array or string being skipped
    for n, raw in enumerate(lines, 1):
        line = raw.strip()
        if depth:
            depth += line.count("[") - line.count("]") if not line.startswith(('"""', "'''")) else -depth
            continue
        if not line or line.startswith("#"):
            continue
        at = f"{where} line {n}"
        if line.startswith("["):
            header = re.fullmatch(r"\[\[?\s*(.+?)\s*\]\]?\s*(?:#.*)?", line)
            if not header:
                raise ValueError(f"{at}: not a table header")
            table = root
            for k in _keys(header.group(1)):
                table = table.setdefault(k, {})
                if not isinstance(table, dict):
                    raise ValueError(f"{at}: {k} is not a table")
            continue
        key = _DOTTED.match(line)
        if not key or line[key.end():key.end() + 1] != "=":
            raise ValueError(f"{at}: expected key = value")
        rest = line[key.end() + 1:]
        value, after = _value(rest, at)
        if isinstance(value, Skipped) and rest.strip().startswith("[") and rest.count("[") > rest.count("]"):
            depth = rest.count("[") - rest.count("]")
        elif isinstance(value, Skipped) and rest.strip()[:3] in ('"""', "'''") and rest.count(rest.strip()[:3]) == 1:
            depth = 1
        elif after.strip() and not after.strip().startswith("#") and not isinstance(value, Skipped):
            raise ValueError(f"{at}: text after the value")
        *path, last = _keys(key.group(1))
        target = table
        for k in path:
            target = target.setdefault(k, {})
        target[last] = value
    return root


@dataclass
class RuntimeConfig:
    path: str
    exists: bool
    mode: str  # as written; "auto" when the file or the key is absent (the toolkit's default)
    mode_written: bool
    ldconfig: str | None  # [nvidia-container-cli] ldconfig; None when absent (the toolkit's default: @/sbin/ldconfig)
    debug_log: str | None  # [nvidia-container-runtime] debug
    spec_dirs: list[str] | None = None  # [nvidia-container-runtime.modes.cdi] spec-dirs; None: the defaults

    def as_dict(self) -> dict[str, Any]:
        return {"path": self.path, "exists": self.exists, "mode": self.mode, "mode_written": self.mode_written,
                "ldconfig": self.ldconfig, "debug_log": self.debug_log, "spec_dirs": self.spec_dirs}


def read(host: Host, path: str = CONFIG_TOML) -> RuntimeConfig:
    """The runtime's settings gpuprep reads; BadInput naming the file for one that is not TOML."""
    raw = host.read_bytes(path, limit=1 << 20)
    if raw is None:
        return RuntimeConfig(path, False, "auto", False, None, None)
    try:
        doc = parse(raw.decode("utf-8"), str(host.path(path)))
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadInput(f"{host.path(path)}: {exc}",
                       f"fix {host.path(path)} (`nvidia-ctk config` prints the toolkit's own defaults)") from None
    runtime = r if isinstance(r := doc.get("nvidia-container-runtime"), dict) else {}
    cli = c if isinstance(c := doc.get("nvidia-container-cli"), dict) else {}
    mode = runtime.get("mode")
    ldconfig = cli.get("ldconfig")
    debug = runtime.get("debug")
    modes = m if isinstance(m := runtime.get("modes"), dict) else {}
    cdi_mode = c if isinstance(c := modes.get("cdi"), dict) else {}
    dirs = cdi_mode.get("spec-dirs")
    return RuntimeConfig(path, True, mode if isinstance(mode, str) and mode else "auto", isinstance(mode, str),
                         ldconfig if isinstance(ldconfig, str) else None, debug if isinstance(debug, str) else None,
                         list(dirs) if isinstance(dirs, list) and dirs else None)


def resolve_mode(mode: str, toolkit_version: str | None) -> tuple[str, str]:
    """(the mode the runtime runs in, why), as ``ResolveRuntimeMode`` in internal/info/auto.go decides for a GPU
    container on an EC2 instance: a mode other than auto is used as written; auto is jit-cdi from toolkit 1.18.0
    on NVML platforms (csv only on Tegra, which EC2 GPU instances are not), legacy before. (A container asking only
    for fully qualified CDI names, NVIDIA_VISIBLE_DEVICES=nvidia.com/gpu=all, gets cdi; ECS sets UUIDs.)"""
    from gpuprep.packages.evr import vercmp

    if mode != "auto":
        return mode, f"mode = \"{mode}\" in {CONFIG_TOML}"
    if toolkit_version is None:
        return "unknown", "mode auto, and the toolkit's version is unknown"
    if vercmp(upstream(toolkit_version), JIT_CDI_SINCE) >= 0:
        return "jit-cdi", "mode auto: jit-cdi on NVML hosts from toolkit 1.18.0"
    return "legacy", "mode auto: legacy before toolkit 1.18.0"
