"""`doctor --boot --mark-unhealthy`: a failed boot gate marks the instance Unhealthy in its Auto Scaling group, only
with the option, only when the gate fails.

Real: gpuprep's console script in a fresh process on a host tree (tests/hosttree.py) whose gate fails
(missing-node-g5: a GPU's device node is gone) or passes (healthy-p5-h100x8); its HTTP client, SigV4 signing and
IMDSv2 session over real sockets.
SIMULATED (no AWS here): the Auto Scaling API is moto's server (PyPI `moto[server]`, a local AWS API stand-in) on
127.0.0.1, reached through the SDKs' own setting AWS_ENDPOINT_URL_AUTO_SCALING; the instance metadata service is
tests/imds_standin.py (a stand-in) answering the instance id, the region and the instance profile's credentials.
moto does not check signatures unless told to: tests/unit/ec2/test_autoscaling_sigv4.py checks ours against
botocore's signer.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from pathlib import Path

import imds_standin
import pytest
from hosttree import build_named

REPO = Path(__file__).resolve().parents[2]
GPUPREP = REPO / ".venv/bin/gpuprep"
REGION = "us-east-1"
ROLE = "gpu-host-role"


@pytest.fixture(scope="module")
def moto_url(tmp_path_factory):
    """moto's server on a free port of 127.0.0.1, waited for until it accepts a connection (bounded)."""
    server = REPO / ".venv/bin/moto_server"
    if not server.exists():
        pytest.fail("needs moto's server in the venv: `make venv` installs the test extra (moto[server])")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    with open(log, "w") as out:
        proc = subprocess.Popen([str(server), "-H", "127.0.0.1", "-p", str(port)], stdout=out, stderr=out,
                                stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    try:
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(
                        f"moto_server did not listen on {port} within 60s: {log.read_text()[-2000:]}") from None
                time.sleep(0.1)  # polling for the listen, bounded by the deadline above
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.fixture(scope="module")
def autoscaling(moto_url):
    import boto3

    return boto3.client("autoscaling", region_name=REGION, endpoint_url=moto_url, aws_access_key_id="test",
                        aws_secret_access_key="test")


@pytest.fixture
def instance_id(moto_url, autoscaling, request) -> str:
    """One instance in a group of its own, healthy."""
    import boto3

    ec2 = boto3.client("ec2", region_name=REGION, endpoint_url=moto_url, aws_access_key_id="test",
                       aws_secret_access_key="test")
    name = f"gpu-{request.node.name[-40:]}".replace("[", "-").replace("]", "")
    ami = ec2.describe_images()["Images"][0]["ImageId"]
    autoscaling.create_launch_configuration(LaunchConfigurationName=name, ImageId=ami, InstanceType="p5.48xlarge")
    autoscaling.create_auto_scaling_group(AutoScalingGroupName=name, LaunchConfigurationName=name, MinSize=1,
                                          MaxSize=1, DesiredCapacity=1, AvailabilityZones=[f"{REGION}a"])
    group = autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[name])["AutoScalingGroups"][0]
    return group["Instances"][0]["InstanceId"]


def health(autoscaling, instance: str) -> str:
    # AWS answers HEALTHY/UNHEALTHY; moto echoes what SetInstanceHealth was given (Unhealthy)
    return autoscaling.describe_auto_scaling_instances(InstanceIds=[instance])["AutoScalingInstances"][0][
        "HealthStatus"].upper()


def imds_for(instance: str):
    creds = {"Code": "Success", "Type": "AWS-HMAC", "AccessKeyId": "ASIAGPUPREPTESTKEY01",
             "SecretAccessKey": "stand-in-secret", "Token": "stand-in-session-token",
             "Expiration": "2099-01-01T00:00:00Z"}
    return imds_standin.serve("p5.48xlarge", extra={
        "meta-data/instance-id": instance, "meta-data/placement/region": REGION,
        "meta-data/iam/security-credentials/": ROLE, f"meta-data/iam/security-credentials/{ROLE}": json.dumps(creds)})


def gate(tree: Path, imds_url: str, moto_url: str, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("DOCKER_HOST",) and not k.startswith("AWS_")}
    env.update(AWS_EC2_METADATA_SERVICE_ENDPOINT=imds_url, AWS_ENDPOINT_URL_AUTO_SCALING=moto_url)
    return subprocess.run([str(GPUPREP), "--root", str(tree), "doctor", "--boot", *args], capture_output=True,
                          text=True, timeout=120, env=env)


def asked_credentials(imds) -> bool:
    return any("security-credentials" in path for _, path, _ in imds.seen)


def test_a_failed_gate_marks_the_instance_unhealthy(tmp_path, moto_url, autoscaling, instance_id):
    tree = build_named("missing-node-g5", tmp_path / "host")
    imds = imds_for(instance_id)
    try:
        proc = gate(tree, imds.url, moto_url, "--mark-unhealthy")
    finally:
        imds.close()
    assert proc.returncode == 1, proc.stdout[-2000:] + proc.stderr
    assert (f"gpuprep: boot gate failed: marked {instance_id} Unhealthy in its Auto Scaling group "
            "(SetInstanceHealth): the group replaces it") in proc.stderr, proc.stderr
    assert health(autoscaling, instance_id) == "UNHEALTHY"
    # IMDSv2 only: every question carried the session token.
    assert all(h.get("X-aws-ec2-metadata-token") for method, _, h in imds.seen if method == "GET"), imds.seen


def test_without_the_option_or_with_a_passing_gate_nothing_is_sent(tmp_path, moto_url, autoscaling, instance_id):
    failing = build_named("missing-node-g5", tmp_path / "failing")
    imds = imds_for(instance_id)
    try:
        proc = gate(failing, imds.url, moto_url)
        assert proc.returncode == 1 and "Unhealthy" not in proc.stderr, proc.stderr
        assert not asked_credentials(imds), imds.seen
        passing = build_named("healthy-p5-h100x8", tmp_path / "passing")
        proc = gate(passing, imds.url, moto_url, "--mark-unhealthy")
        assert proc.returncode == 0 and "Unhealthy" not in proc.stderr, proc.stdout[-2000:] + proc.stderr
        assert not asked_credentials(imds), imds.seen
    finally:
        imds.close()
    assert health(autoscaling, instance_id) == "HEALTHY"


def test_an_instance_outside_any_group_is_one_line_and_the_gate_still_fails(tmp_path, moto_url):
    tree = build_named("missing-node-g5", tmp_path / "host")
    imds = imds_for("i-0123456789abcdef0")
    try:
        proc = gate(tree, imds.url, moto_url, "--mark-unhealthy")
    finally:
        imds.close()
    assert proc.returncode == 1, proc.stderr
    line = next(x for x in proc.stderr.splitlines() if x.startswith("gpuprep: boot gate failed:"))
    assert line.startswith("gpuprep: boot gate failed: not marked Unhealthy: SetInstanceHealth for "
                           "i-0123456789abcdef0 answered HTTP 4"), line
    assert "Traceback" not in proc.stderr


def test_the_option_needs_boot(tmp_path):
    proc = subprocess.run([str(GPUPREP), "doctor", "--mark-unhealthy"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 3 and proc.stderr.splitlines()[0] == (
        "gpuprep: error: --mark-unhealthy acts when the boot gate fails: it needs --boot"), proc.stderr
