"""The instance type and its GPUs: the metadata client, the table, and the two checks that use them.

SIMULATED (these machines are no EC2 instances and have no GPU): the instance metadata service is the stand-in of
``tests/imds_standin.py``, a real HTTP server on 127.0.0.1 that answers as IMDSv2 does; the GPU host is a
``tests/hosttree.py`` tree (``short-p5-h100x7``: a p5.48xlarge with one H100 gone from the bus), NVML's answer
seeded into the probes. gpuprep's HTTP client, the checks, the runner and the CLI are the real ones.
"""

from __future__ import annotations

import time
from pathlib import Path

import imds_standin
import probekit
import pytest
from contract import json_output
from typer.testing import CliRunner

from gpuprep.cli import app
from gpuprep.ec2 import imds
from gpuprep.ec2.instance_types import families, lookup
from gpuprep.gpu import instance_checks as checks
from gpuprep.gpu import query as gpu_query
from gpuprep.host import Host
from gpuprep.report import Status
from gpuprep.runner.checks import run_check

pytestmark = pytest.mark.allow_subp("rpm")
BY_ID = {c.id: c for c in checks.CHECKS}
probes = probekit.probes


def tree(tmp_path: Path, name: str = "short-p5-h100x7", **changes) -> Path:
    return probekit.tree(tmp_path, name, **changes)


@pytest.fixture
def standin():
    made = []

    def start(instance_type: str = "p5.48xlarge", mode: str = "v2") -> imds_standin.StandIn:
        made.append(imds_standin.serve(instance_type, mode))
        return made[-1]

    yield start
    for s in made:
        s.close()






def nvml(n: int, persistence: bool = True) -> gpu_query.GpuQuery:
    return gpu_query.GpuQuery(source="nvml", driver_version="580.95.05", gpus=[
        gpu_query.GpuStatus(i, "NVIDIA H100 80GB HBM3", f"GPU-{i:08d}", persistence_mode=persistence)
        for i in range(n)])


# -- the table ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("itype, gpus, persistence", [
    ("g4dn.xlarge", 1, False), ("g4dn.12xlarge", 4, False), ("g4dn.metal", 8, False), ("g5.48xlarge", 8, False),
    ("g5g.16xlarge", 2, False), ("g6.xlarge", 1, False), ("gr6.8xlarge", 1, False), ("g6e.24xlarge", 4, False),
    ("p3.16xlarge", 8, False), ("p3dn.24xlarge", 8, True), ("p4d.24xlarge", 8, True), ("p4de.24xlarge", 8, True),
    ("p5.48xlarge", 8, True), ("p5.4xlarge", 1, False), ("p5e.48xlarge", 8, True), ("p5en.48xlarge", 8, True),
    ("p6-b200.48xlarge", 8, True), ("P5.48XLARGE", 8, True),
])
def test_the_table(itype, gpus, persistence):
    spec = lookup(itype)
    assert spec is not None and (spec.gpus, spec.persistence_required) == (gpus, persistence)
    assert spec.source.startswith("https://aws.amazon.com/ec2/instance-types/")


@pytest.mark.parametrize("itype", ["c5.large", "g4ad.xlarge", "p5.12xlarge", "", "p5"])
def test_types_the_table_lacks_are_none(itype):
    assert lookup(itype) is None


def test_every_family_cites_its_page():
    assert all(f.source.startswith("https://aws.amazon.com/ec2/instance-types/") and f.sizes
               for f in families().values())


# -- the metadata client -----------------------------------------------------------------------------
def test_imdsv2_token_then_instance_type(tmp_path, standin):
    s = standin("g6e.12xlarge")
    it = imds.read_instance_type(Host(tmp_path, env={imds.ENDPOINT_ENV: s.url}))
    assert (it.value, it.via, it.endpoint) == ("g6e.12xlarge", "IMDSv2", s.url)
    (put, path, headers), (get, path2, headers2) = s.seen
    assert (put, path, get, path2) == ("PUT", "/latest/api/token", "GET", "/latest/meta-data/instance-type")
    assert headers["X-aws-ec2-metadata-token-ttl-seconds"] == str(imds.TOKEN_TTL_S)
    assert headers2["X-aws-ec2-metadata-token"] == imds_standin.TOKEN


def test_imdsv1_where_the_token_is_refused(tmp_path, standin):
    s = standin("p4d.24xlarge", mode="v1")
    it = imds.read_instance_type(Host(tmp_path, env={imds.ENDPOINT_ENV: s.url + "/"}))
    assert (it.value, it.via) == ("p4d.24xlarge", "IMDSv1")


def test_a_hanging_service_costs_the_bound_and_no_more(tmp_path, standin):
    s = standin(mode="hang")
    started = time.monotonic()
    it = imds.read_instance_type(Host(tmp_path, env={imds.ENDPOINT_ENV: s.url}), budget_s=0.3)
    assert time.monotonic() - started < 1.0
    assert it.value is None and "no answer within 0.3s" in it.skipped and "--http-endpoint enabled" in it.skipped


def test_nobody_listening_is_a_fast_skip(tmp_path, standin):
    s = standin()
    url = s.url
    s.close()  # the port is free again: connection refused
    started = time.monotonic()
    it = imds.read_instance_type(Host(tmp_path, env={imds.ENDPOINT_ENV: url}))
    assert it.value is None and time.monotonic() - started < 0.5 and url in it.skipped


def test_not_an_ec2_instance_sends_nothing(tmp_path, monkeypatch):
    """No DMI naming EC2 and no endpoint named: skipped without a packet. Proven by a socket that fails the test
    if anything connects, not by a clock (a 50 ms bound could fail on a busy machine, issue 23)."""
    import socket

    def refuse(self, *args, **kwargs):
        raise AssertionError(f"a connection was attempted: {args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    it = imds.read_instance_type(Host(tmp_path, env={}))
    assert it.value is None and it.skipped.startswith("not an EC2 instance")


@pytest.mark.parametrize("dmi_file, text", [
    ("/sys/class/dmi/id/sys_vendor", "Amazon EC2\n"), ("/sys/class/dmi/id/bios_version", "4.11.amazon\n"),
    ("/sys/hypervisor/uuid", "ec2e1916-9099-7caf-fd21-012345abcdef\n")])
def test_ec2_is_told_by_dmi(tmp_path, dmi_file, text):
    (tmp_path / dmi_file.lstrip("/")).parent.mkdir(parents=True)
    (tmp_path / dmi_file.lstrip("/")).write_text(text)
    assert imds.on_ec2(Host(tmp_path, env={}))


def test_turned_off_and_bad_endpoints(tmp_path):
    off = imds.read_instance_type(Host(tmp_path, env={imds.DISABLED_ENV: "true", imds.ENDPOINT_ENV: "http://x"}))
    assert off.value is None and "turned off" in off.skipped
    bad = imds.read_instance_type(Host(tmp_path, env={imds.ENDPOINT_ENV: "https://169.254.169.254"}))
    assert bad.value is None and "is not an http:// URL" in bad.skipped


# -- gpu-instance-count ------------------------------------------------------------------------------
def test_a_p5_short_of_a_gpu_in_every_view_is_critical(tmp_path, standin):
    s = standin("p5.48xlarge")
    result = run_check(BY_ID["gpu-instance-count"], probes(tree(tmp_path), {imds.ENDPOINT_ENV: s.url}))
    assert result.status is Status.CRITICAL, result.summary
    assert result.summary == ("p5.48xlarge has 8 H100 GPUs; this host sees PCI 7, /dev 7: ECS would register it "
                              "with too few GPUs")
    assert "stop-instances" in result.hint and "start-instances" in result.hint
    assert result.data["expected"] == 8 and result.data["counts"] == {"pci": 7, "dev": 7}
    assert result.data["short"] == ["dev", "pci"] and result.data["imds"]["via"] == "IMDSv2"


def test_nvml_short_while_the_bus_is_full_names_the_driver(tmp_path, standin):
    s = standin("p5.48xlarge")
    root = tree(tmp_path, "healthy-p5-h100x8", instance_type="p5.48xlarge")
    result = run_check(BY_ID["gpu-instance-count"], probes(root, {imds.ENDPOINT_ENV: s.url}, probe_query=nvml(7)))
    assert result.status is Status.CRITICAL and "NVML 7" in result.summary and "PCI 8" in result.summary
    # the fixes of a GPU the driver does not serve, as gpu-count and gpu-sources-listed give them (one constructor)
    from gpuprep.gpu.inventory import driver_not_serving

    assert result.fixes == driver_not_serving(probes(root)) and result.data["short"] == ["nvml"]


def test_a_full_p5_is_ok(tmp_path, standin):
    s = standin("p5.48xlarge")
    root = tree(tmp_path, "healthy-p5-h100x8", instance_type="p5.48xlarge")
    result = run_check(BY_ID["gpu-instance-count"], probes(root, {imds.ENDPOINT_ENV: s.url}, probe_query=nvml(8)))
    assert result.status is Status.OK
    assert result.summary == "p5.48xlarge has 8 H100 GPUs; every view sees them: PCI 8, /dev 8, NVML 8"


def test_a_type_the_table_lacks_is_skipped(tmp_path, standin):
    s = standin("g7e.2xlarge")
    result = run_check(BY_ID["gpu-instance-count"], probes(tree(tmp_path), {imds.ENDPOINT_ENV: s.url}))
    assert result.status is Status.SKIPPED and "g7e.2xlarge is not a GPU instance type" in result.summary


def test_no_metadata_service_skips_both_checks(tmp_path):
    root = tree(tmp_path, instance_type=None)
    for check in checks.CHECKS:
        result = run_check(check, probes(root, {}))
        assert result.status is Status.SKIPPED and result.summary.startswith("not an EC2 instance")


# -- gpu-persistence-required ------------------------------------------------------------------------
def test_persistence_off_on_a_p5_is_critical(tmp_path, standin):
    s = standin("p5.48xlarge")
    root = tree(tmp_path, "healthy-p5-h100x8", instance_type="p5.48xlarge")
    result = run_check(BY_ID["gpu-persistence-required"],
                       probes(root, {imds.ENDPOINT_ENV: s.url}, probe_query=nvml(8, persistence=False)))
    assert result.status is Status.CRITICAL and "driver rpc error: timed out" in result.summary
    assert "nvidia-persistenced" in result.hint and result.data["persistence_required"] is True


@pytest.mark.parametrize("itype", ["g5.48xlarge", "p5.4xlarge"])
def test_persistence_is_not_required_elsewhere(tmp_path, standin, itype):
    s = standin(itype)
    result = run_check(BY_ID["gpu-persistence-required"],
                       probes(tree(tmp_path), {imds.ENDPOINT_ENV: s.url}, probe_query=nvml(1, persistence=False)))
    assert result.status is Status.SKIPPED and "advised, not required" in result.summary


# -- the gate, through the CLI -----------------------------------------------------------------------
def test_doctor_boot_fails_a_host_short_of_gpus(tmp_path, standin):
    s = standin("p5.48xlarge")
    root = tree(tmp_path)
    result = CliRunner().invoke(app, ["--root", str(root), "--json", "doctor", "--boot"],
                                env={"DOCKER_HOST": None, imds.ENDPOINT_ENV: s.url})
    report = json_output(result.stdout)
    found = {c["id"]: c for c in report["checks"]}
    assert found["gpu-instance-count"]["status"] == "critical" and result.exit_code == 1
    assert found["gpu-count"]["status"] == "ok"  # the views agree with each other: only the type tells
