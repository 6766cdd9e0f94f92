"""``gpuprep doctor`` end to end through the CLI, on fake host trees (``--root``).

The GPU host is simulated by ``tests/hosttree.py`` trees (this machine has no GPU); everything else
is real: the typer app (through its CliRunner, and once as the installed ``.venv/bin/gpuprep`` in a
subprocess), the doctor runner, every group's checks, the JSON and Prometheus renderers. Other groups'
checks run too, so exit codes are asserted as "worst status wins" over whatever the JSON holds, and
exactly only where a gpu finding decides them (critical is the top).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import hosttree
import pytest
from conftest import REPO
from contract import json_output
from typer.testing import CliRunner

from gpuprep.cli import app
from gpuprep.doctor import GROUPS
from gpuprep.report import Status

pytestmark = pytest.mark.allow_subp('gpuprep', 'mkdir', 'python', 'rpm', 'systemctl')

GPUPREP = REPO / ".venv" / "bin" / "gpuprep"
NO_DOCKER = {"DOCKER_HOST": None}  # --root without DOCKER_HOST: no Engine, docker checks skip


def invoke(*args: str):
    return CliRunner().invoke(app, list(args), env=NO_DOCKER)


def tree(tmp_path: Path, name: str) -> Path:
    return hosttree.build_named(name, tmp_path / name)


def doctor_json(tmp_path: Path, name: str, *extra: str) -> tuple[dict, int]:
    result = invoke("--root", str(tree(tmp_path, name)), "--json", "doctor", "--no-container", *extra)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return json_output(result.stdout), result.exit_code


def worst_exit(report: dict) -> int:
    return Status.worst(Status(c["status"]) for c in report["checks"]).exit_code


def gpu_checks(report: dict) -> dict[str, dict]:
    return {c["id"]: c for c in report["checks"] if c["group"] == "gpu"}


def test_json_report_shape_and_grouping(tmp_path):
    report, code = doctor_json(tmp_path, "healthy-p5-h100x8")
    assert report["command"] == "doctor"
    assert report["platform"]["name"] == "Amazon Linux 2023"
    assert code == worst_exit(report) and report["status"] == Status.worst(
        Status(c["status"]) for c in report["checks"]).value
    groups = [c["group"] for c in report["checks"]]
    # Grouped: each group's checks together, groups in the documented order.
    seen = list(dict.fromkeys(groups))
    assert seen == [grp for grp in GROUPS if grp in seen]
    assert groups == sorted(groups, key=seen.index)
    for c in report["checks"]:
        assert set(c) >= {"id", "group", "status", "summary", "hint", "duration_ms", "data"}
        assert c["status"] in ("ok", "warning", "critical", "unknown", "skipped")
        if c["status"] in ("warning", "critical", "unknown"):
            assert c["hint"], c
        if c["group"] == "container":
            assert c["status"] == "skipped" and c["summary"] == "--no-container"
    gpu = gpu_checks(report)
    assert gpu["gpu-pci"]["status"] == "ok" and gpu["gpu-pci"]["data"]["count"] == 8
    assert gpu["gpu-count"]["status"] == "ok"
    assert gpu["gpu-nvml"]["status"] == "skipped"  # --root: NVML belongs to the running system
    assert {c["id"]: c["status"] for c in report["checks"] if c["group"] == "platform"}["platform-os"] == "ok"


def test_no_gpu_host_is_critical_exit_2(tmp_path):
    report, code = doctor_json(tmp_path, "no-gpu")
    assert gpu_checks(report)["gpu-pci"]["summary"] == "no NVIDIA GPU on this host"
    assert report["status"] == "critical" and code == 2


@pytest.mark.parametrize("name, check", [
    ("api-mismatch-al2", "gpu-driver-version"),
    ("missing-node-g5", "gpu-count"),
    ("module-not-loaded-g4dn", "gpu-kernel-module"),
])
def test_broken_hosts_exit_critical(tmp_path, name, check):
    report, code = doctor_json(tmp_path, name)
    assert gpu_checks(report)[check]["status"] == "critical"
    assert code == 2


def test_unknown_distro_does_not_crash(tmp_path):
    report, code = doctor_json(tmp_path, "unknown-distro")
    platform_os = next(c for c in report["checks"] if c["id"] == "platform-os")
    assert platform_os["status"] == "unknown" and "Debian" in platform_os["summary"]
    assert gpu_checks(report)["gpu-pci"]["status"] == "ok"
    assert code == worst_exit(report) and code in (1, 2, 3)
    assert not [c["summary"] for c in report["checks"] if c["summary"].startswith("check failed")]


def test_boot_runs_only_boot_checks(tmp_path):
    report, code = doctor_json(tmp_path, "no-gpu", "--boot")
    from gpuprep.doctor import all_checks

    boot_ids = {c.id for c in all_checks() if c.boot}
    assert {c["id"] for c in report["checks"]} <= boot_ids
    assert "gpu-pci" in {c["id"] for c in report["checks"]}
    assert code == 1  # the boot gate fails on critical, with 1 (not 2: systemd shows that as INVALIDARGUMENT)


def test_list_checks():
    result = invoke("doctor", "--list-checks")
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert any(re.match(r"^gpu/gpu-pci\s+NVIDIA GPUs on the PCI bus.*\[boot\]$", line) for line in lines)
    assert any(re.match(r"^gpu/gpu-persistence\s+persistence mode", line) and "[boot]" not in line for line in lines)
    assert any(line.startswith("platform/platform-os ") for line in lines)


def test_prom_textfile(tmp_path):
    prom_dir = tmp_path / "textfile"
    prom_dir.mkdir()
    prom = prom_dir / "gpuprep.prom"
    report, code = doctor_json(tmp_path, "missing-node-g5", "--prom", str(prom))
    assert code == 2
    assert [p.name for p in prom_dir.iterdir()] == ["gpuprep.prom"]  # atomic: no temp file left behind
    text = prom.read_text()
    assert text.endswith("\n")
    sample = re.compile(r'^[a-zA-Z_:][a-zA-Z0-9_:]*(\{([a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\]|\\.)*",?)*\})? -?[0-9.eE+-]+$')
    help_seen = set()
    for line in text.splitlines():
        if line.startswith("# HELP ") or line.startswith("# TYPE "):
            help_seen.add(line.split()[2])
            continue
        assert sample.match(line), f"not node_exporter text format (or has a timestamp): {line!r}"
        assert line.split("{")[0].split(" ")[0] in help_seen  # declared before use
    assert "gpuprep_doctor_status 2\n" in text
    assert 'gpuprep_check_status{check="gpu-count",group="gpu"} 2\n' in text
    assert 'gpuprep_check_status{check="gpu-pci",group="gpu"} 0\n' in text
    status = text.split("# HELP gpuprep_check_status")[1].split("# HELP ")[0]
    assert 'check="gpu-nvml"' not in status  # skipped: absent from the status family...
    assert 'gpuprep_check_skipped{check="gpu-nvml",group="gpu"} 1\n' in text  # ... and said skipped
    assert 'gpuprep_check_skipped{check="gpu-pci",group="gpu"} 0\n' in text


def test_prom_unwritable_is_one_line_unknown(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    result = invoke("--root", str(tree(tmp_path, "no-gpu")), "doctor", "--no-container",
                    "--prom", str(blocker / "gpuprep.prom"))
    assert result.exit_code == 3
    assert "gpuprep: error: cannot write" in result.stderr and "Traceback" not in result.stderr


def test_traceback_only_with_verbose(tmp_path):
    missing = str(tmp_path / "no-such-root")
    quiet = invoke("--root", missing, "doctor", "--no-container")
    assert quiet.exit_code == 3
    assert "gpuprep: error: --root" in quiet.stderr and "not a directory" in quiet.stderr
    assert "Traceback" not in quiet.stderr
    loud = invoke("-v", "--root", missing, "doctor", "--no-container")
    assert loud.exit_code == 3 and "Traceback (most recent call last)" in loud.stderr


def test_installed_console_script_end_to_end(tmp_path):
    """The installed entry point in a fresh process: stdout is exactly one JSON object."""
    if not GPUPREP.exists():
        pytest.skip(f"needs the venv's console script {GPUPREP} (make venv)")
    root = tree(tmp_path, "module-not-loaded-g4dn")
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    proc = subprocess.run([str(GPUPREP), "--root", str(root), "--json", "doctor", "--no-container"],
                          capture_output=True, text=True, timeout=60, env=env)
    report = json_output(proc.stdout)
    assert proc.returncode == worst_exit(report) == 2
    assert gpu_checks(report)["gpu-kernel-module"]["status"] == "critical"
    assert "Traceback" not in proc.stderr


def test_module_entry_point(tmp_path):
    """``python -m gpuprep`` (how the accelerator machine runs it, tests/gpu_evidence.sh) works too."""
    root = tree(tmp_path, "healthy-h200-ubuntu")
    proc = subprocess.run([sys.executable, "-m", "gpuprep", "--root", str(root), "--json", "doctor", "--no-container"],
                          capture_output=True, text=True, timeout=60, cwd=REPO,
                          env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
    report = json_output(proc.stdout)
    assert proc.returncode == worst_exit(report)
    assert gpu_checks(report)["gpu-driver-version"]["summary"] == "kernel module and userland agree: 580.159.04"


def test_version():
    from gpuprep import __version__

    result = invoke("--version")
    assert result.exit_code == 0 and result.stdout == f"gpuprep {__version__}\n"


def _only(monkeypatch, *checks) -> None:
    import gpuprep.doctor

    monkeypatch.setattr(gpuprep.doctor, "all_checks", lambda: list(checks))


def test_a_crashing_check_shows_its_traceback_only_with_verbose(tmp_path, monkeypatch):
    from gpuprep.runner.checks import Check

    def broken(probes):
        raise KeyError("Runtimes")

    _only(monkeypatch, Check("boom", "docker", "t", broken))
    root = str(tree(tmp_path, "no-gpu"))
    quiet = invoke("--root", root, "doctor", "--no-container")
    assert quiet.exit_code == 3  # UNKNOWN: doctor could not tell, and says so
    assert "check failed: KeyError: 'Runtimes'" in quiet.stdout and "-v doctor`" in quiet.stdout
    assert "Traceback" not in quiet.stdout + quiet.stderr
    loud = invoke("-v", "--root", root, "doctor", "--no-container")
    assert loud.exit_code == 3 and "Traceback (most recent call last)" in loud.stderr
    assert 'raise KeyError("Runtimes")' in loud.stderr


@pytest.mark.parametrize("statuses, code", [
    ((Status.OK, Status.SKIPPED), 0),
    ((Status.OK, Status.WARNING), 1),
    ((Status.WARNING, Status.CRITICAL, Status.UNKNOWN), 2),
    ((Status.OK, Status.UNKNOWN), 3),
    ((Status.WARNING, Status.UNKNOWN), 1),  # a real finding outranks "could not tell" (report.Status)
])
def test_nagios_exit_code_is_the_worst_status(tmp_path, monkeypatch, statuses, code):
    from gpuprep.runner.checks import Check, Verdict

    _only(monkeypatch, *(Check(f"c{i}", "gpu", "t", lambda p, s=s: Verdict(s, s.value, "`true`"), boot=True)
                         for i, s in enumerate(statuses) if s is not Status.SKIPPED))
    root = str(tree(tmp_path, "no-gpu"))
    result = invoke("--root", root, "--json", "doctor", "--no-container")
    assert result.exit_code == code
    doc = json.loads(result.stdout)  # schema: its checks are made up (c0, c1, ...), no contract ids
    assert doc["status"] == Status.worst(statuses).value
    boot = invoke("--root", root, "doctor", "--no-container", "--boot")
    assert boot.exit_code == (1 if code == 2 else 0)  # the boot gate: only critical keeps ECS from starting


def test_prom_into_a_missing_directory_creates_nothing_and_the_hint_fixes_it(tmp_path):
    """A misspelt textfile directory must not be made: node_exporter would never read it. The hint's
    command (run here without sudo when this is root or sudo is absent) makes the next run succeed."""
    root = tree(tmp_path, "missing-node-g5")
    prom = tmp_path / "node-exporter" / "gpuprep.prom"
    result = invoke("--root", str(root), "doctor", "--no-container", "--prom", str(prom))
    assert result.exit_code == 3
    assert f"gpuprep: error: --prom {prom}: its directory {prom.parent} does not exist" in result.stderr
    assert not prom.parent.exists()
    hint = next(line for line in result.stderr.splitlines() if line.startswith("gpuprep: hint:"))
    command = hint.split("create it: ", 1)[1].split()
    if command[0] == "sudo" and (os.geteuid() == 0 or shutil.which("sudo") is None):
        command = command[1:]
    subprocess.run(command, check=True, timeout=10)
    again = invoke("--root", str(root), "doctor", "--no-container", "--prom", str(prom))
    assert again.exit_code == 2 and prom.read_text().startswith("# HELP")


# -- the JSON contract under --json: one object on stdout, whatever ends the command --------------------
@pytest.mark.parametrize("argv, command, code", [
    (["--json", "install", "--runtime-paht", "/x"], "install", 2),  # a misspelt option: click's parse error
    (["install", "--json", "--runtime", "bogus"], "install", 2),  # a value gpuprep refuses
    # doctor is a Nagios plugin: bad arguments are UNKNOWN (3), not a critical host (2)
    (["--json", "--root", "", "doctor"], "doctor", 3),  # an unset $MOUNT must not mean "here"
    (["--json", "doctor", "--no-contianer"], "doctor", 3),
    (["--json", "seal", "--only", "nope"], "seal", 2),  # an unknown step id
    (["--json", "knowledge", "validate"], "knowledge", 2),  # a subcommand's usage error names its command
])
def test_an_error_before_any_report_is_still_one_json_object(argv, command, code):
    """The installed script, as a fleet runs it (click's own usage errors never reach a CliRunner the same way):
    stdout parses as one JSON object naming the command, the error and its hint; stderr keeps the two lines."""
    proc = subprocess.run([str(GPUPREP), *argv], capture_output=True, text=True, timeout=60, env={**os.environ})
    assert proc.returncode == code, proc.stderr
    doc = json_output(proc.stdout)
    assert doc["command"] == command and doc["exit_code"] == code and doc["error"] and doc["hint"]
    assert doc["status"] == ("unknown" if command == "doctor" else "failed") and doc["version"]
    assert proc.stderr.startswith("gpuprep: error: ") and "\ngpuprep: hint: " in proc.stderr


def test_lists_are_json_under_json():
    checks = json_output(invoke("--json", "doctor", "--list-checks").stdout)
    assert checks["command"] == "doctor" and {"id", "group", "title", "boot"} == set(checks["checks"][0])
    assert any(c["boot"] for c in checks["checks"])
    for command in ("install", "seal"):
        steps = json_output(invoke("--json", command, "--list-steps").stdout)
        assert steps["command"] == command and set(steps["steps"][0]) == {"id", "title"}
        assert steps["steps"][0]["id"] == "preflight"


def test_help_gives_whole_summaries_examples_and_exit_codes():
    top = invoke("--help").stdout
    commands = top.split("Commands:")[1].split("Examples:")[0]
    assert "prove a container sees the" in commands and "..." not in commands  # click cuts short help at 45 chars
    assert "Exit codes:" in top and "Nagios" in top and "Examples:" in top
    for command in ("install", "seal", "doctor"):
        text = invoke(command, "--help").stdout
        assert "Examples:" in text and "Exit codes" in text, command


def test_completion_offers_step_ids_after_those_typed_and_runtime_values():
    env = {**os.environ, "_GPUPREP_COMPLETE": "complete_bash", "COMP_CWORD": "3"}
    words = subprocess.run([str(GPUPREP)], env={**env, "COMP_WORDS": "gpuprep install --only preflight,pa"},
                           capture_output=True, text=True, timeout=30).stdout.split()
    assert words == ["preflight,packages"]
    words = subprocess.run([str(GPUPREP)], env={**env, "COMP_WORDS": "gpuprep seal --skip "},
                           capture_output=True, text=True, timeout=30).stdout.split()
    assert "deep-clean" in words and "stamp" in words
    words = subprocess.run([str(GPUPREP)], env={**env, "COMP_WORDS": "gpuprep install --runtime l"},
                           capture_output=True, text=True, timeout=30).stdout.split()
    assert words == ["legacy"]
