"""A corpus of bad inputs: each gets the documented exit code and one clear line, never a crash or a hang.

Each case lays one bad input into an Amazon Linux 2023 root (``tests/fixtures/distros/amzn-2023`` plus
the files the steps read) or passes one bad argument, and runs the real CLI (``python -m gpuprep``,
bounded at 30 s: a FIFO anywhere must never hang a run). Its ``why`` says how the input arises in the
real world. Every case asserts:

- the exit code is one the case allows: 2 for bad input or usage (nothing changed), the documented 1 or
  3 where the case says so (a step failed; a precondition such as the platform), Nagios 0..3 for doctor;
- stderr has exactly one ``gpuprep: error:`` line and a ``gpuprep: hint:`` line when install or seal
  fails (doctor's 1 and 2 are verdicts, not errors), never "internal error", never a traceback; doctor's
  JSON report has no check that crashed ("check failed: ...");
- with exit 2 the tree is byte-identical to what it was (hashed before and after: every file's bytes,
  mode and link target); the one allowance is gpuprep's own run lock, ``/run/lock/gpuprep.lock``, which
  may be created empty (a lock must exist to be held, and /run is a tmpfs at boot); doctor, a read-only
  command, leaves the tree byte-identical whatever its verdict;
- no path of this machine that an absolute link in the tree names is created or changed (a resolution
  outside the root would write the build machine's own /etc); one a run created is removed again.

Where a case names a file (``names``) the error line must name it too.

Simulated: the image (a plain directory tree) and ecs.service (a stand-in unit, already enabled).
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pytest
import reliability_kit as kit
from contract import json_output

_figure = kit.module_figure("bad inputs", "handled")

DJ = "/etc/docker/daemon.json"
EC = "/etc/ecs/ecs.config"
OSR = "/etc/os-release"
SEAL_JSON = "/etc/gpuprep/seal.json"
D = ("install", "--only", "docker-runtime", "--runtime-path", kit.RUNTIME)
E = ("install", "--only", "ecs-config")
S = ("seal", "--yes", "--skip", kit.NO_DOCKER)
DR = ("--json", "doctor", "--no-container")
# A wrong --root could make a gpuprep act on this machine itself (an empty --root read as /): those cases
# are dry runs, which change nothing even then, and must still exit 2.
DRY_D = ("install", "--dry-run", "--only", "docker-runtime", "--runtime-path", kit.RUNTIME)
DRY_S = ("seal", "--dry-run", "--yes", "--skip", kit.NO_DOCKER)
AL2023_OS_RELEASE = (kit.AL2023 / "etc/os-release").read_bytes()


# -- laying inputs ----------------------------------------------------------------------------
def _p(root: Path, path: str) -> Path:
    return root / path.lstrip("/")


def _clear(p: Path) -> None:
    if p.is_dir() and not p.is_symlink():
        shutil.rmtree(p)
    elif os.path.lexists(p):
        p.unlink()


def put(path: str, data: bytes | str):
    def setup(root: Path) -> None:
        _clear(_p(root, path))
        kit.write(_p(root, path), data)
    return setup


def fifo(path: str):
    def setup(root: Path) -> None:
        _clear(_p(root, path))
        kit.make_fifo(_p(root, path))
    return setup


def sock(path: str):
    def setup(root: Path) -> None:
        _clear(_p(root, path))
        kit.make_socket(_p(root, path))
    return setup


def directory(path: str):
    def setup(root: Path) -> None:
        _clear(_p(root, path))
        _p(root, path).mkdir(parents=True)
        kit.write(_p(root, path) / "inside", "a file in the directory")
    return setup


def link(path: str, target: str):
    def setup(root: Path) -> None:
        _clear(_p(root, path))
        _p(root, path).parent.mkdir(parents=True, exist_ok=True)
        os.symlink(target, _p(root, path))
    return setup


def rm(path: str):
    def setup(root: Path) -> None:
        _clear(_p(root, path))
    return setup


def both(*setups):
    def setup(root: Path) -> None:
        for s in setups:
            s(root)
    return setup


def nothing(root: Path) -> None:
    pass


def _nested(depth: int) -> bytes:
    return b'{"labels": ' + b"[" * depth + b"]" * depth + b"}"


def _nested_objects(depth: int) -> bytes:
    return b'{"a": ' * depth + b"{}" + b"}" * depth


# -- checks for the cases that succeed --------------------------------------------------------
def ecs_is(want: bytes):
    def check(root: Path, r: kit.Run) -> list[str]:
        got = _p(root, EC).read_bytes()
        return [] if got == want else [f"ecs.config is {got!r}, expected {want!r}"]
    return check


def file_has(path: str, text: bytes):
    def check(root: Path, r: kit.Run) -> list[str]:
        p = _p(root, path)
        return [] if p.is_file() and text in p.read_bytes() else [f"{path} does not hold {text!r}"]
    return check


def is_link(path: str, then=None):
    def check(root: Path, r: kit.Run) -> list[str]:
        problems = [] if _p(root, path).is_symlink() else [f"{path} is no longer a link"]
        return problems + (then(root, r) if then else [])
    return check


@dataclass
class Bad:
    id: str
    why: str  # how this input arises in the real world
    setup: Callable[[Path], None]
    args: tuple[str, ...]
    codes: tuple[int, ...] = (2,)
    names: str = ""  # text the error line must contain (the file or flag at fault)
    check: Callable[[Path, kit.Run], list[str]] | None = None
    root: str | None = "tree"  # "tree": --root TREE is passed; None: the args carry everything
    tree: dict = field(default_factory=dict)


def dj(id_, why, data, **kw):
    return Bad(f"daemon-json-{id_}", why, put(DJ, data), D, names=kw.pop("names", "daemon.json"), **kw)


CASES: list[Bad] = [
    # -- daemon.json: broken JSON -----------------------------------------------------------
    dj("trailing-comma", "a hand edit that deleted the last key and left its comma", b'{"debug": true,}\n'),
    dj("trailing-comma-nested", "a runtime entry pasted from a blog post, comma and all",
       b'{"runtimes": {"nvidia": {"path": "/usr/bin/nvidia-container-runtime", "runtimeArgs": [],}}}\n'),
    dj("duplicate-key", "two snippets pasted one after the other; dockerd silently keeps the last",
       b'{"debug": true, "log-level": "info", "debug": false}\n'),
    dj("duplicate-runtime", "nvidia-ctk's entry appended to a file that had one already",
       b'{"runtimes": {"nvidia": {"path": "/usr/bin/nvidia-container-runtime"}, '
       b'"nvidia": {"path": "nvidia-container-runtime"}}}\n'),
    dj("bom", "saved by Notepad or PowerShell 5's Set-Content -Encoding UTF8, which write a BOM",
       b'\xef\xbb\xbf{"debug": true}\n'),
    dj("utf16", "PowerShell 5's Out-File default encoding: UTF-16LE with a BOM",
       '{"debug": true}\n'.encode("utf-16")),
    dj("top-array", "a script that wrote the runtimes list instead of the object", b'["nvidia"]\n'),
    dj("top-string", "double-encoded JSON from a configuration-management template",
       b'"{\\"debug\\": true}"\n'),
    dj("top-null", "jq's output for a missing key redirected into the file", b"null\n"),
    dj("top-number", "an echo $? redirected to the wrong file", b"0\n"),
    dj("runtimes-null", "a template whose runtimes variable was empty", b'{"runtimes": null}\n'),
    dj("runtimes-list", "runtimes written as a list of names", b'{"runtimes": ["nvidia"]}\n'),
    dj("runtimes-string", "runtimes written as a single name", b'{"runtimes": "nvidia"}\n'),
    dj("runtime-entry-null", "a runtime entry emptied by a template", b'{"runtimes": {"nvidia": null}}\n'),
    dj("runtime-entry-string", "containers.conf's style (name = path) carried into daemon.json",
       b'{"runtimes": {"nvidia": "/usr/bin/nvidia-container-runtime"}}\n'),
    dj("runtimeargs-string", 'runtimeArgs given as one string ("--debug") instead of a list',
       b'{"runtimes": {"nvidia": {"path": "/usr/bin/nvidia-container-runtime", "runtimeArgs": "--debug"}}}\n'),
    dj("runtimeargs-numbers", "runtimeArgs with a number from a YAML template (debug: 1)",
       b'{"runtimes": {"nvidia": {"path": "/usr/bin/nvidia-container-runtime", "runtimeArgs": [1]}}}\n'),
    dj("runtime-path-number", "a path templated from an unset numeric variable",
       b'{"runtimes": {"nvidia": {"path": 0}}}\n'),
    dj("runtime-options-string", "runtime options given as a string",
       b'{"runtimes": {"nvidia": {"path": "/usr/bin/nvidia-container-runtime", "options": "x"}}}\n'),
    dj("default-runtime-number", "default-runtime templated from a numeric variable", b'{"default-runtime": 1}\n'),
    dj("default-runtime-list", "default-runtime written as a list", b'{"default-runtime": ["nvidia"]}\n'),
    dj("default-runtime-null", "default-runtime emptied by a template", b'{"default-runtime": null}\n'),
    dj("nested-100000", "a generator gone wrong: lists nested 100000 deep", _nested(100000)),
    dj("nested-objects-100000", "objects nested 100000 deep", _nested_objects(100000)),
    dj("invalid-utf8", "a label typed in a Latin-1 terminal", b'{"labels": ["site=caf\xe9"]}\n'),
    dj("truncated", "a disk that filled up during an earlier edit by another tool", b'{"runtimes": {"nvidia": {'),
    dj("zero-filled", "ext4 after a power loss: the file's blocks are zeros", b"\x00" * 512),
    dj("nan", "Python's json.dumps default (allow_nan) wrote NaN", b'{"mtu": NaN}\n'),
    dj("infinity", "Python's json.dumps wrote Infinity", b'{"max-concurrent-downloads": Infinity}\n'),
    dj("comments", "copied from documentation that annotates the file with // comments",
       b'// added by ops\n{"debug": true}\n'),
    dj("single-quotes", "a Python dict written with str() instead of json.dumps", b"{'debug': True}\n"),
    dj("two-objects", "`cat snippet.json >> daemon.json`", b'{"debug": true}\n{"log-level": "info"}\n'),
    dj("lone-surrogate", "JSON from a tool that split a UTF-16 surrogate pair", b'{"labels": ["\\ud800"]}\n',
       codes=(0, 2)),
    # -- daemon.json: values dockerd would not start with -----------------------------------
    dj("log-opts-number", "the classic: log-opts max-size as a number (dockerd wants strings)",
       b'{"log-driver": "json-file", "log-opts": {"max-size": 10}}\n'),
    dj("debug-string", "an env variable templated into a boolean", b'{"debug": "true"}\n'),
    dj("features-string", "features.buildkit as a string", b'{"features": {"buildkit": "true"}}\n'),
    dj("hosts-string", "hosts as one string instead of a list", b'{"hosts": "unix:///var/run/docker.sock"}\n'),
    dj("exec-opts-string", "a Kubernetes guide's exec-opts typed as a string",
       b'{"exec-opts": "native.cgroupdriver=systemd"}\n'),
    dj("mtu-string", "EC2 jumbo frames: mtu copied as a string", b'{"mtu": "9001"}\n'),
    dj("mtu-float", "mtu computed by a script as a float", b'{"mtu": 9001.0}\n'),
    # -- daemon.json: not a regular file -----------------------------------------------------
    Bad("daemon-json-fifo", "mkfifo left by someone testing dockerd --config-file with a pipe", fifo(DJ), D,
        names="daemon.json"),
    Bad("daemon-json-directory", "`docker run -v /etc/docker/daemon.json:...` on a host without the file "
        "makes a directory there", directory(DJ), D, names="daemon.json"),
    Bad("daemon-json-socket", "a crashed tool's socket left under that name", sock(DJ), D, names="daemon.json"),
    Bad("daemon-json-self-link", "`ln -sf daemon.json daemon.json` in /etc/docker", link(DJ, "daemon.json"), D,
        names="daemon.json"),
    Bad("daemon-json-link-loop", "two links pointing at each other after a botched migration",
        both(link(DJ, "/etc/docker/b.json"), link("/etc/docker/b.json", "/etc/docker/daemon.json")), D,
        names="daemon.json"),
    Bad("daemon-json-10mb", "dockerd's own log redirected into it (`dockerd >> /etc/docker/daemon.json`)",
        put(DJ, b'{"debug": true}\n' + b"time=\"2026-12-03\" level=info msg=\"x\"\n" * 280_000), D,
        names="daemon.json"),
    Bad("etc-docker-is-file", "`cp daemon.json /etc/docker` on a host without the directory",
        both(rm("/etc/docker"), put("/etc/docker", b'{"debug": true}\n')), D, codes=(1, 2), names="/etc/docker"),
    Bad("daemon-json-rpmsave-broken", "nvidia-docker2 2.5+ kept a broken user file as .rpmsave",
        put(DJ + ".rpmsave", b'{"debug": true,}\n'), D, names="daemon.json.rpmsave"),
    Bad("daemon-json-rpmorig-invalid-utf8", "rpm kept a Latin-1 edited file as .rpmorig",
        put(DJ + ".rpmorig", b'{"labels": ["caf\xe9"]}\n'), D, names="daemon.json.rpmorig"),
    Bad("daemon-json-dangling-link", "daemon.json managed elsewhere, its target not yet created: gpuprep "
        "creates the target (inside the image) and keeps the link", link(DJ, "/etc/docker/managed/daemon.json"), D,
        codes=(0,), check=is_link(DJ, file_has("/etc/docker/managed/daemon.json", b'"nvidia"'))),
    # -- ecs.config ------------------------------------------------------------------------------
    Bad("ecs-config-nul-bytes", "zero-filled blocks after a crash mid-write by another tool",
        put(EC, b"ECS_CLUSTER=gpu\n\x00\x00\x00\x00"), E, names="ecs.config"),
    Bad("ecs-config-escape-codes", "coloured output captured into the file (`ls --color > ...`)",
        put(EC, b"\x1b[32mECS_CLUSTER=gpu\x1b[0m\n"), E, names="ecs.config"),
    Bad("ecs-config-latin1", "a cluster name typed in a Latin-1 terminal: kept byte for byte",
        put(EC, b"ECS_CLUSTER=caf\xe9\nECS_INSTANCE_ATTRIBUTES={\"site\":\"M\xfcnchen\"}\n"), E, codes=(0,),
        check=ecs_is(b"ECS_CLUSTER=caf\xe9\nECS_INSTANCE_ATTRIBUTES={\"site\":\"M\xfcnchen\"}\n"
                     b"ECS_ENABLE_GPU_SUPPORT=true\n")),
    Bad("ecs-config-crlf", "written on Windows and pushed with SSM: CRLF kept", put(EC, b"ECS_CLUSTER=gpu\r\n"), E,
        codes=(0,), check=ecs_is(b"ECS_CLUSTER=gpu\r\nECS_ENABLE_GPU_SUPPORT=true\n")),
    Bad("ecs-config-crlf-false", "GPU support switched off in a CRLF file: the line is rewritten, its CRLF kept",
        put(EC, b"ECS_CLUSTER=gpu\r\nECS_ENABLE_GPU_SUPPORT=false\r\n"), E, codes=(0,),
        check=ecs_is(b"ECS_CLUSTER=gpu\r\nECS_ENABLE_GPU_SUPPORT=true\r\n")),
    Bad("ecs-config-no-trailing-newline", "`echo -n ECS_CLUSTER=gpu > ecs.config` in user data",
        put(EC, b"ECS_CLUSTER=gpu"), E, codes=(0,), check=ecs_is(b"ECS_CLUSTER=gpu\nECS_ENABLE_GPU_SUPPORT=true\n")),
    Bad("ecs-config-bom", "edited with Notepad: the BOM stays, the key is added",
        put(EC, b"\xef\xbb\xbfECS_CLUSTER=gpu\n"), E, codes=(0,),
        check=ecs_is(b"\xef\xbb\xbfECS_CLUSTER=gpu\nECS_ENABLE_GPU_SUPPORT=true\n")),
    Bad("ecs-config-directory", "`docker run -v /etc/ecs/ecs.config:...` made a directory there", directory(EC), E,
        names="ecs.config"),
    Bad("ecs-config-fifo", "a FIFO from a script that meant to stream the config", fifo(EC), E, names="ecs.config"),
    Bad("ecs-config-socket", "a socket node left under that name", sock(EC), E, names="ecs.config"),
    Bad("ecs-config-self-link", "`ln -sf ecs.config ecs.config`", link(EC, "ecs.config"), E, names="ecs.config"),
    Bad("ecs-config-2mb", "a log redirected into the file", put(EC, b"ECS_CLUSTER=gpu\n" + b"x" * (2 << 20)), E,
        names="ecs.config"),
    Bad("etc-ecs-is-file", "`cp ecs.config /etc/ecs` before the directory existed",
        both(rm("/etc/ecs"), put("/etc/ecs", b"ECS_CLUSTER=gpu\n")), E, codes=(1, 2), names="/etc/ecs"),
    Bad("ecs-config-dangling-link", "ecs.config managed elsewhere, its target not yet created",
        link(EC, "/etc/ecs/managed.config"), E, codes=(0,),
        check=is_link(EC, file_has("/etc/ecs/managed.config", b"ECS_ENABLE_GPU_SUPPORT=true"))),
    Bad("ecs-config-relative-flag", "--ecs-config etc/ecs/ecs.config (relative) in a pipeline",
        nothing, ("install", "--only", "ecs-config", "--ecs-config", "etc/ecs/ecs.config"), names="--ecs-config"),
    Bad("ecs-config-empty-flag", '--ecs-config "$ECS_CONFIG" with the variable unset',
        nothing, ("install", "--only", "ecs-config", "--ecs-config", ""), names="--ecs-config"),
    Bad("ecs-config-flag-directory", "--ecs-config /etc/ecs (the directory, not the file)",
        nothing, ("install", "--only", "ecs-config", "--ecs-config", "/etc/ecs"), names="/etc/ecs"),
    # -- os-release --------------------------------------------------------------------------
    Bad("os-release-missing", "an image whose /etc is not mounted yet (Packer chroot mounts in the wrong order)",
        both(rm(OSR), rm("/usr/lib/os-release")), D, codes=(3,), names="os-release"),
    Bad("os-release-directory", "os-release replaced by a directory (a bind-mount target)",
        directory(OSR), D, codes=(2, 3), names="os-release"),
    Bad("os-release-garbage", "a file of random bytes (a failed download written over it)",
        put(OSR, bytes(range(256)) * 8), D, codes=(2, 3), names="os-release"),
    Bad("os-release-zero-filled", "zero-filled after a power loss", put(OSR, b"\x00" * 400), D, codes=(2, 3),
        names="os-release"),
    Bad("os-release-empty", "truncated by a failed package update", put(OSR, b""), D, codes=(2, 3),
        names="os-release"),
    Bad("os-release-fifo", "a FIFO in its place: must not block the run", fifo(OSR), D, codes=(2, 3),
        names="os-release"),
    Bad("os-release-link-loop", "/etc/os-release -> /usr/lib/os-release -> /etc/os-release",
        both(link(OSR, "/usr/lib/os-release"), link("/usr/lib/os-release", "/etc/os-release")), D, codes=(2, 3),
        names="os-release"),
    Bad("os-release-no-version", "ID=amzn without VERSION_ID (a hand-made image)", put(OSR, b'ID="amzn"\n'), D,
        codes=(2,), names="amzn"),
    Bad("os-release-al2022", "the Amazon Linux 2022 preview", put(OSR, AL2023_OS_RELEASE.replace(b"2023", b"2022")),
        D, codes=(3,), names="2022"),
    Bad("os-release-debian", "the build machine itself (Debian) given as --root /", put(OSR, b'ID=debian\nVERSION_ID='
        b'"12"\nPRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\n'), D, codes=(3,), names="Debian"),
    Bad("os-release-latin1-variant", "a company's VARIANT in Latin-1 in an otherwise good AL2023 file",
        put(OSR, AL2023_OS_RELEASE + b'VARIANT="Soci\xe9t\xe9 G\xe9n\xe9rale"\n'), D, codes=(0,),
        names="os-release"),
    Bad("os-release-10mb", "a log written over it", put(OSR, b"ID=amzn\n" + b"x" * (10 << 20)), D, codes=(0, 2, 3),
        names="os-release"),
    # -- seal ----------------------------------------------------------------------------------
    Bad("seal-gpu-info-directory", "a bind-mount target made nvidia-gpu-info.json a directory",
        directory("/var/lib/ecs/gpu/nvidia-gpu-info.json"), S, codes=(1, 2), names="nvidia-gpu-info.json"),
    Bad("seal-json-directory", "seal.json a directory (a bind-mount target)", directory(SEAL_JSON), S,
        codes=(1, 2), names="seal.json"),
    Bad("seal-json-directory-with-state", "the same, on an image that still has agent state to remove: "
        "an exit 2 must have changed nothing", directory(SEAL_JSON), S, codes=(1, 2), names="seal.json",
        tree={"agent_state": True}),
    Bad("seal-json-fifo", "seal.json a FIFO: must not block", fifo(SEAL_JSON), S, codes=(1, 2), names="seal.json"),
    Bad("etc-gpuprep-is-file", "/etc/gpuprep a file (an old gpuprep config)", put("/etc/gpuprep", b"x\n"), S,
        codes=(1, 2), names="/etc/gpuprep"),
    Bad("seal-state-fifo", "a FIFO among the agent's files: removed like a file, never read", both(
        fifo("/var/lib/ecs/data/agent.fifo")), S, codes=(0,),
        check=lambda root, r: [] if not os.path.lexists(_p(root, "/var/lib/ecs/data/agent.fifo"))
        else ["the FIFO is still there"], tree={"agent_state": True}),
    Bad("seal-deep-machine-id-fifo", "seal --deep with /etc/machine-id a FIFO (a container build)",
        fifo("/etc/machine-id"), (*S, "--deep"), codes=(0, 1, 2), names="machine-id"),
    Bad("seal-deep-log-fifo", "seal --deep with a FIFO in /var/log (syslog's /var/log/xconsole)",
        both(fifo("/var/log/xconsole"), put("/var/log/messages", b"log\n")), (*S, "--deep"), codes=(0,)),
    Bad("lock-fifo", "the run lock's path a FIFO", fifo("/" + kit.LOCK), S, codes=(1, 2), names="gpuprep.lock"),
    Bad("lock-directory", "the run lock's path a directory", directory("/" + kit.LOCK), S, codes=(1, 2),
        names="gpuprep.lock"),
    Bad("run-lock-is-file", "/run/lock a file in the image", put("/run/lock", b"x"), D, codes=(1, 2),
        names="/run/lock"),
    # -- doctor: seal.json and other files it reads ------------------------------------------
    Bad("doctor-seal-json-directory", "seal.json a directory", directory(SEAL_JSON), DR, codes=(0, 1, 2, 3)),
    Bad("doctor-seal-json-array", "seal.json a JSON array", put(SEAL_JSON, b"[]\n"), DR, codes=(0, 1, 2, 3)),
    Bad("doctor-seal-json-garbage", "seal.json not JSON (half-written by a tool)", put(SEAL_JSON, b'{"gpu'),
        DR, codes=(0, 1, 2, 3)),
    Bad("doctor-seal-json-sealed-at-number", "sealed_at as a Unix time (an external tool wrote the stamp)",
        put(SEAL_JSON, b'{"gpuprep": "0.1.0", "sealed_at": 1764720000}\n'), DR, codes=(0, 1, 2, 3)),
    Bad("doctor-seal-json-sealed-at-garbage", "sealed_at in another format",
        put(SEAL_JSON, b'{"gpuprep": "0.1.0", "sealed_at": "yesterday"}\n'), DR, codes=(0, 1, 2, 3)),
    Bad("doctor-seal-json-platform-string", "platform as a plain string",
        put(SEAL_JSON, b'{"gpuprep": "0.1.0", "platform": "amzn"}\n'), DR, codes=(0, 1, 2, 3)),
    Bad("doctor-seal-json-packages-list", "packages as a list of names",
        put(SEAL_JSON, b'{"gpuprep": "0.1.0", "packages": ["docker"]}\n'), DR, codes=(0, 1, 2, 3)),
    Bad("doctor-seal-json-kept-number", "kept_images as a count",
        put(SEAL_JSON, b'{"gpuprep": "0.1.0", "kept_images": 2}\n'), DR, codes=(0, 1, 2, 3)),
    Bad("doctor-seal-json-boot-string", "boot as a string",
        put(SEAL_JSON, b'{"gpuprep": "0.1.0", "boot": "b1"}\n'), DR, codes=(0, 1, 2, 3)),
    Bad("doctor-seal-json-fifo", "seal.json a FIFO: must not block", fifo(SEAL_JSON), DR, codes=(0, 1, 2, 3)),
    Bad("doctor-seal-json-invalid-utf8", "seal.json with Latin-1 bytes",
        put(SEAL_JSON, b'{"gpuprep": "0.1.0", "platform": {"name": "caf\xe9"}}\n'), DR, codes=(0, 1, 2, 3)),
    Bad("doctor-daemon-json-broken", "daemon.json with a trailing comma", put(DJ, b'{"debug": true,}\n'), DR,
        codes=(0, 1, 2, 3)),
    Bad("doctor-daemon-json-fifo", "daemon.json a FIFO", fifo(DJ), DR, codes=(0, 1, 2, 3)),
    Bad("doctor-ecs-config-ami-fifo", "the AMI's /var/lib/ecs/ecs.config a FIFO", fifo("/var/lib/ecs/ecs.config"),
        DR, codes=(0, 1, 2, 3)),
    Bad("doctor-ecs-config-binary", "ecs.config zero-filled", put(EC, b"\x00" * 64), DR, codes=(0, 1, 2, 3)),
    Bad("doctor-gpu-info-garbage", "nvidia-gpu-info.json half-written by ecs-init",
        put("/var/lib/ecs/gpu/nvidia-gpu-info.json", b'{"DriverVersion": '), DR, codes=(0, 1, 2, 3)),
    Bad("doctor-gpu-info-fifo", "nvidia-gpu-info.json a FIFO", fifo("/var/lib/ecs/gpu/nvidia-gpu-info.json"), DR,
        codes=(0, 1, 2, 3)),
    Bad("doctor-driver-version-fifo", "/proc/driver/nvidia/version a FIFO in a tree with a fake /proc",
        fifo("/proc/driver/nvidia/version"), DR, codes=(0, 1, 2, 3)),
    Bad("doctor-os-release-fifo", "os-release a FIFO", fifo(OSR), DR, codes=(0, 1, 2, 3)),
    Bad("doctor-prom-is-directory", "--prom naming the textfile directory instead of a file in it",
        nothing, ("doctor", "--no-container", "--prom", "/tmp"), codes=(3,), names="/tmp"),
    # -- the command line --------------------------------------------------------------------
    Bad("root-empty", '--root "$MOUNT" with the variable unset', nothing, ("--root", "", *DRY_D), root=None,
        names="--root"),
    Bad("root-empty-seal", '--root "$MOUNT" unset, for seal', nothing, ("--root", "", *DRY_S), root=None,
        names="--root"),
    Bad("root-empty-doctor", '--root "$MOUNT" unset, for doctor (UNKNOWN)', nothing, ("--root", "", *DR),
        root=None, codes=(3,), names="--root"),
    Bad("root-nonexistent", "--root naming a mount point that was never mounted", nothing,
        ("--root", "/nonexistent", *DRY_D), root=None, names="/nonexistent"),
    Bad("root-nonexistent-seal", "the same for seal", nothing, ("--root", "/nonexistent", *DRY_S), root=None,
        names="/nonexistent"),
    Bad("root-is-file", "--root naming the image file instead of its mount point", nothing,
        ("--root", str(kit.AL2023 / "etc/os-release"), *DRY_D), root=None, names="os-release"),
    Bad("runtime-path-relative", "--runtime-path nvidia-container-runtime (no directory)", nothing,
        ("install", "--only", "docker-runtime", "--runtime-path", "nvidia-container-runtime"),
        names="--runtime-path"),
    Bad("only-and-skip-same", "--only docker-runtime --skip docker-runtime from two layers of a pipeline",
        nothing, ("install", "--only", "docker-runtime", "--skip", "docker-runtime"), names="docker-runtime"),
    Bad("only-unknown", "a step id misspelt (docker-runtimes)", nothing, ("install", "--only", "docker-runtimes"),
        names="docker-runtimes"),
    Bad("skip-unknown", "a seal step id from another tool (--skip cleanup)", nothing, ("seal", "--skip", "cleanup"),
        names="cleanup"),
    Bad("only-install-id-for-seal", "an install step id given to seal", nothing, ("seal", "--only", "packages"),
        names="packages"),
    Bad("only-empty", '--only "$STEPS" with the variable unset must not mean every step (dry run here)', nothing,
        ("install", "--dry-run", "--only", ""), names="--only"),
    Bad("runtime-unknown", "--runtime nvidia (the runtime's name, not a stack)", nothing,
        ("install", "--runtime", "nvidia", "--only", "docker-runtime"), names="--runtime"),
    Bad("user-unknown", "--user ec2-user on an image without that user", nothing,
        ("install", "--only", "docker-group", "--user", "ec2-user"), names="ec2-user"),
    Bad("user-passwd-fifo", "--user with /etc/passwd a FIFO in the image", fifo("/etc/passwd"),
        ("install", "--only", "docker-group", "--user", "ec2-user"), codes=(1, 2), names="passwd"),
    Bad("repo-file-missing", "--repo-file naming a file that the pipeline did not copy", nothing,
        ("install", "--only", "repositories", "--repo-file", "/nonexistent/nvidia.repo"), names="nvidia.repo"),
    Bad("lock-wait-negative", "--lock-wait -1 from arithmetic on a deadline", nothing, ("--lock-wait", "-1", *D),
        names="--lock-wait"),
    Bad("option-misspelt", "--runtime-paht (a typo in user data)", nothing,
        ("install", "--only", "docker-runtime", "--runtime-paht", kit.RUNTIME), names="--runtime-paht"),
]


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id) for c in CASES])
def test_bad_input(case: Bad, tmp_path):
    root = kit.al2023(tmp_path / "root", **case.tree)
    case.setup(root)
    before = kit.snapshot(root)
    guard = kit.guard_host(kit.absolute_link_targets(root))
    args = ("--root", str(root), *case.args) if case.root else case.args
    r = kit.gpuprep(*args, timeout=30)
    doctor = "doctor" in case.args
    problems = kit.host_changes(guard)
    if r.code is None:
        problems.append("hung: killed after 30 s")
    elif r.code not in case.codes:
        problems.append(f"exit {r.code}, expected {' or '.join(map(str, case.codes))}")
    report_printed = r.stdout.lstrip().startswith("{") or r.stdout.startswith("gpuprep doctor")
    # doctor's exit codes are verdicts when it printed its report; an error only when it could not
    want_error = r.code not in (0, None) and not (doctor and report_printed)
    problems += kit.error_problems(r, want_error=want_error)
    if want_error and case.names and case.names not in kit.error_line(r):
        problems.append(f"the error does not name {case.names}: {kit.error_line(r)!r}")
    after = kit.snapshot(root)
    if doctor:
        changed = kit.diff(before, after)
        if r.stdout.lstrip().startswith("{"):
            report = json_output(r.stdout)
            crashed = [f"{c['id']}: {c['summary']}" for c in report.get("checks", [])
                       if c["summary"].startswith("check failed")]
            if crashed:
                problems.append(f"checks crashed: {crashed}")
    else:
        changed = kit.diff(before, kit.without_lock(after, before)) if r.code == 2 else []
    if changed:
        problems.append(("doctor changed the tree: " if doctor else "exit 2 but the tree changed: ")
                        + "; ".join(changed[:5]))
    if case.check is not None and r.code in case.codes and r.code == 0:
        problems += case.check(root, r)
    assert not problems, f"{case.id} ({case.why}):\n  " + "\n  ".join(problems) + f"\n{r}"


def test_the_corpus_is_large_enough():
    assert len(CASES) >= 80
