"""The GPU probe: parsers on fixture text, readers on fake host trees, NVML and nvidia-smi answers.

This machine has no GPU and no NVIDIA driver (docs/testbed.md 9), so what those would say is simulated:
host trees from ``tests/hosttree.py`` stand in for sysfs, /dev and /proc; a fake ``pynvml`` module
(``FakeNvml``) stands in for NVML behind the real binding's interface; a shell-script ``nvidia-smi``
prints fixture output captured in the shapes real drivers print (docs/testbed.md 8 for the H200 CSV).
The real nvidia-ml-py, the real /dev/kmsg and the real sysfs of this machine are used where the
test is about them (a host without a GPU must not crash the probe).
"""

from __future__ import annotations

import stat
import time
from pathlib import Path

import hosttree
import pytest
from conftest import FIXTURES, require_root

from gpuprep.errors import GpuprepError
from gpuprep.gpu import devices, inventory, kernel_log
from gpuprep.gpu import query as gpu_query
from gpuprep.host import Host

pytestmark = pytest.mark.allow_subp('journalctl', 'nvidia-smi')

FIX = FIXTURES
SMI = FIX / "nvidia-smi"
KMSG = FIX / "kmsg"


def smi(name: str) -> str:
    return (SMI / name).read_text()


# -- small pure parsers ------------------------------------------------------------------------
@pytest.mark.parametrize("raw, want", [
    ("00000000:00:1E.0", "0000:00:1e.0"),  # NVML / nvidia-smi
    ("0000:53:00.0", "0000:53:00.0"),  # sysfs
    ("PCI:0000:b9:00", "0000:b9:00"),  # XID lines name no function
    ("00000001:CA:00.0", "0001:ca:00.0"),
])
def test_normalize_bus_id(raw, want):
    assert devices.normalize_bus_id(raw) == want


@pytest.mark.parametrize("vendor, klass, want", [
    (0x10DE, 0x030200, True),  # 3D controller: T4, V100, A100, H100, H200
    (0x10DE, 0x030000, True),  # VGA: some A10G hosts
    (0x10DE, 0x040300, False),  # the board's HDMI audio function
    (0x10DE, 0x068000, False),  # NVSwitch bridge on p4d/p5
    (0x1D0F, 0x030000, False),  # not NVIDIA (Amazon's ENA vendor id)
    (None, None, False),
])
def test_is_gpu_function(vendor, klass, want):
    assert devices.is_gpu_function(vendor, klass) is want


@pytest.mark.parametrize("text, version, flavour", [
    ("NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  580.95.05  Release Build  "
     "(dvs-builder@U16-I2-C04-37-1)  Tue Sep 16 21:03:56 UTC 2025\n", "580.95.05", "open"),
    ("NVRM version: NVIDIA UNIX x86_64 Kernel Module  535.183.01  Sun May 12 19:39:15 UTC 2024\n"
     "GCC version:  gcc version 7.3.1 20180712 (Red Hat 7.3.1-17) (GCC)\n", "535.183.01", "proprietary"),
    ("NVRM version: NVIDIA UNIX Open Kernel Module for aarch64  550.54.15  Release Build\n", "550.54.15", "open"),
    ("NVRM version: NVIDIA UNIX x86_64 Kernel Module  418.87  Thu Aug  8 15:35:46 CDT 2019\n", "418.87", "proprietary"),
    ("garbage\n", None, None),
])
def test_parse_module_version(text, version, flavour):
    assert devices.parse_module_version(text) == (version, flavour)


def test_library_version():
    assert devices.library_version("/usr/lib64/libnvidia-ml.so.580.95.05") == "580.95.05"
    assert devices.library_version("libnvidia-ml.so.1") is None
    assert devices.library_version("libnvidia-mlx.so.580.95.05") is None


def test_clock_events_from_mask_uses_nvml_bits():
    # nvml.h: HwSlowdown 0x08, SwThermalSlowdown 0x20, HwThermalSlowdown 0x40, HwPowerBrakeSlowdown 0x80
    events = gpu_query.clock_events_from_mask(0x08 | 0x40 | 0x01)  # 0x01 GpuIdle is not a problem
    assert events == {"hw_slowdown": True, "sw_thermal_slowdown": False, "hw_thermal_slowdown": True,
                      "hw_power_brake_slowdown": False}


# -- nvidia-smi output -------------------------------------------------------------------------
def test_parse_smi_csv_real_h200_output_with_header_and_units():
    """docs/testbed.md 8: the accelerator machine's output, columns in its own order, with a header."""
    [gpu] = gpu_query.parse_smi_csv(smi("h200-query-gpu-csv.txt"))
    assert (gpu.index, gpu.name, gpu.uuid) == (0, "NVIDIA H200", "GPU-0e7d3af2-be49-affe-ae6c-f6fcf358f2ea")
    assert gpu.pci_bus_id == "0000:00:06.0"
    assert gpu.driver_version == "580.159.04"
    assert gpu.persistence_mode is True and gpu.ecc_uncorrected_volatile == 0


def test_parse_smi_csv_noheader_as_query_smi_asks():
    gpus = gpu_query.parse_smi_csv(smi("p5-h100x8-query-gpu.txt"))
    assert [x.index for x in gpus] == list(range(8))
    assert gpus[3].persistence_mode is False
    assert gpus[5].ecc_uncorrected_volatile == 3
    assert gpus[7].ecc_uncorrected_volatile is None  # [N/A]: ECC off
    assert gpus[5].pci_bus_id == "0000:a8:00.0"


def test_parse_smi_csv_rejects_short_rows():
    with pytest.raises(GpuprepError, match="cannot read nvidia-smi's CSV output: .*columns"):
        gpu_query.parse_smi_csv("0, NVIDIA H100, GPU-x\n")


def test_parse_smi_csv_flood_is_bad_output_not_a_crash():
    """A broken driver's nvidia-smi printing one 64 MB line: csv's field limit, said as unreadable output."""
    with pytest.raises(GpuprepError, match="cannot read nvidia-smi's CSV output"):
        gpu_query.parse_smi_csv("index, name\n" + "x" * (1 << 26) + "\n")


def test_parse_smi_q_h100_healthy():
    driver, [gpu] = gpu_query.parse_smi_q(smi("h100-q.txt"))
    assert driver == "580.95.05"
    assert gpu.uuid == "GPU-5a1c2f4e-0b7d-3e8a-9c61-2f0d4b7e8a10" and gpu.pci_bus_id == "0000:53:00.0"
    assert gpu.ecc_uncorrected_volatile == 0  # SRAM/DRAM Uncorrectable summed
    assert (gpu.remapped_rows_pending, gpu.remapped_rows_failure) == (False, False)
    assert gpu.retired_pages_pending is None  # N/A on Hopper: rows are remapped instead
    assert gpu.clock_events is not None and not any(gpu.clock_events.values())


def test_parse_smi_q_a100_remap_pending_and_failure():
    driver, (gpu0, gpu1) = gpu_query.parse_smi_q(smi("p4d-a100-q-remap.txt"))
    assert driver == "525.85.12"
    assert (gpu0.remapped_rows_pending, gpu0.remapped_rows_failure) == (True, False)
    assert (gpu1.remapped_rows_pending, gpu1.remapped_rows_failure) == (False, True)
    assert gpu1.ecc_uncorrected_volatile == 2  # DRAM Uncorrectable, volatile only (aggregate says 5)
    # "Clocks Throttle Reasons" (before driver 535), HW Thermal nested under HW Slowdown
    assert gpu0.clock_events["hw_slowdown"] is True and gpu0.clock_events["hw_thermal_slowdown"] is False


def test_parse_smi_q_t4_retired_pages_and_no_row_remapping():
    _, (gpu0, gpu1) = gpu_query.parse_smi_q(smi("g4dn-t4-q-retired.txt"))
    assert gpu0.remapped_rows_pending is None  # "Remapped Rows : N/A"
    assert gpu0.retired_pages_pending is True and gpu1.retired_pages_pending is False
    assert gpu0.clock_events["sw_thermal_slowdown"] is True
    assert gpu0.persistence_mode is False


def test_parse_smi_q_v100_old_ecc_layout():
    driver, [gpu] = gpu_query.parse_smi_q(smi("v100-q-old-ecc.txt"))
    assert driver == "418.87.00"
    assert gpu.ecc_uncorrected_volatile == 1  # Volatile / Double Bit / Total, not the aggregate
    assert gpu.retired_pages_pending is False  # old drivers print "Pending : No"
    assert gpu.clock_events["hw_thermal_slowdown"] is True


def test_parse_smi_q_tree_keeps_nested_paths():
    _, gpus = gpu_query.parse_smi_q_tree(smi("h100-q.txt"))
    fields = gpus["0000:53:00.0"]
    assert fields[("Clocks Event Reasons", "HW Slowdown", "HW Thermal Slowdown")] == "Not Active"
    assert fields[("PCI", "Bus Id")] == "00000000:53:00.0"  # values keep their colons


# -- the kernel log ----------------------------------------------------------------------------
def test_parse_kernel_log_classifies_xids():
    events = kernel_log.parse_kernel_log((KMSG / "xid-mixed.txt").read_text())
    by_code = {}
    for e in events:
        by_code.setdefault(e.code, e)
    assert {c: e.severity for c, e in by_code.items()} == {
        13: "warning", 31: "warning", 43: "warning",
        63: "critical", 64: "critical", 48: "critical", 74: "critical", 94: "critical", 95: "critical",
        119: "critical", 120: "critical",
        157: "warning",  # not in the catalog: reported, not guessed at
    }
    assert by_code[157].meaning == "not classified by gpuprep"
    xid31 = by_code[31]
    assert (xid31.pci, xid31.pid, xid31.process) == ("0000:00:1e", "2345", "python3")
    assert xid31.message.startswith("Ch 00000010")
    assert by_code[63].pid == "1896" and by_code[63].process == ""  # old format: no name=
    assert by_code[13].pid == "" and "Warp Exception" in by_code[13].message  # no pid at all
    assert by_code[120].pid == "<unknown>"


def test_parse_kernel_log_xid_79():
    [event] = kernel_log.parse_kernel_log((KMSG / "xid-79-fallen-off.txt").read_text())
    assert (event.kind, event.code, event.severity, event.pci) == ("xid", 79, "critical", "0000:b9:00")
    assert event.meaning == "GPU has fallen off the bus"
    assert "reboot" in event.action


def test_parse_kernel_log_api_mismatch_spans_lines():
    [event] = kernel_log.parse_kernel_log((KMSG / "api-mismatch.txt").read_text())
    assert event.kind == "api-mismatch" and event.severity == "critical"
    assert event.message == "userland 535.129.03, kernel module 535.104.12"


def test_parse_kernel_log_rm_init_failed():
    [event] = kernel_log.parse_kernel_log((KMSG / "rm-init-failed.txt").read_text())
    assert (event.kind, event.pci, event.severity) == ("rm-init-failed", "0000:00:1e.0", "critical")


def test_parse_kernel_log_clean_boot_has_no_events():
    assert kernel_log.parse_kernel_log((KMSG / "clean-boot.txt").read_text()) == []


def test_parse_kmsg_strips_record_headers_and_dictionary_lines():
    text = kernel_log.parse_kmsg((KMSG / "kmsg-records.txt").read_text())
    assert text.splitlines()[1] == "NVRM: Xid (PCI:0000:00:1e): 79, pid=1234, name=python3, GPU has fallen off the bus."
    assert "SUBSYSTEM" not in text
    [event] = kernel_log.parse_kernel_log(text)
    assert event.code == 79


def test_read_kmsg_bounded_by_records(tmp_path):
    """A regular file reads like /dev/kmsg (records, then EOF); the record bound holds."""
    f = tmp_path / "kmsg"
    f.write_bytes(b"6,1,1,-;first\n" * 5000)
    raw = Host("/").read_records(f, max_records=2, deadline_s=2.0)  # 2 reads of 8 KiB, far fewer than 5000 records
    assert 0 < raw.count(b"first") < 5000


def test_read_kmsg_real_device_does_not_block():
    """This machine's real /dev/kmsg: reading to the end returns (EAGAIN) instead of blocking."""
    require_root()  # /dev/kmsg is readable by root only (dmesg_restrict)
    started = time.monotonic()
    raw = Host("/").read_records("/dev/kmsg", max_records=kernel_log.KERNEL_LOG_MAX_LINES,
                                 deadline_s=kernel_log.KMSG_DEADLINE_S)
    assert time.monotonic() - started < kernel_log.KMSG_DEADLINE_S + 1
    assert kernel_log.parse_kmsg(raw.decode(errors="replace"))  # the kernel logged something since boot


# -- host trees --------------------------------------------------------------------------------
def test_readers_on_a_p5_tree(tmp_path):
    host = Host(hosttree.build_named("healthy-p5-h100x8", tmp_path / "root"))
    pci = devices.read_pci(host)
    assert pci.present and len(pci.gpus) == 8  # the 4 NVSwitch bridges and the NIC are not GPUs
    assert pci.gpus[0] == devices.PciFunction("0000:53:00.0", "0x2330", "0x030200", "nvidia")
    nodes = devices.read_device_nodes(host)
    assert nodes.gpus == [f"/dev/nvidia{i}" for i in range(8)] and nodes.nvidiactl
    module = devices.read_kernel_module(host)
    assert (module.loaded, module.version, module.flavour) == (True, "580.178.04", "open")
    userland = devices.read_userland(host)
    assert (userland.nvml_lib, userland.version) == ("/usr/lib64/libnvidia-ml.so.1", "580.178.04")


def test_device_nodes_sort_numerically(tmp_path):
    spec = hosttree.HostSpec(gpus=hosttree.gpus("A100", [f"0000:{i:02x}:00.0" for i in range(12)]))
    host = Host(hosttree.build(tmp_path / "root", spec))
    assert devices.read_device_nodes(host).gpus[-3:] == ["/dev/nvidia9", "/dev/nvidia10", "/dev/nvidia11"]


def test_readers_without_pseudo_filesystems_say_so(tmp_path):
    """An image whose /sys, /proc and /dev are not mounted is not a host without GPUs."""
    spec = hosttree.HostSpec(sysfs=False, proc=False, dev=False, gpus=hosttree.gpus("T4", ["0000:00:1e.0"]))
    host = Host(hosttree.build(tmp_path / "root", spec))
    assert devices.read_pci(host).present is False
    assert devices.read_device_nodes(host).present is False
    assert devices.read_kernel_module(host).procfs is False


def test_module_loaded_without_version_file(tmp_path):
    root = hosttree.build(tmp_path / "root", hosttree.HostSpec(module=None))
    (root / "proc/modules").write_text("nvidia 56496128 0 - Live 0x0\n")
    module = devices.read_kernel_module(Host(root))
    assert module.loaded and module.version is None


def test_userland_follows_absolute_links_inside_the_root(tmp_path):
    root = hosttree.build(tmp_path / "root", hosttree.HostSpec(userland=None, stale_userland=["550.1.2", "535.9.9"]))
    (root / "usr/lib64/libnvidia-ml.so.1").symlink_to("/usr/lib64/libnvidia-ml.so.550.1.2")
    userland = devices.read_userland(Host(root))
    assert userland.version == "550.1.2"
    assert userland.installed == ["535.9.9", "550.1.2"]


def test_gather_on_a_tree_skips_what_needs_the_running_system(tmp_path):
    host = Host(hosttree.build_named("healthy-h200-ubuntu", tmp_path / "root"))
    inv = inventory.gather(host)
    assert inv.query.skipped and "--root" in inv.query.skipped
    assert inv.kernel_log.skipped
    assert inv.count == 1  # from PCI: NVML was not asked
    assert inv.uuids == []
    assert inv.driver_version == "580.159.04"  # the kernel module's


def test_gather_on_this_machine_without_a_gpu():
    """The real machine (no GPU, no driver, nvidia-ml-py installed): nothing crashes, nothing is invented."""
    inv = inventory.gather(Host("/"))
    assert inv.pci.present and inv.pci.gpus == []
    assert inv.count == 0 and inv.uuids == [] and inv.driver_version is None
    assert not inv.query.answered and inv.query.error


def test_gpu_inventory_is_memoised_in_probes(tmp_path):
    from gpuprep.options import DoctorOptions
    from gpuprep.platform import detect
    from gpuprep.runner.checks import Probes

    host = Host(hosttree.build_named("healthy-p5-h100x8", tmp_path / "root"))
    probes = Probes(host, detect(host), DoctorOptions())
    first = inventory.gpu_inventory(probes)
    assert inventory.gpu_inventory(probes) is first
    assert inventory.probe_pci(probes) is first.pci  # the views are the same probes the checks use
    assert first.count == 8


# -- NVML, through a fake pynvml -----------------------------------------------------------------
class FakeNvml:
    """The parts of nvidia-ml-py's ``pynvml`` that gpuprep calls, answering for ``gpus``.

    Each GPU is a dict: name, uuid, bus, persistence (1/0), ecc (int or "NS" for NotSupported),
    rows (tuple or "NS"), retired (1/0), clocks (mask), lost (True: GPU is lost).
    """

    NVML_FEATURE_ENABLED = 1
    NVML_MEMORY_ERROR_TYPE_UNCORRECTED = 1
    NVML_VOLATILE_ECC = 0
    NVML_ERROR_NOT_SUPPORTED = 3

    class NVMLError(Exception):
        def __init__(self, value: int) -> None:
            super().__init__({3: "Not Supported", 9: "Driver Not Loaded", 12: "NVML Shared Library Not Found",
                              15: "GPU is lost", 18: "RM has detected an NVML/RM version mismatch."}.get(value, "?"))
            self.value = value

    def __init__(self, gpus: list[dict], driver: str = "580.95.05", init_error: int | None = None,
                 init_delay: float = 0.0, event_reasons: bool = True) -> None:
        self.gpus, self.driver, self.init_error, self.init_delay = gpus, driver, init_error, init_delay
        self.shutdowns = 0
        if not event_reasons:  # drivers before 535 have only the ...ThrottleReasons name
            self.nvmlDeviceGetCurrentClocksEventReasons = None

    def nvmlInit(self):
        time.sleep(self.init_delay)
        if self.init_error is not None:
            raise self.NVMLError(self.init_error)

    def nvmlShutdown(self):
        self.shutdowns += 1

    def nvmlSystemGetDriverVersion(self):
        return self.driver

    def nvmlDeviceGetCount(self):
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, i):
        if self.gpus[i].get("lost"):
            raise self.NVMLError(15)
        return self.gpus[i]

    def nvmlDeviceGetName(self, h):
        return h["name"].encode()  # older bindings return bytes

    def nvmlDeviceGetUUID(self, h):
        return h["uuid"]

    def nvmlDeviceGetPciInfo(self, h):
        return type("PciInfo", (), {"busId": h["bus"].encode()})

    def nvmlDeviceGetPersistenceMode(self, h):
        return h.get("persistence", 1)

    def _maybe(self, value):
        if value == "NS":
            raise self.NVMLError(self.NVML_ERROR_NOT_SUPPORTED)
        return value

    def nvmlDeviceGetTotalEccErrors(self, h, error_type, counter_type):
        assert (error_type, counter_type) == (1, 0)  # uncorrected, volatile
        return self._maybe(h.get("ecc", 0))

    def nvmlDeviceGetRemappedRows(self, h):
        return self._maybe(h.get("rows", (0, 0, 0, 0)))

    def nvmlDeviceGetRetiredPagesPendingStatus(self, h):
        return h.get("retired", 0)

    def nvmlDeviceGetCurrentClocksEventReasons(self, h):
        return h.get("clocks", 0x1)

    def nvmlDeviceGetCurrentClocksThrottleReasons(self, h):
        return h.get("clocks", 0x1)

    nvmlMemory_v2 = 0x02000028  # the binding's version tag for nvmlMemory_v2_t

    def nvmlDeviceGetVirtualizationMode(self, h):
        return h.get("virtualization", 1)  # pass-through, as on EC2

    def nvmlDeviceGetMemoryInfo(self, h, version=None):
        if h.get("memory") == "NS":
            raise self.NVMLError(self.NVML_ERROR_NOT_SUPPORTED)
        total, reserved = h.get("memory", (81559, 551))
        fields = {"total": total * 1024 * 1024, "free": 0, "used": 0}
        if version == self.nvmlMemory_v2:
            fields["reserved"] = reserved * 1024 * 1024
        return type("Memory", (), fields)


H100 = {"name": "NVIDIA H100 80GB HBM3", "uuid": "GPU-5a1c2f4e-0b7d-3e8a-9c61-2f0d4b7e8a10", "bus": "00000000:53:00.0"}
T4 = {"name": "Tesla T4", "uuid": "GPU-1b3d5f70-92a4-4c6e-8d0f-3e5a7c9b1d21", "bus": "00000000:00:1E.0",
      "rows": "NS", "retired": 1, "ecc": "NS", "persistence": 0, "clocks": 0x20}


def test_read_nvml_healthy_h100():
    nv = FakeNvml([H100])
    q = gpu_query.query_nvml(nv=nv)
    assert q.answered and q.source == "nvml" and q.driver_version == "580.95.05"
    [gpu] = q.gpus
    assert gpu.name == "NVIDIA H100 80GB HBM3" and gpu.pci_bus_id == "0000:53:00.0"
    assert gpu.persistence_mode is True and gpu.ecc_uncorrected_volatile == 0
    assert (gpu.remapped_rows_pending, gpu.remapped_rows_failure, gpu.retired_pages_pending) == (False, False, None)
    assert not any(gpu.clock_events.values())
    assert nv.shutdowns == 1


def test_read_nvml_virtualization_and_memory():
    """What the ECS agent's MPS gate asks of each GPU (aws/amazon-ecs-agent PR #5053, #5075)."""
    [gpu] = gpu_query.query_nvml(nv=FakeNvml([H100])).gpus
    assert (gpu.virtualization_mode, gpu.memory_total_mib, gpu.memory_reserved_mib) == ("pass-through", 81559, 551)
    assert gpu.usable_memory_mib == 81008
    [vgpu, blind] = gpu_query.query_nvml(nv=FakeNvml([dict(H100, virtualization=2), dict(H100, memory="NS")])).gpus
    assert vgpu.virtualization_mode == "vgpu" and blind.usable_memory_mib is None


def test_read_nvml_t4_falls_back_to_retired_pages():
    [gpu] = gpu_query.query_nvml(nv=FakeNvml([T4], event_reasons=False)).gpus
    assert gpu.remapped_rows_pending is None and gpu.retired_pages_pending is True
    assert gpu.ecc_uncorrected_volatile is None  # NotSupported: ECC off
    assert gpu.persistence_mode is False
    assert gpu.clock_events["sw_thermal_slowdown"] is True  # through ...ThrottleReasons


def test_read_nvml_a100_remap_states():
    a100 = dict(H100, name="NVIDIA A100-SXM4-40GB", rows=(0, 5, 1, 1), ecc=2)
    [gpu] = gpu_query.query_nvml(nv=FakeNvml([a100])).gpus
    assert (gpu.remapped_rows_pending, gpu.remapped_rows_failure, gpu.ecc_uncorrected_volatile) == (True, True, 2)


def test_read_nvml_one_lost_gpu_does_not_hide_the_others():
    q = gpu_query.query_nvml(nv=FakeNvml([H100, dict(H100, lost=True)]))
    assert q.answered
    assert q.gpus[0].error == "" and q.gpus[1].error_code == 15
    assert "fallen off the bus" in q.gpus[1].error


@pytest.mark.parametrize("code, words, fallback", [
    (9, "kernel module is not loaded", False),
    (18, "NVRM API mismatch", False),
    (12, "libnvidia-ml.so.1", True),  # the binding cannot load the library: nvidia-smi may still work
])
def test_query_nvml_errors_name_the_cause(code, words, fallback):
    q = gpu_query.query_nvml(nv=FakeNvml([H100], init_error=code))
    assert not q.answered and q.error_code == code
    assert words in q.error and q.hint
    assert q.fallback is fallback


def test_query_nvml_hang_is_bounded():
    started = time.monotonic()
    q = gpu_query.query_nvml(deadline_s=0.2, nv=FakeNvml([H100], init_delay=5))
    assert time.monotonic() - started < 1
    assert not q.answered and "did not answer within 0.2s" in q.error
    assert "persistence" in q.hint


def test_query_nvml_without_nvidia_ml_py(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "pynvml", None)  # import pynvml raises ImportError
    q = gpu_query.query_nvml()
    assert q.fallback and "nvidia-ml-py is not importable" in q.error


def test_query_nvml_real_binding_on_this_machine():
    """The real nvidia-ml-py without libnvidia-ml.so.1: library-not-found, so nvidia-smi is tried next."""
    q = gpu_query.query_nvml()
    assert not q.answered and q.fallback and q.error_code == 12


# -- nvidia-smi, a script standing in for the real one ------------------------------------------
def fake_smi(bindir: Path, *, csv: str = "", q: str = "", rc: int = 0, q_rc: int = 0, sleep: float = 0) -> Path:
    """An ``nvidia-smi`` that prints fixture text: CSV for --query-gpu, the -q text for -q."""
    bindir.mkdir(parents=True, exist_ok=True)
    (bindir / "csv.txt").write_text(csv)
    (bindir / "q.txt").write_text(q)
    script = bindir / "nvidia-smi"
    script.write_text(
        "#!/bin/sh\n"
        f"sleep {sleep}\n"
        'case "$1" in\n'
        f'  --query-gpu=*) cat "{bindir}/csv.txt"; exit {rc} ;;\n'
        f'  -q) cat "{bindir}/q.txt"; exit {q_rc} ;;\n'
        "esac\nexit 2\n"
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return bindir


def live_host(bindir: Path) -> Host:
    return Host("/", env={"PATH": f"{bindir}:/usr/bin:/bin"})


def test_query_smi_csv_and_q_merged(tmp_path):
    csv = smi("p5-h100x8-query-gpu.txt").splitlines()[0] + "\n"  # GPU 0 at 53:00.0, as in h100-q.txt
    q = gpu_query.query_smi(live_host(fake_smi(tmp_path / "bin", csv=csv, q=smi("h100-q.txt"))))
    assert q.answered and q.source == "nvidia-smi" and q.driver_version == "580.95.05"
    [gpu] = q.gpus
    assert gpu.uuid == "GPU-5a1c2f4e-0b7d-3e8a-9c61-2f0d4b7e8a10"
    assert gpu.remapped_rows_pending is False  # from -q, matched by bus id
    assert gpu.clock_events is not None


def test_query_smi_q_failure_keeps_the_csv_answer(tmp_path):
    q = gpu_query.query_smi(live_host(fake_smi(tmp_path / "bin", csv=smi("p5-h100x8-query-gpu.txt"), q_rc=15)))
    assert q.answered and len(q.gpus) == 8
    assert "nvidia-smi -q exited 15" in q.notes[0]
    assert q.gpus[0].remapped_rows_pending is None


@pytest.mark.parametrize("rc, fixture, words", [
    (9, "driver-not-loaded.txt", "kernel module is not loaded"),
    (12, "", "libnvidia-ml.so.1"),
    (14, "", "InfoROM"),
    (15, "gpu-lost.txt", "fallen off the bus"),
    (18, "version-mismatch.txt", "API mismatch"),
])
def test_query_smi_exit_codes_name_the_cause(tmp_path, rc, fixture, words):
    q = gpu_query.query_smi(live_host(fake_smi(tmp_path / "bin", csv=smi(fixture) if fixture else "", rc=rc)))
    assert not q.answered and q.error_code == rc
    assert words in q.error and q.hint
    if fixture:  # what nvidia-smi itself said is kept
        assert smi(fixture).splitlines()[0][:30] in q.error


def test_query_smi_timeout(tmp_path):
    started = time.monotonic()
    q = gpu_query.query_smi(live_host(fake_smi(tmp_path / "bin", sleep=5)), timeout=0.3)
    assert time.monotonic() - started < 2
    assert not q.answered and "timed out" in q.error


def test_query_smi_missing(tmp_path):
    q = gpu_query.query_smi(live_host(tmp_path / "empty"))
    assert not q.answered and q.error == "nvidia-smi is not installed"


def test_query_gpus_falls_back_from_the_real_binding_to_nvidia_smi(tmp_path):
    """Real nvidia-ml-py (no libnvidia-ml here) -> the fake nvidia-smi answers, with the reason noted."""
    host = live_host(fake_smi(tmp_path / "bin", csv=smi("h200-query-gpu-csv.txt"), q=""))
    q = gpu_query.query_gpus(host)
    assert q.answered and q.source == "nvidia-smi"
    assert q.notes[0].startswith("NVML through nvidia-ml-py not used")
    assert q.gpus[0].uuid == "GPU-0e7d3af2-be49-affe-ae6c-f6fcf358f2ea"


def test_init_allowance_grows_with_the_gpus_and_is_capped():
    """Without persistence mode NVML initialises every GPU, 1-3 s each: 8 GPUs are slow, not hung."""
    assert gpu_query.init_allowance_s(0) == gpu_query.NVML_DEADLINE_S
    assert gpu_query.init_allowance_s(8) >= 8 * 3
    assert gpu_query.init_allowance_s(64) == gpu_query.MAX_INIT_S


def test_query_gpus_with_root_asks_nothing(tmp_path):
    q = gpu_query.query_gpus(Host(tmp_path))
    assert q.skipped and not q.answered and q.source == ""


# -- the kernel log readers --------------------------------------------------------------------
def fake_journalctl(bindir: Path, text: str, rc: int = 0, stderr: str = "") -> Path:
    bindir.mkdir(parents=True, exist_ok=True)
    (bindir / "journal.txt").write_text(text)
    script = bindir / "journalctl"
    script.write_text(f'#!/bin/sh\ncat "{bindir}/journal.txt"\necho "{stderr}" >&2\nexit {rc}\n')
    script.chmod(0o755)
    return bindir


def test_read_kernel_log_from_journalctl(tmp_path):
    bindir = fake_journalctl(tmp_path / "bin", (KMSG / "xid-79-fallen-off.txt").read_text())
    log = kernel_log.read_kernel_log(live_host(bindir))
    assert log.source == "journalctl" and [e.code for e in log.events] == [79]


def test_read_kernel_log_falls_back_to_kmsg_when_journal_is_unreadable(tmp_path):
    """journalctl exits 0 but may not read the system journal; the real /dev/kmsg is read next."""
    require_root()  # /dev/kmsg is readable by root only (dmesg_restrict)
    denied = "No journal files were opened due to insufficient permissions."
    bindir = fake_journalctl(tmp_path / "bin", "", stderr=denied)
    log = kernel_log.read_kernel_log(live_host(bindir))
    assert log.source == "/dev/kmsg" and log.lines > 0 and not log.error


def test_read_kernel_log_unreadable_says_how_to_read_it(tmp_path):
    bindir = fake_journalctl(tmp_path / "bin", "", rc=1)
    log = kernel_log.read_kernel_log(live_host(bindir), kmsg=str(tmp_path / "no-kmsg"))
    assert log.error.startswith("cannot read this boot's kernel log") and "journalctl: exited 1" in log.error
    assert log.hint.startswith("run as root") and not log.events  # gpu-xid builds its fixes (gpu/checks.py)


def test_read_kernel_log_with_root_is_skipped(tmp_path):
    assert kernel_log.read_kernel_log(Host(tmp_path)).skipped


def test_smi_q_gives_virtualization_and_memory():
    """nvidia-smi -q's "GPU Virtualization Mode" and "FB Memory Usage" (the H100 fixture, and the real H200's)."""
    [h100] = gpu_query.parse_smi_q((FIX / "nvidia-smi" / "h100-q.txt").read_text())[1]
    assert (h100.virtualization_mode, h100.memory_total_mib, h100.memory_reserved_mib) == ("pass-through", 81559, 551)
    [h200] = gpu_query.parse_smi_q((FIX / "real-gpu" / "nvidia-smi-q.txt").read_text())[1]
    assert (h200.virtualization_mode, h200.usable_memory_mib) == ("pass-through", 143771 - 616)
