"""The ecs checks: each finding, its status, and the fix it names.

Simulated, because this machine has no GPU, no driver and no ECS: fake host trees from
``tests/hosttree.py`` (sysfs PCI functions, /proc/driver/nvidia/version), and NVML's answer seeded into
the doctor's probes (``gpu.query``) where a check compares GPU UUIDs. Real: ``systemctl --root`` for
the service's enablement, rpm (a fixture ecs-init RPM registered in the tree's database) for the
package, psutil for the lock holder (this test process holds a pid file it writes).
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import time
from pathlib import Path

import hosttree
import pytest
from conftest import require

from gpuprep.ecs import checks
from gpuprep.gpu import inventory
from gpuprep.gpu import query as gpu_query
from gpuprep.host import Host
from gpuprep.options import DoctorOptions
from gpuprep.platform import detect
from gpuprep.report import CheckResult, Status
from gpuprep.runner.checks import Probes, run_check

# rpmbuild: the ecs-init fixture package is built on a fresh clone (its cache is empty in CI)
pytestmark = pytest.mark.allow_subp('gpuprep', 'rpm', 'rpmbuild', 'systemctl', 'true')

BY_ID = {c.id: c for c in checks.CHECKS}
GPU_INFO = "var/lib/ecs/gpu/nvidia-gpu-info.json"
UUIDS = [f"GPU-5a1c2f4e-0b7d-3e8a-9c61-2f0d4b7e8a1{i}" for i in range(8)]
BUILD_MACHINE = "GPU-0e7d3af2-be49-affe-ae6c-f6fcf358f2ea"


def nvml(n: int = 8, driver: str = "580.95.05") -> gpu_query.GpuQuery:
    gpus = [gpu_query.GpuStatus(index=i, name="NVIDIA H100 80GB HBM3", uuid=UUIDS[i], driver_version=driver)
            for i in range(n)]
    return gpu_query.GpuQuery(source="nvml", gpus=gpus, driver_version=driver)


def make(tmp_path: Path, host: str = "healthy-p5-h100x8",
         query: gpu_query.GpuQuery | None = None) -> tuple[Path, Probes]:
    root = tmp_path / "root"
    if not root.exists():
        hosttree.build_named(host, root)
    h = Host(root)
    probes = Probes(h, detect(h), DoctorOptions(no_container=True))
    if query is not None:  # what NVML on the running system would answer (no GPU here)
        probes.preset(inventory.probe_query, query)
    return root, probes


def run(check_id: str, probes: Probes) -> CheckResult:
    result = run_check(BY_ID[check_id], probes)
    assert not result.summary.startswith("check failed"), result.summary
    if result.status in (Status.WARNING, Status.CRITICAL, Status.UNKNOWN):
        assert result.hint, f"{check_id} is {result.status.value} without a hint"
    return result


def write(root: Path, rel: str, text: str) -> Path:
    p = root / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(text)
    return p


def test_checks_are_well_formed():
    ids = [c.id for c in checks.CHECKS]
    assert len(ids) == len(set(ids)) and all(c.group == "ecs" and c.title for c in checks.CHECKS)
    assert not any(c.boot for c in checks.CHECKS)  # a stale file at boot is rewritten by ecs-init after the gate


# -- ECS_ENABLE_GPU_SUPPORT -----------------------------------------------------------------
def test_gpu_support_missing_on_a_gpu_host_is_critical_with_the_fix(tmp_path):
    root, probes = make(tmp_path)
    write(root, "etc/ecs/ecs.config", "ECS_CLUSTER=training\n")  # an ECS host, configured without GPUs
    r = run("ecs-gpu-support", probes)
    assert r.status is Status.CRITICAL and "not set" in r.summary and "8 GPUs" in r.summary
    # No ecs-init in this tree: the ecs-config step would refuse ("ecs is not installed"), so the finding points at
    # ecs-init's (tests/unit/test_doctor_fixes.py runs the fix with ecs-init there, --root kept).
    assert r.cause == "ecs-init" and "ecs-config" not in r.hint


def test_gpu_support_is_not_asked_of_a_host_without_ecs_init_or_config(tmp_path):
    _, probes = make(tmp_path)  # no rpm database in the tree: ecs-init is not installed
    r = run("ecs-gpu-support", probes)
    assert r.status is Status.SKIPPED and "ecs-init is not installed" in r.summary


def test_gpu_support_in_the_ami_file_counts_and_etc_wins(tmp_path):
    root, probes = make(tmp_path)
    write(root, "var/lib/ecs/ecs.config", "ECS_ENABLE_GPU_SUPPORT=true\n")
    r = run("ecs-gpu-support", probes)
    assert r.status is Status.OK and r.data["source"] == "/var/lib/ecs/ecs.config"
    write(root, "etc/ecs/ecs.config", "ECS_CLUSTER=x\nECS_ENABLE_GPU_SUPPORT=false\n")
    r = run("ecs-gpu-support", make(tmp_path)[1])
    assert r.status is Status.CRITICAL and "=false in /etc/ecs/ecs.config" in r.summary


def test_gpu_support_quoted_value_is_called_out(tmp_path):
    root, probes = make(tmp_path)
    write(root, "etc/ecs/ecs.config", 'ECS_ENABLE_GPU_SUPPORT="true"\n')
    r = run("ecs-gpu-support", probes)
    assert r.status is Status.CRITICAL and "quotes" in r.summary


def test_gpu_support_not_needed_without_gpus(tmp_path):
    _, probes = make(tmp_path, "no-gpu")
    assert run("ecs-gpu-support", probes).status is Status.SKIPPED


# -- nvidia-gpu-info.json ------------------------------------------------------------------
def gpu_info(root: Path, ids: list[str], driver: str = "580.95.05") -> None:
    write(root, GPU_INFO, json.dumps({"DriverVersion": driver, "GPUIDs": ids}))


def test_gpu_info_absent_is_fine(tmp_path):
    _, probes = make(tmp_path, query=nvml())
    r = run("ecs-gpu-info", probes)
    assert r.status is Status.OK and "writes it when ecs starts" in r.summary


def test_gpu_info_matching_this_host_is_ok(tmp_path):
    root, probes = make(tmp_path, query=nvml())
    gpu_info(root, UUIDS)
    r = run("ecs-gpu-info", probes)
    assert r.status is Status.OK and "8 GPUs, driver 580.95.05" in r.summary


def test_gpu_info_from_the_build_machine_is_critical(tmp_path):
    """The file a build machine bakes into an image: its own GPU's UUID, and the same driver."""
    root, probes = make(tmp_path, query=nvml())
    gpu_info(root, [BUILD_MACHINE])
    r = run("ecs-gpu-info", probes)
    assert r.status is Status.CRITICAL and BUILD_MACHINE in r.summary and "another machine" in r.summary
    # The image's file, removed by seal acting on the image: never `rm /var/lib/...` of the builder (issue 26).
    assert [f.argv for f in r.fixes] == [("gpuprep", "--root", str(root), "seal", "--only", "gpu-info")]
    assert "rm /var/lib" not in r.hint
    # The fix, run as shown (seal asks only at a terminal; --json keeps stdout to the report), clears it.
    gpuprep = Path(__file__).resolve().parents[3] / ".venv" / "bin" / "gpuprep"
    proc = subprocess.run([str(gpuprep), *r.fixes[0].argv[1:]], capture_output=True, text=True, timeout=120,
                          stdin=subprocess.DEVNULL, env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert run("ecs-gpu-info", make(tmp_path, query=nvml())[1]).status is Status.OK


def test_gpu_info_listing_fewer_gpus_or_an_old_driver_is_a_warning(tmp_path):
    root, probes = make(tmp_path, query=nvml())
    gpu_info(root, UUIDS[:4])
    r = run("ecs-gpu-info", probes)
    assert r.status is Status.WARNING and "4 of this host's 8" in r.summary
    gpu_info(root, UUIDS, driver="535.183.01")
    r = run("ecs-gpu-info", make(tmp_path, query=nvml())[1])
    assert r.status is Status.WARNING and "535.183.01" in r.summary and "restart" in r.hint


def test_gpu_info_unreadable_is_critical(tmp_path):
    root, probes = make(tmp_path, query=nvml())
    write(root, GPU_INFO, '{"DriverVersion": 580}')
    r = run("ecs-gpu-info", probes)
    assert r.status is Status.CRITICAL and "unreadable" in r.summary


def test_gpu_info_in_a_root_without_nvml_compares_the_driver(tmp_path):
    """With --root NVML is not asked: the kernel module version in the tree is what we compare."""
    root, probes = make(tmp_path)
    gpu_info(root, [BUILD_MACHINE], driver="470.57.02")
    r = run("ecs-gpu-info", probes)
    assert r.status is Status.CRITICAL and "470.57.02" in r.summary and "580.178.04" in r.summary
    gpu_info(root, [BUILD_MACHINE], driver="580.178.04")  # the tree's module (tests/fixtures/hosts)
    r = run("ecs-gpu-info", make(tmp_path)[1])
    assert r.status is Status.WARNING and "UUIDs not compared" in r.summary and "seal --only gpu-info" in r.hint


# -- the service ---------------------------------------------------------------------------
def test_service_enabled_disabled_or_absent_in_a_root(tmp_path):
    require("systemctl")
    root, probes = make(tmp_path)
    assert run("ecs-service", probes).status is Status.SKIPPED
    write(root, "usr/lib/systemd/system/ecs.service",
          "[Unit]\nDescription=ecs\n[Service]\nExecStart=/usr/libexec/amazon-ecs-init start\n"
          "[Install]\nWantedBy=multi-user.target\n")
    r = run("ecs-service", make(tmp_path)[1])
    assert r.status is Status.WARNING and "disabled" in r.summary and "install --only ecs-config" in r.hint
    subprocess.run(["systemctl", f"--root={root}", "enable", "ecs.service"], check=True, capture_output=True)
    r = run("ecs-service", make(tmp_path)[1])
    assert r.status is Status.OK and "enabled" in r.summary


# -- ecs-init ------------------------------------------------------------------------------
def test_ecs_init_missing_then_installed(tmp_path, request):
    require("rpm", "rpmbuild")
    from rpmfixtures import PkgSpec, build_rpm

    root, probes = make(tmp_path)
    r = run("ecs-init", probes)
    assert r.status is Status.WARNING and "not installed" in r.summary
    assert [f.argv for f in r.fixes] == [("gpuprep", "--root", str(root), "install")]
    assert r.hint.endswith(f"`gpuprep --root {root} install`")
    # ecs-init 1.97.1 requires docker >= 20.10.0 (aws/amazon-ecs-init spec); --nodeps: only the db matters here
    rpm = build_rpm(PkgSpec("ecs-init", "1.97.1", "1.amzn2023", requires=["docker >= 20.10.0"]), tmp_path / "rpms",
                    cache=request.config.cache.mkdir("rpmfixtures"))
    subprocess.run(["rpm", "-i", "--root", str(root), "--nodeps", "--justdb", str(rpm)], check=True,
                   capture_output=True)
    r = run("ecs-init", make(tmp_path)[1])
    assert r.status is Status.OK and r.summary == "ecs-init-1.97.1-1.amzn2023 installed"


# -- the package manager's lock --------------------------------------------------------------
def _lock_probes(tmp_path: Path, pid: int) -> Probes:
    """The live system, with the platform's pid file moved into a temp dir (not the machine's own)."""
    pidfile = tmp_path / "yum.pid"
    pidfile.write_text(f"{pid}\n")
    h = Host("/")
    platform = dataclasses.replace(detect(Host(tmp_path)), package_locks=(str(pidfile),))
    return Probes(h, platform, DoctorOptions(no_container=True))


def test_package_lock_held_names_the_process(tmp_path):
    r = run("package-lock", _lock_probes(tmp_path, os.getpid()))
    assert r.status is Status.WARNING and f"pid {os.getpid()}" in r.summary and "python" in r.summary
    assert f"ps -fp {os.getpid()}" in r.hint


def test_package_lock_stale_pid_file_is_ok(tmp_path):
    proc = subprocess.Popen(["true"])
    proc.wait()
    r = run("package-lock", _lock_probes(tmp_path, proc.pid))
    assert r.status is Status.OK and "stale" in r.summary


def test_package_lock_in_a_root_ignores_a_pid_file_baked_into_the_image(tmp_path):
    """With --root the check asks what install waits on: a pid file left in the image names a pid of the
    machine that built it (here: this test's own, alive, but not acting on the tree), so it is stale."""
    root, probes = make(tmp_path)
    (root / "var/run").mkdir(parents=True, exist_ok=True)
    (root / "var/run/yum.pid").write_text(f"{os.getpid()}\n")
    probes = Probes(probes.host, dataclasses.replace(probes.platform, package_locks=("/var/run/yum.pid",)),
                    probes.options)
    r = run("package-lock", probes)
    assert r.status is Status.OK and r.summary == "no package manager running (stale pid file /var/run/yum.pid)"


# -- seal.json: provenance and stale state ----------------------------------------------------
def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def seal_json(root: Path, sealed: float) -> dict:
    doc = {"gpuprep": "0.1.0", "sealed_at": _iso(sealed),
           "platform": {"id": "amzn", "version_id": "2023", "name": "Amazon Linux 2023"},
           "packages": {"ecs-init": "ecs-init-1.97.1-1.amzn2023"}, "driver_version": "580.95.05",
           "kept_images": [{"refs": ["train:1"], "id": "sha256:" + "ab" * 32, "tags": ["train:1"], "size": 10}]}
    write(root, "etc/gpuprep/seal.json", json.dumps(doc))
    return doc


def test_seal_stamp_reports_provenance(tmp_path):
    root, probes = make(tmp_path)
    assert run("seal-stamp", probes).status is Status.SKIPPED
    doc = seal_json(root, time.time() - 3600)
    r = run("seal-stamp", make(tmp_path)[1])
    assert r.status is Status.OK and r.data == {**doc, "booted_from_image": None}  # a root: no boot of its own
    assert r.summary.startswith(f"sealed {doc['sealed_at']} by gpuprep 0.1.0 on Amazon Linux 2023")
    assert "ecs-init-1.97.1-1.amzn2023" in r.summary and "driver 580.95.05" in r.summary and "1 kept" in r.summary
    write(root, "etc/gpuprep/seal.json", "[1]")
    assert run("seal-stamp", make(tmp_path)[1]).status is Status.WARNING


def test_stale_state_in_a_root_compares_with_the_seal(tmp_path):
    root, probes = make(tmp_path)
    assert run("ecs-stale-state", probes).status is Status.SKIPPED
    now = time.time()
    seal_json(root, now - 60)
    db = write(root, "var/lib/ecs/data/agent.db", "bolt")
    os.utime(db, (now - 600, now - 600))  # written before the seal: baked into the image
    r = run("ecs-stale-state", make(tmp_path)[1])
    assert r.status is Status.CRITICAL and "/var/lib/ecs/data/agent.db" in r.summary and "baked" in r.summary
    os.utime(db, (now, now))
    assert run("ecs-stale-state", make(tmp_path)[1]).status is Status.OK


@pytest.mark.parametrize("mtime,expect", [(50, "baked"), (150, "stale"), (250, None)])
def test_classify_state_files_against_seal_and_boot(mtime, expect):
    baked, stale = checks.classify_state_files({"/var/lib/ecs/data/agent.db": mtime}, sealed=100, boot=200)
    assert ("baked" if baked else "stale" if stale else None) == expect


def booted(tmp_path: Path, boot: float) -> Probes:
    """The tree as a running host that booted at ``boot``: the probe psutil.boot_time() answers on a live
    system is seeded (this test machine booted long before any fixture's seal)."""
    probes = make(tmp_path)[1]
    probes.preset(checks.boot_time, boot)
    return probes


def test_seal_stamp_on_a_host_booted_from_the_image_reports_its_provenance(tmp_path):
    root, _ = make(tmp_path)
    sealed = time.time() - 3600
    doc = seal_json(root, sealed)
    r = run("seal-stamp", booted(tmp_path, sealed + 600))
    assert r.status is Status.OK and r.data["booted_from_image"] is True
    assert r.summary == (f"booted from an image sealed {doc['sealed_at']} by gpuprep 0.1.0 on Amazon Linux 2023; "
                         "ecs-init-1.97.1-1.amzn2023; driver 580.95.05; 1 kept image(s)")
    r = run("seal-stamp", booted(tmp_path, sealed - 600))  # the build machine itself, before its image is taken
    assert r.data["booted_from_image"] is False and r.summary.startswith("this host was sealed (not booted since)")


def test_stale_state_on_a_host_booted_from_the_image(tmp_path):
    """Sealed an hour ago, booted ten minutes ago: a gpu-info file from between the two was not rewritten
    at this boot (warning), one from before the seal came with the image (critical), a checkpoint the
    agent wrote since boot is fine."""
    root, _ = make(tmp_path)
    now = time.time()
    sealed, boot = now - 3600, now - 600
    seal_json(root, sealed)
    db = write(root, "var/lib/ecs/data/agent.db", "bolt")
    info = write(root, GPU_INFO, json.dumps({"DriverVersion": "580.95.05", "GPUIDs": UUIDS}))
    os.utime(db, (now - 60, now - 60))
    os.utime(info, (now - 1800, now - 1800))
    r = run("ecs-stale-state", booted(tmp_path, boot))
    assert r.status is Status.WARNING, r.summary
    assert r.summary.startswith("/var/lib/ecs/gpu/nvidia-gpu-info.json predate(s) this boot")
    assert [e["file"] for e in r.data["stale"]] == ["/var/lib/ecs/gpu/nvidia-gpu-info.json"] and not r.data["baked"]
    assert "systemctl restart ecs" in r.hint

    os.utime(info, (now - 7200, now - 7200))
    r = run("ecs-stale-state", booted(tmp_path, boot))
    assert r.status is Status.CRITICAL and "predate(s) the seal" in r.summary
    assert "seal --only ecs-state,gpu-info" in r.hint and "gpuprep --root " in r.hint

    os.utime(info, (now - 30, now - 30))
    r = run("ecs-stale-state", booted(tmp_path, boot))
    assert r.status is Status.OK and r.summary.startswith("no agent checkpoint or gpu-info older than this boot")


def test_booted_since_seal_by_boot_identity_not_clocks():
    """This machine's real boot identity: the same one in the stamp means the builder, not yet rebooted,
    even when the clocks say otherwise (a VM's clock can shift btime by a second; a container reboots in
    less); another one means a host booted from the image."""
    from gpuprep.host import Host
    from gpuprep.options import DoctorOptions
    from gpuprep.platform import detect
    from gpuprep.runner.checks import Probes

    host = Host("/")
    probes = Probes(host, detect(host), DoctorOptions())
    probes.preset(checks.boot_time, time.time())  # clocks alone would say "booted after the seal"
    now = host.boot_identity()
    assert now is not None and now["boot_id"] and isinstance(now["init_start_ticks"], int)
    stamp = {"sealed_at": "2000-01-01T00:00:00Z"}
    assert checks._booted_since_seal(probes, {**stamp, "boot": now}) is False
    assert checks._booted_since_seal(probes, {**stamp, "boot": {**now, "init_start_ticks": -1}}) is True
    assert checks._booted_since_seal(probes, stamp) is True  # an older stamp without identity: by the clocks


def test_baked_state_in_a_root_is_cleared_by_its_fix_run_as_shown(tmp_path):
    """The fix of ecs-stale-state under --root is seal's own ecs-state and gpu-info steps acting on the image (no
    stop or start of the builder's ecs); run as the finding gives it, the finding is gone. ``--yes`` is the answer a
    user gives seal's prompt at a terminal (the test has none)."""
    from typer.testing import CliRunner

    from gpuprep.cli import app

    root, _ = make(tmp_path)
    now = time.time()
    seal_json(root, now - 60)
    db = write(root, "var/lib/ecs/data/agent.db", "bolt")
    os.utime(db, (now - 600, now - 600))
    r = run("ecs-stale-state", make(tmp_path)[1])
    assert r.status is Status.CRITICAL, r
    assert [f.argv for f in r.fixes] == [("gpuprep", "--root", str(root), "seal", "--only", "ecs-state,gpu-info")]
    out = CliRunner().invoke(app, [*r.fixes[0].argv[1:], "--yes"], env={"DOCKER_HOST": None})
    assert out.exit_code == 0, out.output
    assert not db.exists()
    assert run("ecs-stale-state", make(tmp_path)[1]).status is Status.OK
