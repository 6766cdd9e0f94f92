"""The SSM document's script run by bash on this machine, its parameters as SSM Agent passes them (SSM_<name>):
the wheelhouse fetched from an S3 URI, and seal kept behind confirmSeal=yes.

Real: bash running the document's runCommand, make dist's wheelhouse (.tar.gz), its install.sh installing gpuprep
offline into a scratch prefix with a CPython 3.9, and that gpuprep's doctor and seal --dry-run on this machine
(DOCKER_HOST points at no daemon: this machine's Engine is not the subject; --dry-run changes nothing).
SIMULATED: S3 and the AWS CLI, which this machine cannot reach: a stand-in `aws` on PATH answers `aws s3 cp
s3://BUCKET/KEY DEST` from a local folder and logs its arguments. The booted-instance run of the same script
is tests/system/test_fleet_pipelines.py.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import distkit
import integrations_kit as ik
import pytest
from contract import json_output

AWS_STANDIN = r"""#!/bin/sh
# STAND-IN for the AWS CLI (no S3 here): `aws s3 cp [--only-show-errors] s3://BUCKET/KEY DEST` copies
# $S3_STANDIN/BUCKET/KEY to DEST, as the real one downloads the object; anything else fails.
echo "$*" >> "$S3_STANDIN/aws.log"
[ "$1 $2" = "s3 cp" ] || { echo "aws stand-in: only s3 cp" >&2; exit 252; }
shift 2
[ "$1" = "--only-show-errors" ] && shift
key=${1#s3://}
[ -f "$S3_STANDIN/$key" ] || {
  echo "fatal error: An error occurred (404) when calling the HeadObject operation: Not Found" >&2; exit 1; }
cp "$S3_STANDIN/$key" "$2"
"""
URI = f"s3://gpuprep-builds/release/{distkit.WHEELHOUSE}.tar.gz"


@pytest.fixture(scope="module")
def wheelhouse(tmp_path_factory) -> Path:
    return distkit.build_wheelhouse(tmp_path_factory.mktemp("dist"))


@pytest.fixture
def instance(wheelhouse, tmp_path):
    """bash with the stand-in `aws` first on PATH and the wheelhouse as the S3 object URI names."""
    python = distkit.floor_python()
    if python is None:
        pytest.skip(f"needs a CPython {distkit.FLOOR} (`make provision` as root installs one)")
    s3 = tmp_path / "s3"
    obj = s3 / URI.removeprefix("s3://")
    obj.parent.mkdir(parents=True)
    shutil.copy2(wheelhouse.parent / f"{wheelhouse.name}.tar.gz", obj)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "aws").write_text(AWS_STANDIN)
    (bin_dir / "aws").chmod(0o755)
    doc = ik.ssm_document()
    script = ik.ssm_script(doc)
    base = {"PATH": f"{bin_dir}:/usr/sbin:/usr/bin:/sbin:/bin", "S3_STANDIN": str(s3), "GPUPREP_PYTHON": python,
            "GPUPREP_PREFIX": str(tmp_path / "opt/gpuprep"), "GPUPREP_LINK": str(tmp_path / "sbin-gpuprep"),
            "DOCKER_HOST": f"unix://{tmp_path}/no-dockerd.sock"}

    def run(**values: str) -> subprocess.CompletedProcess:
        proc = subprocess.run(["bash", "-c", script], env={**base, **ik.ssm_environment(doc, values)},
                              capture_output=True, text=True, timeout=600)
        assert proc.returncode in (0, 1, 2, 3), proc  # never 194: SSM would reboot the instance
        return proc

    return run, tmp_path


def test_the_wheelhouse_comes_from_s3_and_installs_first(instance):
    run, tmp = instance
    before = set(Path("/var/tmp").glob("gpuprep-wheelhouse.*"))
    proc = run(command="doctor", arguments="--no-container", wheelhouseS3Uri=URI)
    assert "gpuprep install.sh: " in proc.stderr and (tmp / "sbin-gpuprep").is_symlink(), proc.stderr[-2000:]
    report = json_output(proc.stdout)
    assert report["command"] == "doctor" and proc.returncode == {"ok": 0, "warning": 1, "critical": 2,
                                                                 "unknown": 3}[report["status"]]
    assert (tmp / "s3/aws.log").read_text().startswith(f"s3 cp --only-show-errors {URI} /var/tmp/")
    assert set(Path("/var/tmp").glob("gpuprep-wheelhouse.*")) == before, "the fetched wheelhouse was left behind"


def test_a_missing_object_or_two_wheelhouses_are_refused_in_one_line(instance):
    run, tmp = instance
    proc = run(command="doctor", wheelhouseS3Uri=URI.replace("release", "nope"))
    assert proc.returncode == 1 and proc.stderr.strip().endswith(
        "gpuprep document: could not fetch s3://gpuprep-builds/nope/gpuprep-wheelhouse-py3.9.tar.gz (the instance "
        "profile needs s3:GetObject on it)"), proc.stderr
    proc = run(command="doctor", wheelhouseS3Uri=URI, wheelhouse="/var/tmp/x")
    assert proc.returncode == 2 and "give wheelhouse or wheelhouseS3Uri, not both" in proc.stderr, proc.stderr
    assert not (tmp / "opt").exists()


def test_seal_runs_only_with_confirm_seal_yes(instance):
    run, tmp = instance
    proc = run(command="seal", arguments="--dry-run", wheelhouseS3Uri=URI)
    assert proc.returncode == 2 and proc.stdout == "", proc
    assert proc.stderr.strip() == ("gpuprep document: seal stops ECS and removes every container, image and the "
                                   "agent's state; run it with confirmSeal=yes")
    assert not (tmp / "opt").exists() and not (tmp / "s3/aws.log").exists()  # refused before anything ran
    proc = run(command="seal", arguments="--dry-run", wheelhouseS3Uri=URI, confirmSeal="yes")
    report = json_output(proc.stdout)
    assert report["command"] == "seal" and report["dry_run"] is True, proc.stderr[-2000:]
