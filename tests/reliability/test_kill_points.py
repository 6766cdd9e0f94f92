"""kill -9 at every syscall that changes the tree: each file is old or new, and a second run cleans up.

strace (Debian's, 6.1) runs the real CLI and delivers SIGKILL at the N-th call of one syscall:
``strace -qq -o /dev/null -e trace=SYSCALL -e inject=SYSCALL:signal=SIGKILL:when=N``, for N = 1, 2, ...
until a run completes without reaching it. (``-e trace=none`` is not used: strace 6.1 injects only
into syscalls it traces.) Each kill is a "point". After it:

(a) every file of the tree holds its old content or the content an uninterrupted run gives it, a
    backup (``NAME.gpuprep-<stamp>``) holds the old content whole, and no file that an uninterrupted
    run keeps is missing; gpuprep's temp files may be left;
(b) the same command run again without injection exits 0, leaves no file matching
    ``.*\\.[a-z0-9_]{8}\\.tmp`` anywhere in the tree, and its result equals an uninterrupted run's (backup
    stamps and seal.json's ``sealed_at`` aside: a killed run may leave one more backup of the same old
    file, which is never wrong).

What is covered, and why (the module must stay under about 3 minutes on 2 cores; it takes about one):
- ``install --only docker-runtime,ecs-config`` on an AL2023 tree whose daemon.json and ecs.config have
  the user's content: the two edits that must never lose a user's settings (backup, temp file, fsync,
  rename, directory fsync, twice each), and the run lock.
- the same on a tree with neither file nor /etc/docker, /etc/ecs, /run/lock: directory creation.
- the same with ``boot-check``: the unit file, then ``systemctl --root enable`` (a kill between the two).
- ``seal --yes --skip stop-ecs,containers,images`` on a tree with agent state in both checkpoint
  formats, task metadata (a directory tree), gpu-info and an old seal.json: removals and the stamp.
  The Docker steps need an Engine (none under --root without DOCKER_HOST), stop-ecs a running system.
  With ``--deep`` too: cloud-init state, host keys, authorized_keys, machine-id and logs truncated in place.
- syscalls: rename, renameat, renameat2, unlink, unlinkat, rmdir, write, fsync, fchmod, mkdir, mkdirat,
  ftruncate, pwrite64: every call by which Python changes a tree (os.replace/os.rename, os.unlink,
  os.rmdir, os.write, os.fsync, os.fchmod, os.mkdir, the lock file's truncate and pid). ``openat`` with
  O_CREAT is left out: it cannot be told apart by N from the hundreds of read-only openat calls, and a
  kill right after it is the same state as a kill at the first write of the file, which is covered.
  Syscalls a command never makes cost one run each (the run that completes).

Only gpuprep's own process is traced (no ``-f``): strace counts calls per tracee, so with ``-f`` the
``systemctl`` and ``rpm`` that gpuprep runs would be killed at their own N-th write too, which tests
those programs, not gpuprep. gpuprep makes these changes from its main thread.

Simulated: the image (a plain directory tree) and ecs.service (a stand-in unit, already enabled).
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import pytest
import reliability_kit as kit

_figure = kit.module_figure("kill -9 point tests", "passed", inner=("kill -9 points",))

SYSCALLS = ("rename", "renameat", "renameat2", "unlink", "unlinkat", "rmdir", "write", "fsync", "fchmod",
            "mkdir", "mkdirat", "ftruncate", "pwrite64")
MAX_N = 200  # no command here makes this many calls of one of them
BACKUP = re.compile(r"(.+)\.gpuprep-\d{8}T\d+Z")
SEAL_JSON = "etc/gpuprep/seal.json"
INSTALL = ("--json", "install", "--only", "docker-runtime,ecs-config", "--runtime-path", kit.RUNTIME)
SEAL = ("--json", "seal", "--yes", "--skip", kit.NO_DOCKER)


def _tree_edit(root: Path) -> None:
    kit.al2023(root)
    kit.write(root / kit.LOCK, b"")


def _tree_create(root: Path) -> None:
    kit.al2023(root, daemon_json=None, ecs_config=None)


def _tree_boot_check(root: Path) -> None:
    kit.al2023(root, gpuprep_inside=True)


def _tree_seal(root: Path) -> None:
    kit.al2023(root, agent_state=True)
    kit.write(root / SEAL_JSON, json.dumps({"gpuprep": "0.0.9", "sealed_at": "2026-01-01T00:00:00Z",
                                            "platform": {"id": "amzn"}}, indent=2) + "\n")


def _tree_deep(root: Path) -> None:
    _tree_seal(root)
    kit.write(root / "var/lib/cloud/instances/i-0build/user-data.txt", "#!/bin/sh\ngpuprep install\n")
    kit.write(root / "etc/ssh/ssh_host_ed25519_key", "-----BEGIN OPENSSH PRIVATE KEY-----\n")
    kit.write(root / "home/ec2-user/.ssh/authorized_keys", "ssh-ed25519 AAAA builder\n")
    kit.write(root / "etc/machine-id", "0123456789abcdef0123456789abcdef\n")
    kit.write(root / "var/log/messages", "a live log: truncated in place\n")
    kit.write(root / "var/log/cloud-init-output.log", "gpuprep: ...\n")
    kit.write(root / "var/log/messages-20261201.gz", "rotated")


SCENARIOS = {
    "install-edit": (_tree_edit, INSTALL),
    "install-create": (_tree_create, INSTALL),
    # the unit file and its enable links (systemctl --root, not traced: see above)
    "install-boot-check": (_tree_boot_check, ("--json", "install", "--only", "docker-runtime,ecs-config,boot-check",
                                              "--runtime-path", kit.RUNTIME)),
    "seal": (_tree_seal, SEAL),
    "seal-deep": (_tree_deep, (*SEAL, "--deep")),
}


def _seal_doc(tree: Path) -> dict | None:
    try:
        doc = json.loads((tree / SEAL_JSON).read_text())
    except (OSError, ValueError):
        return None
    doc.pop("sealed_at", None)
    return doc


def result(tree: Path) -> dict:
    """What a completed run leaves, stamps aside: backups as the set of their contents per file."""
    out: dict = {}
    for rel, entry in kit.snapshot(tree).items():
        m = BACKUP.fullmatch(rel)
        if m:
            out.setdefault(m.group(1) + ".gpuprep-*", set()).add(entry)
        elif rel == SEAL_JSON and entry[0] == "file":
            out[rel] = (entry[:2], _seal_doc(tree))
        else:
            out[rel] = entry
    return out


def torn(old: dict, new: dict, tree: Path, new_seal: dict | None) -> list[str]:
    """(a): what in ``tree`` (just killed) is neither the old state ``old`` nor the new ``new``."""
    now = kit.snapshot(tree)
    problems = []
    for rel, entry in now.items():
        name = os.path.basename(rel)
        if entry[0] == "dir" or kit.TEMP.fullmatch(name) or rel == kit.LOCK:
            continue  # litter is (b)'s business; the lock holds the killed run's pid
        m = BACKUP.fullmatch(rel)
        if m:
            if entry != old.get(m.group(1)):
                problems.append(f"{rel}: a backup that is not the old {m.group(1)} whole")
        elif rel == SEAL_JSON and entry != old.get(rel):
            if _seal_doc(tree) != new_seal:
                problems.append(f"{rel}: neither the old stamp nor the new one")
        elif entry not in (old.get(rel), new.get(rel)):
            problems.append(f"{rel}: neither its old nor its new content")
    for rel, entry in old.items():
        if entry[0] != "dir" and rel not in now and rel in new and not BACKUP.fullmatch(rel):
            problems.append(f"{rel}: missing (an uninterrupted run keeps it)")
    return problems


def _strace(syscall: str, n: int) -> list[str]:
    return ["strace", "-qq", "-o", "/dev/null", "-e", f"trace={syscall}",
            "-e", f"inject={syscall}:signal=SIGKILL:when={n}"]


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_kill_points(scenario, tmp_path):
    kit.require_strace()
    build, args = SCENARIOS[scenario]
    template = tmp_path / "template"
    build(template)
    old = kit.snapshot(template)

    baseline = tmp_path / "baseline"
    shutil.copytree(template, baseline, symlinks=True)
    r = kit.gpuprep("--root", str(baseline), *args)
    assert r.code == 0, f"the uninterrupted run fails:\n{r}"
    new, want, new_seal = kit.snapshot(baseline), result(baseline), _seal_doc(baseline)

    points, recovered, failures = 0, 0, []
    per_syscall: dict[str, int] = {}
    for syscall in SYSCALLS:
        for n in range(1, MAX_N + 1):
            tree = tmp_path / f"{syscall}-{n}"
            shutil.copytree(template, tree, symlinks=True)
            killed = kit.gpuprep("--root", str(tree), *args, prefix=_strace(syscall, n))
            if killed.code != -9:  # completed without reaching the N-th call: no point here
                if killed.code != 0 or result(tree) != want:
                    failures.append(f"{syscall}#{n}: the run under strace that was not killed differs: "
                                    f"exit {killed.code} {kit.error_line(killed)}")
                shutil.rmtree(tree)
                break
            points += 1
            per_syscall[syscall] = per_syscall.get(syscall, 0) + 1
            problems = torn(old, new, tree, new_seal)
            again = kit.gpuprep("--root", str(tree), *args)
            if again.code != 0:
                problems.append(f"the second run exits {again.code}: {kit.error_line(again)}")
            problems += kit.error_problems(again, want_error=False)
            litter = kit.temp_files(tree)
            if litter:
                problems.append(f"temp files left after the second run: {litter}")
            got = result(tree)
            if got != want:
                problems.append("result differs from an uninterrupted run's: "
                                + "; ".join(kit.diff({k: str(v) for k, v in want.items()},
                                                     {k: str(v) for k, v in got.items()})[:4]))
            if problems:
                failures.append(f"{scenario} {syscall}#{n}: " + "; ".join(problems))
            else:
                recovered += 1
                shutil.rmtree(tree)
        else:
            failures.append(f"{syscall}: still killed at N={MAX_N}")
    kit.figure("kill -9 points", recovered, points, failures, noun="recovered")
    print(f"{scenario}: points per syscall {per_syscall}")
    assert points > 0, "no kill point was reached: is strace injecting?"
    assert recovered == points and not failures, (
        f"kill -9 points ({scenario}): {recovered}/{points} recovered\n  " + "\n  ".join(failures[:20]))
