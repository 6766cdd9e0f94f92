"""Shared plumbing of the reliability suite: trees, runs of the real CLI, snapshots, figures.

Every run here is a real ``python -m gpuprep`` process (``sys.executable``, this environment's
``PYTHONPATH``), started from ``/`` so that the working directory never shadows the gpuprep that
``PYTHONPATH`` names: ``PYTHONPATH=/tmp/before pytest tests/reliability`` measures an older checkout
with the same suite. ``DOCKER_HOST`` is removed from the environment, so the steps that need a running
Engine report skipped under ``--root`` (docs/contract.md).

The trees are Amazon Linux 2023 roots built from ``tests/fixtures/distros/amzn-2023`` plus the files
the steps read. What is simulated: the image itself (a plain directory tree, not a mounted AMI) and
``ecs.service`` (a stand-in unit file with the ``[Install]`` section ecs-init's has; nothing runs it).
``systemctl --root`` reading its enable links is the real systemd 252.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures"
AL2023 = FIXTURES / "distros" / "amzn-2023"

# gpuprep's atomic-write temp files, ``.NAME.XXXXXXXX.tmp`` (and tempfile.mkstemp's, which the same
# pattern matches): none may be left once a run has completed.
TEMP = re.compile(r".*\.[a-z0-9_]{8}\.tmp")
RUNTIME = "/usr/bin/nvidia-container-runtime"
NO_DOCKER = "stop-ecs,containers,images"
LOCK = "run/lock/gpuprep.lock"

# What an AL2023 build machine's user data typically leaves before gpuprep runs: a daemon.json with
# the user's own settings, an ecs.config naming the cluster.
DAEMON_JSON = (
    b'{\n    "log-driver": "json-file",\n    "log-opts": {"max-size": "10m", "max-file": "3"},\n'
    b'    "runtimes": {"custom": {"path": "/opt/custom/runc-wrapper"}}\n}\n'
)
ECS_CONFIG = b"ECS_CLUSTER=gpu-batch\nECS_AVAILABLE_LOGGING_DRIVERS=[\"json-file\",\"awslogs\"]\n"

ECS_UNIT = """\
# Stand-in for ecs-init's /usr/lib/systemd/system/ecs.service (amazon-ecs-init packaging): only its
# [Install] section matters here, for `systemctl --root is-enabled` and `enable`.
[Unit]
Description=Amazon Elastic Container Service - container agent
After=docker.service
Requires=docker.service

[Service]
Type=simple
ExecStart=/usr/libexec/amazon-ecs-init start

[Install]
WantedBy=multi-user.target
"""


# -- trees ------------------------------------------------------------------------------------
def write(path: Path, data: bytes | str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    path.write_bytes(data)
    return path


def al2023(root: Path, *, daemon_json: bytes | None = DAEMON_JSON, ecs_config: bytes | None = ECS_CONFIG,
           ecs_unit: bool = True, ecs_enabled: bool = True, gpuprep_inside: bool = False,
           agent_state: bool = False) -> Path:
    """An Amazon Linux 2023 root at ``root``: os-release, and what the chosen steps read."""
    shutil.copytree(AL2023, root, symlinks=True)
    if daemon_json is not None:
        write(root / "etc/docker/daemon.json", daemon_json)
    if ecs_config is not None:
        write(root / "etc/ecs/ecs.config", ecs_config)
    if ecs_unit:
        write(root / "usr/lib/systemd/system/ecs.service", ECS_UNIT)
        if ecs_enabled:
            wants = root / "etc/systemd/system/multi-user.target.wants"
            wants.mkdir(parents=True, exist_ok=True)
            os.symlink("/usr/lib/systemd/system/ecs.service", wants / "ecs.service")
    if gpuprep_inside:
        # A gpuprep installed in the image (the boot-check step requires one there); never run here.
        p = write(root / "usr/local/bin/gpuprep", "#!/bin/sh\nexec python3 -m gpuprep \"$@\"\n")
        p.chmod(0o755)
    if agent_state:
        add_agent_state(root)
    return root


def add_agent_state(root: Path) -> None:
    """What a build machine's ECS agent leaves: checkpoints of both formats, task metadata, gpu-info."""
    data = root / "var/lib/ecs/data"
    write(data / "ecs_agent_data.json", '{"Data": {"Cluster": "build", "EC2InstanceID": "i-0build"}}')
    write(data / "agent.db", b"bolt\x00\x01" * 64)
    write(data / "metadata/3f2a/ecs-container-metadata.json", '{"TaskARN": "arn:aws:ecs:task/3f2a"}')
    write(data / "metadata/3f2a/inner/deeper.json", "{}")
    write(root / "var/lib/ecs/gpu/nvidia-gpu-info.json",
          '{"DriverVersion":"580.159.04","GPUIDs":["GPU-0e7d3af2-be49-affe-ae6c-f6fcf358f2ea"]}')


# -- running the CLI ----------------------------------------------------------------------------
@dataclass
class Run:
    argv: list[str]
    code: int | None  # None: killed by the test's timeout (it hung)
    stdout: str
    stderr: str
    seconds: float

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    def __str__(self) -> str:
        return (f"$ {' '.join(self.argv)}\n-> exit {self.code} in {self.seconds:.2f}s\n"
                f"--- stdout\n{self.stdout[-3000:]}\n--- stderr\n{self.stderr[-3000:]}")


def env(**extra: str) -> dict[str, str]:
    e = {k: v for k, v in os.environ.items() if k not in ("DOCKER_HOST", "DOCKER_CONTEXT")}
    e.update(extra)
    return e


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "gpuprep", *args]


def run(argv: Sequence[str], *, timeout: float = 30, prefix: Sequence[str] = ()) -> Run:
    """Run ``argv`` (optionally under ``prefix``, e.g. strace); a run past ``timeout`` is killed."""
    full = [*prefix, *argv]
    started = time.monotonic()
    proc = subprocess.Popen(full, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                            env=env(), cwd="/", start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
        code: int | None = proc.returncode
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, 9)
        out, err = proc.communicate()
        code = None
    return Run(list(full), code, out.decode(errors="replace"), err.decode(errors="replace"),
               time.monotonic() - started)


# Every exit code gpuprep documents (docs/contract.md). SSM Run Command reads 194 as "reboot, then run
# again" (integrations/README.md): every run of the CLI in this suite is checked.
DOCUMENTED_EXIT_CODES = (0, 1, 2, 3)


def gpuprep(*args: str, timeout: float = 30, prefix: Sequence[str] = ()) -> Run:
    """Run the real CLI; a run that exits with a code outside the documented set fails the calling test
    (a run killed by a signal, or by the timeout, exited with no code)."""
    r = run(cli(*args), timeout=timeout, prefix=prefix)
    if r.code is not None and r.code >= 0 and r.code not in DOCUMENTED_EXIT_CODES:
        raise AssertionError(f"exit {r.code} is not a documented exit code (0-3, docs/contract.md)\n{r}")
    return r


def install(root: Path, *args: str, **kw) -> Run:
    return gpuprep("--root", str(root), "install", *args, **kw)


def seal(root: Path, *args: str, **kw) -> Run:
    return gpuprep("--root", str(root), "seal", "--yes", "--skip", NO_DOCKER, *args, **kw)


def error_problems(r: Run, *, want_error: bool = True) -> list[str]:
    """What is wrong with how ``r`` reported itself: the contract is one ``gpuprep: error:`` line and
    a ``gpuprep: hint:`` line on stderr for a failure, never "internal error", never a traceback."""
    problems = []
    if "internal error" in r.output:
        problems.append("says 'internal error'")
    if "Traceback (most recent call last)" in r.output:
        problems.append("prints a traceback")
    if want_error:
        errors = [line for line in r.stderr.splitlines() if line.startswith("gpuprep: error:")]
        if len(errors) != 1:
            problems.append(f"{len(errors)} 'gpuprep: error:' lines on stderr, expected one")
        if not any(line.startswith("gpuprep: hint:") for line in r.stderr.splitlines()):
            problems.append("no 'gpuprep: hint:' line on stderr")
    return problems


def error_line(r: Run) -> str:
    return next((line for line in r.stderr.splitlines() if line.startswith("gpuprep: error:")), "")


# -- looking at trees -------------------------------------------------------------------------
def snapshot(top: Path, *, skip: Iterable[Path] = ()) -> dict[str, tuple]:
    """Every entry under ``top`` (links not followed): kind, mode, content hash or link target."""
    skipped = {str(p) for p in skip}
    out: dict[str, tuple] = {}
    if not os.path.lexists(top):
        return out
    for dirpath, dirnames, filenames in os.walk(top):
        if dirpath in skipped:
            dirnames[:] = []
            continue
        dirnames[:] = [d for d in dirnames if os.path.join(dirpath, d) not in skipped]
        for name in [*dirnames, *filenames]:
            p = os.path.join(dirpath, name)
            if p in skipped:
                continue
            st = os.lstat(p)
            rel = os.path.relpath(p, top)
            if stat.S_ISLNK(st.st_mode):
                out[rel] = ("link", os.readlink(p))
            elif stat.S_ISREG(st.st_mode):
                with open(p, "rb") as f:
                    out[rel] = ("file", stat.S_IMODE(st.st_mode), hashlib.sha256(f.read()).hexdigest())
            elif stat.S_ISDIR(st.st_mode):
                out[rel] = ("dir", stat.S_IMODE(st.st_mode))
            else:
                out[rel] = ("other", stat.S_IFMT(st.st_mode))
        # os.walk lists links to directories among dirnames but does not descend them: right.
    return out


def diff(before: dict[str, tuple], after: dict[str, tuple]) -> list[str]:
    lines = []
    for k in sorted(set(before) | set(after)):
        if before.get(k) != after.get(k):
            lines.append(f"{k}: {before.get(k, 'absent')} -> {after.get(k, 'absent')}")
    return lines


def without_lock(snap: dict[str, tuple], before: dict[str, tuple] | None = None) -> dict[str, tuple]:
    """``snap`` less gpuprep's own run lock (``/run/lock/gpuprep.lock``, empty between runs) and the
    ``/run/lock`` folders made to hold it, where ``before`` did not have them: a lock must exist to be
    held, and /run is a tmpfs at boot, so it never reaches an instance."""
    before = before or {}
    out = dict(snap)
    for k in (LOCK, "run/lock", "run"):
        if k not in before and k in out:
            if k == LOCK and out[k][0] == "file" and out[k][2] != hashlib.sha256(b"").hexdigest():
                continue  # a lock file left holding a pid is a change
            del out[k]
    return out


def absolute_link_targets(top: Path, *, beside: Path | None = None) -> list[str]:
    """The absolute targets of the links under ``top`` (normalised), less those under ``beside``: the
    paths of this machine that a resolution outside the root would touch."""
    found = []
    for dirpath, dirnames, filenames in os.walk(top):
        for name in [*dirnames, *filenames]:
            p = os.path.join(dirpath, name)
            if os.path.islink(p):
                target = os.readlink(p)
                if target.startswith("/"):
                    target = os.path.normpath(target)
                    if beside is None or not target.startswith(str(beside) + "/"):
                        found.append(target)
    return sorted(set(found))


def _hash(p: str) -> str:
    try:
        with open(p, "rb") as f:
            return hashlib.sha256(f.read()).hexdigest()
    except OSError as exc:
        return f"unreadable: {exc.strerror}"


def guard_host(paths: Iterable[str]) -> dict[str, tuple]:
    """What ``paths`` of this machine are now: for each, its content (or listing), or the first
    missing component on the way to it, which no run may create."""
    state: dict[str, tuple] = {}
    for p in paths:
        if os.path.lexists(p):
            state[p] = ("exists", snapshot(Path(p)) if os.path.isdir(p) else _hash(p))
            continue
        top = p
        while not os.path.lexists(os.path.dirname(top)) and os.path.dirname(top) != top:
            top = os.path.dirname(top)
        state[p] = ("absent", top)
    return state


def host_changes(state: dict[str, tuple]) -> list[str]:
    """What changed on this machine since ``guard_host``; a path a run created is removed again (this is
    the build machine: a wrong resolution must not leave anything behind)."""
    problems = []
    for p, (kind, what) in state.items():
        if kind == "absent":
            if os.path.lexists(what):
                problems.append(f"created {what} on this machine (outside the root)")
                if os.path.isdir(what) and not os.path.islink(what):
                    shutil.rmtree(what)
                else:
                    os.unlink(what)
        elif (snapshot(Path(p)) if os.path.isdir(p) else _hash(p)) != what:
            problems.append(f"changed {p} on this machine (outside the root)")
    return problems


def temp_files(top: Path) -> list[str]:
    found = []
    for dirpath, dirnames, filenames in os.walk(top):
        for name in [*filenames, *dirnames]:
            if TEMP.fullmatch(name):
                found.append(os.path.relpath(os.path.join(dirpath, name), top))
    return sorted(found)


def make_fifo(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    os.mkfifo(path)
    return path


def make_socket(path: Path) -> Path:
    """A bound unix socket's node (the socket is closed; the node stays, as after a crashed daemon)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.bind(str(path))
    finally:
        s.close()
    return path


def require_strace() -> None:
    from conftest import require

    require("strace")


def gpuprep_source() -> str:
    """Which gpuprep the runs use (``PYTHONPATH`` decides): for the figures' header."""
    proc = subprocess.run(cli("--version"), capture_output=True, text=True, env=env(), cwd="/", timeout=30)
    where = subprocess.run([sys.executable, "-c", "import gpuprep, os; print(os.path.dirname(gpuprep.__file__))"],
                           capture_output=True, text=True, env=env(), cwd="/", timeout=30)
    return f"{proc.stdout.strip()} from {where.stdout.strip()}"


# -- figures ----------------------------------------------------------------------------------
# label -> [ok, total, failures, noun]: points counted inside a test (kill points, race rounds).
FIGURES: dict[str, list] = {}


def figure(label: str, ok: int, total: int, failures: Iterable[str] = (), noun: str = "") -> str:
    """Add to the inner figure ``label`` (printed at the end of the module); its line so far."""
    entry = FIGURES.setdefault(label, [0, 0, [], noun])
    entry[0] += ok
    entry[1] += total
    entry[2].extend(failures)
    line = f"{label}: {entry[0]}/{entry[1]} {noun}".rstrip()
    print(line)
    return line


def _say(config, lines: list[str]) -> None:
    """Print past pytest's capture, so the figure shows with -q too."""
    capman = config.pluginmanager.get_plugin("capturemanager")
    tr = config.pluginmanager.get_plugin("terminalreporter")
    with capman.global_and_fixture_disabled() if capman is not None else contextlib.nullcontext():
        if tr is not None:
            tr.ensure_newline()
            for line in lines:
                tr.write_line(line)
        else:
            print("\n".join(lines))


def module_figure(label: str, noun: str, inner: Sequence[str] = ()):
    """A module-scoped autouse fixture printing the module's figure when its last test is done: the
    test cases of the module that passed out of those run (``label: X/Y noun``), then each inner
    figure named in ``inner``, then the ids of what failed. A case marked xfail (a known gap) counts
    as run and not passed, and is listed as such: a figure never hides a failing case."""
    import pytest

    @pytest.fixture(scope="module", autouse=True)
    def _figure(request):
        for name in inner:
            FIGURES.pop(name, None)
        yield
        prefix = request.node.nodeid + "::"
        tr = request.config.pluginmanager.get_plugin("terminalreporter")
        passed, failed, known = set(), set(), set()
        for key in ("passed", "xpassed", "failed", "error", "xfailed"):
            for rep in (tr.stats.get(key, []) if tr is not None else []):
                nodeid = getattr(rep, "nodeid", "")
                if not nodeid.startswith(prefix):
                    continue
                if key in ("passed", "xpassed"):
                    if rep.when == "call":
                        passed.add(nodeid)
                elif key == "xfailed":
                    known.add(nodeid)
                else:
                    failed.add(nodeid)
        known -= failed
        passed -= failed | known
        lines = [f"{label}: {len(passed)}/{len(passed) + len(failed) + len(known)} {noun}"]
        for name in inner:
            if name in FIGURES:
                ok, total, failures, inner_noun = FIGURES[name]
                lines.append(f"{name}: {ok}/{total} {inner_noun}".rstrip())
                lines += [f"    not {inner_noun or 'ok'}: {f}" for f in failures]
        lines += [f"    failed: {n[len(prefix):]}" for n in sorted(failed)]
        lines += [f"    failing, marked xfail: {n[len(prefix):]}" for n in sorted(known)]
        _say(request.config, lines)

    return _figure
