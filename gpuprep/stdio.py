"""stdout and stderr that never stop a run: what cannot be written is dropped, what cannot be encoded is replaced.

SSM Run Command, cloud-init and systemd start programs with odd stdio: a pipe whose reader has gone (EPIPE), a
full disk under a redirected log (ENOSPC; ``> /dev/full`` shows it), a stream closed (EBADF), a C locale with
``PYTHONIOENCODING=ascii`` while daemon.json holds UTF-8. None of these may stop an install half way, turn into a
traceback, or change the exit code: that stays the run's (install, seal) or the verdict's (doctor), as
docs/contract.md documents. The report is what was lost, not the run.
"""

from __future__ import annotations

import io
import os
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer


class _Tolerant(io.RawIOBase):
    """A raw stream on a file descriptor whose writes never fail: an OSError drops the bytes (and every later
    write, once the descriptor is known to be gone)."""

    def __init__(self, fd: int) -> None:
        super().__init__()
        self._fd = fd
        self.lost = 0  # bytes dropped

    def writable(self) -> bool:
        return True

    def fileno(self) -> int:
        return self._fd

    def isatty(self) -> bool:
        try:
            return os.isatty(self._fd)
        except OSError:
            return False

    def write(self, data: ReadableBuffer) -> int:
        view = memoryview(data)
        while view:
            try:
                written = os.write(self._fd, view)
            except InterruptedError:
                continue
            except OSError:
                self.lost += len(view)
                break
            view = view[written:]
        return memoryview(data).nbytes


def reopen_closed_stdio() -> None:
    """Point each of descriptors 0, 1 and 2 that is closed at /dev/null, so that no file gpuprep opens later (a
    lock, daemon.json's temp file) becomes one of them, where a write meant for the terminal or a child's output
    would reach it."""
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
            continue
        except OSError:
            pass
        null = os.open(os.devnull, os.O_RDWR)
        if null != fd:
            os.dup2(null, fd)
            os.close(null)


def _tolerant_text(fd: int, old: object, *, write_through: bool) -> io.TextIOWrapper:
    encoding = getattr(old, "encoding", None) or "utf-8"
    line_buffering = bool(getattr(old, "line_buffering", False))
    return io.TextIOWrapper(io.BufferedWriter(_Tolerant(fd)), encoding=encoding, errors="replace",
                            line_buffering=line_buffering, write_through=write_through)


def make_tolerant() -> None:
    """Replace sys.stdout and sys.stderr with tolerant ones on the same descriptors and encodings (closed
    descriptors first pointed at /dev/null); stdin closed is /dev/null too."""
    reopen_closed_stdio()
    if sys.stdin is None:  # closed at start: /dev/null now, as a text stream (click's prompts read sys.stdin)
        sys.stdin = io.TextIOWrapper(io.FileIO(0, closefd=False), encoding="utf-8", errors="replace")
    sys.stdout = _tolerant_text(1, sys.stdout, write_through=False)
    sys.stderr = _tolerant_text(2, sys.stderr, write_through=True)
