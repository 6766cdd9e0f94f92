"""Report model and renderers: Nagios ordering, JSON shape, Prometheus textfile."""

from __future__ import annotations

import io
import json

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


def test_text_renderer_shows_hint_for_problems_only():
    buf = io.StringIO()
    render_doctor_text(_report(Status.OK, Status.CRITICAL), buf)
    text = buf.getvalue()
    assert "fix: fix it" in text and "CRITICAL" in text and "(exit 2)" in text
