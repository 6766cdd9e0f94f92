"""What the ECS agent concludes about the GPUs: dcgm-init's health file and the MPS capability gate.

SIMULATED (no GPU, DCGM or ECS agent here): ``tests/hosttree.py`` trees, ``gpu-unhealthy-g5`` (the file dcgm-init
writes, as ``dcgm-init/engine/engine.go`` of aws/amazon-ecs-agent's feature/gpu-metrics shapes it) and
``mps-not-enabled-g6`` (a stand-in MPS binary and unit); NVML's answer seeded into the probes. Real: systemd's own
``systemctl --root=TREE is-enabled`` on the tree, the checks, the runner, the CLI.
"""

from __future__ import annotations

import json
import os
import subprocess
import time

import hosttree
import probekit
import pytest
from contract import json_output
from typer.testing import CliRunner

from gpuprep.cli import app
from gpuprep.ecs import agent_gpu
from gpuprep.gpu import query as gpu_query
from gpuprep.report import Status
from gpuprep.runner.checks import run_check

pytestmark = pytest.mark.allow_subp("rpm", "systemctl", "sh")
BY_ID = {c.id: c for c in agent_gpu.CHECKS}
probes = probekit.probes
tree = probekit.tree
METRICS = agent_gpu.GPU_METRICS






def metrics(**fields) -> dict:
    doc = hosttree.load_spec("gpu-unhealthy-g5").files[METRICS]
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    return {**doc, "timestamp": now, "healthy": True, "unhealthy_reason": None, **fields}


def nvml(mode: str = "pass-through", memory: int | None = 23034) -> gpu_query.GpuQuery:
    return gpu_query.GpuQuery(source="nvml", driver_version="580.95.05", gpus=[gpu_query.GpuStatus(
        0, "NVIDIA L4", "GPU-0", virtualization_mode=mode, memory_total_mib=memory, memory_reserved_mib=0)])


# -- ecs-gpu-health -----------------------------------------------------------------------------------------
def test_unhealthy_is_critical_with_the_reason(tmp_path):
    result = run_check(BY_ID["ecs-gpu-health"], probes(tree(tmp_path, "gpu-unhealthy-g5")))
    assert result.status is Status.CRITICAL, result.summary
    assert result.summary.startswith("dcgm-init reports the GPUs unhealthy (XID_48; written 2026-12-07T06:59:00Z")
    assert "IMPAIRED (ACCELERATED_COMPUTE)" in result.summary
    assert "update-container-instances-state" in result.hint and "DRAINING" in result.hint
    assert result.data["unhealthy_reason"] == "XID_48"
    assert result.data["restart_app_xids"] == {"GPU-7c1d0e3a-5b2f-4e86-9a17-c3d2e1f0a9b8": 2}


def test_fresh_and_healthy_is_ok_and_untouched(tmp_path):
    root = tree(tmp_path, "gpu-unhealthy-g5", files={METRICS: metrics()})
    before = (root / METRICS.lstrip("/")).stat()
    result = run_check(BY_ID["ecs-gpu-health"], probes(root))
    assert result.status is Status.OK and result.summary.startswith("dcgm-init reports the GPUs healthy (2 GPU(s)")
    assert "GPU-7c1d0e3a-5b2f-4e86-9a17-c3d2e1f0a9b8 x2" in result.summary
    after = (root / METRICS.lstrip("/")).stat()
    assert (before.st_mtime_ns, before.st_size) == (after.st_mtime_ns, after.st_size)  # read, never written


def test_stale_is_a_warning(tmp_path):
    old = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 600))
    result = run_check(BY_ID["ecs-gpu-health"], probes(tree(tmp_path, "gpu-unhealthy-g5",
                                                            files={METRICS: metrics(timestamp=old)})))
    assert result.status is Status.WARNING and "is stale" in result.summary and "INSUFFICIENT_DATA" in result.summary
    assert "systemctl restart dcgm-init" in result.hint and 590 <= result.data["age_s"] <= 700


def test_connection_lost_is_a_warning(tmp_path):
    result = run_check(BY_ID["ecs-gpu-health"], probes(tree(tmp_path, "gpu-unhealthy-g5",
                                                            files={METRICS: metrics(connection_lost=True)})))
    assert result.status is Status.WARNING and "lost its DCGM connection" in result.summary


@pytest.mark.parametrize("text", ["{", "[]", ""])
def test_unreadable_is_a_warning_not_a_crash(tmp_path, text):
    result = run_check(BY_ID["ecs-gpu-health"], probes(tree(tmp_path, "gpu-unhealthy-g5", files={METRICS: text})))
    assert result.status is Status.WARNING and "is unreadable" in result.summary


def test_no_dcgm_init_is_skipped(tmp_path):
    result = run_check(BY_ID["ecs-gpu-health"], probes(tree(tmp_path, "gpu-unhealthy-g5", files={})))
    assert result.status is Status.SKIPPED and "dcgm-init" in result.summary


# -- ecs-gpu-sharing-mps ----------------------------------------------------------------------------------
def test_mps_unit_not_enabled_says_the_agents_reason_and_the_fix(tmp_path):
    result = run_check(BY_ID["ecs-gpu-sharing-mps"], probes(tree(tmp_path, "mps-not-enabled-g6")))
    assert result.status is Status.WARNING, result.summary
    assert result.summary == ("the ECS agent will not advertise ecs.capability.gpu-sharing-mps: "
                              "nvidia-mps.service is not enabled on host")
    assert "systemctl enable --now nvidia-mps.service && sudo systemctl restart ecs" in result.hint
    assert result.data["service"] == "disabled"
    assert result.data["conditions"]["not-vgpu"] is None  # NVML is not asked with --root


def test_the_hint_clears_it(tmp_path):
    """The hint's enable, applied to the tree by real systemctl (--root: no running system to start it in)."""
    root = tree(tmp_path, "mps-not-enabled-g6")
    subprocess.run(["systemctl", f"--root={root}", "enable", "nvidia-mps.service"], check=True, capture_output=True)
    result = run_check(BY_ID["ecs-gpu-sharing-mps"], probes(root))
    assert result.status is Status.OK, result.summary
    assert "not-vgpu, all-gpus-have-memory not checked" in result.summary


@pytest.mark.parametrize("query, reason", [
    (nvml(mode="vgpu"), "instance has an NVIDIA vGPU slice"),
    (nvml(memory=None), "a GPU does not report its memory"),
])
def test_vgpu_and_memory_as_the_agent_gates_them(tmp_path, query, reason):
    root = tree(tmp_path, "mps-not-enabled-g6")
    subprocess.run(["systemctl", f"--root={root}", "enable", "nvidia-mps.service"], check=True, capture_output=True)
    result = run_check(BY_ID["ecs-gpu-sharing-mps"], probes(root, probe_query=query))
    assert result.status is Status.WARNING and reason in result.summary


def test_all_conditions_met_with_nvml(tmp_path):
    root = tree(tmp_path, "mps-not-enabled-g6")
    subprocess.run(["systemctl", f"--root={root}", "enable", "nvidia-mps.service"], check=True, capture_output=True)
    result = run_check(BY_ID["ecs-gpu-sharing-mps"], probes(root, probe_query=nvml()))
    assert result.status is Status.OK and "1 whole GPU(s) with their memory" in result.summary
    assert all(result.data["conditions"].values())


def test_ecs_init_facts_from_before_the_fix_ask_for_a_restart(tmp_path):
    root = tree(tmp_path, "mps-not-enabled-g6")
    subprocess.run(["systemctl", f"--root={root}", "enable", "nvidia-mps.service"], check=True, capture_output=True)
    info = root / "var/lib/ecs/gpu/nvidia-gpu-info.json"
    info.parent.mkdir(parents=True)
    info.write_text(json.dumps({"DriverVersion": "580.95.05", "GPUIDs": ["GPU-0"], "MpsControlBinaryPresent": True,
                                "MpsServiceEnabled": False, "HasVGPU": False}))
    result = run_check(BY_ID["ecs-gpu-sharing-mps"], probes(root, probe_query=nvml()))
    assert result.status is Status.WARNING and "systemctl restart ecs" in result.hint


def test_no_mps_installed_is_skipped(tmp_path):
    result = run_check(BY_ID["ecs-gpu-sharing-mps"], probes(tree(tmp_path, "mps-not-enabled-g6", files={})))
    assert result.status is Status.SKIPPED and "MPS is not installed" in result.summary


def test_doctor_json_names_both(tmp_path):
    root = tree(tmp_path, "gpu-unhealthy-g5")
    result = CliRunner().invoke(app, ["--root", str(root), "--json", "doctor", "--no-container"],
                                env={"DOCKER_HOST": None})
    found = {c["id"]: c for c in json_output(result.stdout)["checks"]}
    assert found["ecs-gpu-health"]["status"] == "critical" and result.exit_code == 2
    assert found["ecs-gpu-sharing-mps"]["status"] == "skipped"
    assert os.path.exists(root / METRICS.lstrip("/"))
