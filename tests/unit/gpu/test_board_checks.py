"""The boards and the services beside the driver (issue 28, items 4, 7, 8, 10).

SIMULATED (no GPU here): the hosts are ``tests/hosttree.py`` trees whose sysfs link files, the driver's
``/proc/driver/nvidia/gpus/*/information``, nvidia-mps.service and nvidia-gpu-info.json are stand-ins written as
the real ones read; NVML's answer and the instance type are seeded into the probes. The checks and the runner are
the real ones; the hints that edit files are run with a real shell.
"""

from __future__ import annotations

import json
import socket
import subprocess
from pathlib import Path

import probekit
import pytest
from contract import json_output
from typer.testing import CliRunner

from gpuprep.cli import app
from gpuprep.ec2.imds import InstanceType
from gpuprep.ecs import gpu_sources
from gpuprep.gpu import board_checks
from gpuprep.gpu import query as gpu_query
from gpuprep.report import Status
from gpuprep.runner.checks import NotApplicable, run_check

pytestmark = pytest.mark.allow_subp("rpm")
BY_ID = {c.id: c for c in [*board_checks.CHECKS, *gpu_sources.CHECKS]}
P5 = InstanceType("p5.48xlarge", via="IMDSv2")
BUSES = ["0000:53:00.0", "0000:64:00.0", "0000:75:00.0", "0000:86:00.0", "0000:97:00.0", "0000:a8:00.0",
         "0000:b9:00.0", "0000:ca:00.0"]


def links(width: dict[str, int] | None = None, speed: dict[str, str] | None = None) -> dict[str, str]:
    """sysfs link files for the p5's GPUs, as an H100 SXM5 shows them (x16, 32.0 GT/s PCIe at the maximum)."""
    files = {}
    for bus in BUSES:
        base = f"/sys/bus/pci/devices/{bus}"
        files |= {f"{base}/max_link_width": "16\n", f"{base}/max_link_speed": "32.0 GT/s PCIe\n",
                  f"{base}/current_link_width": f"{(width or {}).get(bus, 16)}\n",
                  f"{base}/current_link_speed": (speed or {}).get(bus, "32.0 GT/s PCIe") + "\n"}
    return files


def p5(tmp_path: Path, **files) -> Path:
    return probekit.tree(tmp_path, "healthy-p5-h100x8", files=files)


# -- item 7: PCIe link --------------------------------------------------------------------------------------------
def test_a_degraded_link_names_the_gpu_and_the_widths(tmp_path):
    root = p5(tmp_path, **links(width={"0000:75:00.0": 8}, speed={"0000:75:00.0": "16.0 GT/s PCIe"}))
    result = run_check(BY_ID["gpu-pcie-link"], probekit.probes(root))
    assert result.status is Status.WARNING, result
    assert "0000:75:00.0 x8 of x16 at 16 of 32 GT/s" in result.summary


def test_full_links_pass_and_an_idle_gpus_lower_speed_is_only_noted(tmp_path):
    root = p5(tmp_path, **links(speed={"0000:53:00.0": "2.5 GT/s PCIe"}))
    result = run_check(BY_ID["gpu-pcie-link"], probekit.probes(root))
    assert result.status is Status.OK, result
    assert result.data["below_max_speed"] == ["0000:53:00.0 2.5 of 32 GT/s"]


# -- item 8: VBIOS and nvidia-persistenced's socket ----------------------------------------------------------------
def information(vbios: str, bus: str) -> str:
    """/proc/driver/nvidia/gpus/<bus>/information as driver 580 prints it."""
    return (f"Model: \t\t NVIDIA H100 80GB HBM3\nIRQ:   \t\t 0\nGPU UUID: \t GPU-{bus[5:7]}000000-0000-0000-0000-0000\n"
            f"Video BIOS: \t {vbios}\nBus Type: \t PCIe\nDMA Size: \t 52 bits\nBus Location: \t {bus}\n")


def test_two_vbios_versions_are_named(tmp_path):
    files = {f"/proc/driver/nvidia/gpus/{b}/information": information("96.00.99.00.01" if b != BUSES[3] else
                                                                      "96.00.74.00.0D", b) for b in BUSES}
    result = run_check(BY_ID["gpu-vbios"], probekit.probes(p5(tmp_path, **files)))
    assert result.status is Status.WARNING, result
    assert "0000:86:00.0 96.00.74.00.0D against 96.00.99.00.01 on the other 7" in result.summary


def test_one_vbios_passes(tmp_path):
    files = {f"/proc/driver/nvidia/gpus/{b}/information": information("96.00.99.00.01", b) for b in BUSES}
    result = run_check(BY_ID["gpu-vbios"], probekit.probes(p5(tmp_path, **files)))
    assert result.status is Status.OK and "one VBIOS (96.00.99.00.01) across all 8 GPUs" in result.summary


def test_the_socket_wait_is_bounded_and_sees_a_real_socket(tmp_path):
    path = str(tmp_path / "socket")
    present, waited = board_checks.wait_for_socket(path, 0.3)
    assert not present and 0.3 <= waited < 2
    server = socket.socket(socket.AF_UNIX)
    server.bind(path)  # what nvidia-persistenced makes
    try:
        assert board_checks.wait_for_socket(path, 5) == (True, pytest.approx(0, abs=0.5))
    finally:
        server.close()


def test_no_socket_on_a_type_that_needs_persistence_is_critical_and_present_is_ok(tmp_path):
    root = p5(tmp_path)
    p = probekit.probes(root, probe_instance_type=P5)
    p.preset(board_checks.persistenced_socket, (False, 15.0))
    result = board_checks.check_persistenced_socket(p)
    assert result.status is Status.CRITICAL and "after 15 s" in result.summary and "p5.48xlarge" in result.summary
    assert "systemctl enable --now nvidia-persistenced" in result.hint
    p = probekit.probes(root, probe_instance_type=P5)
    p.preset(board_checks.persistenced_socket, (True, 0.4))
    assert board_checks.check_persistenced_socket(p).status is Status.OK


@pytest.mark.allow_subp("systemctl")
def test_no_socket_where_persistence_is_not_required_warns_only_with_the_daemon_enabled(tmp_path):
    g5 = InstanceType("g5.xlarge", via="IMDSv2")
    root = probekit.tree(tmp_path, "healthy-g5-al2")
    p = probekit.probes(root, probe_instance_type=g5)
    p.preset(board_checks.persistenced_socket, (False, 0.0))
    with pytest.raises(NotApplicable, match="not enabled"):
        board_checks.check_persistenced_socket(p)  # the check itself: the runner skips live checks with --root
    unit = "[Unit]\nDescription=NVIDIA Persistence Daemon\n\n[Service]\nType=forking\n" \
           "ExecStart=/usr/bin/nvidia-persistenced\n\n[Install]\nWantedBy=multi-user.target\n"
    root = probekit.tree(tmp_path / "enabled", "healthy-g5-al2", files={
        "/usr/lib/systemd/system/nvidia-persistenced.service": unit}, links={
        "/etc/systemd/system/multi-user.target.wants/nvidia-persistenced.service":
        "/usr/lib/systemd/system/nvidia-persistenced.service"})
    p = probekit.probes(root, probe_instance_type=g5)
    p.preset(board_checks.persistenced_socket, (False, 0.0))
    result = board_checks.check_persistenced_socket(p)
    assert result.status is Status.WARNING and "enabled but /run/nvidia-persistenced/socket is missing" in \
        result.summary, result


# -- item 4: MPS's pipe directory ---------------------------------------------------------------------------------
@pytest.mark.allow_subp("install")
def test_an_mps_daemon_on_tmp_nvidia_mps_warns_naming_it_and_the_hint_moves_it(tmp_path):
    root = probekit.tree(tmp_path, "mps-not-enabled-g6")
    result = run_check(BY_ID["gpu-mps-pipe"], probekit.probes(root))
    assert result.status is Status.WARNING, result
    assert "/tmp/nvidia-mps" in result.summary and "/run/mps-ecs" in result.hint
    drop_in = root / "etc/systemd/system/nvidia-mps.service.d/10-pipe-directory.conf"
    # Under --root the drop-in alone: systemd's reload and the restart are the live host's.
    assert [f.argv[-1] for f in result.fixes] == [str(drop_in)] and result.fixes[0].argv[0] == "install"
    subprocess.run(result.fixes[0].argv, check=True)
    assert "Environment=CUDA_MPS_PIPE_DIRECTORY=/run/mps-ecs" in drop_in.read_text()
    result = run_check(BY_ID["gpu-mps-pipe"], probekit.probes(root))
    assert result.status is Status.OK and "/run/mps-ecs" in result.summary, result


def test_the_amis_mps_unit_passes(tmp_path):
    unit = (Path(probekit.hosttree.HOSTS) / "mps-not-enabled-g6.json").read_text()
    text = json.loads(unit)["files"]["/usr/lib/systemd/system/nvidia-mps.service"].replace(
        "[Service]\n",
        "[Service]\nEnvironment=CUDA_MPS_PIPE_DIRECTORY=/run/mps-ecs CUDA_MPS_LOG_DIRECTORY=/var/log/mps\n")
    root = probekit.tree(tmp_path, "mps-not-enabled-g6", files={"/usr/lib/systemd/system/nvidia-mps.service": text})
    assert run_check(BY_ID["gpu-mps-pipe"], probekit.probes(root)).status is Status.OK


# -- item 10: fail closed -----------------------------------------------------------------------------------------
def nvml(n: int) -> gpu_query.GpuQuery:
    return gpu_query.GpuQuery(source="nvml", driver_version="580.95.05", gpus=[
        gpu_query.GpuStatus(i, "NVIDIA H100 80GB HBM3", f"GPU-{i:08d}") for i in range(n)])


def test_nvml_listing_no_gpu_on_a_gpu_type_is_critical(tmp_path):
    result = run_check(BY_ID["gpu-sources-listed"], probekit.probes(p5(tmp_path), probe_instance_type=P5,
                                                                     probe_query=nvml(0)))
    assert result.status is Status.CRITICAL and "NVML lists no GPU on a p5.48xlarge" in result.summary, result


@pytest.mark.allow_subp("gpuprep")
def test_an_empty_gpu_info_file_is_critical_and_its_hint_clears_it(tmp_path):
    import subprocess

    from conftest import REPO

    root = p5(tmp_path, **{"/var/lib/ecs/gpu/nvidia-gpu-info.json": json.dumps({"DriverVersion": "580.95.05",
                                                                                   "GPUIDs": []})})
    result = run_check(BY_ID["gpu-sources-listed"], probekit.probes(root, probe_instance_type=P5, probe_query=nvml(8)))
    assert result.status is Status.CRITICAL and "nvidia-gpu-info.json lists no GPU" in result.summary, result
    # An image (--root): seal's gpu-info step removes it, acting on the image (never the builder's file).
    argv = result.fixes[0].argv
    assert argv == ("gpuprep", "--root", str(root), "seal", "--only", "gpu-info"), result.fixes
    proc = subprocess.run([str(REPO / ".venv/bin/gpuprep"), *argv[1:]], capture_output=True, text=True, timeout=120,
                          stdin=subprocess.DEVNULL, env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    result = run_check(BY_ID["gpu-sources-listed"], probekit.probes(root, probe_instance_type=P5, probe_query=nvml(8)))
    assert result.status is Status.OK and "PCI 8, /dev 8, NVML 8" in result.summary, result


def test_no_gpu_on_the_bus_of_a_gpu_type_fails_closed_in_the_cli(tmp_path):
    root = probekit.tree(tmp_path, "healthy-p5-h100x8", gpus=[], nodes=0)
    import imds_standin

    s = imds_standin.serve("p5.48xlarge")
    try:
        out = CliRunner().invoke(app, ["--root", str(root), "--json", "doctor", "--boot"],
                                 env={"AWS_EC2_METADATA_SERVICE_ENDPOINT": s.url})
    finally:
        s.close()
    check = next(c for c in json_output(out.stdout)["checks"] if c["id"] == "gpu-sources-listed")
    assert check["status"] == "critical" and "PCI lists no GPU" in check["summary"], check
    assert out.exit_code == 1  # the boot gate keeps it out of ECS
