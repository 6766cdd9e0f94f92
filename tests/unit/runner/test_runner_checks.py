"""The doctor runner: concurrency, per-check timeouts, skip reasons, memoised probes."""

from __future__ import annotations

import threading
import time

from gpuprep.host import Host
from gpuprep.options import DoctorOptions
from gpuprep.platform import Platform
from gpuprep.report import Status
from gpuprep.runner.checks import Check, NotApplicable, Probes, Verdict, probe, run_checks
from gpuprep.runner.needs import CONTAINERS, ENGINE, LIVE

PLATFORM = Platform("amzn", "2023", "Amazon Linux 2023", "amzn")


def _run(checks, tmp_path, **opts):
    return run_checks(Host(tmp_path, env={}), PLATFORM, DoctorOptions(**opts), checks)


def test_checks_run_concurrently_and_keep_their_order(tmp_path):
    """Five checks that each wait for all five to be running: they pass only when run side by side (in turn,
    the first would wait alone). An event, not a clock: a busy machine cannot make it flake (issue 23)."""
    together = threading.Barrier(5)

    def meet(p):
        together.wait(timeout=30)
        return Verdict(Status.OK, "met")

    checks = [Check(f"c{i}", "gpu", "t", meet, timeout=60) for i in range(5)]
    report = _run(checks, tmp_path)
    assert [c.id for c in report.checks] == ["c0", "c1", "c2", "c3", "c4"]
    assert all(c.status is Status.OK for c in report.checks), [c.summary for c in report.checks]


def test_a_hanging_check_is_unknown_after_its_timeout(tmp_path):
    hang = threading.Event()
    checks = [
        Check("hangs", "gpu", "t", lambda p: hang.wait(10) and Verdict(Status.OK, ""), timeout=0.2),
        Check("fine", "gpu", "t", lambda p: Verdict(Status.OK, "fine")),
    ]
    started = time.monotonic()
    report = _run(checks, tmp_path)
    hang.set()
    assert time.monotonic() - started < 1.0
    assert report.checks[0].status is Status.UNKNOWN and "no answer within 0.2s" in report.checks[0].summary
    assert report.checks[0].hint and report.checks[1].status is Status.OK


def test_a_crashing_check_is_unknown_not_a_crash(tmp_path):
    report = _run([Check("boom", "docker", "t", lambda p: 1 / 0)], tmp_path)
    assert report.checks[0].status is Status.UNKNOWN and "ZeroDivisionError" in report.checks[0].summary


def test_skip_reasons(tmp_path):
    """The runner skips a check on its declared needs, whatever its group: a check of group container that starts
    no container runs under --no-container, and one of another group that starts one does not."""
    ok = lambda p: Verdict(Status.OK, "ok")  # noqa: E731
    checks = [
        Check("nvml", "gpu", "t", ok, needs=(LIVE,)),
        Check("engine", "docker", "t", ok, needs=(ENGINE,)),
        Check("run", "docker", "t", ok, needs=(CONTAINERS,)),
        Check("reads", "container", "t", ok),
        Check("na", "ecs", "t", lambda p: (_ for _ in ()).throw(NotApplicable("no ecs-init"))),
        Check("boot-only", "gpu", "t", ok, boot=True),
    ]
    report = _run(checks, tmp_path, no_container=True)
    by_id = {c.id: c for c in report.checks}
    assert by_id["nvml"].status is Status.SKIPPED and "--root" in by_id["nvml"].summary
    assert by_id["engine"].status is Status.SKIPPED and "DOCKER_HOST" in by_id["engine"].summary
    assert by_id["run"].summary == "--no-container"
    assert by_id["reads"].status is Status.OK
    assert by_id["na"].summary == "no ecs-init"
    assert report.status is Status.OK
    boot = _run(checks, tmp_path, boot=True)
    assert [c.id for c in boot.checks] == ["boot-only"]


def test_probes_compute_once_across_threads_and_remember_errors(tmp_path):
    probes = Probes(Host(tmp_path), PLATFORM, DoctorOptions())
    calls = []

    def compute(p):
        calls.append(1)
        time.sleep(0.05)
        return 42

    compute = probe(compute)
    threads = [threading.Thread(target=lambda: compute(probes)) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert compute(probes) == 42 and len(calls) == 1

    @probe
    def broken(p):
        calls.append(2)
        raise OSError("gone")

    for _ in range(2):
        try:
            broken(probes)
        except OSError as exc:
            assert str(exc) == "gone"
    assert calls.count(2) == 1
