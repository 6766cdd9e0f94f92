"""Live doctor with container-cuda's container begun early (issue 22 part 5), against a baseline, on this machine.

``gpuprep --root TREE --json doctor --image IMAGE`` with a private real dockerd (Engine 20.10, runc) whose default
runtime binds the stand-in libcuda into GPU containers, the image a python3 image built from this machine's own
(tests/integration/test_cuda_container.py), so container-cuda runs the real proof program in a real container; this
checkout and ``--baseline REF`` (its gpuprep/ from ``git archive``) interleaved run by run, medians. The figure is
the ratio: the early start moves the CUDA container off the end of doctor, so the new wall should sit near the
container's own time plus doctor's start, the baseline's near doctor's imports plus the container.

SIMULATED: the GPUs and libcuda (tests/fake_cuda.py, ``--delay-ms`` per device standing for a GPU's context and
JIT: about 150 ms on an H100, bench/RESULTS.md 2026-12-08), the nvidia runtime (tests/testbed.py's shim: the real
one in cdi mode binds no libcuda without a driver). Real: the Engine, runc, the containers, the proof, doctor.
Needs root, dockerd, gcc and the python3.11 of Debian 12.

Usage: ``.venv/bin/python bench/bench_doctor_early.py [--runs N] [--baseline REF] [--delay-ms MS] [--json]``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "tests" / "integration"))
sys.path.insert(0, str(REPO / "bench"))

IMAGE = "python3-standin:latest"


def main() -> int:
    import fake_cuda
    from bench_doctor import baseline_package, clean_env, gpuprep_argv, python_argv, timed
    from conftest import ENGINES, FIXTURES
    from test_cuda_container import LIBCUDA_IN_CONTAINER, python_image_tar
    from testbed import PrivateDockerd, write_fake_nvidia_smi, write_runtime_shim

    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--baseline", default="c4a30a2", help="the git ref to compare with (before the early start)")
    ap.add_argument("--delay-ms", type=int, default=150)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="gpuprep-bench-early-") as tmp:
        t = Path(tmp)
        base = baseline_package(args.baseline, t / "baseline")
        if base is None:
            print(f"git archive {args.baseline} failed", file=sys.stderr)
            return 1
        root = t / "root"
        (root / "etc/docker").mkdir(parents=True)
        shutil.copy(FIXTURES / "distros/amzn-2023/etc/os-release", root / "etc/os-release")
        write_fake_nvidia_smi(root / "usr/bin/nvidia-smi")
        lib = fake_cuda.build(t / "cuda", delay_ms=args.delay_ms)
        shim = write_runtime_shim(t / "bin/nvidia-container-runtime", write_fake_nvidia_smi(t / "bin/nvidia-smi"),
                                  mounts={str(lib): LIBCUDA_IN_CONTAINER})
        config = {"runtimes": {"nvidia": {"path": str(shim), "runtimeArgs": []}}, "default-runtime": "nvidia"}
        dockerd = PrivateDockerd(config_path=root / "etc/docker/daemon.json", config=config, engine=ENGINES["20.10"])
        dockerd.start()
        try:
            client = dockerd.client()
            client.api.import_image_from_data(python_image_tar(), repository=IMAGE.split(":")[0], tag="latest")
            client.close()
            env = {**clean_env(), "DOCKER_HOST": dockerd.url}
            new_argv = [*gpuprep_argv(), "--root", str(root), "--json", "doctor", "--image", IMAGE]
            old_argv = [*python_argv(), "-m", "gpuprep", "--root", str(root), "--json", "doctor", "--image", IMAGE]
            old_env = {**env, "PYTHONPATH": str(base)}
            timed(new_argv, env), timed(old_argv, old_env)  # warm both
            news: list[float] = []
            olds: list[float] = []
            cuda_new: list[float] = []
            cuda_old: list[float] = []
            early = []
            for _ in range(args.runs):  # interleaved: a load spike hits both alike
                for argv, e, walls, cudas in ((new_argv, env, news, cuda_new), (old_argv, old_env, olds, cuda_old)):
                    wall, proc = timed(argv, e)
                    check = next(c for c in json.loads(proc.stdout)["checks"] if c["id"] == "container-cuda")
                    if check["status"] != "ok":
                        print(f"container-cuda is {check['status']}: {check['summary']}", file=sys.stderr)
                        return 1
                    walls.append(wall)
                    cudas.append(check["duration_ms"])
                    if argv is new_argv:
                        early.append(check["data"].get("early"))
        finally:
            dockerd.cleanup()
    new, old = statistics.median(news), statistics.median(olds)
    out = {"runs": args.runs, "baseline": args.baseline, "delay_ms": args.delay_ms,
           "doctor_live_s": round(new, 3), "baseline_doctor_live_s": round(old, 3), "ratio": round(new / old, 3),
           "container_cuda_ms": round(statistics.median(cuda_new), 1),
           "baseline_container_cuda_ms": round(statistics.median(cuda_old), 1), "early": early}
    print(json.dumps(out, indent=None if args.json else 2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
