"""Runs at the same time on one root: the run lock serialises them, nothing is lost, nothing crashes.

Real processes throughout: two ``python -m gpuprep`` at once on one Amazon Linux 2023 tree, as two SSM
Run Command invocations (or a retried Packer provisioner) on one build machine would start them. The
lock is ``/run/lock/gpuprep.lock`` inside the root, an exclusive ``flock`` held for the whole run
(``gpuprep.host.LOCK_PATH``); in the lock tests this test process holds it, as another gpuprep would.

Some rounds widen the race on purpose: one of the two runs goes under strace with a 300 ms delay at its
first fsync (``-e inject=fsync:delay_enter=300ms:when=1``), so it holds the lock (or, without one,
sits between reading and writing daemon.json) while the other starts. That is the only simulated
thing here: a slow disk.
"""

from __future__ import annotations

import fcntl
import json
import os
import random
import shutil
import subprocess
import threading
import time
from pathlib import Path

import pytest
import reliability_kit as kit

_figure = kit.module_figure("concurrency cases", "held", inner=("install races", "seal races"))

ROUNDS = 10
SLOW = ["strace", "-qq", "-o", "/dev/null", "-e", "trace=fsync", "-e", "inject=fsync:delay_enter=300ms:when=1"]


def _start(argv: list[str]) -> subprocess.Popen:
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                            env=kit.env(), cwd="/", text=True)


def _together(argvs: list[list[str]], timeout: float = 60) -> list[tuple[int | None, str, str, float]]:
    """Start every argv at once; (exit code, stdout, stderr, monotonic time it exited) for each."""
    procs = [_start(a) for a in argvs]
    done: list = [None] * len(procs)

    def wait(i: int, p: subprocess.Popen) -> None:
        try:
            out, err = p.communicate(timeout=timeout)
            done[i] = (p.returncode, out, err, time.monotonic())
        except subprocess.TimeoutExpired:
            p.kill()
            out, err = p.communicate()
            done[i] = (None, out, err, time.monotonic())

    threads = [threading.Thread(target=wait, args=(i, p)) for i, p in enumerate(procs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return done


def _problems_of(name: str, code, out: str, err: str) -> list[str]:
    problems = []
    if code != 0:
        problems.append(f"{name} exits {code}: " + next((x for x in err.splitlines() if "error:" in x), err[-200:]))
    if "internal error" in out + err:
        problems.append(f"{name} says internal error")
    if "Traceback (most recent call last)" in out + err:
        problems.append(f"{name} prints a traceback")
    return problems


def test_two_installs_at_once(tmp_path):
    """Ten rounds of two ``install --only docker-runtime`` at once on one root, daemon.json reset to the
    user's file (plus a key of the round's own) before each: A registers /opt/a/... and makes nvidia the
    default, B registers /opt/b/... with ``--no-default-runtime`` (it leaves the default as it finds it).
    Serialised, the file ends with the runtime path of the run that finished last, nvidia as the default
    (A's, which B keeps) and every key of the user's. A lost update (B writing over A from a stale read)
    loses the default; a torn write loses everything."""
    root = kit.al2023(tmp_path / "root")
    rng = random.Random(20261203)
    a_path, b_path = "/opt/a/nvidia-container-runtime", "/opt/b/nvidia-container-runtime"
    ok, failures, waited = 0, [], 0
    for rnd in range(ROUNDS):
        user = json.loads(kit.DAEMON_JSON)
        user["labels"] = [f"round={rnd}"]
        (root / "etc/docker/daemon.json").write_text(json.dumps(user, indent=4) + "\n")
        a = kit.cli("--root", str(root), "install", "--only", "docker-runtime", "--runtime-path", a_path)
        b = kit.cli("--root", str(root), "install", "--only", "docker-runtime", "--runtime-path", b_path,
                    "--no-default-runtime")
        if rnd % 2:
            kit.require_strace()
            if rng.random() < 0.5:
                a = SLOW + a
            else:
                b = SLOW + b
        order = [("A", a, a_path), ("B", b, b_path)]
        if rnd % 4 >= 2:
            order.reverse()  # who is started first alternates too
        results = _together([argv for _, argv, _ in order])
        problems = []
        for (name, _, _), (code, out, err, _) in zip(order, results):
            problems += _problems_of(name, code, out, err)
            waited += "waiting up to" in err
        last = max(range(2), key=lambda i: results[i][3])
        try:
            doc = json.loads((root / "etc/docker/daemon.json").read_text())
        except ValueError as exc:
            problems.append(f"daemon.json is not JSON any more: {exc}")
            doc = {}
        want_path = order[last][2]
        got_path = (doc.get("runtimes") or {}).get("nvidia", {}).get("path")
        if doc and got_path != want_path:
            problems.append(f"runtime path {got_path}, expected {want_path} ({order[last][0]} finished last)")
        if doc and doc.get("default-runtime") != "nvidia":
            problems.append(f"default-runtime {doc.get('default-runtime')!r}: A's setting was lost")
        for key in ("log-driver", "log-opts", "labels"):
            if doc and doc.get(key) != user[key]:
                problems.append(f"the user's {key} was lost or changed: {doc.get(key)!r}")
        if doc and (doc.get("runtimes") or {}).get("custom") != user["runtimes"]["custom"]:
            problems.append("the user's runtime 'custom' was lost")
        litter = kit.temp_files(root)
        if litter:
            problems.append(f"temp files left: {litter}")
        if problems:
            failures.append(f"round {rnd}: " + "; ".join(problems))
        else:
            ok += 1
    kit.figure("install races", ok, ROUNDS, failures, noun=f"rounds clean ({waited} runs waited for the lock)")
    assert not failures, "\n".join(failures)
    assert waited > 0, "no run ever waited for the other: the runs never overlapped, or nothing serialises them"


def test_two_seals_at_once(tmp_path):
    """Five rounds of two ``seal --yes`` at once on a root with agent state (re-made before each round):
    both exit 0 (the second finds the state gone), neither says "internal error", the state is gone and
    seal.json is whole."""
    root = kit.al2023(tmp_path / "root")
    rounds, ok, failures = 5, 0, []
    for rnd in range(rounds):
        shutil.rmtree(root / "var/lib/ecs", ignore_errors=True)
        kit.add_agent_state(root)
        for i in range(200):  # enough task metadata that the removals of the two would overlap
            kit.write(root / f"var/lib/ecs/data/metadata/task{i}/ecs-container-metadata.json", "{}")
        argv = kit.cli("--root", str(root), "seal", "--yes", "--skip", kit.NO_DOCKER)
        results = _together([argv, argv])
        problems = []
        for i, (code, out, err, _) in enumerate(results):
            problems += _problems_of(f"seal {i + 1}", code, out, err)
        if os.listdir(root / "var/lib/ecs/data"):
            problems.append(f"agent state left: {os.listdir(root / 'var/lib/ecs/data')[:5]}")
        try:
            json.loads((root / "etc/gpuprep/seal.json").read_text())
        except (OSError, ValueError) as exc:
            problems.append(f"seal.json not whole: {exc}")
        if kit.temp_files(root):
            problems.append(f"temp files left: {kit.temp_files(root)}")
        if problems:
            failures.append(f"round {rnd}: " + "; ".join(problems))
        else:
            ok += 1
    kit.figure("seal races", ok, rounds, failures, noun="rounds clean")
    assert not failures, "\n".join(failures)


class HeldLock:
    """This test process holding the target's run lock, as another gpuprep run would (pid in the file)."""

    def __init__(self, root: Path) -> None:
        path = root / kit.LOCK
        path.parent.mkdir(parents=True, exist_ok=True)
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        fcntl.flock(self.fd, fcntl.LOCK_EX)
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, f"{os.getpid()} gpuprep install\n".encode(), 0)

    def release(self) -> None:
        if self.fd is not None:
            os.ftruncate(self.fd, 0)
            os.close(self.fd)
            self.fd = None


@pytest.fixture
def held(tmp_path):
    root = kit.al2023(tmp_path / "root")
    lock = HeldLock(root)
    yield root, lock
    lock.release()


def test_lock_wait_gives_up_naming_the_holder(held):
    """``--lock-wait 1`` while another run holds the lock: exit 1 within about 2 s, one error line naming
    the holder's pid and a hint; daemon.json untouched."""
    root, _ = held
    before = kit.snapshot(root)
    r = kit.gpuprep("--root", str(root), "--lock-wait", "1", "install", "--only", "docker-runtime",
                    "--runtime-path", kit.RUNTIME)
    problems = kit.error_problems(r)
    if r.code != 1:
        problems.append(f"exit {r.code}, expected 1")
    if r.seconds > 20:  # a generous bound on a busy machine: what it catches is a run that ignores --lock-wait
        problems.append(f"took {r.seconds:.1f}s, where --lock-wait 1 bounds the wait")
    if str(os.getpid()) not in kit.error_line(r):
        problems.append(f"the error does not name the holder (pid {os.getpid()}): {kit.error_line(r)!r}")
    if kit.diff(before, kit.snapshot(root)):
        problems.append("the tree changed: " + "; ".join(kit.diff(before, kit.snapshot(root))[:4]))
    assert not problems, "\n".join(problems) + f"\n{r}"


def test_a_run_waits_for_the_lock_then_proceeds(held):
    """The holder lets go once the run has said it waits (its own line on stderr, the event the test watches:
    a timer raced a slow start on a busy machine, issue 23): a run with ``--lock-wait 60`` says once whom it
    waits for, then does its work and exits 0."""
    root, lock = held
    argv = kit.cli("--root", str(root), "--lock-wait", "60", "install", "--only", "docker-runtime",
                   "--runtime-path", kit.RUNTIME)
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=kit.env(),
                            cwd="/", stdin=subprocess.DEVNULL)
    err: list[str] = []
    released = False
    for line in proc.stderr:
        err.append(line)
        if "waiting up to" in line and not released:
            lock.release()
            released = True
    out = proc.stdout.read()
    r = kit.Run(argv, proc.wait(timeout=120), out, "".join(err), 0.0)
    problems = kit.error_problems(r, want_error=False)
    if r.code != 0:
        problems.append(f"exit {r.code}, expected 0")
    waits = [x for x in r.stderr.splitlines() if "waiting up to" in x]
    if len(waits) != 1 or str(os.getpid()) not in waits[0]:
        problems.append(f"expected one line saying it waits for pid {os.getpid()}: {waits}")
    if not released:
        problems.append("it never said it waits for the lock")
    if "nvidia" not in (root / "etc/docker/daemon.json").read_text():
        problems.append("daemon.json was not changed after the wait")
    assert not problems, "\n".join(problems) + f"\n{r}"


@pytest.mark.parametrize("args", [
    ("install", "--dry-run", "--only", "docker-runtime,ecs-config", "--runtime-path", kit.RUNTIME),
    ("seal", "--dry-run", "--yes", "--skip", kit.NO_DOCKER),
    ("doctor", "--no-container"),
], ids=["install-dry-run", "seal-dry-run", "doctor"])
def test_read_only_runs_do_not_wait(held, args):
    """A dry run (and doctor) changes nothing and waits for nobody: with the lock held and the default
    --lock-wait of 120 s it is done within a few seconds and leaves the tree as it was."""
    root, _ = held
    kit.add_agent_state(root)
    before = kit.snapshot(root)
    r = kit.gpuprep("--root", str(root), *args, timeout=20)
    problems = kit.error_problems(r, want_error=False)
    if r.code is None or r.seconds > 5:
        problems.append(f"took {r.seconds:.1f}s (exit {r.code}): it waited for the lock")
    elif r.code not in ((0, 1, 2, 3) if args[0] == "doctor" else (0,)):
        problems.append(f"exit {r.code}")
    if "waiting up to" in r.stderr:
        problems.append("it says it waits for the lock")
    changed = kit.diff(before, kit.snapshot(root))
    if changed:
        problems.append("the tree changed: " + "; ".join(changed[:4]))
    assert not problems, "\n".join(problems) + f"\n{r}"
