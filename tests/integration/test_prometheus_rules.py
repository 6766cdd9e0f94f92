"""The Prometheus alerting rules and the Grafana dashboard for gpuprep's series.

Real: Debian's promtool (`check rules`, `test rules` running integrations/prometheus/tests/gpuprep-alerts.test.yml
on Prometheus' own rule engine) and gpuprep doctor writing its textfile for host trees (tests/hosttree.py; the GPU
hosts are SIMULATED, no GPU here). The series the rules and the dashboard name are checked against what doctor
writes, so a renamed series fails here, and each dashboard query is parsed by promtool as a recording rule.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import hosttree
import pytest
import yaml
from conftest import REPO, require

RULES = REPO / "integrations/prometheus/gpuprep-alerts.yml"
RULE_TESTS = REPO / "integrations/prometheus/tests/gpuprep-alerts.test.yml"
DASHBOARD = REPO / "integrations/grafana/gpuprep-dashboard.json"
SERIES = re.compile(r"\bgpuprep_[a-z_]+\b")


def promtool(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    require("promtool")
    return subprocess.run(["promtool", *args], capture_output=True, text=True, timeout=120, cwd=cwd)


@pytest.fixture(scope="module")
def written_series(tmp_path_factory) -> set[str]:
    """The series names doctor writes, over a healthy host and a broken one (skipped and failed checks both)."""
    names: set[str] = set()
    for host in ("healthy-p5-h100x8", "missing-node-g5"):
        text = hosttree.doctor_textfile(host, tmp_path_factory.mktemp(host))
        names |= {line.split("{")[0].split()[0] for line in text.splitlines() if line and not line.startswith("#")}
        if host == "healthy-p5-h100x8":
            # Skipped checks are exported (gpuprep_check_skipped 1) while their status stays absent.
            skipped = re.findall(r'^gpuprep_check_skipped\{check="([^"]+)",group="[^"]+"\} 1$', text, re.M)
            assert skipped and not any(f'gpuprep_check_status{{check="{c}",' in text for c in skipped), text
    return names


def test_rules_pass_promtool_check_and_their_unit_tests():
    check = promtool("check", "rules", str(RULES))
    assert check.returncode == 0 and "SUCCESS: 6 rules found" in check.stdout, check.stdout + check.stderr
    tests = promtool("test", "rules", RULE_TESTS.name, cwd=RULE_TESTS.parent)
    assert tests.returncode == 0 and "SUCCESS" in tests.stdout, tests.stdout + tests.stderr


def test_the_rule_tests_fail_a_rule_that_does_not_fire(tmp_path):
    """`promtool test rules` is no rubber stamp: with the critical alert's `for:` lengthened past the test's
    window, the same suite fails."""
    rules = tmp_path / "gpuprep-alerts.yml"
    rules.write_text(RULES.read_text().replace("for: 10m", "for: 1d", 1))
    (tmp_path / "tests").mkdir()
    shutil.copy2(RULE_TESTS, tmp_path / "tests" / RULE_TESTS.name)
    tests = promtool("test", "rules", RULE_TESTS.name, cwd=tmp_path / "tests")
    assert tests.returncode != 0 and "GpuprepCheckCritical" in tests.stdout + tests.stderr, tests.stdout


def test_every_series_the_rules_name_is_one_doctor_writes(written_series):
    named = set(SERIES.findall(RULES.read_text()))
    assert named and named <= written_series, named - written_series
    for rule in yaml.safe_load(RULES.read_text())["groups"][0]["rules"]:
        assert rule["labels"]["severity"] in ("critical", "warning") and rule["annotations"]["description"], rule


def test_dashboard_queries_parse_and_name_only_written_series(written_series, tmp_path):
    dash = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]
    assert len(exprs) == len(dash["panels"]) >= 8
    named = {name for e in exprs for name in SERIES.findall(e)}
    assert named <= written_series, named - written_series
    assert {"gpuprep_doctor_status", "gpuprep_check_status", "gpuprep_check_skipped"} <= named
    # Grafana's variables become what they stand for, then each query is a recording rule promtool must parse.
    rules = {"groups": [{"name": "dashboard", "rules": [
        {"record": f"gpuprep_dashboard:panel{i}", "expr": e.replace("$instance", ".*")} for i, e in enumerate(exprs)]}]}
    path = tmp_path / "dashboard-rules.yml"
    path.write_text(yaml.safe_dump(rules))
    check = promtool("check", "rules", str(path))
    assert check.returncode == 0, check.stdout + check.stderr
    assert len({p["id"] for p in dash["panels"]}) == len(dash["panels"])
    assert [v["name"] for v in dash["templating"]["list"]] == ["datasource", "instance"]
