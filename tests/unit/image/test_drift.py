"""Drift from the sealed image: what seal records (``image/stamp.py``) and what doctor names (``image/drift.py``).

SIMULATED (no GPU, driver or Amazon Linux here): ``tests/hosttree.py`` trees, among them ``driver-drift-p5`` (a
p5 booted from an image sealed with driver 580.95.05 whose userland an update replaced with 580.105.08 under the
loaded module); the installed packages seeded into the probes as ``rpm -q`` would report them. The stamp's
readers, the checks, the runner and the CLI are the real ones; the real rpm/dnf side is in
tests/system/test_gate_instance_and_drift.py.
"""

from __future__ import annotations

from pathlib import Path

import hosttree
import probekit
import pytest
from contract import json_output
from typer.testing import CliRunner

from gpuprep.cli import app
from gpuprep.host import Host
from gpuprep.image import drift, stamp
from gpuprep.packages.evr import EVR
from gpuprep.packages.resolve import Package
from gpuprep.platform import detect
from gpuprep.report import Status
from gpuprep.runner.checks import run_check

pytestmark = pytest.mark.allow_subp("rpm")
BY_ID = {c.id: c for c in drift.CHECKS}
probes = probekit.probes


def tree(tmp_path: Path, name: str = "driver-drift-p5", **changes) -> Path:
    return probekit.tree(tmp_path, name, **changes)
SEAL = hosttree.load_spec("driver-drift-p5").files["/etc/gpuprep/seal.json"]






def pkg(nevr: str) -> Package:
    name, version, release = nevr.rsplit("-", 2)
    return Package(name, EVR.parse(f"{version}-{release}"), "x86_64")


def write_locks(root: Path, *entries: str) -> None:
    (root / "etc/dnf/plugins").mkdir(parents=True, exist_ok=True)
    (root / "etc/dnf/plugins/versionlock.conf").write_text("[main]\nenabled = 1\n")
    (root / "etc/dnf/plugins/versionlock.list").write_text("".join(e + "\n" for e in entries))


# -- what seal records ---------------------------------------------------------------------------------
def test_the_stamp_records_the_driver_userland_and_module_apart(tmp_path):
    root = tree(tmp_path, files={})
    record = stamp.driver_record(Host(root, env={}))
    assert record == {"userland": "580.105.08", "userland_from": "libnvidia-ml", "kernel_module": "580.95.05",
                      "kernel_module_from": "/proc/driver/nvidia/version"}


def test_the_stamp_records_the_lock_list(tmp_path):
    root = tree(tmp_path, files={})
    write_locks(root, "# gpuprep", "nvidia-container-toolkit-0:1.17.8-1.*", "ecs-init-0:1.99.0-1.amzn2023.*")
    host = Host(root, env={})
    assert stamp.lock_record(host, detect(host)) == {
        "file": "/etc/dnf/plugins/versionlock.list",
        "entries": ["ecs-init-0:1.99.0-1.amzn2023.*", "nvidia-container-toolkit-0:1.17.8-1.*"]}


def test_an_image_without_the_driver_records_none(tmp_path):
    root = tree(tmp_path, "no-gpu")
    assert stamp.driver_record(Host(root, env={})) == {
        "userland": None, "userland_from": None, "kernel_module": None, "kernel_module_from": None}


# -- gpu-driver-drift ---------------------------------------------------------------------------------
def test_userland_replaced_under_the_module_is_critical(tmp_path):
    result = run_check(BY_ID["gpu-driver-drift"], probes(tree(tmp_path)))
    assert result.status is Status.CRITICAL, result.summary
    assert result.summary.startswith("NVRM API mismatch: driver userland 580.105.08 under the loaded kernel module "
                                     "580.95.05 (userland 580.95.05 -> 580.105.08; sealed 2026-11-02T09:14:00Z")
    assert "aws/amazon-ecs-ami 256" in result.summary
    assert "sudo reboot" in result.hint and "versionlock add" in result.hint and "580.95.05" in result.hint
    assert result.data["changed"] == ["userland 580.95.05 -> 580.105.08"]


def test_both_moved_together_is_a_warning(tmp_path):
    result = run_check(BY_ID["gpu-driver-drift"], probes(tree(tmp_path, module="580.105.08")))
    assert result.status is Status.WARNING
    assert "userland 580.95.05 -> 580.105.08; kernel module 580.95.05 -> 580.105.08" in result.summary
    assert "versionlock add 'nvidia*'" in result.hint


def test_as_sealed_is_ok(tmp_path):
    result = run_check(BY_ID["gpu-driver-drift"], probes(tree(tmp_path, userland="580.95.05", stale_userland=[])))
    assert result.status is Status.OK
    assert result.summary == "driver as sealed: userland 580.95.05, kernel module 580.95.05"


def test_an_old_stamp_is_read_with_its_one_version(tmp_path):
    old = {k: v for k, v in SEAL.items() if k not in ("driver", "versionlock")}
    result = run_check(BY_ID["gpu-driver-drift"], probes(tree(tmp_path, files={stamp.SEAL_JSON: old})))
    assert result.status is Status.CRITICAL and "records one driver version" in result.summary


def test_an_old_stamp_without_any_driver_says_not_recorded(tmp_path):
    old = {"gpuprep": "0.0.9", "sealed_at": "2025-01-01T00:00:00Z", "packages": {}}
    result = run_check(BY_ID["gpu-driver-drift"], probes(tree(tmp_path, files={stamp.SEAL_JSON: old})))
    assert result.status is Status.SKIPPED and "driver not recorded" in result.summary


@pytest.mark.parametrize("text", ["[]", "{", '{"driver": "580", "driver_version": 3}'])
def test_a_garbled_stamp_is_no_crash(tmp_path, text):
    for check in BY_ID.values():
        result = run_check(check, probes(tree(tmp_path, files={stamp.SEAL_JSON: text}), installed_rpm=[]))
        assert result.status is Status.SKIPPED, (check.id, result.summary)
        tmp_path = tmp_path / "again"


def test_not_sealed_is_skipped(tmp_path):
    result = run_check(BY_ID["gpu-driver-drift"], probes(tree(tmp_path, files={})))
    assert result.status is Status.SKIPPED and "not a sealed image" in result.summary


# -- packages-drift -----------------------------------------------------------------------------------
NOW = [pkg("ecs-init-1.99.0-1.amzn2023"), pkg("docker-25.0.8-1.amzn2023.0.5"), pkg("nvidia-container-toolkit-1.18.0-1"),
       pkg("nvidia-container-toolkit-base-1.18.0-1")]


def test_packages_and_locks_changed_since_the_seal(tmp_path):
    root = tree(tmp_path)
    write_locks(root, "nvidia-container-toolkit-0:1.18.0-1.*")
    result = run_check(BY_ID["packages-drift"], probes(root, installed_rpm=NOW))
    assert result.status is Status.WARNING, result.summary
    assert ("newer than sealed: nvidia-container-toolkit-1.18.0-1 (sealed nvidia-container-toolkit-1.17.8-1)"
            in result.summary)
    assert "installed since the seal: nvidia-container-toolkit-base-1.18.0-1" in result.summary
    assert "locks gone from /etc/dnf/plugins/versionlock.list: nvidia-container-toolkit-0:1.17.8-1.*" in result.summary
    locks = f"{root}/etc/dnf/plugins/versionlock.list"
    assert result.hint.index(f"grep -vxF -e 'nvidia-container-toolkit-0:1.18.0-1.*' {locks}") < \
        result.hint.index(f"dnf --installroot={root} -y downgrade nvidia-container-toolkit-1.17.8-1") < \
        result.hint.index(f"printf '%s\\n' 'nvidia-container-toolkit-0:1.17.8-1.*' >> {locks}")
    assert result.data["packages"]["downgrade"] == ["nvidia-container-toolkit-1.17.8-1"]


def test_packages_as_sealed_are_ok(tmp_path):
    root = tree(tmp_path)
    write_locks(root, "nvidia-container-toolkit-0:1.17.8-1.*")
    now = [pkg(n) for n in SEAL["packages"].values()]
    result = run_check(BY_ID["packages-drift"], probes(root, installed_rpm=now))
    assert result.status is Status.OK and result.summary.startswith("the runtime stack is as sealed")


def test_a_removed_package_and_no_recorded_locks(tmp_path):
    old = {k: v for k, v in SEAL.items() if k != "versionlock"}
    root = tree(tmp_path, files={stamp.SEAL_JSON: old})
    now = [pkg("ecs-init-1.99.0-1.amzn2023"), pkg("docker-25.0.8-1.amzn2023.0.5")]
    result = run_check(BY_ID["packages-drift"], probes(root, installed_rpm=now))
    assert result.status is Status.WARNING
    assert "removed since the seal: nvidia-container-toolkit-1.17.8-1" in result.summary
    assert result.summary.endswith("; version locks not recorded in the seal")
    assert "-y install nvidia-container-toolkit-1.17.8-1" in result.hint


def test_package_changes():
    sealed = {"a": "a-1.0-1", "b": "b-2.0-1", "c": "c-1:1.0-1"}
    now = {"a": "a-1.1-1", "b": "b-1.9-1", "d": "d-1-1"}
    assert drift.package_changes(sealed, now) == {
        "downgrade": ["a-1.0-1"], "upgrade": ["b-2.0-1"], "install": ["c-1:1.0-1"], "added": ["d-1-1"]}


# -- the gate -------------------------------------------------------------------------------------------
def test_doctor_boot_fails_on_driver_drift(tmp_path):
    root = tree(tmp_path)
    result = CliRunner().invoke(app, ["--root", str(root), "--json", "doctor", "--boot"], env={"DOCKER_HOST": None})
    report = json_output(result.stdout)
    found = {c["id"]: c for c in report["checks"]}
    assert found["gpu-driver-drift"]["status"] == "critical" and result.exit_code == 1
