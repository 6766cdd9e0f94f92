"""Signals that end a run: SIGTERM, SIGINT and SIGHUP become ``Interrupted``, so a run cleans up as on an error.

What sends them: systemd's stop timeout, a cancelled Packer build, cloud-init's timeout, Ctrl-C in SSH, an SSH
session that hangs up. certbot's ``_internal/error_handler.py`` is the pattern: the same cleanups run on those
signals as on exceptions, and signals that arrive while the cleanups run are held until they are done, so a
second Ctrl-C cannot leave dockerd stopped half way through bringing it back.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from types import FrameType

SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


class Interrupted(BaseException):
    """A signal ended the run. A BaseException, as KeyboardInterrupt is: ``except Exception`` does not swallow it."""

    def __init__(self, signum: int) -> None:
        self.signum = signum
        self.name = signal.Signals(signum).name
        super().__init__(self.name)


class _State:
    deferring = 0  # inside deferred(): signals are held, not raised
    held: list[int] = []  # signals that arrived while deferring


_state = _State()


def _handler(signum: int, frame: FrameType | None) -> None:
    if _state.deferring:
        _state.held.append(signum)
        return
    raise Interrupted(signum)


@contextlib.contextmanager
def caught() -> Iterator[None]:
    """While inside, SIGTERM, SIGINT and SIGHUP raise Interrupted in the main thread; the old handlers after."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = {s: signal.signal(s, _handler) for s in SIGNALS}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


@contextlib.contextmanager
def deferred(*, then_raise: bool = True) -> Iterator[None]:
    """Cleanup that must finish: signals arriving inside are held (``held()`` names them). When the cleanup ends
    normally, ``then_raise`` raises the first signal held, so the run stops as that signal asked; a cleanup that
    raises goes on raising its own error (the run stops on it either way)."""
    before = len(_state.held)
    _state.deferring += 1
    try:
        yield
    finally:
        _state.deferring -= 1
    if then_raise and len(_state.held) > before:
        raise Interrupted(_state.held[before])


def held() -> list[str]:
    """The names of the signals held by ``deferred()`` so far in this run."""
    return [signal.Signals(s).name for s in _state.held]
