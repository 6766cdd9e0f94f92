"""Bounded waiting, written once: poll an observable condition until it holds, a deadline passes or the tries run out.

Every wait of gpuprep goes through ``poll_until`` (tests/unit/test_layout.py holds every other module to it): the
lock of a run, the package manager's lock, dockerd exiting and answering, ``docker info`` showing a runtime, the ECS
agent stopping, the Engine's refused removals, an image pull's retries, the NVSwitch fabric training, the
persistence daemon's socket. Each says what it waits for (a log line once the wait is worth mentioning), re-checks
the condition rather than sleeping a fixed time and hoping (certbot's reverter restarts with a fixed sleep; a busy
host outlasts any guess), backs off so a long wait costs little, and never sleeps past its deadline: the condition is
checked once more at the deadline itself, so a timeout means it was still unmet then.

A signal (``gpuprep.interrupts``) raised inside the sleep ends the wait as it ends anything else. The loop is
tenacity's (``Retrying`` with these bounds as its stop, wait and retry): one retry engine for the whole program.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Callable, Generic, Optional, TypeVar

from gpuprep.errors import GpuprepError

T = TypeVar("T")
log = logging.getLogger("gpuprep")


@dataclass(frozen=True)
class Waited(Generic[T]):
    """How a wait ended: the last thing observed, whether it met the condition, after how long and how many looks."""

    what: str
    value: T
    met: bool
    seconds: float
    tries: int

    @property
    def gave_up(self) -> str:
        """The one line that says what was waited for and for how long: ``gave up waiting for X after 5.0s``."""
        return f"gave up waiting for {self.what} after {self.seconds:.1f}s" + (
            f" ({self.tries} tries)" if self.tries > 1 else "")

    def or_raise(self, error: Optional[Callable[[Waited[T]], BaseException]] = None) -> T:
        """The value when the condition was met; else ``error(self)`` raised (default ``WaitTimedOut``)."""
        if self.met:
            return self.value
        raise (error(self) if error is not None else WaitTimedOut(self.gave_up))


class WaitTimedOut(GpuprepError):
    """A bounded wait gave up; its message names what it waited for and for how long."""

    reference = "wait-timed-out"


def poll_until(
    observe: Callable[[], T],
    met: Callable[[T], bool],
    *,
    what: str,
    timeout_s: float,
    interval_s: float = 0.05,
    max_interval_s: float = 1.0,
    backoff: float = 1.5,
    tries: Optional[int] = None,
    say_after_s: float = 0.0,
    level: int = logging.INFO,
    on_miss: Optional[Callable[[T, int], None]] = None,
) -> Waited[T]:
    """Call ``observe`` until ``met`` holds for what it returns, for at most ``timeout_s`` seconds (and ``tries``
    looks, when given); never raises on giving up: ``Waited.met`` says, ``Waited.or_raise`` raises.

    ``what`` completes "waiting up to Ns for ...", logged at ``level`` once the condition has been unmet for
    ``say_after_s``. Pauses start at ``interval_s`` and grow by ``backoff`` up to ``max_interval_s`` (or
    ``interval_s``, if larger), never past the deadline. ``on_miss(value, tries)`` runs after each unmet look that
    another will follow.

    >>> seen = iter([3, 2, 1, 0])
    >>> w = poll_until(lambda: next(seen), lambda n: n == 0, what="the count to reach 0", timeout_s=5,
    ...                interval_s=0.001)
    >>> (w.met, w.value, w.tries)
    (True, 0, 4)
    >>> late = poll_until(lambda: False, bool, what="a thing that never happens", timeout_s=0)
    >>> late.met, late.gave_up
    (False, 'gave up waiting for a thing that never happens after 0.0s')
    """
    import tenacity

    started = time.monotonic()
    deadline = started + timeout_s
    pause, told, looks, last_met = interval_s, False, 0, False

    def look() -> T:
        nonlocal looks
        looks += 1
        return observe()

    def unmet(value: T) -> bool:
        nonlocal last_met
        last_met = met(value)
        return not last_met

    def stop(state: tenacity.RetryCallState) -> bool:
        return time.monotonic() >= deadline or (tries is not None and state.attempt_number >= tries)

    def wait(state: tenacity.RetryCallState) -> float:
        nonlocal pause
        this, pause = pause, min(pause * backoff, max(max_interval_s, interval_s))
        return max(0.0, min(this, deadline - time.monotonic()))

    def before_sleep(state: tenacity.RetryCallState) -> None:
        nonlocal told
        if not told and time.monotonic() - started >= say_after_s:
            log.log(level, "waiting up to %gs for %s", timeout_s, what)
            told = True
        if on_miss is not None and state.outcome is not None:
            on_miss(state.outcome.result(), state.attempt_number)

    # tenacity runs the loop (its stop, wait and retry are these bounds); an exception from ``observe`` or a signal
    # in the sleep propagates as it is (reraise), and giving up returns the last value seen rather than raising.
    retrying = tenacity.Retrying(stop=stop, wait=wait, retry=tenacity.retry_if_result(unmet), reraise=True,
                                 before_sleep=before_sleep, sleep=time.sleep,
                                 retry_error_callback=lambda state: state.outcome.result() if state.outcome else None)
    value = retrying(look)
    return Waited(what, value, last_met, time.monotonic() - started, looks)
