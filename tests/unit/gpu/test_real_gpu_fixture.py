"""What gpuprep doctor printed on a real GPU host (tests/fixtures/real-gpu/, from tests/gpu_evidence.sh).

The one place the GPU is not simulated: the report came from the accelerator machine (docs/testbed.md 7)
running ``python3 -m gpuprep --json doctor --no-container`` live, NVML and all. These tests check
that its GPU findings parse and agree with each other and with that machine's ``nvidia-smi -q``
(parsed here by gpuprep's own parser). Until the report is committed they skip, saying so.
"""

from __future__ import annotations

import json
import re

import pytest
from conftest import FIXTURES

from gpuprep.gpu import query as gpu_query

REAL = FIXTURES / "real-gpu"
UUID = re.compile(r"^GPU-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
VERSION = re.compile(r"^\d+\.\d+(\.\d+)?$")
BUS_ID = re.compile(r"^[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]$")

pytestmark = pytest.mark.skipif(
    not (REAL / "doctor.json").exists(),
    reason="tests/fixtures/real-gpu/doctor.json not committed yet (run tests/gpu_evidence.sh on the GPU machine)",
)


@pytest.fixture(scope="module")
def report() -> dict:
    return json.loads((REAL / "doctor.json").read_text())


@pytest.fixture(scope="module")
def gpu(report) -> dict[str, dict]:
    return {c["id"]: c for c in report["checks"] if c["group"] == "gpu"}


def test_report_is_a_live_doctor_report(report, gpu):
    assert report["command"] == "doctor"
    assert report["status"] in ("ok", "warning", "critical", "unknown")
    assert gpu["gpu-nvml"]["status"] != "skipped", "the evidence must come from a live run, not --root"
    for c in gpu.values():
        assert not c["summary"].startswith("check failed"), f"{c['id']} crashed: {c['summary']}"
        if c["status"] in ("warning", "critical", "unknown"):
            assert c["hint"], c["id"]


def test_nvml_answered_with_well_formed_gpus(gpu):
    nvml = gpu["gpu-nvml"]
    assert nvml["status"] == "ok", nvml["summary"]
    assert nvml["data"]["source"] == "nvml"  # nvidia-ml-py is on that machine
    assert nvml["data"]["count"] >= 1 and len(nvml["data"]["gpus"]) == nvml["data"]["count"]
    assert VERSION.match(nvml["data"]["driver_version"])
    for x in nvml["data"]["gpus"]:
        assert UUID.match(x["uuid"]), x
        assert BUS_ID.match(x["pci_bus_id"]), x
        assert x["name"].startswith("NVIDIA")
        assert isinstance(x["persistence_mode"], bool)


def test_views_agree(gpu):
    nvml = gpu["gpu-nvml"]["data"]
    assert gpu["gpu-pci"]["status"] == "ok" and gpu["gpu-pci"]["data"]["count"] == nvml["count"]
    assert sorted(gpu["gpu-pci"]["data"]["bus_ids"]) == sorted(x["pci_bus_id"] for x in nvml["gpus"])
    assert gpu["gpu-count"]["status"] == "ok"
    assert set(gpu["gpu-count"]["data"]["counts"]) == {"pci", "dev", "nvml"}
    assert gpu["gpu-kernel-module"]["data"]["version"] == nvml["driver_version"]
    assert gpu["gpu-driver-version"]["status"] == "ok"


def test_health_checks_ran(report, gpu):
    """H100/H200 remap rows: row-remap ran, retired pages did not apply."""
    for check in ("gpu-persistence", "gpu-ecc", "gpu-row-remap", "gpu-clocks"):
        assert gpu[check]["status"] in ("ok", "warning", "critical"), (check, gpu[check]["summary"])
    assert gpu["gpu-retired-pages"]["status"] == "skipped"
    as_root = next(c for c in report["checks"] if c["id"] == "platform-root")["status"] == "ok"
    if as_root or gpu["gpu-xid"]["status"] != "unknown":  # without root the kernel log may be closed
        assert gpu["gpu-xid"]["status"] in ("ok", "warning", "critical"), gpu["gpu-xid"]["summary"]
        assert gpu["gpu-xid"]["data"]["source"] in ("journalctl", "/dev/kmsg")


def test_nvidia_smi_q_of_the_same_machine_parses_and_agrees(gpu):
    q = REAL / "nvidia-smi-q.txt"
    if not q.exists():
        pytest.skip("tests/fixtures/real-gpu/nvidia-smi-q.txt not committed")
    driver, gpus = gpu_query.parse_smi_q(q.read_text())
    nvml = gpu["gpu-nvml"]["data"]
    assert driver == nvml["driver_version"]
    assert sorted(x.uuid for x in gpus) == sorted(x["uuid"] for x in nvml["gpus"])
    for x in gpus:
        assert x.remapped_rows_pending is not None and x.clock_events is not None


def test_timings_recorded():
    t = REAL / "timings.json"
    if not t.exists():
        pytest.skip("tests/fixtures/real-gpu/timings.json not committed")
    timings = json.loads(t.read_text())
    assert timings["doctor_median_ms"] > 0 and timings["nvidia_smi_q_median_ms"] > 0
