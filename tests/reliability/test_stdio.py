"""Broken stdio and a non-UTF-8 locale never stop a run half way nor change its exit code (issue 23).

SSM Run Command, cloud-init and systemd start programs with odd stdio. Each case runs the real CLI twice on
identical trees: once with a plain pipe for stdout and stderr (the reference), once with the stdio of the
case, set up by bash: stdout or stderr to a full disk (``/dev/full``: every write gets ENOSPC), closed
(``>&-``: EBADF), or a pipe whose reader has gone (``| true``: EPIPE); or ``LANG=C LC_ALL=C
PYTHONIOENCODING=ascii`` with UTF-8 in daemon.json and ecs.config. Then: the same exit code as the
reference (install's the run's, doctor's the verdict's), the tree exactly as the reference run left it
(every step done), and no traceback or "internal error" wherever stderr still goes.

Real: the CLI, bash's redirections, the kernel's answers. Simulated: the image (a plain directory tree) and
ecs.service (a stand-in unit).
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import reliability_kit as kit

_figure = kit.module_figure("stdio", "kept the run and its exit code")

INSTALL = ("install", "--only", "docker-runtime,ecs-config,boot-check", "--runtime-path", kit.RUNTIME,
           "--no-gate")
DOCTOR = ("doctor", "--no-container")

# bash runs the command ("$@") with the case's stdio; its own exit code is gpuprep's.
STDIO = {
    "stdout-full": '"$@" >/dev/full',
    "stderr-full": '"$@" 2>/dev/full',
    "both-full": '"$@" >/dev/full 2>/dev/full',
    "stdout-closed": '"$@" >&-',
    "stderr-closed": '"$@" 2>&-',
    "both-closed": '"$@" >&- 2>&-',
    "stdout-epipe": '"$@" | true; exit "${PIPESTATUS[0]}"',
    "stderr-epipe": '{ "$@" 2>&1 1>&3 3>&- | true; } 3>&1; exit "${PIPESTATUS[0]}"',
}

UTF8_DAEMON_JSON = ('{\n    "log-driver": "json-file",\n    "log-opts": {"labels": "équipe,zürich"},\n'
                    '    "runtimes": {"custom": {"path": "/opt/custom/runc-wrapper"}}\n}\n').encode()
UTF8_ECS_CONFIG = 'ECS_CLUSTER=gpu-batch\nECS_INSTANCE_ATTRIBUTES={"équipe": "vidéo"}\n'.encode()


def _tree(tmp_path: Path, name: str, **kw) -> Path:
    return kit.al2023(tmp_path / name, gpuprep_inside=True, **kw)


def _snap(root: Path) -> dict[str, tuple]:
    """The tree, with the time in backups' names (``daemon.json.gpuprep-20261207T212426771190Z``) left out."""
    return {re.sub(r"\.gpuprep-\d{8}T\d+Z", ".gpuprep-TIME", k): v
            for k, v in kit.without_lock(kit.snapshot(root)).items()}


def _compare(ref: kit.Run, ref_root: Path, got: kit.Run, root: Path) -> list[str]:
    problems = []
    if got.code != ref.code:
        problems.append(f"exit {got.code}, where the same run with plain stdio exits {ref.code}")
    if "Traceback" in got.output or "internal error" in got.output:
        problems.append("a traceback or an internal error")
    changes = kit.diff(_snap(ref_root), _snap(root))
    if changes:
        problems.append(f"the tree differs from the reference run's: {changes[:5]}")
    return problems


def _case(tmp_path: Path, args: tuple[str, ...], bash: str, *, verbose: bool = True, **tree) -> list[str]:
    ref_root, root = _tree(tmp_path, "ref", **tree), _tree(tmp_path, "case", **tree)
    flags = ("-v",) if verbose else ()
    ref = kit.gpuprep(*flags, "--root", str(ref_root), *args, timeout=120)
    got = kit.gpuprep(*flags, "--root", str(root), *args, timeout=120, prefix=["bash", "-c", bash, "bash"])
    return [*_compare(ref, ref_root, got, root), *([] if ref.code in (0, 1, 2, 3) else [f"reference: {ref}"])]


@pytest.mark.parametrize("command", ["install", "install-json", "doctor"])
@pytest.mark.parametrize("stdio", sorted(STDIO))
def test_broken_stdout_or_stderr_keeps_the_run_and_its_exit_code(tmp_path, stdio, command):
    args = {"install": INSTALL, "install-json": ("--json", *INSTALL), "doctor": DOCTOR}[command]
    problems = _case(tmp_path, args, STDIO[stdio])
    kit.figure("stdio cases", not problems, 1, [f"{command}-{stdio}"] if problems else [])
    assert not problems


def _locale_run(root: Path, *args: str) -> kit.Run:
    env = {**kit.env(), "LANG": "C", "LC_ALL": "C", "PYTHONIOENCODING": "ascii"}
    proc = subprocess.run(kit.cli("--root", str(root), *args), capture_output=True, env=env, cwd="/", timeout=120,
                          stdin=subprocess.DEVNULL)
    return kit.Run(list(args), proc.returncode, proc.stdout.decode("ascii", "replace"),
                   proc.stderr.decode("ascii", "replace"), 0.0)


@pytest.mark.parametrize("dry", [False, True], ids=["run", "dry-run"])
def test_an_ascii_locale_with_utf8_in_daemon_json_and_ecs_config_runs_every_step(tmp_path, dry):
    """The diff and the step lines hold UTF-8 that an ASCII stdout cannot encode: replaced, never a failure."""
    args = (*INSTALL, "--dry-run") if dry else INSTALL
    ref_root = _tree(tmp_path, "ref", daemon_json=UTF8_DAEMON_JSON, ecs_config=UTF8_ECS_CONFIG)
    root = _tree(tmp_path, "case", daemon_json=UTF8_DAEMON_JSON, ecs_config=UTF8_ECS_CONFIG)
    ref = kit.gpuprep("--root", str(ref_root), *args, timeout=120)
    got = _locale_run(root, *args)
    problems = _compare(ref, ref_root, got, root)
    if ref.code != 0:
        problems.append(f"the reference run failed: {ref}")
    kit.figure("stdio cases", not problems, 1, [f"ascii-locale-{'dry' if dry else 'run'}"] if problems else [])
    assert not problems, str(got)
