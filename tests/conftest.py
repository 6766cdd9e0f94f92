"""Shared test plumbing.

- ``require(*commands)``: skip a test whose real component is missing, saying which.
- Under ``CI=true`` a skipped integration, system or reliability test is a failure: CI must prove them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
FIXTURES = REPO / "tests" / "fixtures"
sys.path.insert(0, str(REPO / "tests"))

IN_CI = os.environ.get("CI", "").lower() == "true"


def require(*commands: str) -> None:
    """Skip the calling test unless every command is on PATH (and we are root where it matters)."""
    missing = [c for c in commands if shutil.which(c) is None]
    if missing:
        pytest.skip(f"needs {', '.join(missing)} (run `make provision` as root)")


# Engine 26.1.5 (Debian trixie's docker.io and its containerd, runc, tini), unpacked by tests/provision.sh.
from testbed import ENGINE26, ENGINES  # noqa: E402


def require_engine26() -> Path:
    """The unpacked Engine 26 tree (``usr/sbin/dockerd`` in it), or skip saying how to get it."""
    if not os.access(ENGINE26 / "usr/sbin/dockerd", os.X_OK):
        pytest.skip(f"needs Engine 26 in {ENGINE26} (run `make provision` as root)")
    return ENGINE26


def require_toolkit(version: str = "") -> Path:
    """The folder of NVIDIA's real toolkit ``version`` (tests/testbed.py ``TOOLKIT_VERSION`` by default), or skip
    saying how to get it."""
    from testbed import TOOLKIT_VERSION, toolkit_bin, toolkit_missing

    missing = toolkit_missing(version or TOOLKIT_VERSION)
    if missing:
        pytest.skip(missing)
    return toolkit_bin(version or TOOLKIT_VERSION)


def require_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root (private dockerd, installroots, nspawn)")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if not IN_CI or not report.skipped or hasattr(report, "wasxfail"):
        return  # an expected failure (xfail) is not a missing component
    parts = Path(str(item.fspath)).parts
    if "integration" in parts or "system" in parts or "reliability" in parts:
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = f"CI=true: integration/system/reliability test skipped, which CI does not allow: {reason}"


@pytest.fixture
def fixtures() -> Path:
    return FIXTURES


# -- a private real dockerd and the simulated GPU side (tests/testbed.py) -------------------
@pytest.fixture(params=list(ENGINES))
def docker_engine(request):
    """Each Engine in turn (tests/testbed.py ``ENGINES``): a test that asks for it runs on 20.10, 26 and 28, and
    its ``dockerd_factory`` starts that Engine. Asked only where the Engine's behaviour matters."""
    require_root()
    engine = ENGINES[request.param]
    missing = engine.available()
    if missing:
        pytest.skip(f"Engine {engine.name}: {missing}")
    return engine


@pytest.fixture
def dockerd_factory(request):
    """Start private dockerds (real Engine, own socket/folders); all are stopped and removed after. The Engine
    is ``docker_engine``'s where the test asks for it, else Debian 12's 20.10."""
    require_root()
    require("dockerd", "runc", "containerd")
    from testbed import PrivateDockerd

    engine = request.getfixturevalue("docker_engine") if "docker_engine" in request.fixturenames else None
    started: list = []

    def make(config_path: Path | None = None, config: dict | None = None, start: bool = True, engine_id: str = "",
             args: tuple[str, ...] = (), path_dirs: tuple[str, ...] = ()):
        if engine_id:  # a test of what one Engine alone has (CDI: 25+)
            chosen = ENGINES[engine_id]
            if chosen.available():
                pytest.skip(f"Engine {chosen.name}: {chosen.available()}")
        chosen = ENGINES[engine_id] if engine_id else (engine or ENGINES["20.10"])
        if config is not None and "cdi-spec-dirs" not in config and "fake_gpu" in request.fixturenames \
                and chosen.major >= 25:
            # Docker's CDI (on by default from 28.2) reads the spec the nvidia runtime reads, as on a host where both
            # read /var/run/cdi: the test's own, never this machine's /etc/cdi and /var/run/cdi.
            spec_dir = request.getfixturevalue("fake_gpu")["nvidia"].spec.parent
            config = {**config, "cdi-spec-dirs": [str(spec_dir)]}
        d = PrivateDockerd(config_path=config_path, config=config, engine=chosen, args=args, path_dirs=path_dirs)
        started.append(d)
        return d.start() if start else d

    yield make
    for d in started:
        d.cleanup()


@pytest.fixture
def fake_gpu(tmp_path):
    """The GPU side: NVIDIA's REAL nvidia-container-runtime (tests/testbed.py ``write_nvidia_runtime``: cdi mode, a
    config.toml and a CDI spec of this test's own) and the STAND-INS for what this machine lacks (no GPU, no driver):
    character devices for /dev/nvidiactl and /dev/nvidiaN, and an nvidia-smi that fails as the real one does without
    /dev/nvidiactl. ``runtime`` is the path to register as the ``nvidia`` runtime."""
    from testbed import write_fake_nvidia_smi, write_nvidia_runtime

    require_root()
    require_toolkit()
    d = Path(tempfile.mkdtemp(prefix="gpf-", dir="/tmp"))
    smi = write_fake_nvidia_smi(d / "nvidia-smi", needs_nodes=("/dev/nvidiactl",))
    runtime = write_nvidia_runtime(d / "nvidia", smi)
    yield {"dir": d, "smi": smi, "runtime": runtime.path, "nvidia": runtime}
    shutil.rmtree(d, ignore_errors=True)


# -- tests/unit: no unexpected program or signal --------------------------------------------------
# As cloud-init's ``disable_subp_usage`` fixture does: in tests/unit every process start
# (``subprocess.Popen._execute_child``, which ``subprocess.run``, ``Host.run`` and ``Host.spawn`` all reach) and
# every ``os.kill`` fails the test unless the test (or its module, through ``pytestmark``) names the program
# with ``@pytest.mark.allow_subp("rpm", ...)`` or allows signals with ``@pytest.mark.allow_signals``. A unit
# test that starts ``systemctl`` on the build machine by accident fails instead of acting on it.
def pytest_configure(config):
    config.addinivalue_line("markers", "allow_subp(*programs): programs (basenames) this unit test may start")
    config.addinivalue_line("markers", "allow_signals: this unit test may send signals (os.kill)")

@pytest.fixture(autouse=True)
def shipped_knowledge():
    """Each test starts from the shipped knowledge tables: an in-process command's target (its knowledge.d) is
    not the next test's."""
    from gpuprep import knowledge

    knowledge.reset()
    yield
    knowledge.reset()


@pytest.fixture(autouse=True)
def disable_subp_usage(request, monkeypatch):
    """In tests/unit only: no program started and no signal sent that the test did not ask for."""
    if "unit" not in Path(str(request.node.fspath)).parts:
        return
    allowed = {name for mark in request.node.iter_markers("allow_subp") for name in mark.args}
    signals = request.node.get_closest_marker("allow_signals") is not None
    real_execute = subprocess.Popen._execute_child
    real_kill = os.kill
    started: set[int] = set()  # a program the test allowed may be stopped (subprocess's own timeout kill)

    def execute_child(self, args, executable, *rest, **kwargs):
        argv = [args] if isinstance(args, (str, bytes)) else list(args)
        program = os.path.basename(str(executable or argv[0]))
        if program not in allowed and "*" not in allowed:
            raise AssertionError(f"unit test started {program!r} ({' '.join(map(str, argv))[:200]}) without "
                                 f"@pytest.mark.allow_subp({program!r})")
        result = real_execute(self, args, executable, *rest, **kwargs)
        started.add(self.pid)
        return result

    def kill(pid, sig):
        if not signals and pid not in started:
            raise AssertionError(f"unit test sent signal {sig} to pid {pid} without @pytest.mark.allow_signals")
        return real_kill(pid, sig)

    monkeypatch.setattr(subprocess.Popen, "_execute_child", execute_child)
    monkeypatch.setattr(os, "kill", kill)
