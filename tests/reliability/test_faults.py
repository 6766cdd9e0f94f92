"""ENOSPC, EROFS, EIO and friends at gpuprep's own writes: one clear line, the file as it was, no litter.

A full disk, a file system remounted read-only, a failing EBS volume: the kernel's answers are real
here, injected by strace (Debian's 6.1) into the one syscall that matters, of gpuprep's own process.
Which call that is comes from a first, clean run of the same command on an identical tree under
``strace -y`` (file descriptors shown with their paths): the N-th ``write`` to daemon.json's temp file,
the ``renameat`` of that temp file over daemon.json, the ``fsync`` of the directory after it, and so on.
The second run injects there (``-e inject=SYSCALL:error=ERRNO:when=N``) and its own log must show the
injection landed on that very call. Then:

- exit 1 or 2, exactly one ``gpuprep: error:`` line that names the file, a ``gpuprep: hint:`` line,
  never "internal error", never a traceback;
- the file holds exactly what it held before (for a failure after the rename, the directory fsync: its
  old or its whole new content, since the rename has happened);
- no file matching ``.*\\.[a-z0-9_]{8}\\.tmp`` is left anywhere in the tree.

Simulated: the faults themselves (the disk is fine; the kernel's answer is replaced at that one call),
the image (a plain directory tree) and ecs.service (a stand-in unit, already enabled).
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest
import reliability_kit as kit

_figure = kit.module_figure("faults", "reported cleanly")

TRACED = "openat,write,fsync,rename,renameat,renameat2,unlink,unlinkat,mkdir,mkdirat,pwrite64,ftruncate"
T = r"\.[a-z0-9_]{8}\.tmp"
INSTALL = ("install", "--only", "docker-runtime,ecs-config", "--runtime-path", kit.RUNTIME)
BOOT = ("install", "--only", "boot-check")
SEAL = ("seal", "--yes", "--skip", kit.NO_DOCKER)


def _temp(name: str) -> str:
    return r"/\." + re.escape(name) + T + ">"


def _backup_temp(name: str) -> str:
    return r"/\." + re.escape(name) + r"\.gpuprep-\d{8}T\d+Z" + T + ">"


def _renamed_over(name: str) -> str:
    return r"\." + re.escape(name) + T + r'".*[/"]' + re.escape(name) + r'"\)'


@dataclass
class Fault:
    id: str
    why: str  # how the fault arises in the real world
    syscalls: str  # the syscall(s) the selected call may be (rename or renameat: the kernel interface used)
    select: str  # regex on strace -y's line of the call (nth match with ``nth``)
    errno: str
    file: str  # host path of the file that must be left as it was (and that the error must name)
    args: tuple[str, ...] = INSTALL
    build: Callable[[Path], None] | None = None
    after: str | None = None  # regex of a call that must come before the selected one
    renamed: bool = False  # the fault comes after the rename: old or new content
    names: str = ""  # what the error line must contain, when not the file's name


def _al2023(root: Path) -> None:
    kit.al2023(root)


def _no_etc_docker(root: Path) -> None:
    kit.al2023(root, daemon_json=None)


def _with_state(root: Path) -> None:
    kit.al2023(root, agent_state=True)
    kit.write(root / "etc/gpuprep/seal.json", '{"gpuprep": "0.0.9", "sealed_at": "2026-01-01T00:00:00Z"}\n')


def _with_gpuprep(root: Path) -> None:
    kit.al2023(root, gpuprep_inside=True)
    kit.write(root / "etc/systemd/system/gpuprep-boot-check.service", "[Unit]\nDescription=an older unit\n")


DJ, EC, SJ, UNIT = ("/etc/docker/daemon.json", "/etc/ecs/ecs.config", "/etc/gpuprep/seal.json",
                    "/etc/systemd/system/gpuprep-boot-check.service")
FAULTS = [
    Fault("daemon-json-write-enospc", "the root volume fills up (docker images, logs) during the edit",
          "write", r"^write\(\d+<[^>]*" + _temp("daemon.json"), "ENOSPC", DJ),
    Fault("daemon-json-write-eio", "an EBS volume failing under the write", "write",
          r"^write\(\d+<[^>]*" + _temp("daemon.json"), "EIO", DJ),
    Fault("daemon-json-write-edquot", "a quota on the image's file system", "write",
          r"^write\(\d+<[^>]*" + _temp("daemon.json"), "EDQUOT", DJ),
    Fault("daemon-json-create-enospc", "no free inodes left: the temp file cannot be created", "openat",
          r'^openat\(.*[/"]\.daemon\.json' + T + r'", O_(WRONLY|RDWR)\|O_CREAT', "ENOSPC", DJ),
    Fault("daemon-json-create-erofs", "the file system was remounted read-only (ext4 errors=remount-ro)", "openat",
          r'^openat\(.*[/"]\.daemon\.json' + T + r'", O_(WRONLY|RDWR)\|O_CREAT', "EROFS", DJ),
    Fault("daemon-json-fsync-eio", "the disk reports the error when the data is flushed", "fsync",
          r"^fsync\(\d+<[^>]*" + _temp("daemon.json"), "EIO", DJ),
    Fault("daemon-json-rename-erofs", "remounted read-only between the write and the rename",
          "rename,renameat,renameat2", r"^rename(at2?)?\(.*" + _renamed_over("daemon.json"), "EROFS", DJ),
    Fault("daemon-json-rename-eio", "an I/O error updating the directory", "rename,renameat,renameat2",
          r"^rename(at2?)?\(.*" + _renamed_over("daemon.json"), "EIO", DJ),
    Fault("daemon-json-dir-fsync-eio", "the directory's flush fails after the rename: old or new, whole",
          "fsync", r"^fsync\(\d+<[^>]*/etc/docker>\)", "EIO", DJ, after=_renamed_over("daemon.json"), renamed=True),
    Fault("daemon-json-backup-write-enospc", "the disk fills while the backup is written", "write",
          r"^write\(\d+<[^>]*" + _backup_temp("daemon.json"), "ENOSPC", DJ),
    Fault("daemon-json-backup-rename-erofs", "read-only before the backup is in place", "rename,renameat,renameat2",
          r"^rename(at2?)?\(.*\.daemon\.json\.gpuprep-\d{8}T\d+Z" + T, "EROFS", DJ),
    Fault("etc-docker-mkdir-enospc", "no room for the new /etc/docker directory", "mkdir,mkdirat",
          r'^mkdir(at)?\(.*[/"]docker",', "ENOSPC", DJ, build=_no_etc_docker, names="docker"),
    Fault("ecs-config-write-enospc", "the volume fills up during the ecs.config edit", "write",
          r"^write\(\d+<[^>]*" + _temp("ecs.config"), "ENOSPC", EC),
    Fault("ecs-config-rename-erofs", "read-only before ecs.config is renamed into place", "rename,renameat,renameat2",
          r"^rename(at2?)?\(.*" + _renamed_over("ecs.config"), "EROFS", EC),
    Fault("ecs-config-fsync-eio", "the flush of ecs.config's data fails", "fsync",
          r"^fsync\(\d+<[^>]*" + _temp("ecs.config"), "EIO", EC),
    Fault("boot-unit-write-enospc", "the volume fills while the boot-check unit is written", "write",
          r"^write\(\d+<[^>]*" + _temp("gpuprep-boot-check.service"), "ENOSPC", UNIT, args=BOOT,
          build=_with_gpuprep),
    Fault("seal-json-write-enospc", "the stamp cannot be written: the disk is full", "write",
          r"^write\(\d+<[^>]*" + _temp("seal.json"), "ENOSPC", SJ, args=SEAL, build=_with_state),
    Fault("seal-json-rename-erofs", "read-only before the stamp is renamed into place", "rename,renameat,renameat2",
          r"^rename(at2?)?\(.*" + _renamed_over("seal.json"), "EROFS", SJ, args=SEAL, build=_with_state),
    Fault("seal-state-unlink-erofs", "the agent's checkpoint cannot be removed: read-only", "unlink,unlinkat",
          r'^unlink(at)?\(.*[/"]agent\.db"', "EROFS", "/var/lib/ecs/data/agent.db", args=SEAL, build=_with_state),
    Fault("seal-state-unlink-eio", "an I/O error removing the agent's checkpoint", "unlink,unlinkat",
          r'^unlink(at)?\(.*[/"]agent\.db"', "EIO", "/var/lib/ecs/data/agent.db", args=SEAL, build=_with_state),
    Fault("lock-pid-write-enospc", "no room even for the run lock's pid", "pwrite64",
          r"^pwrite64\(\d+<[^>]*/gpuprep\.lock>", "ENOSPC", DJ, names="gpuprep.lock"),
]


def _trace(root: Path, args: tuple[str, ...], log: Path, inject: str = "") -> kit.Run:
    prefix = ["strace", "-qq", "-y", "-s", "80", "-o", str(log), "-e", f"trace={TRACED}"]
    if inject:
        prefix += ["-e", inject]
    return kit.gpuprep("--root", str(root), *args, prefix=prefix)


def _calls(log: Path) -> list[str]:
    return [line for line in log.read_text(errors="replace").splitlines() if re.match(r"^[a-z0-9_]+\(", line)]


def _find(calls: list[str], fault: Fault) -> tuple[str, int] | None:
    """(syscall, N): the selected call and its number among the calls of that syscall."""
    seen: dict[str, int] = {}
    armed = fault.after is None
    for line in calls:
        name = line.split("(", 1)[0]
        seen[name] = seen.get(name, 0) + 1
        if not armed:
            armed = re.search(fault.after, line) is not None
            continue
        if name in fault.syscalls.split(",") and re.search(fault.select, line):
            return name, seen[name]
    return None


@pytest.mark.parametrize("fault", [pytest.param(f, id=f.id) for f in FAULTS])
def test_fault(fault: Fault, tmp_path):
    kit.require_strace()
    build = fault.build or _al2023
    template = tmp_path / "template"
    build(template)
    old = kit.snapshot(template)

    probe = tmp_path / "probe"
    shutil.copytree(template, probe, symlinks=True)
    clean = _trace(probe, fault.args, tmp_path / "probe.log")
    assert clean.code == 0, f"the clean run fails:\n{clean}"
    new = kit.snapshot(probe)
    found = _find(_calls(tmp_path / "probe.log"), fault)
    assert found is not None, f"no call matching {fault.select!r} in the clean run's trace"
    syscall, n = found

    tree = tmp_path / "tree"
    shutil.copytree(template, tree, symlinks=True)
    log = tmp_path / "fault.log"
    r = _trace(tree, fault.args, log, inject=f"inject={syscall}:error={fault.errno}:when={n}")
    injected = [line for line in _calls(log) if "(INJECTED)" in line]
    assert len(injected) == 1 and re.search(fault.select, injected[0]), (
        f"the injection did not land on the selected call ({syscall}#{n}): {injected}")

    problems = []
    if r.code not in (1, 2):
        problems.append(f"exit {r.code}, expected 1 or 2")
    problems += kit.error_problems(r)
    name = fault.names or fault.file.rsplit("/", 1)[1]
    if name not in kit.error_line(r):
        problems.append(f"the error does not name {name}: {kit.error_line(r)!r}")
    rel = fault.file.lstrip("/")
    now = kit.snapshot(tree)
    allowed = [old.get(rel)] + ([new.get(rel)] if fault.renamed else [])
    if now.get(rel) not in allowed:
        problems.append(f"{fault.file} changed: {old.get(rel)} -> {now.get(rel)}")
    litter = kit.temp_files(tree)
    if litter:
        problems.append(f"temp files left: {litter}")
    assert not problems, f"{fault.id} ({fault.why}; {syscall}#{n} -> {fault.errno}):\n  " + "\n  ".join(problems) \
        + f"\n{r}"
