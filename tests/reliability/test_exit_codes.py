"""Exit codes safe for fleets: every error path the suite can provoke exits with a documented code.

SSM Run Command reads exit 194 from a script as "reboot the instance, then run me again"
(integrations/README.md): a tool that exits 194 by accident reboots a fleet. gpuprep documents 0-3 for
every command (docs/contract.md), and ``cli.main`` turns anything else into the command's own "could not
run" code. This module sweeps the paths the other corpora do not:

- every usage error click can raise, generated from the command tree itself (each option of each
  command with its value missing, a value of the wrong type, an unknown option, an unknown command), so
  an option added later is swept without editing this file;
- ``--root`` and selection errors per command, ``--prom`` where no file can go, a run as a user who is
  not root;
- signals a fleet agent sends: SIGINT (Ctrl-C, "interrupted", exit 1) and SIGTERM (an agent's timeout: the
  process dies by the signal, which no agent reads as an exit code), injected with strace at a chosen
  system call, so the point is exact and not a race.

The bad-input, symlink-trap, fault, kill-point and concurrency corpora are swept too: every run of the
real CLI they make goes through ``reliability_kit.gpuprep``, which fails the test on an exit code outside
the documented set. Real: the CLI in a fresh process each time, strace, setpriv. Simulated: the image (a
plain Amazon Linux 2023 directory tree).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest
import reliability_kit as kit
import typer

from gpuprep.cli import app
from gpuprep.errors import DOCUMENTED_EXIT_CODES

_figure = kit.module_figure("exit codes", "documented")


@dataclass(frozen=True)
class Case:
    id: str
    args: tuple[str, ...]
    codes: tuple[int, ...]  # what the contract says for this path (a subset of 0-3)
    root: bool = True  # pass --root TREE before the args


# Parameters are looked at by their click attributes and type names: typer 0.28 carries its own copy of
# click (typer._click), older ones use click itself.
def _commands() -> dict:
    return dict(typer.main.get_command(app).commands)  # type: ignore[attr-defined]


def _takes_value(param) -> bool:
    return param.param_type_name == "option" and not param.is_flag and not getattr(param, "is_eager", False)


def _bad_value(param) -> str | None:
    """A value click itself refuses for ``param`` (None: click takes any string for it)."""
    kinds = {k.__name__ for k in type(param.type).__mro__}
    if kinds & {"IntParamType", "FloatParamType"}:
        return "not-a-number"
    if "Choice" in kinds:
        return "no-such-choice"
    return None


# doctor's usage errors are Nagios' UNKNOWN (3): 2 would read as a critical host (docs/contract.md).
USAGE_CODE = {"doctor": (3,)}


def usage_cases() -> list[Case]:
    """Usage errors of the whole command tree: each exits 2 (doctor 3; docs/contract.md), one error line."""
    cases = [Case("no-such-command", ("no-such-command",), (2,), root=False),
             Case("no-args", (), (2,), root=False)]
    group = typer.main.get_command(app)
    for param in group.params:
        if _takes_value(param):
            name = param.opts[0]
            cases.append(Case(f"global{name}-missing-value", (name,), (2,), root=False))
            bad = _bad_value(param)
            if bad is not None:
                cases.append(Case(f"global{name}-{bad}", (name, bad, "doctor"), (2,), root=False))
    for cmd_name, cmd in _commands().items():
        usage = USAGE_CODE.get(cmd_name, (2,))
        cases.append(Case(f"{cmd_name}-unknown-option", (cmd_name, "--no-such-option"), usage))
        cases.append(Case(f"{cmd_name}-extra-argument", (cmd_name, "stray"), usage))
        for param in cmd.params:
            if not _takes_value(param):
                continue
            name = param.opts[0]
            cases.append(Case(f"{cmd_name}{name}-missing-value", (cmd_name, name), usage))
            bad = _bad_value(param)
            if bad is not None:
                cases.append(Case(f"{cmd_name}{name}-{bad}", (cmd_name, name, bad), usage))
    return cases


NOT_A_DIR = "/proc/version/not-a-dir"
SEMANTIC = [
    # --root: an unset variable, a path that is not a directory. install and seal: bad input (2);
    # doctor: it could not look, UNKNOWN (3).
    Case("install-root-empty", ("--root", "", "install", "--dry-run"), (2,), root=False),
    Case("seal-root-empty", ("--root", "", "seal", "--dry-run"), (2,), root=False),
    Case("doctor-root-empty", ("--root", "", "doctor", "--no-container"), (3,), root=False),
    Case("install-root-missing", ("--root", NOT_A_DIR, "install"), (2,), root=False),
    Case("seal-root-missing", ("--root", NOT_A_DIR, "seal", "--yes"), (2,), root=False),
    Case("doctor-root-missing", ("--root", NOT_A_DIR, "doctor"), (3,), root=False),
    # Step selection.
    Case("install-only-unknown", ("install", "--only", "no-such-step"), (2,)),
    Case("seal-skip-unknown", ("seal", "--yes", "--skip", "no-such-step"), (2,)),
    Case("install-only-empty", ("install", "--only", ""), (2,)),
    Case("install-only-and-skip", ("install", "--only", "ecs-config", "--skip", "ecs-config"), (2,)),
    Case("install-runtime-unknown", ("install", "--runtime", "cdi"), (2,)),
    Case("install-relative-runtime-path", ("install", "--runtime-path", "usr/bin/x"), (2,)),
    # doctor's textfile where none can go: it could not report, UNKNOWN.
    Case("doctor-prom-missing-dir", ("doctor", "--no-container", "--prom", "/no/such/dir/gpuprep.prom"), (3,)),
    Case("doctor-prom-under-a-file", ("doctor", "--no-container", "--prom", "/proc/version/gpuprep.prom"), (3,)),
    # Lists and help: 0.
    Case("install-list-steps", ("install", "--list-steps"), (0,), root=False),
    Case("seal-list-steps", ("seal", "--list-steps"), (0,), root=False),
    Case("doctor-list-checks", ("doctor", "--list-checks"), (0,), root=False),
    Case("help", ("--help",), (0,), root=False),
    Case("version", ("--version",), (0,), root=False),
]
CASES = usage_cases() + SEMANTIC


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    return kit.al2023(tmp_path_factory.mktemp("exit-codes") / "root")


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_error_path_exits_with_a_documented_code(case: Case, tree: Path):
    args = ("--root", str(tree), *case.args) if case.root else case.args
    r = kit.gpuprep(*args)  # the kit fails any run whose code is outside 0-3
    assert r.code in case.codes, f"{case.id}: exit {r.code}, documented {case.codes}\n{r}"
    problems = kit.error_problems(r, want_error=r.code != 0 and case.id != "no-args")
    assert not problems, f"{case.id}: {problems}\n{r}"


def test_usage_sweep_covers_every_option():
    """The generated sweep reaches every option that takes a value, of every command."""
    ids = {c.id for c in CASES}
    for cmd_name, cmd in _commands().items():
        for param in cmd.params:
            if _takes_value(param):
                assert f"{cmd_name}{param.opts[0]}-missing-value" in ids, (cmd_name, param.opts)


def test_not_root_is_a_precondition_3():
    """install and seal as a user who is not root: a precondition (3), one line saying so."""
    from conftest import require

    require("setpriv")
    kit_root = Path(tempfile.mkdtemp(prefix="gpuprep-exit-"))
    try:
        kit_root.chmod(0o755)
        root = kit.al2023(kit_root / "root")
        nobody = ("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--")
        for args in (("install", "--only", "ecs-config"), ("seal", "--yes", "--skip", kit.NO_DOCKER)):
            r = kit.gpuprep("--root", str(root), *args, prefix=nobody)
            assert r.code == 3, r
            assert not kit.error_problems(r), r
            assert "root" in kit.error_line(r), r
    finally:
        shutil.rmtree(kit_root, ignore_errors=True)


@pytest.mark.parametrize("signal_name, want", [("SIGINT", 1), ("SIGTERM", 1), ("SIGHUP", 1)])
def test_signals_from_a_fleet_agent(signal_name: str, want: int, tmp_path: Path):
    """Ctrl-C (or an agent's SIGINT), systemd's or Packer's SIGTERM, a hung-up session's SIGHUP mid-install: exit
    1 with one "interrupted" line, once the run has undone what it left half done (issue 23). Injected by strace
    at install's first rename (the first atomic write), so the signal lands inside a step, under the run lock."""
    kit.require_strace()
    root = kit.al2023(tmp_path / "root")
    prefix = ("strace", "-f", "-qq", "-o", "/dev/null",
              "-e", f"inject=rename,renameat,renameat2:signal={signal_name}:when=1")
    r = kit.gpuprep("--root", str(root), "install", "--only", "ecs-config", prefix=prefix)
    assert r.code == want, r
    if want > 0:
        assert not kit.error_problems(r), r
    again = kit.gpuprep("--root", str(root), "install", "--only", "ecs-config")
    assert again.code == 0, again
    assert not kit.temp_files(root), kit.temp_files(root)  # what the signal interrupted, swept


def test_documented_set_is_the_contract():
    assert DOCUMENTED_EXIT_CODES == {0, 1, 2, 3}
    assert 194 not in DOCUMENTED_EXIT_CODES and os.EX_OK in DOCUMENTED_EXIT_CODES
