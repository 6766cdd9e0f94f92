#!/usr/bin/env python3
"""STAND-IN for ``nvidia-ctk cdi generate`` on the accelerator machine (no NVIDIA container toolkit there): a CDI
spec for this host's GPUs, as JSON, named the way the real generator names them (NVIDIA/nvidia-container-toolkit
``cmd/nvidia-ctk/cdi/generate``; ``--device-name-strategy`` index and uuid): one device per GPU by index ("0"), one
per GPU by UUID ("GPU-..."), each with that GPU's /dev/nvidiaN (NVML's minor number), and "all" with every one;
common edits with the control nodes, the driver's nvidia-smi and libnvidia-ml.so.<driver>, and
NVIDIA_VISIBLE_DEVICES=void (the real spec's guard against a second injection by the runtime).

The real generator also mounts every driver library, the firmware, the IPC sockets, and adds the hooks
(update-ldcache, create-symlinks, chmod); this one mounts only what ``nvidia-smi`` needs.

    python3 cdi_spec.py OUT.json [--variant good|missing-node|stale-driver]

missing-node: GPU 0's device node is /dev/nvidia<N> where no such node exists (a spec from a host with more
GPUs, or from before a GPU fell off the bus). stale-driver: the library is mounted from
libnvidia-ml.so.<an older driver> (a spec written before a driver update: toolkit issues 1239, 1828).
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import shutil

STALE_DRIVER = "570.86.15"


def gpus() -> tuple[str, list[dict]]:
    import pynvml  # the accelerator machine's (nvidia-ml-py); the unit tests call ``build`` alone

    pynvml.nvmlInit()
    try:
        driver = pynvml.nvmlSystemGetDriverVersion()
        driver = driver.decode() if isinstance(driver, bytes) else driver
        out = []
        for i in range(pynvml.nvmlDeviceGetCount()):
            h = pynvml.nvmlDeviceGetHandleByIndex(i)
            uuid = pynvml.nvmlDeviceGetUUID(h)
            out.append({"index": i, "uuid": uuid.decode() if isinstance(uuid, bytes) else uuid,
                        "minor": pynvml.nvmlDeviceGetMinorNumber(h)})
        return driver, out
    finally:
        pynvml.nvmlShutdown()


def driver_library(driver: str) -> str:
    for d in ("/usr/local/nvidia/lib64", "/usr/lib/x86_64-linux-gnu", "/usr/lib64", "/usr/lib"):
        path = f"{d}/libnvidia-ml.so.{driver}"
        if os.path.exists(path):
            return path
    found = glob.glob(f"/**/libnvidia-ml.so.{driver}", recursive=True)
    if not found:
        raise SystemExit(f"no libnvidia-ml.so.{driver} on this host")
    return found[0]


def spec(variant: str) -> dict:
    driver, devices = gpus()
    smi = os.path.realpath(shutil.which("nvidia-smi") or "/usr/bin/nvidia-smi")
    control = [p for p in ("/dev/nvidiactl", "/dev/nvidia-uvm", "/dev/nvidia-uvm-tools") if os.path.exists(p)]
    return build(devices, driver_library(driver), smi, control, variant)


def build(devices: list[dict], lib: str, smi: str, control: list[str], variant: str = "good") -> dict:
    """The spec for ``devices`` ({"index", "uuid", "minor"} each, NVML's): pure, so the unit tests build one for
    N GPUs on a machine with none."""
    if variant == "stale-driver":
        lib = f"{os.path.dirname(lib)}/libnvidia-ml.so.{STALE_DRIVER}"
    per_gpu = []
    for g in devices:
        node = f"/dev/nvidia{g['minor']}"
        if variant == "missing-node" and g["index"] == 0:
            node = f"/dev/nvidia{max(x['minor'] for x in devices) + 8}"
        per_gpu.append((g, node))
    ro = ["ro", "nosuid", "nodev", "bind"]
    return {
        "cdiVersion": "0.6.0",
        "kind": "nvidia.com/gpu",
        "devices": [
            *({"name": str(g["index"]), "containerEdits": {"deviceNodes": [{"path": node}]}} for g, node in per_gpu),
            *({"name": g["uuid"], "containerEdits": {"deviceNodes": [{"path": node}]}} for g, node in per_gpu),
            {"name": "all", "containerEdits": {"deviceNodes": [{"path": node} for _, node in per_gpu]}},
        ],
        "containerEdits": {
            "env": ["NVIDIA_VISIBLE_DEVICES=void"],
            "deviceNodes": [{"path": p} for p in control],
            "mounts": [{"hostPath": smi, "containerPath": "/usr/bin/nvidia-smi", "options": ro},
                       {"hostPath": lib, "containerPath": "/lib/x86_64-linux-gnu/libnvidia-ml.so.1", "options": ro}],
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out")
    parser.add_argument("--variant", choices=("good", "missing-node", "stale-driver"), default="good")
    args = parser.parse_args()
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out + ".tmp", "w") as f:
        json.dump(spec(args.variant), f, indent=1)
    os.replace(args.out + ".tmp", args.out)


if __name__ == "__main__":
    main()
