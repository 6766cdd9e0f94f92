"""gpuprep/poll.py: the one bounded wait (issue 27 item 4). Real clock and real signals; the conditions are counters
the tests control, so every assertion is about looks taken or a lower bound, never a time window."""

from __future__ import annotations

import logging
import os
import signal

import pytest

from gpuprep.interrupts import Interrupted, caught
from gpuprep.poll import WaitTimedOut, poll_until


def test_it_returns_the_first_observation_that_meets_the_condition():
    seen = iter(range(5, -1, -1))
    waited = poll_until(lambda: next(seen), lambda n: n <= 2, what="the count", timeout_s=60, interval_s=0.001)
    assert (waited.met, waited.value, waited.tries) == (True, 2, 4)
    assert waited.or_raise() == 2


def test_giving_up_says_what_it_waited_for_and_for_how_long(caplog):
    caplog.set_level(logging.INFO, logger="gpuprep")
    waited = poll_until(lambda: "held", lambda v: v == "free", what="the lock to be free", timeout_s=0.2,
                        interval_s=0.01)
    assert not waited.met and waited.value == "held" and waited.seconds >= 0.2 and waited.tries >= 2
    said = [r.getMessage() for r in caplog.records]
    assert said == ["waiting up to 0.2s for the lock to be free"], said  # once, however many looks
    with pytest.raises(WaitTimedOut) as info:
        waited.or_raise()
    assert info.value.message.startswith("gave up waiting for the lock to be free after 0.2s")
    assert info.value.reference == "wait-timed-out"


def test_a_caller_names_its_own_error():
    waited = poll_until(lambda: 1, lambda n: n == 0, what="zero", timeout_s=0)
    with pytest.raises(KeyError):
        waited.or_raise(lambda w: KeyError(w.gave_up))


def test_tries_bound_it_before_the_deadline_and_each_miss_is_told():
    looks: list[int] = []
    misses: list[tuple[str, int]] = []
    waited = poll_until(lambda: looks.append(1) or "busy", lambda v: v == "done", what="a retry", timeout_s=600,
                        interval_s=0.001, tries=3, on_miss=lambda v, n: misses.append((v, n)))
    assert not waited.met and waited.tries == 3 and len(looks) == 3
    assert misses == [("busy", 1), ("busy", 2)]  # not after the last look: nothing follows it


def test_a_quiet_wait_met_before_say_after_says_nothing(caplog):
    caplog.set_level(logging.DEBUG, logger="gpuprep")
    seen = iter([False, True])
    assert poll_until(lambda: next(seen), bool, what="x", timeout_s=60, interval_s=0.001, say_after_s=30).met
    assert not caplog.records


@pytest.mark.allow_signals
def test_a_signal_ends_the_wait_as_it_ends_anything_else():
    """SIGTERM delivered to this process while it waits: Interrupted, raised out of the wait (gpuprep.interrupts)."""

    def miss(value: object, tries: int) -> None:
        os.kill(os.getpid(), signal.SIGTERM)

    with caught(), pytest.raises(Interrupted) as info:
        poll_until(lambda: False, bool, what="something", timeout_s=600, interval_s=0.5, on_miss=miss)
    assert info.value.name == "SIGTERM"
