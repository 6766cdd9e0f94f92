"""The fabric checks and gpu-cuda on the p5 host tree: fabric manager stopped (802 from CUDA, fabric not started), the
fabric in progress, a degraded health mask, a healthy fabric; and the boot gate's verdict on each.

SIMULATED (this machine has no GPU, driver, NVSwitch or EC2 metadata): the host is the p5.48xlarge tree of
tests/hosttree.py (8 H100s, NVSwitch bridges, driver 580.178.04), its instance type is seeded as the metadata service
would answer; NVML's fabric view comes from the real nvidia-ml-py over the stand-in libnvidia-ml (tests/fake_nvml.py,
built with the fabric each test names), run in a child with LD_LIBRARY_PATH as the real library would be found; the
CUDA proof's answer from the real proof program over the stand-in libcuda (tests/fake_cuda.py). Real: the tree's
files (fabric manager's unit and enable link, /proc/modules, /proc/uptime, IMEX channels), the checks, the doctor
runner and its boot set.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import fake_cuda
import fake_nvml
import hosttree
import pytest
from testbed import DEFAULT_GPUS

from gpuprep.ec2.imds import InstanceType
from gpuprep.ec2.probes import probe_instance_type
from gpuprep.gpu import cuda, cuda_checks, fabric, fabric_checks
from gpuprep.host import Host
from gpuprep.options import DoctorOptions
from gpuprep.platform import detect
from gpuprep.report import DoctorReport, Status
from gpuprep.runner.checks import Probes, run_check, select_checks

# The fabric view and the proof run in children of this interpreter; the stand-ins are compiled with gcc; fabric
# manager's version is asked of the tree's rpm database.
pytestmark = pytest.mark.allow_subp(os.path.basename(sys.executable), "gcc", "rpm")

GPUS8 = tuple({**DEFAULT_GPUS[i % 2], "index": i, "uuid": DEFAULT_GPUS[i % 2]["uuid"][:-2] + f"{i:02x}"}
              for i in range(8))
FM_PATH = "/usr/lib/systemd/system/nvidia-fabricmanager.service"
FM_UNIT = "[Unit]\nDescription=NVIDIA fabric manager service\n\n[Service]\nExecStart=/usr/bin/nv-fabricmanager\n" \
          "\n[Install]\nWantedBy=multi-user.target\n"
IDS = ("gpu-fabric-manager", "gpu-fabric", "gpu-nvlink", "gpu-nvlink5", "gpu-imex", "gpu-cuda")
RUNNING = fabric_checks.FabricManager(FM_PATH, True, "active", "580.178.04")
HEALTHY_MASK = (2 << 0) | (2 << 2) | (2 << 4) | (2 << 6) | (1 << 8)  # every part reported, none a problem


def nvml_view(tmp_path: Path, fab: fake_nvml.Fabric | None) -> fabric.FabricView:
    """NVML's fabric view as gpu/fabric.py reads it through nvidia-ml-py, over the stand-in built with ``fab``."""
    lib = fake_nvml.build(tmp_path / "nvml", gpus=GPUS8, driver_version="580.178.04", fabric=fab)
    done = subprocess.run([sys.executable, "-m", "gpuprep.gpu.fabric"], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "LD_LIBRARY_PATH": str(lib.parent)})
    assert done.returncode == 0, done.stderr
    view = json.loads(done.stdout)  # schema: gpu/fabric.py's own JSON, not --json
    return fabric.FabricView.from_dict(view)


def cuda_answer(tmp_path: Path, fail: str = "") -> cuda.CudaProof:
    lib = fake_cuda.build(tmp_path / "cuda", GPUS8, fail=fail)
    return cuda.run_proof(Host("/", env={**os.environ, "GPUPREP_LIBCUDA": str(lib)}), 8)


def p5(tmp_path: Path, *, instance_type: str = "p5.48xlarge", host: str = "healthy-p5-h100x8", unit: bool = True,
       enabled: bool = True, uptime: float = 900.0, **changes) -> Path:
    """The host tree with fabric manager installed and enabled (as the p5 fixtures have it) unless ``unit`` /
    ``enabled`` say otherwise, and /proc/uptime."""
    spec = hosttree.load_spec(host)
    files = {**spec.files, "/proc/uptime": f"{uptime:.2f} 1000.00\n"}
    links = dict(spec.links)
    files.setdefault(FM_PATH, FM_UNIT)
    links.setdefault(fabric_checks.WANTS_LINK, FM_PATH)
    if not unit:
        files.pop(FM_PATH)
    if not unit or not enabled:
        links.pop(fabric_checks.WANTS_LINK)
    spec = dataclasses.replace(spec, files=files, links=links, instance_type=instance_type, **changes)
    return hosttree.build(tmp_path / "root", spec)


def doctor(root: Path, instance_type: str = "p5.48xlarge", boot: bool = True, **seeds) -> dict:
    """The fabric checks and gpu-cuda as doctor runs them (the boot set with ``boot``) over the tree, with the
    running system's answers seeded: {check id: result} and, under "report", the DoctorReport of them."""
    from gpuprep.doctor import all_checks

    host = Host(root, env={})
    p = Probes(host, detect(host), DoctorOptions(boot=boot))
    p.preset(probe_instance_type, InstanceType(instance_type, via="IMDSv2"))
    for probe, value in seeds.items():
        p.preset({"fabric": fabric_checks.probe_fabric, "cuda": cuda_checks.probe_cuda,
                  "manager": fabric_checks.fabric_manager}[probe], value)
    checks = select_checks([c for c in all_checks() if c.id in IDS], p.options)
    results = {c.id: run_check(c, p) for c in checks}
    return {**results, "report": DoctorReport(p.platform.as_dict(), list(results.values()))}


@pytest.mark.parametrize("boot", [True, False], ids=["boot gate", "doctor"])
def test_fabric_manager_stopped_is_critical_naming_802_and_fabric_manager(tmp_path, boot):
    """The issue's first case: fabric manager not running after boot; CUDA fails with 802, NVML says not started.
    The same verdicts in doctor's full run and in the boot gate's set (doctor --boot)."""
    root = p5(tmp_path, enabled=False)
    r = doctor(root, boot=boot, fabric=nvml_view(tmp_path, fake_nvml.Fabric(state=1)),
               cuda=cuda_answer(tmp_path, "802"))
    fm, fab, proof = r["gpu-fabric-manager"], r["gpu-fabric"], r["gpu-cuda"]
    assert fm.status == fab.status == proof.status == Status.CRITICAL
    assert "not enabled" in fm.summary and "802" in fm.summary
    # under --root: enabled in the image, started on an instance booted from it (issue 26)
    assert [(f.argv, f.runs) for f in fm.fixes] == [
        (("systemctl", f"--root={root}", "enable", "nvidia-fabricmanager.service"), "here"),
        (("sudo", "systemctl", "start", "nvidia-fabricmanager.service"), "booted")]
    assert "has not started on GPU 0, GPU 1, GPU 2, GPU 3 (+4) of 8" in fab.summary
    assert "cuInit returned CUDA_ERROR_SYSTEM_NOT_READY (802)" in proof.summary
    assert fm.fixes[0] in proof.fixes  # the same value: the report lists it once, for both findings
    assert r["report"].status == Status.CRITICAL  # the boot gate's verdict: ECS stays down


def test_fabric_manager_enabled_but_dead_is_critical(tmp_path):
    r = doctor(p5(tmp_path), manager=fabric_checks.FabricManager(
        "/usr/lib/systemd/system/nvidia-fabricmanager.service", True, "failed", "580.178.04"))
    assert r["gpu-fabric-manager"].status == Status.CRITICAL
    assert "is failed, not running" in r["gpu-fabric-manager"].summary
    assert "journalctl -u nvidia-fabricmanager -n 50 --no-pager" in r["gpu-fabric-manager"].hint


def test_fabric_manager_missing_or_of_another_version_says_which_package(tmp_path):
    r = doctor(p5(tmp_path, unit=False))
    assert r["gpu-fabric-manager"].status == Status.CRITICAL
    assert "not installed on p5.48xlarge" in r["gpu-fabric-manager"].summary
    install = r["gpu-fabric-manager"].fixes[0]  # into the tree doctor looked at, not the builder (issue 26)
    assert install.argv == ("dnf", f"--installroot={tmp_path / 'root'}", "install", "-y",
                            "nvidia-fabric-manager-580.178.04"), install
    other = doctor(p5(tmp_path / "b"), manager=fabric_checks.FabricManager(
        "/usr/lib/systemd/system/nvidia-fabricmanager.service", True, "active", "570.172.08"))
    assert "570.172.08 does not match the driver 580.178.04" in other["gpu-fabric-manager"].summary


@pytest.mark.parametrize("uptime, status", [(60.0, Status.WARNING), (900.0, Status.CRITICAL)])
def test_a_fabric_in_progress_is_critical_only_past_the_settle_time(tmp_path, uptime, status):
    r = doctor(p5(tmp_path, uptime=uptime), fabric=nvml_view(tmp_path, fake_nvml.Fabric(state=2)))
    fab = r["gpu-fabric"]
    assert fab.status == status, fab
    assert f"still in progress on GPU 0, GPU 1, GPU 2, GPU 3 (+4) of 8, {uptime:.0f}s after boot" in fab.summary
    if status == Status.CRITICAL:
        assert "stuck" in fab.summary and "nvidia-fabricmanager" in fab.hint


def test_a_degraded_health_mask_is_critical_with_its_parts_named(tmp_path):
    mask = (HEALTHY_MASK & ~0x3 | 1) & ~(0xF << 8) | (5 << 8)  # degraded bandwidth, insufficient NVLinks
    view = nvml_view(tmp_path, fake_nvml.Fabric(health_mask=mask, down={3: [4, 5]}))
    r = doctor(p5(tmp_path), fabric=view)
    assert r["gpu-fabric"].status == Status.CRITICAL
    assert ("fabric health: GPU 0: degraded bandwidth, incorrect configuration (insufficient-nvlinks)"
            in r["gpu-fabric"].summary)
    assert view.gpus[0].health["degraded_bandwidth"] == "true"
    assert r["gpu-nvlink"].status == Status.CRITICAL
    assert r["gpu-nvlink"].summary == "NVLinks down: GPU 3: link 4, 5 down of 18"


def test_route_recovery_alone_is_a_warning(tmp_path):
    mask = HEALTHY_MASK & ~(0x3 << 2) | (1 << 2)
    r = doctor(p5(tmp_path), fabric=nvml_view(tmp_path, fake_nvml.Fabric(health_mask=mask)))
    assert r["gpu-fabric"].status == Status.WARNING
    assert "route recovery in progress" in r["gpu-fabric"].summary


def test_a_healthy_fabric_passes(tmp_path):
    r = doctor(p5(tmp_path), fabric=nvml_view(tmp_path, fake_nvml.Fabric(health_mask=HEALTHY_MASK, clique_id=7)),
               cuda=cuda_answer(tmp_path))
    assert r["gpu-fabric-manager"].status == Status.OK, r["gpu-fabric-manager"]
    assert r["gpu-fabric"].status == Status.OK and "clique 7" in r["gpu-fabric"].summary
    assert r["gpu-nvlink"].status == Status.OK
    assert r["gpu-nvlink"].summary == "every NVLink up: 18 links on each of 8 GPUs"
    assert r["gpu-cuda"].status == Status.OK and "CUDA works on 8 GPUs" in r["gpu-cuda"].summary
    assert r["gpu-nvlink5"].status == Status.SKIPPED
    assert "gpu-imex" not in r  # not in the boot set
    assert r["report"].status == Status.OK


def test_elsewhere_the_fabric_checks_skip_with_the_reason(tmp_path):
    r = doctor(p5(tmp_path, unit=False, host="healthy-g5-al2"), instance_type="g6.xlarge", boot=False)
    for check_id in IDS[:-1]:
        assert r[check_id].status == Status.SKIPPED
        assert r[check_id].summary == "g6.xlarge: no NVSwitch"


def test_nvlink5_needs_the_infiniband_modules_and_nvlsm(tmp_path):
    root = p5(tmp_path, instance_type="p6-b200.48xlarge")
    r = doctor(root, instance_type="p6-b200.48xlarge")
    assert r["gpu-nvlink5"].status == Status.CRITICAL
    assert "modules ib_umad, mlx5_ib not loaded; nvlsm is not installed" in r["gpu-nvlink5"].summary
    assert "sudo modprobe -a ib_umad mlx5_ib" in r["gpu-nvlink5"].hint
    assert ("sudo", "modprobe", "-a", "ib_umad", "mlx5_ib") in [f.argv for f in r["gpu-nvlink5"].fixes]
    modules = root / "proc/modules"
    modules.write_text(modules.read_text() + "ib_umad 40960 0 - Live 0x0\nmlx5_ib 520192 0 - Live 0x0\n")
    (root / "usr/bin").mkdir(parents=True, exist_ok=True)
    (root / "usr/bin/nvlsm").write_text("")
    assert doctor(root, instance_type="p6-b200.48xlarge")["gpu-nvlink5"].status == Status.OK


def test_imex_where_installed_wants_its_channels(tmp_path):
    root = p5(tmp_path, instance_type="p6e-gb200.36xlarge")
    r = doctor(root, instance_type="p6e-gb200.36xlarge", boot=False)
    assert r["gpu-imex"].status == Status.SKIPPED and "nvidia-imex is not installed" in r["gpu-imex"].summary
    (root / "usr/lib/systemd/system/nvidia-imex.service").write_text("[Service]\n")
    r = doctor(root, instance_type="p6e-gb200.36xlarge", boot=False)
    assert r["gpu-imex"].status == Status.WARNING and "mknod" in r["gpu-imex"].hint
    (root / "dev/nvidia-caps-imex-channels").mkdir()
    (root / "dev/nvidia-caps-imex-channels/channel0").write_text("")
    r = doctor(root, instance_type="p6e-gb200.36xlarge", boot=False)
    assert r["gpu-imex"].status == Status.OK and "channel0" in r["gpu-imex"].summary


def test_the_boot_gate_waits_for_a_fabric_that_completes(tmp_path, monkeypatch):
    """SIMULATED time: NVML's answers are the stand-in's real views (in progress twice, then completed), handed out
    one per poll in place of query_fabric's, with the poll interval shortened; the loop and its bound are real."""
    training = nvml_view(tmp_path / "a", fake_nvml.Fabric(state=2))
    done = nvml_view(tmp_path / "b", fake_nvml.Fabric(health_mask=HEALTHY_MASK))
    answers = [training, training, done]
    monkeypatch.setattr(fabric, "query_fabric", lambda deadline_s: answers.pop(0))
    monkeypatch.setattr(fabric_checks, "POLL_S", 0.01)
    host = Host("/", env={})
    p = Probes(host, detect(host), DoctorOptions(boot=True))
    p.preset(fabric_checks.fabric_host, fabric_checks.FabricHost("p5.48xlarge", "p5"))
    p.preset(fabric_checks.fabric_manager, RUNNING)
    assert fabric_checks.wait_for_fabric(p)["fabric"] == "settled"
    assert answers == [] and fabric_checks.probe_fabric(p).gpus[0].state == "completed"


def test_the_boot_gate_does_not_wait_when_nothing_trains_the_fabric(tmp_path, monkeypatch):
    training = nvml_view(tmp_path, fake_nvml.Fabric(state=1))
    answers = [training]
    monkeypatch.setattr(fabric, "query_fabric", lambda deadline_s: answers.pop(0))
    host = Host("/", env={})
    p = Probes(host, detect(host), DoctorOptions(boot=True))
    p.preset(fabric_checks.fabric_host, fabric_checks.FabricHost("p5.48xlarge", "p5"))
    p.preset(fabric_checks.fabric_manager, fabric_checks.FabricManager(None, False, "unknown", None))
    assert fabric_checks.wait_for_fabric(p) == {"fabric": "unsettled", "seconds": 0.0}


def test_the_boot_gate_stops_waiting_at_its_bound(tmp_path, monkeypatch):
    training = nvml_view(tmp_path, fake_nvml.Fabric(state=2))
    monkeypatch.setattr(fabric, "query_fabric", lambda deadline_s: training)
    monkeypatch.setattr(fabric_checks, "POLL_S", 0.01)
    monkeypatch.setattr(fabric_checks, "FABRIC_WAIT_S", 0.2)
    host = Host("/", env={})
    p = Probes(host, detect(host), DoctorOptions(boot=True))
    p.preset(fabric_checks.fabric_host, fabric_checks.FabricHost("p5.48xlarge", "p5"))
    p.preset(fabric_checks.fabric_manager, RUNNING)
    waited = fabric_checks.wait_for_fabric(p)
    assert waited["fabric"] == "unsettled" and 0.2 <= waited["seconds"] < 5


def test_the_health_mask_decodes_into_nvmls_named_parts():
    import pynvml as nv

    mask = (nv.NVML_GPU_FABRIC_HEALTH_MASK_DEGRADED_BW_TRUE << nv.NVML_GPU_FABRIC_HEALTH_MASK_SHIFT_DEGRADED_BW) | (
        nv.NVML_GPU_FABRIC_HEALTH_MASK_INCORRECT_CONFIGURATION_NO_PARTITION
        << nv.NVML_GPU_FABRIC_HEALTH_MASK_SHIFT_INCORRECT_CONFIGURATION) | (
        nv.NVML_GPU_FABRIC_HEALTH_MASK_GFM_STATE_DISCONNECTED << nv.NVML_GPU_FABRIC_HEALTH_MASK_SHIFT_GFM_STATE)
    health = fabric.decode_health(mask)
    assert health["degraded_bandwidth"] == "true" and health["route_recovery"] == "not-supported"
    assert health["incorrect_configuration"] == "no-partition" and health["gfm_state"] == "disconnected"
    assert fabric.health_problems(health) == ["degraded bandwidth", "global fabric manager disconnected",
                                              "incorrect configuration (no-partition)"]
