"""Report model and renderers: Nagios ordering, JSON shape, Prometheus textfile."""

from __future__ import annotations

import io
import json

import pytest

from gpuprep.report import (
    CheckResult,
    DoctorReport,
    RunReport,
    Status,
    StepResult,
    StepStatus,
    prometheus_text,
    render_doctor_text,
    to_json,
    write_prometheus,
)

pytestmark = pytest.mark.allow_subp("python")


def _report(*statuses: Status) -> DoctorReport:
    checks = [CheckResult(f"c{i}", "gpu", s, f"summary {i}", "fix it" if s is not Status.OK else "")
              for i, s in enumerate(statuses)]
    return DoctorReport({"name": "Amazon Linux 2023"}, checks)


def test_worst_status_wins_and_maps_to_nagios_codes():
    assert _report(Status.OK, Status.SKIPPED).exit_code == 0
    assert _report(Status.OK, Status.WARNING).exit_code == 1
    assert _report(Status.WARNING, Status.CRITICAL, Status.OK).exit_code == 2
    assert _report(Status.OK, Status.UNKNOWN).exit_code == 3
    # A critical finding is not hidden by a check that could not run.
    assert _report(Status.UNKNOWN, Status.CRITICAL).status is Status.CRITICAL
    assert _report(Status.UNKNOWN, Status.WARNING).status is Status.WARNING
    assert _report().status is Status.OK


def test_doctor_json_shape():
    data = json.loads(to_json(_report(Status.OK, Status.CRITICAL)))
    assert data["command"] == "doctor" and data["status"] == "critical"
    assert set(data["checks"][0]) == {"id", "group", "status", "summary", "hint", "duration_ms", "data"}


def test_run_report_status_and_selection():
    steps = [StepResult("preflight", StepStatus.OK, "fine"), StepResult("packages", StepStatus.CHANGED, "x")]
    rep = RunReport("install", {}, steps, extra={"selection": {"docker": "docker-25.0.6-1.amzn2023"}})
    data = rep.as_dict()
    assert data["status"] == "changed" and data["selection"]["docker"].startswith("docker-")
    assert RunReport("install", {}, steps[:1]).status == "ok"
    assert RunReport("install", {}, steps, exit_code=1).status == "failed"


def test_prometheus_text_follows_textfile_conventions(tmp_path):
    text = prometheus_text(_report(Status.OK, Status.WARNING, Status.SKIPPED))
    lines = text.splitlines()
    assert "gpuprep_doctor_status 1" in lines
    assert 'gpuprep_check_status{check="c1",group="gpu"} 1' in lines
    assert not any('check="c2"' in line and "check_status" in line for line in lines)  # skipped: absent
    for line in lines:
        if not line.startswith("#"):
            assert len(line.split()) == 2, f"no timestamps in textfiles: {line}"
    out = tmp_path / "gpuprep.prom"
    write_prometheus(_report(Status.OK), str(out))
    assert out.read_text().startswith("# HELP") and [p.name for p in tmp_path.iterdir()] == ["gpuprep.prom"]


def test_prometheus_build_info_and_last_run():
    from gpuprep import __version__

    lines = prometheus_text(_report(Status.OK), now=1764720000.25).splitlines()
    assert f'gpuprep_build_info{{version="{__version__}"}} 1' in lines
    assert "gpuprep_doctor_last_run_timestamp_seconds 1764720000.250" in lines
    assert "# TYPE gpuprep_doctor_last_run_timestamp_seconds gauge" in lines
    declared = [line.split()[2] for line in lines if line.startswith("# TYPE")]
    assert len(declared) == len(set(declared))  # each family declared once


# -- doctor's text: the verdict at a glance ---------------------------------------------------
def _host_with_one_cause() -> DoctorReport:
    """dockerd down: one cause, three checks failing with the same fix; the rest healthy or skipped."""
    start = "`sudo systemctl start docker`"
    return DoctorReport({"name": "Amazon Linux 2023"}, [
        CheckResult("platform-os", "platform", Status.OK, "Amazon Linux 2023"),
        CheckResult("platform-root", "platform", Status.OK, "root"),
        CheckResult("gpu-pci", "gpu", Status.OK, "8 NVIDIA GPUs"),
        CheckResult("gpu-nvml", "gpu", Status.SKIPPED, "needs the running system"),
        CheckResult("docker-engine", "docker", Status.CRITICAL, "the Docker Engine does not answer", start),
        CheckResult("docker-daemon-json", "docker", Status.OK, "valid JSON"),
        CheckResult("docker-default-runtime", "docker", Status.UNKNOWN, "no Engine to ask", start),
        CheckResult("gpu-container", "container", Status.WARNING, "no Engine to run it in", start),
        CheckResult("ecs-gpu-support", "ecs", Status.WARNING, "ECS_ENABLE_GPU_SUPPORT is not set",
                    "`gpuprep install --only ecs-config`"),
    ])


def _text(report: DoctorReport, **kw) -> list[str]:
    buf = io.StringIO()
    render_doctor_text(report, buf, **kw)
    return buf.getvalue().splitlines()


def test_the_first_line_is_the_verdict_as_nagios_reads_it():
    lines = _text(_host_with_one_cause())
    assert lines[0] == ("GPUPREP CRITICAL - docker-engine, gpu-container, ecs-gpu-support, docker-default-runtime"
                        " | ok=4 warning=2 critical=1 unknown=1 skipped=1")
    healthy = DoctorReport({"name": "x"}, [CheckResult("a", "gpu", Status.OK, "fine"),
                                           CheckResult("b", "gpu", Status.SKIPPED, "n/a")])
    assert _text(healthy)[0] == "GPUPREP OK - 1 check ok | ok=1 warning=0 critical=0 unknown=0 skipped=1"


def test_healthy_groups_fold_to_a_line_problems_show_and_each_fix_comes_once():
    lines = _text(_host_with_one_cause())
    text = "\n".join(lines)
    assert "platform   [ok]     2 checks ok" in lines
    assert "gpu        [ok]     1 check ok, 1 skipped (-v says why)" in lines
    assert any(line.startswith("docker     [CRIT]   docker-engine") for line in lines)
    assert "           [ok]     1 more check ok" in lines  # docker-daemon-json, folded under the problems
    assert "platform-os" not in text and "gpu-pci" not in text  # healthy checks are counted, not listed
    fixes = [line.strip() for line in lines if line.strip().startswith("fix: ")]
    assert fixes == ["fix: `sudo systemctl start docker`", "fix: `gpuprep install --only ecs-config`"]
    assert "for: docker-engine, gpu-container, docker-default-runtime" in text
    assert lines[-1] == "CRITICAL: 4 ok, 2 warning, 1 critical, 1 unknown, 1 skipped (exit 2)"


def test_verbose_lists_every_check_with_the_same_verdict():
    lines = _text(_host_with_one_cause(), verbose=True)
    assert lines[0].startswith("GPUPREP CRITICAL - ")
    for cid in ("platform-os", "platform-root", "gpu-pci", "gpu-nvml", "docker-daemon-json"):
        assert any(cid in line for line in lines), cid
    assert any("[skip]" in line and "needs the running system" in line for line in lines)
    assert sum(line.strip().startswith("fix: ") for line in lines) == 2


def test_in_the_journal_problem_lines_carry_their_syslog_priority(tmp_path, monkeypatch):
    """systemd connects the boot gate's stdout to the journal and says so in JOURNAL_STREAM (device:inode);
    a line that starts with <N> gets priority N. A plain file of the same name is the stand-in for that stream."""
    import os

    path = tmp_path / "journal-stream"
    with open(path, "w") as stream:
        st = os.fstat(stream.fileno())
        monkeypatch.setenv("JOURNAL_STREAM", f"{st.st_dev}:{st.st_ino}")
        render_doctor_text(_host_with_one_cause(), stream)
    lines = path.read_text().splitlines()
    assert lines[0].startswith("<3>GPUPREP CRITICAL - ")
    assert any(line.startswith("<3>docker     [CRIT]") for line in lines)
    assert any(line.startswith("<4>") and "docker-default-runtime" in line for line in lines)
    assert any(line.startswith("<5>  fix: ") for line in lines)
    assert "gpu        [ok]     1 check ok, 1 skipped (-v says why)" in lines  # no priority: info
    monkeypatch.setenv("JOURNAL_STREAM", "1:2")  # another stream (output redirected): no prefixes
    assert not any(line.startswith("<") for line in _text(_host_with_one_cause()))


def test_run_json_says_its_version_and_whether_it_was_a_dry_run():
    from gpuprep import __version__

    planned = RunReport("install", {}, [StepResult("docker-runtime", StepStatus.PLANNED, "x")], dry_run=True)
    data = planned.as_dict()
    assert data["version"] == __version__ and data["dry_run"] is True
    assert data["status"] == "planned"  # nothing changed in a dry run
    assert json.loads(to_json(_report(Status.OK)))["version"] == __version__
    # gpu-check in a dry run: it would run a container, which changes nothing; a converged host's dry run is ok.
    verify = StepResult("gpu-check", StepStatus.PLANNED, "would run nvidia-smi", changes=False)
    assert RunReport("install", {}, [StepResult("docker-runtime", StepStatus.OK, "x"), verify], dry_run=True
                     ).status == "ok"


def test_the_recap_keeps_one_order_whatever_order_the_steps_ended_in():
    from gpuprep.report import render_run_summary

    a = [StepResult("x", StepStatus.SKIPPED, ""), StepResult("y", StepStatus.OK, ""),
         StepResult("z", StepStatus.CHANGED, "")]
    out = []
    for steps in (a, list(reversed(a))):
        buf = io.StringIO()
        render_run_summary(RunReport("install", {}, steps), buf)
        out.append(buf.getvalue())
    assert out[0] == out[1] == "install changed: 1 ok, 1 changed, 1 skipped (exit 0)\n"


def test_text_renderer_shows_hint_for_problems_only():
    buf = io.StringIO()
    render_doctor_text(_report(Status.OK, Status.CRITICAL), buf)
    text = buf.getvalue()
    assert "fix: fix it" in text and "CRITICAL" in text and "(exit 2)" in text


# -- text off and on a terminal -----------------------------------------------------------
STEP_LINES = """
import io, sys
from gpuprep.report import RunReport, StepResult, StepStatus, render_run_summary, render_step_line
buf = io.StringIO()
step = StepResult("containers", StepStatus.FAILED, "could not remove [bold]c1[/bold]", hint="see `docker ps -a`",
                  commands=[["docker", "rm", "--force", "<each container>"]], lines=["container c1 (abc)"])
render_step_line(step, buf)
render_run_summary(RunReport("seal", {}, [step], exit_code=3), buf)
print("rich" in sys.modules)
print(buf.getvalue(), end="")
"""


def _render_in_a_fresh_process(**env: str) -> tuple[bool, str]:
    import os
    import subprocess
    import sys

    clean = {k: v for k, v in os.environ.items() if k not in ("FORCE_COLOR", "NO_COLOR")}
    out = subprocess.run([sys.executable, "-c", STEP_LINES], env={**clean, **env}, capture_output=True,
                         text=True, check=True).stdout
    loaded, _, text = out.partition("\n")
    return loaded == "True", text


def test_off_a_terminal_text_is_plain_and_rich_is_never_imported():
    loaded, text = _render_in_a_fresh_process()
    assert not loaded, "rich imported for text that goes to a pipe, a file or a user-data log"
    assert text.splitlines() == [
        "[FAIL]    containers      could not remove [bold]c1[/bold]",  # shown as written, never read as markup
        "                          $ docker rm --force <each container>",
        "                          container c1 (abc)",
        "                          fix: see `docker ps -a`",
        "seal failed: 1 failed (exit 3)",
    ]


def test_force_color_styles_text_off_a_terminal():
    loaded, text = _render_in_a_fresh_process(FORCE_COLOR="1")
    assert loaded and "\x1b[" in text
    assert "could not remove [bold]c1[/bold]" in text


def test_on_a_terminal_text_is_styled_and_says_the_same(monkeypatch):
    import os
    import re
    import select

    monkeypatch.setenv("TERM", "xterm")
    for var in ("NO_COLOR", "FORCE_COLOR"):
        monkeypatch.delenv(var, raising=False)
    master, slave = os.openpty()
    with os.fdopen(slave, "w") as tty:
        render_doctor_text(_report(Status.OK, Status.CRITICAL), tty)
        shown = b""
        while select.select([master], [], [], 0.2)[0]:  # read while the terminal is open: closed, Linux says EIO
            shown += os.read(master, 65536)
    os.close(master)
    text = shown.decode()
    assert "\x1b[" in text, "no styles on a terminal"
    plain = io.StringIO()
    render_doctor_text(_report(Status.OK, Status.CRITICAL), plain)
    assert re.sub(r"\x1b\[[0-9;]*m", "", text).replace("\r\n", "\n") == plain.getvalue()
