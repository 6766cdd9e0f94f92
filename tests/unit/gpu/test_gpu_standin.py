"""The accelerator machine's stand-ins, on N GPUs (issue 18): tests/gpu/cdi_spec.py (for `nvidia-ctk cdi generate`)
and tests/gpu/nvidia-runtime-standin.py (for nvidia-container-runtime in CDI mode), run here on OCI bundles of our
own with runc replaced by `true`.

Simulated: the GPUs (four, UUIDs of a fixture; this machine has none), so the device nodes are this machine's
/dev/null, /dev/zero, /dev/full and /dev/random standing for /dev/nvidia0-3: character devices whose major/minor
stat() gives, as the real ones'. Real: the stand-in program itself, its argv handling and its exec of the runtime.
What these prove is that a container asking for one GPU by UUID or index gets exactly that GPU's node, `all` every
one, and an unknown name is refused; that each GPU reaches the right container on a real multi-GPU host is for
tests/gpu/real_gpu.sh on a machine of several GPUs (not lent in this round).
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

GPU_DIR = Path(__file__).resolve().parents[3] / "tests" / "gpu"
UUIDS = ["GPU-0e7d3af2-be49-affe-ae6c-f6fcf358f2ea", "GPU-a3207bad-b611-b76f-7de1-8ff2d8b12fed",
         "GPU-2667b3b1-723b-1fb4-6732-85dc68b2620f", "GPU-8fe73e3a-1b2b-6e37-9e10-e1e9a08d7b20"]
NODES = ["/dev/null", "/dev/zero", "/dev/full", "/dev/random"]  # stand for /dev/nvidia0..3


def _load(name: str, file: str):
    spec = importlib.util.spec_from_file_location(name, GPU_DIR / file)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


cdi_spec = _load("cdi_spec", "cdi_spec.py")


def four_gpu_spec(tmp_path: Path) -> Path:
    devices = [{"index": i, "uuid": u, "minor": i} for i, u in enumerate(UUIDS)]
    doc = cdi_spec.build(devices, "/bin/true", "/bin/true", [])
    # The nodes this machine has, in place of /dev/nvidiaN, one per GPU and in the same order.
    for dev in doc["devices"]:
        for node in dev["containerEdits"]["deviceNodes"]:
            node["path"] = NODES[int(node["path"][len("/dev/nvidia"):])]
    path = tmp_path / "nvidia.json"
    path.write_text(json.dumps(doc))
    return path


def test_the_spec_names_every_gpu_by_index_and_by_uuid_and_all():
    devices = [{"index": i, "uuid": u, "minor": i} for i, u in enumerate(UUIDS)]
    doc = cdi_spec.build(devices, "/usr/lib/x86_64-linux-gnu/libnvidia-ml.so.580.159.04", "/usr/bin/nvidia-smi",
                         ["/dev/nvidiactl"])
    named = {d["name"]: [n["path"] for n in d["containerEdits"]["deviceNodes"]] for d in doc["devices"]}
    assert named["all"] == [f"/dev/nvidia{i}" for i in range(4)]
    for i, u in enumerate(UUIDS):
        assert named[str(i)] == named[u] == [f"/dev/nvidia{i}"]
    assert "NVIDIA_VISIBLE_DEVICES=void" in doc["containerEdits"]["env"]


@pytest.mark.parametrize("variant, problem", [
    ("missing-node", lambda d: d["devices"][0]["containerEdits"]["deviceNodes"][0]["path"] == "/dev/nvidia11"),
    ("stale-driver", lambda d: d["containerEdits"]["mounts"][1]["hostPath"].endswith("libnvidia-ml.so.570.86.15")),
])
def test_the_negative_variants_say_what_they_break(variant, problem):
    devices = [{"index": i, "uuid": u, "minor": i} for i, u in enumerate(UUIDS)]
    assert problem(cdi_spec.build(devices, "/lib/libnvidia-ml.so.580.159.04", "/bin/nvidia-smi", [], variant))


def run_standin(tmp_path: Path, spec: Path, visible: str | None) -> tuple[subprocess.CompletedProcess, dict]:
    bundle = tmp_path / "bundle"
    bundle.mkdir(exist_ok=True)
    env = ["PATH=/bin"] + ([f"NVIDIA_VISIBLE_DEVICES={visible}"] if visible is not None else [])
    (bundle / "config.json").write_text(json.dumps({"process": {"env": env}}))
    proc = subprocess.run([sys.executable, str(GPU_DIR / "nvidia-runtime-standin.py"), "--root", "/run/x",
                           "create", "--bundle", str(bundle), "ctr"], capture_output=True, text=True, timeout=30,
                          env={**os.environ, "NVIDIA_STANDIN_SPEC": str(spec), "NVIDIA_STANDIN_RUNC": "true"})
    return proc, json.loads((bundle / "config.json").read_text())


def nodes_of(config: dict) -> list[str]:
    return [d["path"] for d in config.get("linux", {}).get("devices", [])]


@pytest.mark.allow_subp("python")
@pytest.mark.parametrize("gpu", range(4))
def test_one_gpu_by_uuid_or_index_gets_exactly_that_gpus_node(tmp_path, gpu):
    spec = four_gpu_spec(tmp_path)
    for asked in (UUIDS[gpu], str(gpu)):
        proc, config = run_standin(tmp_path, spec, asked)
        assert proc.returncode == 0, proc.stderr
        assert nodes_of(config) == [NODES[gpu]], asked  # that GPU's node, none of the other three
        rules = config["linux"]["resources"]["devices"]
        st = os.stat(NODES[gpu])
        assert rules == [{"allow": True, "type": "c", "major": os.major(st.st_rdev), "minor": os.minor(st.st_rdev),
                          "access": "rwm"}]
        assert config["process"]["env"][-1] == "NVIDIA_VISIBLE_DEVICES=void"  # replaced, as CDI's env edit does
        assert [m["destination"] for m in config["mounts"]] == ["/usr/bin/nvidia-smi",
                                                                "/lib/x86_64-linux-gnu/libnvidia-ml.so.1"]


@pytest.mark.allow_subp("python")
def test_all_and_a_list_get_what_they_name(tmp_path):
    spec = four_gpu_spec(tmp_path)
    assert nodes_of(run_standin(tmp_path, spec, "all")[1]) == NODES
    assert nodes_of(run_standin(tmp_path, spec, f"{UUIDS[3]},1")[1]) == [NODES[3], NODES[1]]


@pytest.mark.allow_subp("python")
@pytest.mark.parametrize("visible", [None, "", "void", "none"])
def test_no_gpu_asked_leaves_the_bundle_to_runc(tmp_path, visible):
    proc, config = run_standin(tmp_path, four_gpu_spec(tmp_path), visible)
    assert proc.returncode == 0 and nodes_of(config) == [] and "mounts" not in config


@pytest.mark.allow_subp("python")
def test_an_unknown_gpu_is_refused_naming_it(tmp_path):
    proc, config = run_standin(tmp_path, four_gpu_spec(tmp_path), "GPU-00000000-0000-0000-0000-000000000000")
    assert proc.returncode == 1
    assert "unresolvable CDI devices nvidia.com/gpu=GPU-00000000-0000-0000-0000-000000000000" in proc.stderr
    assert nodes_of(config) == []
