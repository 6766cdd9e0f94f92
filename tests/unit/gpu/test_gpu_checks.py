"""The gpu checks: each finding, its status, and the fix it names.

The GPU and its driver are simulated (this machine has neither): fake host trees from
``tests/hosttree.py`` for sysfs, /dev, /proc and the driver's libraries; NVML's answer and the kernel
log are seeded into the doctor's probes, built from the nvidia-smi and kernel-log fixtures by the
real parsers. The checks themselves and the doctor runner are the real ones.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import hosttree
import pytest
from conftest import FIXTURES

from gpuprep.gpu import checks, inventory
from gpuprep.gpu import kernel_log as klog
from gpuprep.gpu import query as gpu_query
from gpuprep.host import Host
from gpuprep.options import DoctorOptions
from gpuprep.platform import detect
from gpuprep.report import CheckResult, Status
from gpuprep.runner.checks import Probes, run_check, run_checks
from gpuprep.runner.needs import LIVE

FIX = FIXTURES
BY_ID = {c.id: c for c in checks.CHECKS}
P5_BUSES = ["0000:53:00.0", "0000:64:00.0", "0000:75:00.0", "0000:86:00.0",
            "0000:97:00.0", "0000:a8:00.0", "0000:b9:00.0", "0000:ca:00.0"]


def healthy_h100(i: int, bus: str) -> gpu_query.GpuStatus:
    return gpu_query.GpuStatus(
        index=i, name="NVIDIA H100 80GB HBM3", uuid=f"GPU-5a1c2f4e-0b7d-3e8a-9c61-2f0d4b7e8a1{i}", pci_bus_id=bus,
        persistence_mode=True, ecc_uncorrected_volatile=0, remapped_rows_pending=False,
        remapped_rows_failure=False, clock_events=gpu_query.clock_events_from_mask(0x1), driver_version="580.95.05",
    )


def healthy_query(n: int = 8) -> gpu_query.GpuQuery:
    return gpu_query.GpuQuery(source="nvml", gpus=[healthy_h100(i, b) for i, b in enumerate(P5_BUSES[:n])],
                      driver_version="580.95.05", duration_ms=11.0)


def smi_q_query(fixture: str) -> gpu_query.GpuQuery:
    driver, gpus = gpu_query.parse_smi_q((FIX / "nvidia-smi" / fixture).read_text())
    return gpu_query.GpuQuery(source="nvidia-smi", gpus=gpus, driver_version=driver)


def csv_query(fixture: str) -> gpu_query.GpuQuery:
    gpus = gpu_query.parse_smi_csv((FIX / "nvidia-smi" / fixture).read_text())
    return gpu_query.GpuQuery(source="nvidia-smi", gpus=gpus, driver_version=gpus[0].driver_version)


def kernel_log(fixture: str) -> klog.KernelLog:
    text = (FIX / "kmsg" / fixture).read_text()
    return klog.KernelLog("journalctl", klog.parse_kernel_log(text), lines=text.count("\n"))


CLEAN_LOG = klog.KernelLog("journalctl", [], lines=9)


def make_probes(tmp_path: Path, host: str | hosttree.HostSpec, query: gpu_query.GpuQuery | None = None,
                log: klog.KernelLog | None = None) -> Probes:
    root = tmp_path / "root"
    if isinstance(host, str):
        hosttree.build_named(host, root)
    else:
        hosttree.build(root, host)
    h = Host(root)
    probes = Probes(h, detect(h), DoctorOptions(no_container=True))
    # What the running system would answer: seeded, because the running system here has no GPU.
    if query is not None:
        probes.preset(inventory.probe_query, query)
    if log is not None:
        probes.preset(inventory.probe_kernel_log, log)
    return probes


def run(check_id: str, probes: Probes) -> CheckResult:
    return run_check(BY_ID[check_id], probes)


def run_all(probes: Probes) -> dict[str, CheckResult]:
    return {c.id: run_check(c, probes) for c in checks.CHECKS}


def assert_hints(results: dict[str, CheckResult]) -> None:
    for r in results.values():
        if r.status in (Status.WARNING, Status.CRITICAL, Status.UNKNOWN):
            assert r.hint, f"{r.id} is {r.status.value} without a hint: {r.summary}"
        assert not r.summary.startswith("check failed"), f"{r.id} crashed: {r.summary}"


# -- the registry ------------------------------------------------------------------------------
def test_checks_are_well_formed():
    ids = [c.id for c in checks.CHECKS]
    assert len(ids) == len(set(ids))
    for c in checks.CHECKS:
        assert c.group == "gpu" and c.id.startswith("gpu-") and c.title and c.timeout > 0
    # Driver and devices gate the boot; NVML and the kernel log need the running system.
    assert {c.id for c in checks.CHECKS if c.boot} == {
        "gpu-pci", "gpu-device-nodes", "gpu-kernel-module", "gpu-nvml", "gpu-count", "gpu-driver-version",
        "gpu-ecc", "gpu-row-remap"}
    assert {c.id for c in checks.CHECKS if LIVE in c.needs} == {
        "gpu-nvml", "gpu-persistence", "gpu-ecc", "gpu-row-remap", "gpu-retired-pages", "gpu-clocks", "gpu-xid"}
    # A check's timeout covers the waits inside it: NVML's deadline, or both nvidia-smi calls.
    for check in ("gpu-nvml", "gpu-count", "gpu-driver-version", "gpu-persistence"):
        assert BY_ID[check].timeout > 2 * gpu_query.init_allowance_s(64)


# -- healthy -----------------------------------------------------------------------------------
def test_healthy_p5_every_check_ok(tmp_path):
    results = run_all(make_probes(tmp_path, "healthy-p5-h100x8", healthy_query(), CLEAN_LOG))
    assert {k: r.status for k, r in results.items() if r.status is not Status.OK} == {
        "gpu-retired-pages": Status.SKIPPED}  # H100 remaps rows instead
    assert results["gpu-count"].summary == "8 GPUs in every view: PCI 8, /dev 8, NVML 8"
    assert results["gpu-nvml"].data["count"] == 8
    assert results["gpu-nvml"].data["gpus"][0]["uuid"].startswith("GPU-")
    assert "NVIDIA H100 80GB HBM3" in results["gpu-nvml"].summary
    assert results["gpu-kernel-module"].summary == "nvidia 580.178.04 loaded (open kernel module)"


def test_root_run_skips_what_needs_the_running_system(tmp_path):
    """Through the real runner on a --root tree: live-only checks say why they were skipped."""
    host = Host(hosttree.build_named("healthy-h200-ubuntu", tmp_path / "root"))
    report = run_checks(host, detect(host), DoctorOptions(no_container=True), checks.CHECKS)
    by_id = {c.id: c for c in report.checks}
    for c in checks.CHECKS:
        if LIVE in c.needs:
            assert by_id[c.id].status is Status.SKIPPED and "running system" in by_id[c.id].summary
    assert by_id["gpu-count"].status is Status.OK and "NVML (--root) not compared" in by_id["gpu-count"].summary
    assert report.status is Status.OK and report.exit_code == 0


# -- no GPU, no driver ---------------------------------------------------------------------------
def test_no_gpu_is_one_critical_finding(tmp_path):
    results = run_all(make_probes(tmp_path, "no-gpu", healthy_query(0), CLEAN_LOG))
    assert results["gpu-pci"].status is Status.CRITICAL
    assert results["gpu-pci"].summary == "no NVIDIA GPU on this host"
    assert "lspci -d 10de:" in results["gpu-pci"].hint
    for k, r in results.items():
        if k not in ("gpu-pci", "gpu-xid"):
            assert (r.status, r.summary) == (Status.SKIPPED, checks.NO_GPU), k
    assert_hints(results)


def test_module_not_loaded(tmp_path):
    query = gpu_query.GpuQuery(source="nvml", error="NVML: Driver Not Loaded", error_code=9,
                       hint=gpu_query.NVML_CAUSES[9].hint)
    results = run_all(make_probes(tmp_path, "module-not-loaded-g4dn", query, CLEAN_LOG))
    assert results["gpu-kernel-module"].status is Status.CRITICAL
    assert "modprobe nvidia" in results["gpu-kernel-module"].hint
    assert results["gpu-device-nodes"].status is Status.CRITICAL
    assert "ecs-init will register this host with 0 GPUs" in results["gpu-device-nodes"].summary
    # nvidia-modprobe cannot make nodes for a module that will not load: the nodes point at the module (issue 26).
    assert results["gpu-device-nodes"].cause == "gpu-kernel-module" and not results["gpu-device-nodes"].fixes
    assert "nvidia-modprobe" not in results["gpu-device-nodes"].hint
    assert results["gpu-nvml"].status is Status.CRITICAL
    assert results["gpu-pci"].status is Status.OK  # unbound, but the module is not loaded: reported there
    assert results["gpu-driver-version"].status is Status.SKIPPED
    assert results["gpu-count"].status is Status.CRITICAL  # PCI 4, /dev 0
    assert results["gpu-persistence"].status is Status.SKIPPED  # NVML did not answer: said once, by gpu-nvml
    assert_hints(results)


def test_no_pseudo_filesystems_in_root_are_skipped_with_the_mount(tmp_path):
    spec = hosttree.HostSpec(sysfs=False, proc=False, dev=False, gpus=hosttree.gpus("T4", ["0000:00:1e.0"]))
    results = run_all(make_probes(tmp_path, spec))
    assert results["gpu-pci"].status is Status.SKIPPED and "mount --rbind /sys" in results["gpu-pci"].summary
    assert results["gpu-device-nodes"].status is Status.SKIPPED and "/dev" in results["gpu-device-nodes"].summary
    assert results["gpu-kernel-module"].status is Status.SKIPPED and "proc" in results["gpu-kernel-module"].summary
    assert results["gpu-count"].status is Status.SKIPPED


# -- PCI bindings --------------------------------------------------------------------------------
@pytest.mark.parametrize("driver, module, status, words", [
    ("nouveau", "580.95.05", Status.CRITICAL, "blacklist nouveau"),
    (None, "580.95.05", Status.CRITICAL, "RmInitAdapter"),
    ("vfio-pci", "580.95.05", Status.WARNING, "lspci -k"),
])
def test_pci_bindings(tmp_path, driver, module, status, words):
    spec = hosttree.HostSpec(gpus=hosttree.gpus("A10G", ["0000:00:1e.0"], driver=driver), module=module)
    result = run("gpu-pci", make_probes(tmp_path, spec))
    assert result.status is status and words in result.hint


# -- versions ------------------------------------------------------------------------------------
def test_api_mismatch_from_library_versions(tmp_path):
    result = run("gpu-driver-version", make_probes(tmp_path, "api-mismatch-al2"))
    assert result.status is Status.CRITICAL
    assert "kernel module 535.104.12, userland 535.129.03" in result.summary
    assert "reboot" in result.hint and "versionlock" in result.hint
    assert result.data["installed"] == ["535.104.12", "535.129.03"]


def test_api_mismatch_reported_by_nvml(tmp_path):
    query = gpu_query.GpuQuery(source="nvml", error="NVML: RM has detected an NVML/RM version mismatch.", error_code=18)
    result = run("gpu-driver-version", make_probes(tmp_path, "healthy-p5-h100x8", query))
    assert result.status is Status.CRITICAL and "API mismatch" in result.summary and "reboot" in result.hint


def test_userland_missing(tmp_path):
    spec = hosttree.HostSpec(gpus=hosttree.gpus("T4", ["0000:00:1e.0"]), userland=None)
    result = run("gpu-driver-version", make_probes(tmp_path, spec))
    assert result.status is Status.CRITICAL and "libnvidia-ml.so.1" in result.summary


def test_leftover_libraries_are_noted_not_failed(tmp_path):
    spec = hosttree.HostSpec(gpus=hosttree.gpus("T4", ["0000:00:1e.0"]), stale_userland=["570.86.15"])
    result = run("gpu-driver-version", make_probes(tmp_path, spec))
    assert result.status is Status.OK and "570.86.15" in result.summary


# -- counts ----------------------------------------------------------------------------------------
def test_count_missing_device_node(tmp_path):
    result = run("gpu-count", make_probes(tmp_path, "missing-node-g5"))
    assert result.status is Status.CRITICAL
    assert result.summary.startswith("GPU counts disagree: PCI 4, /dev 3")
    assert "fallen off the bus" in result.hint


def test_count_nvml_sees_fewer(tmp_path):
    result = run("gpu-count", make_probes(tmp_path, "healthy-p5-h100x8", healthy_query(7)))
    assert result.status is Status.CRITICAL and "NVML 7" in result.summary
    assert result.data["counts"] == {"pci": 8, "dev": 8, "nvml": 7}


# -- NVML ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("code, words", [
    (9, "modprobe nvidia"), (12, "ldconfig"), (14, "InfoROM"), (15, "reboot"), (18, "versionlock"),
    (None, "nvidia-smi -q"),
])
def test_nvml_failures_name_the_fix(tmp_path, code, words):
    cause = gpu_query.cause_for_code(code)
    query = gpu_query.GpuQuery(source="nvml", error=f"NVML: {cause.summary}", error_code=code)
    result = run("gpu-nvml", make_probes(tmp_path, "healthy-p5-h100x8", query))
    assert result.status is Status.CRITICAL and words in result.hint and result.fixes


def test_nvml_hang_reported(tmp_path):
    query = gpu_query.query_nvml(deadline_s=0.1, nv=type("Hang", (), {
        "NVMLError": type("NVMLError", (Exception,), {}),
        "nvmlInit": staticmethod(lambda: __import__("time").sleep(3)),
    }))
    result = run("gpu-nvml", make_probes(tmp_path, "healthy-p5-h100x8", query))
    assert result.status is Status.CRITICAL and "did not answer within 0.1s" in result.summary
    assert "nvidia-persistenced" in result.hint


def test_nvml_lost_gpu(tmp_path):
    query = healthy_query()
    query.gpus[6] = gpu_query.GpuStatus(index=6, error="GPU 6: GPU is lost (a GPU has fallen off the bus)",
                                        error_code=15)
    results = run_all(make_probes(tmp_path, "healthy-p5-h100x8", query))
    assert results["gpu-nvml"].status is Status.CRITICAL and "GPU 6" in results["gpu-nvml"].summary
    assert "reboot" in results["gpu-nvml"].hint
    assert results["gpu-persistence"].status is Status.OK  # the readable GPUs are still judged


def test_nvml_through_nvidia_smi_is_said(tmp_path):
    query = csv_query("h200-query-gpu-csv.txt")
    query.notes = ["NVML through nvidia-ml-py not used: nvidia-ml-py is not importable"]
    result = run("gpu-nvml", make_probes(tmp_path, "healthy-h200-ubuntu", query))
    assert result.status is Status.OK and "nvidia-smi" in result.summary and result.data["notes"]


# -- per-GPU health --------------------------------------------------------------------------------
def test_persistence_off(tmp_path):
    result = run("gpu-persistence", make_probes(tmp_path, "healthy-p5-h100x8", csv_query("p5-h100x8-query-gpu.txt")))
    assert result.status is Status.WARNING
    assert result.summary == "persistence mode off on GPU 3 (0000:86:00.0)"
    for words in ("1-3 s per GPU", "25 s instead of 0.8 s", "NVIDIA/nvidia-docker 1279"):
        assert words in result.hint
    assert [f.argv for f in result.fixes] == [("systemctl", "enable", "--now", "nvidia-persistenced")]


def test_ecc_uncorrected(tmp_path):
    result = run("gpu-ecc", make_probes(tmp_path, "healthy-p5-h100x8", csv_query("p5-h100x8-query-gpu.txt")))
    assert result.status is Status.CRITICAL
    assert "GPU 5 (0000:a8:00.0): 3" in result.summary
    assert "nvidia-smi -r" in result.hint
    assert result.data["uncorrected_volatile"]["7"] is None  # ECC off on GPU 7: not counted as an error


def test_row_remap_failure_and_pending(tmp_path):
    probes = make_probes(tmp_path, "healthy-p5-h100x8", smi_q_query("p4d-a100-q-remap.txt"))
    result = run("gpu-row-remap", probes)
    assert result.status is Status.CRITICAL and "failed on GPU 1" in result.summary
    assert "replaced" in result.hint


def test_row_remap_pending_only(tmp_path):
    query = smi_q_query("p4d-a100-q-remap.txt")
    query.gpus[1] = dataclasses.replace(query.gpus[1], remapped_rows_failure=False)
    result = run("gpu-row-remap", make_probes(tmp_path, "healthy-p5-h100x8", query))
    assert result.status is Status.CRITICAL and "pending on GPU 0" in result.summary
    assert "nvidia-smi -r -i 0" in result.hint and "reboot" in result.hint  # the GPU named (issue 26)


def test_retired_pages_on_t4(tmp_path):
    results = run_all(make_probes(tmp_path, "module-not-loaded-g4dn", smi_q_query("g4dn-t4-q-retired.txt"), CLEAN_LOG))
    assert results["gpu-retired-pages"].status is Status.CRITICAL
    assert "GPU 0 (0000:00:1d.0)" in results["gpu-retired-pages"].summary
    assert results["gpu-row-remap"].status is Status.SKIPPED  # T4 predates row remapping
    assert results["gpu-clocks"].status is Status.WARNING and "sw_thermal_slowdown" in results["gpu-clocks"].summary
    assert_hints(results)


def test_clocks_hw_thermal(tmp_path):
    result = run("gpu-clocks", make_probes(tmp_path, "healthy-p5-h100x8", smi_q_query("v100-q-old-ecc.txt")))
    assert result.status is Status.WARNING
    assert "GPU 0 (0000:00:1e.0): hw_slowdown, hw_thermal_slowdown" in result.summary
    assert "nvidia-smi -q -d PERFORMANCE" in result.hint


# -- the kernel log --------------------------------------------------------------------------------
def test_xids_critical(tmp_path):
    result = run("gpu-xid", make_probes(tmp_path, "healthy-p5-h100x8", log=kernel_log("xid-79-fallen-off.txt")))
    assert result.status is Status.CRITICAL
    assert "Xid 79 (GPU has fallen off the bus, 0000:b9:00) x1" in result.summary
    assert "reboot" in result.hint
    assert result.data["counts"] == {"Xid 79": 1}


def test_xids_mixed_worst_wins(tmp_path):
    result = run("gpu-xid", make_probes(tmp_path, "healthy-p5-h100x8", log=kernel_log("xid-mixed.txt")))
    assert result.status is Status.CRITICAL
    assert result.data["counts"]["Xid 13"] == 2
    assert "Xid 157" in result.summary


def test_xids_application_errors_only_warn(tmp_path):
    result = run("gpu-xid", make_probes(tmp_path, "healthy-p5-h100x8", log=kernel_log("app-errors-only.txt")))
    assert result.status is Status.WARNING and "restart the application" in result.hint


def test_xids_api_mismatch_line(tmp_path):
    result = run("gpu-xid", make_probes(tmp_path, "healthy-p5-h100x8", log=kernel_log("api-mismatch.txt")))
    assert result.status is Status.CRITICAL and "api-mismatch" in result.summary


def test_xids_log_unreadable_is_unknown(tmp_path):
    log = klog.KernelLog(error="cannot read this boot's kernel log (/dev/kmsg: Permission denied)", hint="run as root")
    result = run("gpu-xid", make_probes(tmp_path, "healthy-p5-h100x8", log=log))
    assert result.status is Status.UNKNOWN and result.hint.startswith("run as root"), result
    # the log read by hand is the running kernel's: under --root, an instance booted from the image has it
    assert [(f.argv[-4:], f.runs) for f in result.fixes][1] == (("journalctl", "-k", "-b", "--no-pager"), "booted")


def test_xids_clean(tmp_path):
    result = run("gpu-xid", make_probes(tmp_path, "healthy-p5-h100x8", log=kernel_log("clean-boot.txt")))
    assert result.status is Status.OK and "journalctl" in result.summary
