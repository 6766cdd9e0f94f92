"""The CUDA proof runs the GPUs of a multi-GPU host in parallel (issue 25, part 5).

``gpu/cuda.run_proof`` (the child process doctor's gpu-cuda runs: ``python3 -I cuda_proof.py``) over the stand-in
libcuda (tests/fake_cuda.py) with a per-device delay in cuCtxSynchronize standing for one GPU's context, JIT and
launch: 1 device, then 8 devices, interleaved, medians of N runs. In parallel the 8-device run costs about one
device's delay plus the child's start; one after another it would cost 8 delays. Target: 8 GPUs <= 1.5x one GPU.
The second line is the proof's own cost on 1 device with no delay (what it adds to doctor beyond the driver's work).

SIMULATED: the GPUs and libcuda (a stand-in built with gcc); the proof program, its threads, the child process and
its JSON are real. Needs gcc.

Usage: ``.venv/bin/python bench/bench_cuda_proof.py [--runs N] [--delay-ms MS] [--json] [--strict]``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO))

RATIO_TARGET = 1.5


def main() -> int:
    import fake_cuda

    from gpuprep.gpu import cuda
    from gpuprep.host import Host

    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=9)
    ap.add_argument("--delay-ms", type=int, default=300)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--strict", action="store_true")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-cuda-") as d:
        lib = fake_cuda.build(Path(d))

        def once(devices: int, delay_ms: int) -> float:
            host = Host("/", env={**os.environ, "GPUPREP_LIBCUDA": str(lib), "GPUPREP_STANDIN_CUDA_DEVICES":
                                  str(devices), "GPUPREP_STANDIN_CUDA_DELAY_MS": str(delay_ms)})
            started = time.monotonic()
            proof = cuda.run_proof(host, devices)
            took = time.monotonic() - started
            if not proof.ok or len(proof.report["devices"]) != devices:
                raise SystemExit(f"the proof failed: {proof}")
            return took

        one, eight, bare = [], [], []
        for _ in range(args.runs):  # interleaved: the machine's drift hits every series alike
            one.append(once(1, args.delay_ms))
            eight.append(once(8, args.delay_ms))
            bare.append(once(1, 0))
    m1, m8, m0 = statistics.median(one), statistics.median(eight), statistics.median(bare)
    ratio = m8 / m1
    result = {"runs": args.runs, "delay_ms": args.delay_ms, "one_gpu_s": round(m1, 3), "eight_gpus_s": round(m8, 3),
              "ratio": round(ratio, 3), "target": RATIO_TARGET, "met": ratio <= RATIO_TARGET,
              "serial_would_be_s": round(m1 + 7 * args.delay_ms / 1000, 3), "no_delay_one_gpu_s": round(m0, 3),
              "eight_range_s": [round(min(eight), 3), round(max(eight), 3)]}
    if args.json:
        print(json.dumps(result))
    else:
        print(f"CUDA proof, stand-in libcuda, {args.delay_ms} ms per device, median of {args.runs}:")
        print(f"  1 GPU  {m1:.3f} s")
        print(f"  8 GPUs {m8:.3f} s (range {min(eight):.3f}-{max(eight):.3f}); one after another would be "
              f"{result['serial_would_be_s']:.3f} s")
        print(f"  ratio {ratio:.2f}x (target <= {RATIO_TARGET}x): {'met' if result['met'] else 'NOT met'}")
        print(f"  the proof itself, 1 GPU, no delay: {m0:.3f} s (child start, import, dlopen, JSON)")
    return 1 if args.strict and not result["met"] else 0


if __name__ == "__main__":
    sys.exit(main())
