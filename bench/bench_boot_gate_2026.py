"""What issue 28's checks add to the boot gate: ``gpuprep --root TREE --json doctor --boot`` with this checkout
against the gate without them (``--baseline REF``, default ``main``: that commit's ``gpuprep/`` unpacked with
``git archive``), interleaved run by run on the same healthy simulated host. Target: under 1 s added (issue 28).

The host: the p5.48xlarge tree of tests/hosttree.py (8 H100 stand-ins, 32 EFA stand-ins, docker.service's
LimitMEMLOCK) with what the new checks read: full-width PCIe links in sysfs, one VBIOS in the driver's
``/proc/driver/nvidia/gpus/*/information``, the AMI's a seal.json; the type from the
metadata stand-in (tests/imds_standin.py) on 127.0.0.1, which also answers the scheduled-events path (empty list).
With ``--root`` the live-only check (``gpu-persistenced-socket``) is skipped, so its bounded wait for a missing socket
is not in these figures: on a healthy host the socket is there and it returns at once.

Usage: ``.venv/bin/python bench/bench_boot_gate_2026.py [--runs N] [--baseline REF] [--json]``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))

from bench_doctor import baseline_package, clean_env, gpuprep_argv, python_argv, timed  # noqa: E402

NEW_CHECKS = ("ec2-maintenance", "efa-devices", "gpu-pcie-link", "gpu-vbios", "gpu-persistenced-socket",
              "gpu-mps-pipe", "gpu-sources-listed", "toolkit-cdi-engine-reads", "toolkit-gpu-routes",
              "toolkit-cdi-refresh")
TARGET_DELTA_S = 1.0


def host_tree(tmp: Path) -> Path:
    import hosttree

    spec = dataclasses.replace(hosttree.load_spec("healthy-p5-h100x8"), instance_type="p5.48xlarge")
    files = dict(spec.files)
    files["/etc/gpuprep/seal.json"] = {
        "gpuprep": "0.1.0", "sealed_at": "2026-11-02T09:14:00Z", "packages": {}, "driver_version": "580.95.05",
        "driver": {"userland": "580.95.05", "kernel_module": "580.95.05"}, "kept_images": []}
    for gpu in spec.gpus:
        base = f"/sys/bus/pci/devices/{gpu.bus_id}"
        files |= {f"{base}/current_link_width": "16\n", f"{base}/max_link_width": "16\n",
                  f"{base}/current_link_speed": "32.0 GT/s PCIe\n", f"{base}/max_link_speed": "32.0 GT/s PCIe\n",
                  f"/proc/driver/nvidia/gpus/{gpu.bus_id}/information":
                  f"Model: \t\t NVIDIA H100 80GB HBM3\nVideo BIOS: \t 96.00.99.00.01\nBus Location: \t {gpu.bus_id}\n"}
    spec.files = files
    return hosttree.build(tmp / "root", spec)


def bench(runs: int, ref: str) -> dict:
    import imds_standin

    with tempfile.TemporaryDirectory(prefix="gpuprep-bench-gate28-") as tmp:
        base = baseline_package(ref, Path(tmp) / "baseline")
        if base is None:
            return {"skipped": f"git archive {ref} failed", "met": True}
        root = host_tree(Path(tmp))
        standin = imds_standin.serve("p5.48xlarge", paths={"/latest/meta-data/events/maintenance/scheduled": "[]"})
        env = {**clean_env(), "AWS_EC2_METADATA_SERVICE_ENDPOINT": standin.url}
        new_argv = [*gpuprep_argv(), "--root", str(root), "--json", "doctor", "--boot"]
        old_argv = [*python_argv(), "-m", "gpuprep", "--root", str(root), "--json", "doctor", "--boot"]
        old_env = {**env, "PYTHONPATH": str(base)}
        try:
            timed(new_argv, env), timed(old_argv, old_env)  # warm both
            news, olds, checks = [], [], {}
            durations: dict[str, list[float]] = {}
            for _ in range(runs):  # interleaved: a load spike hits both alike
                wall, proc = timed(new_argv, env)
                news.append(wall)
                for c in json.loads(proc.stdout)["checks"]:
                    if c["id"] in NEW_CHECKS:
                        checks[c["id"]] = c["status"]
                        durations.setdefault(c["id"], []).append(c.get("duration_ms") or 0.0)
                olds.append(timed(old_argv, old_env)[0])
        finally:
            standin.close()
    new, old = statistics.median(news), statistics.median(olds)
    return {"name": f"doctor --boot on a healthy p5.48xlarge (simulated), this checkout vs {ref}", "runs": runs,
            "median_s": round(new, 3), "baseline_median_s": round(old, 3), "delta_s": round(new - old, 3),
            "ratio": round(new / old, 2), "target_delta_s": TARGET_DELTA_S, "met": new - old < TARGET_DELTA_S,
            "new_checks_in_boot_set": checks,
            "new_checks_median_ms": {k: round(statistics.median(v), 1) for k, v in durations.items()}}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=9)
    parser.add_argument("--baseline", default="main")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    result = bench(args.runs, args.baseline)
    result["machine"] = f"{platform.node()}, {platform.machine()}, Python {platform.python_version()}"
    result["date"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    print(json.dumps(result, indent=2) if args.json else "\n".join(f"{k}: {v}" for k, v in result.items()))
    return 0 if result["met"] else 1


if __name__ == "__main__":
    sys.exit(main())
