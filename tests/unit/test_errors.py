"""Errors a user meets (issue 27 item 4): each kind has a stable kebab-case reference, one map per command turns the
error that ends it into its exit code, and --json carries the reference. Nothing is simulated: the errors are
gpuprep's own, the commands run through the real typer app."""

from __future__ import annotations

import errno
import importlib
import pkgutil
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from contract import json_output
from typer.testing import CliRunner

import gpuprep
from gpuprep import errors
from gpuprep.cli import app
from gpuprep.errors import BadInput, GpuprepError, PreconditionUnmet, StepFailed, UsageError, exit_code_for
from gpuprep.interrupts import Interrupted

KEBAB = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")


def _all_error_types() -> list[type[GpuprepError]]:
    for info in pkgutil.walk_packages(gpuprep.__path__, "gpuprep."):
        if not info.name.endswith("__main__"):
            importlib.import_module(info.name)
    found: list[type[GpuprepError]] = []
    todo: list[type[GpuprepError]] = [GpuprepError]
    while todo:
        cls = todo.pop()
        found.append(cls)
        todo += cls.__subclasses__()
    return [c for c in found if c.__module__.startswith("gpuprep.")]


def test_every_error_type_names_its_own_reference():
    """A subclass that inherits its parent's reference would be grouped with it by a fleet: each names its own,
    in kebab-case, and no two share one."""
    types = _all_error_types()
    assert len(types) > 10, types
    missing = [c.__qualname__ for c in types if "reference" not in vars(c)]
    assert not missing, f"error types without their own reference: {missing}"
    bad = [c.reference for c in types if not KEBAB.match(c.reference)]
    assert not bad, f"references not in kebab-case: {bad}"
    seen: dict[str, str] = {}
    for c in types:
        assert c.reference not in seen, f"{c.__qualname__} and {seen[c.reference]} share {c.reference}"
        seen[c.reference] = c.__qualname__


@pytest.mark.parametrize(("command", "exc", "code"), [
    ("install", BadInput("x"), 2),
    ("install", UsageError("x"), 2),
    ("seal", PreconditionUnmet("x"), 3),
    ("seal", StepFailed("x"), 1),
    ("install", Interrupted(signal.SIGTERM), 1),
    ("install", OSError(errno.ENOSPC, "No space left on device"), 1),
    ("knowledge", KeyError("a bug"), 1),
    ("", BadInput("x"), 2),  # before a command is known (a usage error at the top level)
    ("doctor", BadInput("x"), 3),  # Nagios: whatever stops doctor, the verdict is UNKNOWN
    ("doctor", UsageError("x"), 3),
    ("doctor", Interrupted(signal.SIGHUP), 3),
    ("doctor", KeyError("a bug"), 3),
])
def test_one_map_gives_each_command_its_exit_code(command, exc, code):
    assert exit_code_for(command, exc) == code


def test_what_is_said_of_an_error_that_is_not_gpupreps():
    full = errors.diagnosis(OSError(errno.ENOSPC, "No space left on device", "/etc/docker/daemon.json"))
    assert (full.reference, full.message) == ("os-enospc", "/etc/docker/daemon.json: No space left on device (ENOSPC)")
    assert errors.diagnosis(Interrupted(signal.SIGTERM)).reference == "interrupted"
    bug = errors.diagnosis(KeyError("x"))
    assert bug.reference == "internal-error" and bug.message == "internal error: KeyError: 'x'"


@pytest.mark.parametrize(("args", "code", "reference"), [
    (["install", "--runtime", "bogus"], 2, "bad-input"),
    (["install", "--only", "no-such-step", "--dry-run"], 2, "bad-input"),
    (["install", "--no-such-flag"], 2, "usage-error"),
    (["doctor", "--mark-unhealthy"], 3, "bad-input"),
    (["doctor", "--no-such-flag"], 3, "usage-error"),
    (["knowledge", "validate", "/nonexistent/table.json"], 2, "bad-input"),
])
@pytest.mark.allow_subp("python")
def test_json_carries_the_reference_of_the_error_that_ended_the_command(args, code, reference):
    """The one JSON object of a command that ended early keeps its fields and adds ``reference``: the console
    script in a process of its own (usage errors are said by cli.main, which typer's CliRunner does not run)."""
    proc = subprocess.run([sys.executable, "-m", "gpuprep", "--json", *args], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == code, (proc.stdout, proc.stderr)
    doc = json_output(proc.stdout)
    assert doc["reference"] == reference and doc["exit_code"] == code and doc["error"], doc
    assert set(doc) == {"command", "version", "status", "error", "hint", "exit_code", "reference"}
    assert f"gpuprep: error: {doc['error']}" in proc.stderr


def test_a_command_under_typers_runner_ends_in_the_same_wrapper():
    """Commands run inside the one wrapper whoever calls the app (tests and tools call it through CliRunner)."""
    result = CliRunner().invoke(app, ["--json", "doctor", "--mark-unhealthy"])
    assert result.exit_code == 3 and json_output(result.stdout)["reference"] == "bad-input"


def test_the_engine_not_answering_is_said_in_one_shape():
    """Issue 27: "the Engine does not answer" was written five ways; now EngineDown (engine/dockerd.py) says it, and
    no other module's strings (docstrings and comments aside) write the sentence."""
    import ast

    package = Path(gpuprep.__file__).parent
    shapes = []
    for path in sorted(package.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        docstrings = {id(n.value) for n in ast.walk(tree) if isinstance(n, ast.Expr)}
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings and \
                    re.search(r"does not answer|stopped answering", node.value) and \
                    path.relative_to(package).as_posix() != "engine/dockerd.py":
                shapes.append(f"{path.relative_to(package)}:{node.lineno}: {node.value}")
    assert not [s for s in shapes if "Engine" in s or "dockerd" in s], shapes


def test_the_contract_lists_every_reference():
    contract = (Path(gpuprep.__file__).parent.parent / "docs" / "contract.md").read_text(encoding="utf-8")
    missing = [c.reference for c in _all_error_types() if f"`{c.reference}`" not in contract]
    assert not missing, f"references docs/contract.md does not list: {missing}"
