"""EC2 scheduled maintenance and EFA (issue 28, items 5 and 6).

SIMULATED (these machines are no EC2 instances and have no EFA): the instance metadata service is the stand-in of
``tests/imds_standin.py`` (a real HTTP server on 127.0.0.1 answering as IMDSv2 does, here also
``meta-data/events/maintenance/scheduled``); the p5 host is a ``tests/hosttree.py`` tree whose EFA devices, modules
and uverbs nodes are stand-ins (``efa`` in the host description). gpuprep's HTTP client, the checks and the CLI are
the real ones.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import imds_standin
import probekit
import pytest
from contract import json_output
from typer.testing import CliRunner

from gpuprep.cli import app
from gpuprep.ec2 import host_checks
from gpuprep.ec2.imds import InstanceType
from gpuprep.engine import efa_checks
from gpuprep.report import Status
from gpuprep.runner.checks import run_check

pytestmark = pytest.mark.allow_subp("rpm")
BY_ID = {c.id: c for c in [*host_checks.CHECKS, *efa_checks.CHECKS]}
P5 = InstanceType("p5.48xlarge", via="IMDSv2")
RETIREMENT = [{"NotBefore": "21 Dec 2026 09:00:43 GMT", "Code": "instance-retirement", "State": "active",
               "Description": "The instance is running on degraded hardware", "EventId": "instance-event-0d59937288b7",
               "NotAfter": "21 Dec 2026 09:17:23 GMT"}]


@pytest.fixture
def standin():
    made = []

    def start(events, mode: str = "v2") -> imds_standin.StandIn:
        paths = {host_checks.SCHEDULED: json.dumps(events)} if events is not None else {}
        made.append(imds_standin.serve("p5.48xlarge", mode, paths=paths))
        return made[-1]

    yield start
    for s in made:
        s.close()


def p5(tmp_path: Path, **changes) -> Path:
    return probekit.tree(tmp_path, "healthy-p5-h100x8", **changes)


# -- item 6: scheduled maintenance --------------------------------------------------------------------------------
def test_a_pending_retirement_is_a_warning_with_its_date(tmp_path, standin):
    s = standin(RETIREMENT)
    result = run_check(BY_ID["ec2-maintenance"], probekit.probes(p5(tmp_path), env={"AWS_EC2_METADATA_SERVICE_ENDPOINT":
                                                                                    s.url}))
    assert result.status is Status.WARNING, result
    assert "instance-retirement not before 21 Dec 2026 09:00:43 GMT" in result.summary
    assert "instance-event-0d59937288b7" in result.hint
    assert ("PUT", "/latest/api/token") in [(m, p) for m, p, _ in s.seen]  # IMDSv2: a token first


def test_a_pending_retirement_names_the_commands_that_move_the_instance(tmp_path):
    """The hint was prose whose commands held placeholders (`--instance-id ID`, `--cluster C`, `DATE`). The moves are
    now argvs with the instance's id and region from the metadata stand-in; the drain (its ARN) and the reschedule
    (a date of the user's) stay words. They cannot run here: no EC2 (SIMULATED metadata)."""
    s = imds_standin.serve("p5.48xlarge", paths={host_checks.SCHEDULED: json.dumps(RETIREMENT)}, extra={
        "meta-data/instance-id": "i-0abc1234def567890", "meta-data/placement/region": "us-east-2"})
    try:
        result = run_check(BY_ID["ec2-maintenance"], probekit.probes(p5(tmp_path), env={
            "AWS_EC2_METADATA_SERVICE_ENDPOINT": s.url}))
    finally:
        s.close()
    assert result.status is Status.WARNING, result
    ids = ("--region", "us-east-2", "--instance-ids", "i-0abc1234def567890")
    assert [f.argv for f in result.fixes] == [
        (), ("aws", "ec2", "stop-instances", *ids), ("aws", "ec2", "wait", "instance-stopped", *ids),
        ("aws", "ec2", "start-instances", *ids), ()]
    assert "21 Dec 2026 09:00:43 GMT" in result.fixes[0].why and "instance-event-0d59937288b7" in result.fixes[-1].why


def test_no_event_and_completed_events_pass(tmp_path, standin):
    done = [{**RETIREMENT[0], "State": "completed", "Description": "[Completed] The instance is running on degraded"}]
    for events in ([], done, None):  # None: the path answers 404, as on an instance that never had one
        s = standin(events)
        result = run_check(BY_ID["ec2-maintenance"], probekit.probes(p5(tmp_path / str(len(s.seen) + id(s))), env={
            "AWS_EC2_METADATA_SERVICE_ENDPOINT": s.url}))
        assert result.status is Status.OK, (events, result)


def test_a_hanging_metadata_service_is_skipped_within_its_bound(tmp_path, standin):
    s = standin(RETIREMENT, mode="hang")
    started = time.monotonic()
    result = run_check(BY_ID["ec2-maintenance"], probekit.probes(p5(tmp_path), env={"AWS_EC2_METADATA_SERVICE_ENDPOINT":
                                                                                    s.url}))
    assert result.status is Status.SKIPPED and "did not answer within 1s" in result.summary, result
    assert time.monotonic() - started < 3  # fail-open, bounded (host_checks.MAINTENANCE_BUDGET_S plus slack)


def test_a_proxy_in_the_environment_is_not_used(tmp_path, standin):
    s = standin(RETIREMENT)
    env = {"AWS_EC2_METADATA_SERVICE_ENDPOINT": s.url, "http_proxy": "http://127.0.0.1:9", "HTTP_PROXY":
           "http://127.0.0.1:9"}
    result = run_check(BY_ID["ec2-maintenance"], probekit.probes(p5(tmp_path), env=env))
    assert result.status is Status.WARNING, result


# -- item 5: EFA --------------------------------------------------------------------------------------------------
def test_the_p5_tree_with_every_efa_device_passes(tmp_path):
    result = run_check(BY_ID["efa-devices"], probekit.probes(p5(tmp_path), probe_instance_type=P5))
    assert result.status is Status.OK, result
    assert "32 device(s) as a p5.48xlarge has" in result.summary and "memlock unlimited" in result.summary


def test_the_p5_tree_without_its_efa_stand_ins_warns_with_the_expected_count(tmp_path, standin):
    """The done-when case, through the CLI: doctor on the p5 tree, the type from the metadata stand-in."""
    root = p5(tmp_path, efa=0)
    s = standin([])
    out = CliRunner().invoke(app, ["--root", str(root), "--json", "doctor", "--no-container"],
                             env={"AWS_EC2_METADATA_SERVICE_ENDPOINT": s.url})
    check = next(c for c in json_output(out.stdout)["checks"] if c["id"] == "efa-devices")
    assert check["status"] == "warning", check
    assert "0 EFA device(s) of the 32 a p5.48xlarge has" in check["summary"]
    assert check["data"]["expected"] == 32


def test_missing_modules_uverbs_and_memlock_are_each_named(tmp_path):
    root = p5(tmp_path, files={})  # no LimitMEMLOCK drop-in
    (root / "proc/modules").write_text("nvidia 56496128 0 - Live 0x0000000000000000\n")
    for node in (root / "dev/infiniband").iterdir():
        node.unlink()
    result = run_check(BY_ID["efa-devices"], probekit.probes(root, probe_instance_type=P5))
    assert result.status is Status.WARNING
    assert "module(s) efa, ib_uverbs not loaded" in result.summary
    assert "no /dev/infiniband/uverbs*" in result.summary
    assert "memlock limit is unset" in result.summary
    # under --root: the modules load on an instance booted from the image, once each (ib_uverbs makes the nodes)
    loads = [f for f in result.fixes if "modprobe" in f.argv]
    assert [(f.argv, f.runs) for f in loads] == [(("sudo", "modprobe", "-a", "efa", "ib_uverbs"), "booted")]


@pytest.mark.allow_subp("dockerd")
def test_the_memlock_hint_sets_the_default_and_keeps_the_other_keys(tmp_path):
    root = p5(tmp_path, files={"/etc/docker/daemon.json": json.dumps({"log-driver": "journald",
                                                                       "default-ulimits": {"nofile": {
                                                                           "Name": "nofile", "Hard": 65536,
                                                                           "Soft": 65536}}})})
    result = run_check(BY_ID["efa-devices"], probekit.probes(root, probe_instance_type=P5))
    assert result.status is Status.WARNING and "memlock limit is unset" in result.summary, result
    command = list(next(f.argv for f in result.fixes if "docker-memlock" in f.argv))  # its argv, as shown
    assert command[:2] == ["gpuprep", "--root"]
    out = CliRunner().invoke(app, command[1:], env={"AWS_EC2_METADATA_SERVICE_ENDPOINT": "http://127.0.0.1:9"})
    assert out.exit_code == 0, out.output
    config = json.loads((root / "etc/docker/daemon.json").read_text())
    assert config["log-driver"] == "journald" and config["default-ulimits"]["nofile"]["Hard"] == 65536
    assert config["default-ulimits"]["memlock"] == {"Name": "memlock", "Hard": -1, "Soft": -1}
    assert run_check(BY_ID["efa-devices"], probekit.probes(root, probe_instance_type=P5)).status is Status.OK


def test_a_host_without_efa_where_none_is_expected_is_skipped(tmp_path):
    root = probekit.tree(tmp_path, "healthy-g5-al2")
    result = run_check(BY_ID["efa-devices"], probekit.probes(root, probe_instance_type=InstanceType("g5.xlarge")))
    assert result.status is Status.SKIPPED


