"""The check runner: every check concurrently, each under its own timeout, gathered into a DoctorReport.

A check is a function of ``Probes`` returning a ``Verdict``; probes (the GPU inventory, ``docker info``,
daemon.json, ...) are computed once per run and shared between checks through ``Probes.get``. The checks
themselves live in their domains (``gpu/checks.py``, ``engine/checks.py``, ...); ``doctor.py`` lists them.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

from gpuprep.errors import GpuprepError, os_error
from gpuprep.hints import for_platform, for_target
from gpuprep.host import Host
from gpuprep.options import DoctorOptions
from gpuprep.platform import Platform
from gpuprep.report import CheckResult, DoctorReport, Status
from gpuprep.runner.needs import Need, unmet

log = logging.getLogger("gpuprep")


@dataclass
class Verdict:
    status: Status
    summary: str
    hint: str = ""
    data: dict[str, Any] = field(default_factory=dict)


class NotApplicable(Exception):
    """Raised by a check (or a probe it uses) to report ``skipped`` with the reason."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Check:
    id: str
    group: str
    title: str  # one line for --list-checks
    run: Callable[[Probes], Verdict]
    timeout: float = 5.0
    # What it needs here (runner/needs.py: LIVE for NVML and processes, ENGINE, CONTAINERS for one that starts a
    # container), asked in order before it runs: the first unmet one's reason is its `skipped` summary.
    needs: tuple[Need, ...] = ()
    boot: bool = False  # part of `doctor --boot`


P = TypeVar("P")


class Probes:
    """What checks ask of the host, each asked once per run (a thread-safe memo keyed by the probe function)."""

    def __init__(self, host: Host, platform: Platform, options: DoctorOptions) -> None:
        self.host = host
        self.platform = platform
        self.options = options
        self._values: dict[Callable[..., object], tuple[bool, object]] = {}
        self._locks: dict[Callable[..., object], threading.Lock] = {}
        self._guard = threading.Lock()

    def ask(self, key: Callable[..., object], compute: Callable[[Probes], P]) -> P:
        """``compute(self)`` once per ``key``; an exception is remembered and raised to every asker."""
        with self._guard:
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:
            if key not in self._values:
                try:
                    self._values[key] = (True, compute(self))
                except Exception as exc:  # remembered: the next asker gets the same answer
                    self._values[key] = (False, exc)
            ok, value = self._values[key]
        # One memo for probes of every type, keyed by the probe: what is stored under ``key`` is what ``compute``
        # returned (a P) or raised.
        if not ok:
            raise cast(BaseException, value)
        return cast(P, value)

    def preset(self, probe: Callable[[Probes], P], value: P) -> None:
        """Answer ``probe`` with ``value`` in this run: what a test puts in place of the host's answer."""
        with self._guard:
            self._values[probe] = (True, value)

    def preset_error(self, probe: Callable[[Probes], Any], error: Exception) -> None:
        """Make ``probe`` raise ``error`` in this run, as the host can answer (an Engine that does not answer)."""
        with self._guard:
            self._values[probe] = (False, error)


def probe(compute: Callable[[Probes], P]) -> Callable[[Probes], P]:
    """Make ``compute`` a probe: the function returned computes it once per run and is its key, so no two
    probes share a string key by accident and a test presets it by name (``Probes.preset(probe, value)``)."""

    @functools.wraps(compute)
    def ask(probes: Probes) -> P:
        return probes.ask(ask, compute)

    return ask


def select_checks(checks: Sequence[Check], options: DoctorOptions) -> list[Check]:
    return [c for c in checks if c.boot or not options.boot]


def run_check(check: Check, probes: Probes) -> CheckResult:
    started = time.monotonic()
    try:
        v = check.run(probes)
        result = CheckResult(check.id, check.group, v.status, v.summary, v.hint, data=v.data)
    except NotApplicable as exc:
        result = CheckResult(check.id, check.group, Status.SKIPPED, exc.reason)
    except PermissionError as exc:
        if probes.host.is_root:
            err = os_error(exc)
            result = CheckResult(check.id, check.group, Status.UNKNOWN, err.message, err.hint)
        else:
            result = CheckResult(check.id, check.group, Status.SKIPPED, needs_root(probes.host, exc.filename))
    except (GpuprepError, OSError) as exc:
        # Bad input the check met (a FIFO for daemon.json, garbage from a tool, a full disk): said as it
        # is, with its own hint; not a bug to report.
        err = exc if isinstance(exc, GpuprepError) else os_error(exc)
        result = CheckResult(check.id, check.group, Status.UNKNOWN, err.message, err.hint)
    except Exception as exc:  # a check that crashes says so; doctor itself never does
        log.debug("check %s crashed", check.id, exc_info=True)
        result = CheckResult(
            check.id, check.group, Status.UNKNOWN,
            f"check failed: {type(exc).__name__}: {exc}",
            "run `gpuprep -v doctor` for the traceback and report it",
        )
    # This platform's commands only, and a gpuprep command in a hint acts on the root this run acts on.
    result.hint = for_target(probes.host, for_platform(probes.platform, result.hint))
    result.duration_ms = (time.monotonic() - started) * 1000
    return result


def needs_root(host: Host, what: str | None) -> str:
    """The summary of a check a non-root run cannot make (``what`` it could not read): a skip, not a problem."""
    return for_target(host, f"needs root ({what or 'a file'} is not readable): run sudo gpuprep doctor")


def run_checks(host: Host, platform: Platform, options: DoctorOptions, checks: Sequence[Check]) -> DoctorReport:
    """Run ``checks`` (the boot set of them with ``--boot``) concurrently, each bounded by its timeout."""
    checks = select_checks(checks, options)
    probes = Probes(host, platform, options)
    results: list[CheckResult | None] = [None] * len(checks)
    threads: list[tuple[int, threading.Thread, float]] = []

    for i, check in enumerate(checks):
        reason = unmet(check.needs, host, platform, options)
        if reason is not None:
            results[i] = CheckResult(check.id, check.group, Status.SKIPPED, reason)
            continue

        def target(i: int = i, check: Check = check) -> None:
            results[i] = run_check(check, probes)

        # Daemon threads: a check stuck in NVML or a dead socket cannot hold the process open.
        t = threading.Thread(target=target, name=f"check-{check.id}", daemon=True)
        t.start()
        threads.append((i, t, time.monotonic() + check.timeout))

    for i, t, deadline in threads:
        t.join(max(0.0, deadline - time.monotonic()))
        if t.is_alive():
            check = checks[i]
            results[i] = CheckResult(
                check.id, check.group, Status.UNKNOWN,
                f"no answer within {check.timeout:g}s",
                "something it asks is hanging (NVML, dockerd, a package lock); "
                "run `gpuprep -v doctor` and look at the last command logged",
                duration_ms=check.timeout * 1000,
            )
    return DoctorReport(platform.as_dict(), [r for r in results if r is not None])
