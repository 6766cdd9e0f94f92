"""No gpuprep command exits with a code outside 0-3 (docs/contract.md), whatever a bug does.

SSM Run Command reads exit 194 as "reboot, then run me again" (integrations/README.md). ``cli.main`` is
the one way out of the console script: these run it in a fresh interpreter (it ends with ``os._exit``)
with a command added that exits with a code the contract does not have, as a bug would.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from gpuprep.errors import DOCUMENTED_EXIT_CODES

pytestmark = pytest.mark.allow_subp("python", "python3")

BUGGY = """
import sys, typer
from gpuprep import cli

@cli.app.command("{name}")
def buggy():
    {body}

sys.argv = ["gpuprep", "{name}"]
cli.main()
"""


def run_buggy(name: str, body: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", BUGGY.format(name=name, body=body)],
                          capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("body, want", [
    ("raise typer.Exit(194)", 1),  # SSM's "reboot and run again"
    ("sys.exit(450)", 1),  # os._exit(450) would leave as 450 % 256 == 194
    ("sys.exit(-1)", 1),
    ("raise typer.Exit(3010)", 1),  # Windows' "reboot required", which SSM also reads
])
def test_an_undocumented_code_leaves_as_the_commands_failure(body: str, want: int):
    proc = run_buggy("install-like", body)
    assert proc.returncode == want, proc.stderr
    assert "is not one gpuprep documents" in proc.stderr and "gpuprep: hint:" in proc.stderr


def test_doctor_leaves_as_unknown():
    """doctor's "could not run" is Nagios UNKNOWN (3): a monitoring system must not read it as a verdict."""
    # As the real doctor does first thing (cli._merge_globals), it names itself.
    proc = run_buggy("doctor-like", "cli.G.command = 'doctor'; raise typer.Exit(194)")
    assert proc.returncode == 3, proc.stderr


def test_documented_codes_pass_through():
    for code in sorted(DOCUMENTED_EXIT_CODES):
        proc = run_buggy("fine", f"raise typer.Exit({code})")
        assert proc.returncode == code and "documents" not in proc.stderr, proc.stderr
