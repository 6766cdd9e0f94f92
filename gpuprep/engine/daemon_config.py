"""daemon.json: register the nvidia runtime and make it Docker's default, losing nothing of the user's.

Better than ``nvidia-ctk runtime configure`` on every point docs/domain.md lists: Docker's key is
``runtimeArgs`` (nvidia-ctk writes ``args``, which Docker ignores); key order, unknown fields of an
existing ``nvidia`` entry, other runtimes, ``features``, big numbers and non-ASCII text are kept; the
file's indentation is kept where it can be detected; an unchanged file is not rewritten (bytes and
mtime stay); a change is backed up beside the file and written atomically (mode, owner and a symlink
kept); ``"runtimes": null`` and other shapes dockerd cannot use are refused with exit 2 instead of a
panic. Where nvidia-ctk ran anyway (before or after gpuprep), its bare runtime name is kept where dockerd finds the
toolkit's runtime by it, arguments under its ``args`` move to ``runtimeArgs``, and what it dropped (``features`` keys,
the entry's ``runtimeArgs``) comes back from gpuprep's newest backup (``engine/nvidia_ctk.py``).

Everything here is pure except ``read_config``, ``apply_edit`` and ``validate_with_dockerd`` (and what
``plan_edit`` asks ``engine/nvidia_ctk.py``, which reads the tree).
"""

from __future__ import annotations

import json
import logging
import os
import re
import tempfile
from collections.abc import Callable, Sequence
from copy import deepcopy
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from gpuprep.engine import nvidia_ctk
from gpuprep.engine.nvidia_ctk import CtkLosses
from gpuprep.errors import BadInput, CommandError, StepFailed
from gpuprep.host import Host
from gpuprep.runner.steps import file_diff

log = logging.getLogger("gpuprep")

RUNTIME_NAME = "nvidia"
# nvidia-docker2 < 2.1.0 and the toolkit install the runtime here (2.1.0+ write the bare name).
DEFAULT_RUNTIME_PATH = "/usr/bin/nvidia-container-runtime"
# rpm keeps the user's file under these names when a package ships daemon.json as %config
# (nvidia-docker2 2.5.0+): .rpmorig for an unowned file it replaced, .rpmsave for a modified one.
RPM_LEFTOVERS = (".rpmorig", ".rpmsave")
NEW_FILE_INDENT = "    "  # what nvidia-docker2's own daemon.json used


class JsonFloat(str):
    """A JSON number with a fraction or exponent, kept as written.

    Python's ``float`` would turn ``1.10`` into ``1.1`` and ``1e999`` into ``inf``; a daemon.json is
    rewritten byte-for-byte apart from our edit, so numbers keep their text. Integers are Python ints,
    which are exact at any size (nvidia-ctk's Go ``interface{}`` turns them into float64).
    """


class DuplicateKey(ValueError):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _object_without_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj: dict[str, Any] = {}
    for key, value in pairs:
        if key in obj:
            # Go's encoding/json (dockerd) silently keeps the last one: which did the user mean?
            raise DuplicateKey(key)
        obj[key] = value
    return obj


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str) and not isinstance(value, JsonFloat):
        return "a string"
    if isinstance(value, dict):
        return "an object"
    return "a number"


def _trailing_comma(exc: json.JSONDecodeError) -> tuple[int, int] | None:
    """(line, column) of the comma a closing } or ] follows, where that is what the decoder stopped at."""
    rest = exc.doc[exc.pos:].lstrip()
    before = exc.doc[:exc.pos].rstrip()
    if not before.endswith(",") or not rest.startswith(("}", "]")):
        return None
    at = len(before) - 1
    line = exc.doc.count("\n", 0, at) + 1
    return line, at - exc.doc.rfind("\n", 0, at)


def parse(text: str, where: str) -> dict[str, Any]:
    """The daemon.json object in ``text``; BadInput naming ``where`` and the problem otherwise.

    Empty or whitespace-only text is ``{}`` (dockerd itself treats an empty file so).
    """
    if not text.strip():
        return {}
    hint = f"fix {where} by hand (gpuprep left it untouched), then run gpuprep again"
    try:
        value = json.loads(text, object_pairs_hook=_object_without_duplicates, parse_float=JsonFloat,
                           parse_constant=_reject_constant)
    except DuplicateKey as exc:
        raise BadInput(f"{where}: duplicate key {json.dumps(exc.key, ensure_ascii=False)}", hint) from None
    except json.JSONDecodeError as exc:
        comma = _trailing_comma(exc)
        if exc.msg == "Extra data":
            problem = f"text after the JSON value at line {exc.lineno} column {exc.colno}"
        elif comma is not None:
            # Python before 3.13 says "Expecting property name ..." where the fix is to drop the comma before it.
            problem = (f"invalid JSON: a trailing comma at line {comma[0]} column {comma[1]} "
                       "(JSON allows none before } or ])")
        else:
            problem = f"invalid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        raise BadInput(f"{where}: {problem}", hint) from None
    except ValueError as exc:
        raise BadInput(f"{where}: invalid JSON: {exc}", hint) from None
    except RecursionError:
        raise BadInput(f"{where}: invalid JSON: nested deeper than Python's parser goes (no daemon.json "
                       "needs that)", hint) from None
    if not isinstance(value, dict):
        raise BadInput(f"{where}: the top level is {_json_type(value)}, expected an object", hint)
    lone = _lone_surrogate(value)
    if lone is not None:
        # "\ud800" alone is valid JSON syntax but no character: Go's decoder (dockerd) turns it into
        # U+FFFD, so the file means something else to dockerd than it says, and it cannot be written as UTF-8.
        raise BadInput(f"{where}: {json.dumps(lone)} holds a lone UTF-16 surrogate escape (no character)", hint)
    _check_shapes(value, where, hint)
    return value


# The Go types of the daemon.json keys dockerd decodes (moby/moby daemon/config/config.go and
# config_linux.go, CommonConfig / Config and their json tags, as of Engine 20.10-28). A value of another
# type stops dockerd at start ("cannot unmarshal string into Go struct field ... of type []string"), so
# gpuprep refuses to write (or keep) one. Keys not listed are left to dockerd (they vary by version).
_STR, _BOOL, _INT, _STRS, _STRMAP, _BOOLMAP, _OBJ, _OBJS = (
    "a string", "a boolean", "an integer", "a list of strings", "an object of strings", "an object of booleans",
    "an object", "a list of objects")
DOCKERD_KEYS: dict[str, str] = {
    **dict.fromkeys((
        "default-runtime", "data-root", "exec-root", "pidfile", "storage-driver", "log-driver", "log-level",
        "log-format", "bridge", "bip", "fixed-cidr", "fixed-cidr-v6", "default-gateway", "default-gateway-v6",
        "cgroup-parent", "group", "init-path", "userns-remap", "default-shm-size", "containerd",
        "containerd-namespace", "containerd-plugins-namespace", "metrics-addr", "seccomp-profile",
        "tlscacert", "tlscert", "tlskey", "userland-proxy-path", "default-cgroupns-mode", "default-ipc-mode",
        "swarm-default-advertise-addr", "cluster-store", "cluster-advertise", "ip"), _STR),
    **dict.fromkeys((
        "debug", "iptables", "ip6tables", "ipv6", "ip-forward", "ip-masq", "icc", "userland-proxy",
        "live-restore", "init", "experimental", "selinux-enabled", "no-new-privileges", "tls", "tlsverify",
        "raw-logs", "disable-legacy-registry"), _BOOL),
    **dict.fromkeys((
        "mtu", "max-concurrent-downloads", "max-concurrent-uploads", "max-download-attempts", "shutdown-timeout",
        "oom-score-adjust", "cpu-rt-period", "cpu-rt-runtime", "network-control-plane-mtu"), _INT),
    **dict.fromkeys((
        "exec-opts", "storage-opts", "hosts", "dns", "dns-opts", "dns-search", "labels", "insecure-registries",
        "registry-mirrors", "allow-nondistributable-artifacts", "authorization-plugins", "cdi-spec-dirs",
        "node-generic-resources"), _STRS),
    "log-opts": _STRMAP, "features": _BOOLMAP, "default-ulimits": _OBJ, "builder": _OBJ,
    "default-address-pools": _OBJS, "runtimes": _OBJ,
}
# A runtime entry (moby/moby api/types/system Runtime, "path" / "runtimeArgs" / "runtimeType" / "options").
RUNTIME_KEYS = {"path": _STR, "runtimeArgs": _STRS, "runtimeType": _STR, "options": _OBJ}


def _has_type(value: Any, want: str) -> bool:
    if want == _STR:
        return isinstance(value, str) and not isinstance(value, JsonFloat)
    if want == _BOOL:
        return isinstance(value, bool)
    if want == _INT:
        return isinstance(value, int) and not isinstance(value, bool)
    if want in (_STRS, _OBJS):
        inner = _STR if want == _STRS else _OBJ
        return isinstance(value, list) and all(_has_type(v, inner) for v in value)
    if want in (_STRMAP, _BOOLMAP):
        inner = _STR if want == _STRMAP else _BOOL
        return isinstance(value, dict) and all(_has_type(v, inner) for v in value.values())
    return isinstance(value, dict)


def _lone_surrogate(value: Any) -> str | None:
    """The first string (key or value) of ``value`` holding a lone surrogate, or None."""
    stack = [value]
    while stack:
        v = stack.pop()
        if isinstance(v, dict):
            stack.extend(v.keys())
            stack.extend(v.values())
        elif isinstance(v, list):
            stack.extend(v)
        elif isinstance(v, str) and not isinstance(v, JsonFloat) and any("\ud800" <= c <= "\udfff" for c in v):
            return v
    return None


def _check_shapes(config: dict[str, Any], where: str, hint: str) -> None:
    """Every key dockerd decodes must have its Go type (null included: dockerd reads a null as absent,
    but the edit would have to guess), or we refuse rather than write a file dockerd will not start with."""
    for key, want in DOCKERD_KEYS.items():
        if key in config and not _has_type(config[key], want):
            raise BadInput(f'{where}: "{key}" is {_json_type(config[key])}, expected {want} (dockerd would '
                           f"not start with it)", hint)
    for name, entry in (config.get("runtimes") or {}).items():
        if not isinstance(entry, dict):
            raise BadInput(f'{where}: "runtimes"."{name}" is {_json_type(entry)}, expected an object', hint)
        for key, want in RUNTIME_KEYS.items():
            if key in entry and not _has_type(entry[key], want):
                raise BadInput(f'{where}: "runtimes"."{name}"."{key}" is {_json_type(entry[key])}, expected '
                               f"{want} (dockerd would not start with it)", hint)


# -- writing JSON the way the file was written ------------------------------------------------
def detect_indent(text: str | None) -> str | None:
    """The file's indentation unit, or None for a one-line file (kept on one line)."""
    if text is None or not text.strip() or text.strip() in ("{}", "{ }"):
        return NEW_FILE_INDENT
    if "\n" not in text.strip():
        return None
    for line in text.splitlines()[1:]:
        m = re.match(r"^([ \t]+)\S", line)
        if m:
            return m.group(1)  # the first indented line is a top-level key: one unit deep
    return ""


def dumps(value: Any, indent: str | None, level: int = 0) -> str:
    """JSON text like ``json.dumps(indent=...)``, but numbers as written and non-ASCII kept."""
    if isinstance(value, JsonFloat):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if value is None or isinstance(value, (bool, int)):
        return json.dumps(value)
    if isinstance(value, float):  # only from callers that built the value themselves
        return json.dumps(value)
    if isinstance(value, dict):
        items = [f"{json.dumps(k, ensure_ascii=False)}: {dumps(v, indent, level + 1)}" for k, v in value.items()]
        return _container("{", "}", items, indent, level)
    if isinstance(value, (list, tuple)):
        return _container("[", "]", [dumps(v, indent, level + 1) for v in value], indent, level)
    raise TypeError(f"cannot write {type(value).__name__} to daemon.json")


def _container(open_: str, close: str, items: list[str], indent: str | None, level: int) -> str:
    if not items:
        return open_ + close
    if indent is None:
        return open_ + ", ".join(items) + close
    inner = "\n" + indent * (level + 1)
    return open_ + inner + ("," + inner).join(items) + "\n" + indent * level + close


def render(config: dict[str, Any], like: str | None) -> str:
    """``config`` as text in the style of ``like`` (the file's current text, None when new)."""
    trailing = "\n" if like is None or not like.strip() or like.endswith("\n") else ""
    return dumps(config, detect_indent(like)) + trailing


# -- after nvidia-ctk runtime configure (engine/nvidia_ctk.py) --------------------------------------
def ignored_args(config: dict[str, Any]) -> list[Any]:
    """Arguments runtimes.nvidia holds under nvidia-ctk's ``args`` (no ``runtimeArgs``): Docker never passes them."""
    return nvidia_ctk.ignored_args((config.get("runtimes") or {}).get(RUNTIME_NAME))


def find_ctk_losses(host: Host, path: str, config: dict[str, Any]) -> CtkLosses | None:
    """What `nvidia-ctk runtime configure` dropped (features, runtimes.nvidia.runtimeArgs) that gpuprep's newest backup
    of daemon.json holds; None where the file lacks nvidia-ctk's mark or there is no such backup."""
    entry = (config.get("runtimes") or {}).get(RUNTIME_NAME)
    backup = nvidia_ctk.newest_backup(host, path) if nvidia_ctk.marked(entry) else None
    if backup is None or not isinstance(entry, dict):  # marked() is True only for an object
        return None
    try:
        _, previous = read_config(host, backup)
    except BadInput:
        return None  # not ours to judge: doctor's docker-daemon-json reads only the live file
    return nvidia_ctk.losses(entry, config.get("features"), (previous.get("runtimes") or {}).get(RUNTIME_NAME),
                             previous.get("features"), backup)


# -- the edit ---------------------------------------------------------------------------------
def converge(config: dict[str, Any], runtime_path: str, *, set_default: bool,
             runtime_elsewhere: str | None = None, docker_cdi: bool = False,
             same_runtime: Callable[[str], bool] | None = None,
             ctk_losses: CtkLosses | None = None) -> tuple[dict[str, Any], list[str]]:
    """``config`` with the nvidia runtime registered (and default), and notes of what changed.

    ``runtime_elsewhere`` names where the runtime is already registered outside daemon.json (Amazon
    Linux's ``/etc/docker-runtimes.d/nvidia``): then daemon.json must not define a second one.
    ``same_runtime(path)``: whether an entry's other path names ``runtime_path`` all the same (nvidia-ctk's bare
    ``nvidia-container-runtime``, which dockerd finds on its PATH), so it is kept rather than rewritten.
    ``ctk_losses``: what nvidia-ctk dropped (features, the entry's runtimeArgs), put back (``find_ctk_losses``).
    Arguments an entry holds under nvidia-ctk's ``args`` move to ``runtimeArgs``, the key Docker reads.
    Existing keys stay where they are; new ones go last, as a person would add them.
    """
    new = deepcopy(config)
    notes: list[str] = []
    runtimes = new.get("runtimes")
    if runtime_elsewhere is not None:
        if isinstance(runtimes, dict) and RUNTIME_NAME in runtimes:
            old = runtimes.pop(RUNTIME_NAME)
            notes.append(f"remove runtimes.nvidia ({old.get('path', '?')}): {runtime_elsewhere} registers it")
            if not runtimes:
                del new["runtimes"]
    else:
        if runtimes is None:
            runtimes = new["runtimes"] = {}
        entry = runtimes.get(RUNTIME_NAME)
        if entry is None:
            runtimes[RUNTIME_NAME] = {"path": runtime_path, "runtimeArgs": []}
            notes.append(f"add runtime nvidia ({runtime_path})")
        else:
            if entry.get("path") != runtime_path and not (same_runtime and same_runtime(str(entry.get("path") or ""))):
                notes.append(f"runtime nvidia: path {entry.get('path')} -> {runtime_path}")
                entry["path"] = runtime_path
            if ctk_losses is not None and ctk_losses.runtime_args:
                entry["runtimeArgs"] = list(ctk_losses.runtime_args)
                notes.append(f"runtime nvidia: put back runtimeArgs {json.dumps(ctk_losses.runtime_args)}, which "
                             f"`nvidia-ctk runtime configure` dropped (from {ctk_losses.backup})")
            moved = ignored_args(new)
            if moved:
                runtimes[RUNTIME_NAME] = {("runtimeArgs" if k == nvidia_ctk.CTK_ARGS else k): v
                                          for k, v in entry.items()}
                notes.append(f"runtime nvidia: its arguments {json.dumps(moved)} move from args (which Docker ignores) "
                             "to runtimeArgs")
    if set_default and new.get("default-runtime") != RUNTIME_NAME:
        was = new.get("default-runtime")
        new["default-runtime"] = RUNTIME_NAME
        notes.append("set default-runtime nvidia" + (f" (was {was})" if was else ""))
    if ctk_losses is not None and ctk_losses.features:
        new["features"] = {**ctk_losses.features, **(new.get("features") or {})}
        notes.append(f"put back features {', '.join(sorted(ctk_losses.features))}, which `nvidia-ctk runtime "
                     f"configure --cdi.enabled` dropped (from {ctk_losses.backup})")
    if docker_cdi and (new.get("features") or {}).get("cdi") is not True:
        # Every other features key stays (nvidia-ctk's CDI switch lost them, docs/domain.md).
        new["features"] = {**(new.get("features") or {}), "cdi": True}
        notes.append("set features.cdi true (Docker's own CDI)")
    return new, notes


def merge_user_config(user: dict[str, Any], current: dict[str, Any]) -> dict[str, Any]:
    """The user's settings win; what only the package's file has is added (objects merged per key)."""
    merged = deepcopy(user)
    for key, value in current.items():
        if key not in merged:
            merged[key] = deepcopy(value)
        elif isinstance(merged[key], dict) and isinstance(value, dict):
            merged[key] = merge_user_config(merged[key], value)
    return merged


@dataclass
class UserCopy:
    """A copy of the user's daemon.json that a package install pushed aside."""

    label: str  # what the user reads: a path, or "daemon.json before the packages step"
    config: dict[str, Any]
    leftover: Path | None = None  # the .rpmorig/.rpmsave file, renamed once merged
    leftover_path: str = ""  # its host path


@dataclass
class DaemonJsonEdit:
    path: str  # host path, /etc/docker/daemon.json
    real: Path  # where it is on this machine (ROOT/etc/... with --root)
    before: str | None  # None: the file does not exist
    after: str
    notes: list[str] = field(default_factory=list)
    merged: list[UserCopy] = field(default_factory=list)

    @property
    def changes_file(self) -> bool:
        return self.before != self.after

    @property
    def changed(self) -> bool:
        return self.changes_file or any(c.leftover is not None for c in self.merged)

    @property
    def diff(self) -> str:
        if not self.changes_file:
            return ""
        return file_diff(self.path, self.before, self.after)

    @property
    def summary(self) -> str:
        parts = [*(f"merge the user's settings back from {c.label}" for c in self.merged), *self.notes]
        if self.before is None:
            parts.insert(0, f"create {self.path}")
        return f"{self.path}: " + "; ".join(parts) if parts else f"{self.path}: nothing to change"


# A daemon.json is a few KiB; one this large is not one (and is not read whole into memory).
MAX_BYTES = 4 << 20


def read_config(host: Host, path: str) -> tuple[str | None, dict[str, Any]]:
    """(text, parsed) of host file ``path``; (None, {}) when it does not exist (a dangling link too:
    writing follows it and creates the target). A directory, FIFO or device there is refused."""
    real = host.path(path)
    raw = host.read_bytes(path, limit=MAX_BYTES)
    if raw is None:
        if real.parent.exists() and not real.parent.is_dir():
            raise BadInput(f"{real}: a parent of it is not a directory", f"fix the path to {real}")
        return None, {}
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadInput(f"{real}: not UTF-8 text (byte {exc.start})",
                       f"fix {real} by hand (gpuprep left it untouched), then run gpuprep again") from None
    return text, parse(text, str(real))


def leftovers(host: Host, path: str) -> list[tuple[str, Path]]:
    """The .rpmorig / .rpmsave copies of daemon.json that rpm left beside it: (host path, real path)."""
    found = ((path + suffix, host.path(path + suffix)) for suffix in RPM_LEFTOVERS)
    return [(hp, real) for hp, real in found if real.is_file()]


def user_copies(host: Host, path: str, *, before_packages: str | None = None,
                packages_changed: bool = False) -> list[UserCopy]:
    """The user's settings a package install may have pushed aside, oldest first.

    nvidia-docker2 <= 2.4.0 replaced daemon.json outright: only a copy taken before the packages step
    (``before_packages``) has the user's settings then. 2.5.0+ leave them in .rpmorig/.rpmsave, which
    are looked for on every run (a package may have been installed by hand before gpuprep).
    """
    copies: list[UserCopy] = []
    if packages_changed and before_packages is not None and before_packages.strip():
        raw = host.read_bytes(path, limit=MAX_BYTES)
        current = raw.decode("utf-8", errors="replace") if raw is not None else None
        if current != before_packages:
            copies.append(UserCopy(f"{path} as it was before the packages step",
                                   parse(before_packages, f"{path} (before the packages step)")))
    for leftover_path, leftover in leftovers(host, path):
        raw = host.read_bytes(leftover_path, limit=MAX_BYTES) or b""
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise BadInput(f"{leftover}: not UTF-8 text (byte {exc.start})",
                           f"fix or remove {leftover}, then run gpuprep again") from None
        copies.append(UserCopy(str(leftover), parse(text, str(leftover)), leftover, leftover_path))
    return copies


def plan_edit(host: Host, path: str, runtime_path: str, *, set_default: bool = True,
              runtime_elsewhere: str | None = None, copies: Sequence[UserCopy] = (),
              docker_cdi: bool = False) -> DaemonJsonEdit:
    """What daemon.json should become (pure apart from reading the file)."""
    before, current = read_config(host, path)
    config = current
    for copy in copies:
        config = merge_user_config(copy.config, config)
    wanted, notes = converge(config, runtime_path, set_default=set_default, runtime_elsewhere=runtime_elsewhere,
                             docker_cdi=docker_cdi, same_runtime=nvidia_ctk.bare_name_resolves_to(host, runtime_path),
                             ctk_losses=find_ctk_losses(host, path, config))
    # Unchanged content: the text stays as it is (not even re-indented), so nothing is written.
    after = before if before is not None and wanted == current else render(wanted, before)
    return DaemonJsonEdit(path, host.path(path), before, after, notes, list(copies))


def merged_name(leftover: Path, now: datetime | None = None) -> Path:
    stamp = (now or datetime.now(timezone.utc)).strftime("%Y%m%dT%H%M%SZ")
    return leftover.with_name(f"{leftover.name}.gpuprep-merged-{stamp}")


def apply_edit(host: Host, edit: DaemonJsonEdit) -> Path | None:
    """Back up, then write atomically; rename merged rpm leftovers so the next run is converged.

    The file is compared with what was planned twice: before the backup (no backup of a file that is
    not ours to change) and, by the write itself, right before the rename (``expect``). Returns the
    backup's path (None when there was no file before).
    """
    backup = None
    if edit.changes_file:
        before = edit.before.encode() if edit.before is not None else None
        raw = host.read_bytes(edit.path, limit=MAX_BYTES)
        if raw != before:
            raise StepFailed(f"{edit.real} changed while gpuprep was planning its edit",
                             "run gpuprep again; nothing was written")
        backup = host.backup(edit.path) if edit.before is not None else None
        host.write_atomic(edit.path, edit.after, expect=before)
        log.debug("wrote %s (backup %s)", edit.real, backup)
    for copy in edit.merged:
        if copy.leftover is not None and host.lexists(copy.leftover_path):
            # Renamed, not deleted: the user's original stays on disk, and the next run finds no
            # leftover to merge again.
            host.rename(copy.leftover_path, merged_name(copy.leftover).name)
    return backup


# -- dockerd --validate -----------------------------------------------------------------------
def supports_validate(host: Host, dockerd: str) -> bool:
    """Whether this dockerd has ``--validate`` (Engine 23+; 20.10 has not)."""
    try:
        proc = host.run([dockerd, "--help"], timeout=30, check=False)
    except CommandError:
        return False
    return "--validate" in proc.stdout + proc.stderr


def validate_with_dockerd(host: Host, text: str, dockerd: str | None, why_not: str = "") -> str:
    """Run ``dockerd --validate`` on ``text``; a note saying what was done. StepFailed when rejected.
    ``why_not`` is the note when there is no dockerd to ask."""
    if dockerd is None:
        return why_not or "not validated: no dockerd binary to ask"
    if not supports_validate(host, dockerd):
        return f"not validated: {dockerd} has no --validate (Engine 23+ has it)"
    # A scratch copy outside the host tree: validation must not touch the real file.
    with tempfile.NamedTemporaryFile("w", prefix="daemon.", suffix=".json", encoding="utf-8") as tmp:
        tmp.write(text)
        tmp.flush()
        proc = host.run([dockerd, "--validate", "--config-file", tmp.name], timeout=60, check=False)
    if proc.returncode != 0:
        detail = (proc.stderr or proc.stdout).strip().splitlines()
        reason = detail[-1] if detail else str(proc.returncode)
        # "unable to configure the Docker daemon with file /tmp/daemon.XXXX.json: ...": the scratch copy's
        # name means nothing to the user.
        reason = reason.replace(f" with file {tmp.name}", "")
        raise StepFailed(f"dockerd rejects the new daemon.json: {reason}",
                         "nothing was written; fix the key it names in daemon.json and run again")
    return f"validated by {dockerd} --validate"


def dockerd_version(host: Host, dockerd: str) -> str | None:
    """``26.1.5`` from ``dockerd --version`` ("Docker version 26.1.5+dfsg1, build 411e817"), or None."""
    try:
        proc = host.run([dockerd, "--version"], timeout=30, check=False)
    except CommandError:
        return None
    match = re.search(r"version (\d+\.\d+\.\d+)", proc.stdout)
    return match.group(1) if match else None


def image_engine_version(host: Host) -> str | None:
    """The version of the Docker package installed in the tree (``docker`` on Amazon Linux, ``docker-ce``
    from Docker's repository), from its rpm database; None when there is none."""
    from gpuprep.packages.resolve import DOCKER_NAMES
    from gpuprep.packages.rpmdb import installed

    if not host.tool("rpm"):
        return None
    found = {p.name: p.evr.version for p in installed(host, DOCKER_NAMES)}
    return next((found[n] for n in DOCKER_NAMES if n in found), None)


# -- Amazon Linux's runtimes dir --------------------------------------------------------------
def runtime_in_runtimes_dir(host: Host, runtimes_dir: str, name: str = RUNTIME_NAME) -> str | None:
    """The host path of ``runtimes_dir/name`` when it is an executable (docker-setup-runtimes.sh
    registers each one with ``--add-runtime NAME=PATH``), else None."""
    candidate = f"{runtimes_dir.rstrip('/')}/{name}"
    real = host.path(candidate)
    if real.is_file() and os.access(real, os.X_OK):
        return candidate
    return None
