"""Errors a user can meet: one line that names the problem, one hint that names the fix, a stable reference.

The CLI's one wrapper (``cli.main``) catches whatever ends a command, says it as ``error: <message>`` and
``hint: <hint>`` (under --json also as one object carrying ``reference``) and exits with the code ``EXIT_MAPS`` gives
that command for that error (pip's ``cli/base_command.py`` ``_run_wrapper``); a traceback is shown only with ``-v``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Optional

from gpuprep.interrupts import Interrupted

# Exit codes of install and seal (docs/contract.md). doctor uses Nagios codes (report.Status).
EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_PRECONDITION = 3
# seal's question answered with Ctrl-C: the shell's 128 + SIGINT, which a person at a terminal expects
# (dnf and apt exit so too). Only a prompt can end so, and only a person at a terminal meets one.
EXIT_INTERRUPTED = 130


class GpuprepError(Exception):
    """Root of every error gpuprep reports to a user."""

    exit_code = EXIT_FAILED
    # What kind of error this is, in stable kebab-case (pip's exceptions/_base.py DiagnosticPipError.reference):
    # --json carries it as "reference", so a fleet groups failures without parsing messages. Each subclass names
    # its own (tests/unit/test_errors.py); a reference never changes meaning (docs/contract.md lists them).
    reference = "error"

    def __init__(self, message: str, hint: str = "", *, exit_code: int | None = None,
                 data: dict[str, Any] | None = None, reference: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        if reference is not None:
            self.reference = reference
        # Structured detail for --json (e.g. the CVEs a refused toolkit has).
        self.data = dict(data or {})
        if exit_code is not None:
            self.exit_code = exit_code

    def __str__(self) -> str:
        return self.message


class BadInput(GpuprepError):
    """A file or argument gpuprep cannot use as it is (exit 2, nothing changed)."""

    exit_code = EXIT_BAD_INPUT
    reference = "bad-input"


class PreconditionUnmet(GpuprepError):
    """Not root, unsupported platform, ... (exit 3, nothing changed)."""

    exit_code = EXIT_PRECONDITION
    reference = "precondition-unmet"


class StepFailed(GpuprepError):
    """A step could not do its job (exit 1)."""

    exit_code = EXIT_FAILED
    reference = "step-failed"


class PromptInterrupted(GpuprepError):
    """Ctrl-C (or the terminal closing) at a question: nothing was changed (exit 130)."""

    exit_code = EXIT_INTERRUPTED
    reference = "prompt-interrupted"


class CommandError(GpuprepError):
    """A subprocess failed; carries argv, exit code and output like cloud-init's ProcessExecutionError."""

    reference = "command-failed"

    def __init__(
        self,
        argv: Sequence[str],
        returncode: int | None,
        stdout: str = "",
        stderr: str = "",
        *,
        timeout: float | None = None,
        hint: str = "",
    ) -> None:
        self.argv = list(argv)
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr
        self.timeout = timeout
        if timeout is not None:
            what = f"timed out after {timeout:g}s"
        elif returncode is None:
            what = "could not be started"
        else:
            what = f"exited {returncode}"
        detail = (stderr or stdout).strip().splitlines()
        tail = f": {detail[-1]}" if detail else ""
        super().__init__(f"`{' '.join(self.argv)}` {what}{tail}", hint)


# What to do about an OSError the system raised, by errno: the cause lies outside gpuprep.
_OS_HINTS = {
    "ENOSPC": "free space on that file system (df -h shows which), then run again; nothing was half-written",
    "EDQUOT": "free space within the quota on that file system, then run again",
    "EROFS": "the file system is mounted read-only: remount it read-write (mount -o remount,rw MOUNTPOINT), "
             "then run again",
    "EIO": "the disk reported an I/O error: check it (dmesg names the device), then run again",
    "EACCES": "run gpuprep as root (sudo), or make the file readable",
    "EPERM": "run gpuprep as root (sudo); an immutable file (lsattr) needs chattr -i first",
    "ENOTDIR": "a component of that path is a file, not a directory: move it away",
    "EISDIR": "a directory is where a file should be: move it away",
    "ELOOP": "the path has a symlink loop or a link where none may be: fix the links",
    "ENAMETOOLONG": "shorten the path",
    "EMFILE": "raise the open-file limit (ulimit -n), then run again",
    "ENOMEM": "free memory, then run again",
}


def os_error(exc: OSError) -> GpuprepError:
    """The GpuprepError a user sees for ``exc``: its file (or two), what the system said, what to do."""
    import errno
    import os

    code = errno.errorcode.get(exc.errno or 0, "")
    what = exc.strerror or str(exc)
    where = ": ".join(str(f) for f in (exc.filename, exc.filename2) if f)
    message = f"{where}: {what}" if where else what
    if code:
        message += f" ({code})"
    hint = _OS_HINTS.get(code, f"fix what the system reports ({os.strerror(exc.errno) if exc.errno else what}), "
                               "then run again")
    return GpuprepError(message, hint, reference=f"os-{code.lower()}" if code else "os-error")


class UsageError(BadInput):
    """The command line itself is wrong: an unknown option, a value out of range, a missing argument."""

    reference = "usage-error"


def diagnosis(exc: BaseException) -> GpuprepError:
    """What a user is told of ``exc``, which ended a command: itself when it is a GpuprepError, the system's
    refusal (``os_error``), a signal, or else an internal error: a bug of gpuprep's."""
    if isinstance(exc, GpuprepError):
        return exc
    if isinstance(exc, OSError):
        return os_error(exc)
    if isinstance(exc, Interrupted):
        return GpuprepError(f"interrupted ({exc.name})", "run the command again to finish", reference="interrupted")
    return GpuprepError(f"internal error: {type(exc).__name__}: {exc}",
                        "run again with -v for the traceback and report it", reference="internal-error")


EXIT_UNKNOWN = 3  # doctor's Nagios UNKNOWN (report.Status): no verdict could be reached
# For each command, the exit code of the error that ends it: the first (type, code) that matches wins, None meaning
# the error's own exit_code (BadInput 2, PreconditionUnmet 3, the rest 1). Written once, applied by cli.main.
ExitMap = tuple[tuple[type[BaseException], Optional[int]], ...]
_CHANGE_COMMAND: ExitMap = ((GpuprepError, None), (BaseException, EXIT_FAILED))
EXIT_MAPS: dict[str, ExitMap] = {
    "install": _CHANGE_COMMAND,
    "seal": _CHANGE_COMMAND,
    "knowledge": _CHANGE_COMMAND,
    # Nagios' plugin guidelines: a plugin that cannot judge says UNKNOWN, whatever stopped it, bad arguments
    # included: 2 would read as a critical host, and 1 as a warning.
    "doctor": ((BaseException, EXIT_UNKNOWN),),
}


def exit_code_for(command: str | None, exc: BaseException) -> int:
    """The exit code of ``command`` ended by ``exc`` (no command yet: as install's), from ``EXIT_MAPS``."""
    for kind, code in EXIT_MAPS.get(command or "", _CHANGE_COMMAND):
        if isinstance(exc, kind):
            if code is not None:
                return code
            return exc.exit_code if isinstance(exc, GpuprepError) else EXIT_FAILED
    return EXIT_FAILED


# Every exit code a command documents (docs/contract.md): install and seal 0-3 (done, a step failed, bad
# input, a precondition), doctor Nagios' 0-3, usage errors 2 (doctor's 3). Fleets act on the code: SSM Run Command reads
# 194 as "reboot, then run me again" (and 3010 on Windows; integrations/README.md cites the SSM user guide),
# so a code outside this set would be a bug that can reboot a fleet. cli.main() never lets one out.
DOCUMENTED_EXIT_CODES = frozenset({0, 1, 2, 3})  # and 130 for Ctrl-C at seal's question (interrupted_at_prompt)
# typer turns a KeyboardInterrupt into this code (typer/core.py, `raise Exit(130)`), the shell's 128+SIGINT.
TYPER_INTERRUPTED = 130


def documented_exit_code(code: int, command: str | None, interrupted_at_prompt: bool) -> int:
    """``code`` if the contract documents it; otherwise say so as the bug it is and use the command's own
    "could not run" code: doctor's UNKNOWN (3), install's and seal's "a step failed" (1)."""
    import sys

    if code in DOCUMENTED_EXIT_CODES or (code == TYPER_INTERRUPTED and interrupted_at_prompt):
        return code
    fallback = exit_code_for(command, RuntimeError("an undocumented exit code"))
    print(f"gpuprep: error: internal error: exit code {code} is not one gpuprep documents; exiting {fallback}",
          file=sys.stderr)
    print("gpuprep: hint: run again with -v and report it", file=sys.stderr)
    return fallback
