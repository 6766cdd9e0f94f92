"""What tests/gpu/real_gpu.sh recorded on the accelerator machine on 2026-12-07 with NVIDIA's REAL container toolkit
(tests/fixtures/real-gpu/2026-12-07-toolkit/engine26 and engine28; issues 22 and 25): one H100, driver 580.159.04,
Docker Engine 26.1.5 and 28.5.2, toolkit 1.17.8, 1.18.0 and 1.20.0 built from NVIDIA's source, libnvidia-container's
nvidia-container-cli for legacy mode. No stand-in was involved there; these tests read the records with the same
functions the script's summary uses (tests/gpu/matrix.py) and check the claims the evidence README makes.
"""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import pytest
from contract import json_output

REPO = Path(__file__).resolve().parents[3]
RUN = REPO / "tests" / "fixtures" / "real-gpu" / "2026-12-07-toolkit"
ENGINES = {"26": "26.1.5", "28": "28.5.2"}
TOOLKITS = {"1.17.8": "f202b80a", "1.18.0": "f8daa5e2", "1.20.0": "5505e2f9"}
UUID = "GPU-3603cf01-5157-1897-9ffa-a5a17f2e4a28"
# The proof's kernel computes INPUT * 3 + (1000 + ordinal) on the device (gpuprep/gpu/cuda_proof.py).
KERNEL_VALUE = 0x1234567 * 3 + 1000

_spec = importlib.util.spec_from_file_location("matrix", REPO / "tests" / "gpu" / "matrix.py")
matrix = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(matrix)


def records(engine: str) -> dict[str, dict]:
    return {r["name"]: r for r in matrix.records(RUN / f"engine{engine}")}


def report(record: dict) -> dict:
    return json_output(record["stdout"])


def checks(record: dict) -> dict[str, dict]:
    return {c["id"]: c for c in report(record)["checks"]}


@pytest.mark.parametrize("engine", ENGINES)
def test_the_run_used_the_real_engine_and_nvidias_toolkit_builds(engine):
    host = (RUN / f"engine{engine}" / "host.txt").read_text()
    assert f"Docker version {ENGINES[engine]}" in host
    assert "NVIDIA H100" in host and UUID in host and "580.159.04" in host
    for version, commit in TOOLKITS.items():
        line = (RUN / f"engine{engine}" / f"nvidia-ctk-version.{version}.txt").read_text()
        assert line.startswith(f"NVIDIA Container Toolkit CLI version {version}\ncommit: {commit}"), line


@pytest.mark.parametrize("engine", ENGINES)
def test_cuda_runs_on_the_host_through_the_driver_api(engine):
    proof = json.loads(records(engine)["host-cuda-proof"]["stdout"])
    assert proof["ok"] is True and proof["count"] == 1
    (dev,) = proof["devices"]
    assert dev["uuid"] == UUID and dev["result"] == dev["expected"] == KERNEL_VALUE


@pytest.mark.parametrize("engine", ENGINES)
def test_every_mode_gives_the_gpu_and_cuda_to_the_ecs_runtime_and_cdi_routes(engine):
    """The default runtime with NVIDIA_VISIBLE_DEVICES (as the ECS agent runs tasks), --runtime nvidia and Docker's
    own CDI: nvidia-smi sees the host's GPU and the PTX kernel returns its value inside the container, in every mode
    each toolkit has (legacy and cdi for 1.17.8; legacy, cdi, jit-cdi and auto for 1.18.0 and 1.20.0)."""
    m = matrix.matrix(RUN / f"engine{engine}")
    for toolkit in TOOLKITS:
        modes = ("legacy", "cdi") if toolkit == "1.17.8" else ("legacy", "cdi", "jit-cdi", "auto")
        for mode in modes:
            for route in ("ecs", "runtime", "cdi"):
                cell = m[(engine, toolkit, mode, route)]
                assert cell["ok"], (toolkit, mode, route, cell)
                assert cell["uuids"] == [UUID] and cell["kernel"] == [(KERNEL_VALUE, KERNEL_VALUE)]


@pytest.mark.parametrize("engine", ENGINES)
def test_gpus_flag_works_only_where_the_hook_runs_legacy_and_is_refused_in_cdi_modes(engine):
    """Docker's --gpus calls nvidia-container-runtime-hook, which serves legacy mode (and auto, which it resolves to
    legacy) and refuses the CDI modes in so many words (NVIDIA/nvidia-container-toolkit; docs/domain.md)."""
    m = matrix.matrix(RUN / f"engine{engine}")
    recs = records(engine)
    for toolkit in TOOLKITS:
        assert m[(engine, toolkit, "legacy", "gpus")]["ok"]
        if toolkit != "1.17.8":
            assert m[(engine, toolkit, "auto", "gpus")]["ok"]
        for mode in ("cdi",) if toolkit == "1.17.8" else ("cdi", "jit-cdi"):
            assert not m[(engine, toolkit, mode, "gpus")]["ok"]
            said = recs[f"matrix|{engine}|{toolkit}|{mode}|gpus"]["stderr"]
            assert "invoking the NVIDIA Container Runtime Hook directly" in said and "is not supported" in said


def test_auto_resolves_to_jit_cdi_on_a_driver_host_from_1_18():
    modes = (RUN / "engine26" / "runtime-modes.txt").read_text()
    assert "matrix|26|1.20.0|auto|ecs: Using requested mode 'jit-cdi'" in modes
    assert "matrix|26|1.20.0|legacy|ecs: Using requested mode 'legacy'" in modes


@pytest.mark.parametrize("engine", ENGINES)
def test_install_with_the_real_runtime_proves_nvidia_smi_and_cuda_and_converges(engine):
    recs = records(engine)
    first = {s["id"]: s for s in report(recs["install-json-tk1.18.0"])["steps"]}
    assert first["docker-runtime"]["status"] == "changed" and first["docker-reload"]["status"] == "changed"
    gc = first["gpu-check"]
    assert gc["status"] == "ok" and gc["data"]["cuda"]["outcome"] == "proven"
    assert gc["data"]["cuda"]["report"]["devices"][0]["result"] == KERNEL_VALUE
    for name in ("install-again-json-tk1.18.0", "install-json-tk1.20.0", "install-again-json-tk1.20.0",
                 "install-json-tk1.17.8", "install-again-json-tk1.17.8"):
        assert report(recs[name])["status"] == "ok", name
    pids = re.findall(r"after .*: (\d+)", (RUN / f"engine{engine}" / "pids.txt").read_text())
    assert len(set(pids[1:])) == 1, pids  # restarted once (the first install), never again


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("toolkit", TOOLKITS)
def test_doctor_live_proves_cuda_on_the_host_and_in_a_container(engine, toolkit):
    c = checks(records(engine)[f"doctor-json-tk{toolkit}"])
    assert c["gpu-cuda"]["status"] == "ok" and c["container-cuda"]["status"] == "ok"
    assert c["gpu-container"]["status"] == "ok" and c["toolkit-cdi-specs"]["status"] == "ok"
    # Not an EC2 instance and no NVSwitch on its bus: the fabric checks say so and skip.
    assert c["gpu-fabric"]["status"] == "skipped" and "no NVSwitch" in c["gpu-fabric"]["summary"]
    # Its driver (580.159.04) is below bulletin 5861's R580 floor.
    assert c["driver-security"]["status"] == "warning" and "580.178.04" in c["driver-security"]["summary"]


@pytest.mark.parametrize("engine", ENGINES)
def test_the_negatives_with_the_real_runtime(engine):
    recs = records(engine)
    specs = checks(recs["neg-missing-node-doctor"])["toolkit-cdi-specs"]
    assert specs["status"] == "critical" and "/dev/nvidia99" in specs["summary"]
    assert "failed to stat CDI host device" in recs["neg-missing-node-cdi"]["stderr"]
    assert "unresolvable CDI devices nvidia.com/gpu=all" in recs["neg-cdi-mode-no-spec-ecs"]["stderr"]
    runc = checks(recs["neg-runc-default-doctor"])
    assert runc["gpu-container"]["status"] == "critical" and runc["container-cuda"]["status"] == "critical"
    assert report(recs["neg-runc-default-fix"])["status"] == "changed"
    fixed = checks(recs["neg-runc-default-fixed-doctor"])
    assert fixed["gpu-container"]["status"] == "ok" and fixed["container-cuda"]["status"] == "ok"


@pytest.mark.parametrize("engine", ENGINES)
def test_timings_with_their_baseline_in_the_same_run(engine):
    t = json.loads((RUN / f"engine{engine}" / "timings.json").read_text())
    med = t["median_ms"]
    assert set(med) >= {"import_typer", "doctor_no_container", "doctor_no_container_baseline", "doctor_live",
                        "cuda_proof_host", "container_ecs_cuda"}
    # The CUDA proof adds well under a second to doctor on one GPU (issue 25's bound).
    assert med["doctor_no_container"] - med["doctor_no_container_baseline"] < 1000
