"""Benchmarks for doctor's speed targets (issue 2), each run several times in one go, medians reported.

1. ``gpuprep --root TREE --json doctor --no-container`` on a healthy simulated host with a live Engine: the
   p5-like tree of tests/hosttree.py with its packages installed and locked in the root's rpm database, ecs.config
   with GPU support, and a private real dockerd (DOCKER_HOST) reading ``TREE/etc/docker/daemon.json``, whose
   runtimes.nvidia is the simulated runtime shim and the default runtime (tests/integration/test_doctor_live.py
   builds it). Every check that can run here runs; target <= 0.5 s wall. Needs root, dockerd and rpmbuild; skipped,
   saying so, without them.
2. The same with ``--root`` only (DOCKER_HOST unset, so the docker checks skip): the floor without an Engine.
3. ``gpuprep --help`` in a fresh process vs ``python -c "import typer"``, interleaved: target ratio <= 1.3.

Each doctor variant also reports the checks' own ``duration_ms`` from the JSON (median per check; the slowest
three), which is where to look when the wall time grows.

Usage: ``.venv/bin/python bench/bench_doctor.py [--runs N] [--json] [--strict]``. ``--strict`` exits 1
when a target is missed. Results are printed; bench/RESULTS.md records them.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

DOCTOR_TARGET_S = 0.5
HELP_RATIO_TARGET = 1.3


def gpuprep_argv() -> list[str]:
    script = REPO / ".venv" / "bin" / "gpuprep"
    return [str(script)] if script.exists() else [sys.executable, "-m", "gpuprep"]


def python_argv() -> list[str]:
    venv_python = REPO / ".venv" / "bin" / "python"
    return [str(venv_python) if venv_python.exists() else sys.executable]


def clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DOCKER_HOST", "PYTHONPROFILEIMPORTTIME")}
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # cached bytecode, as an installed package has
    return env


def timed(argv: list[str], env: dict[str, str]) -> tuple[float, subprocess.CompletedProcess]:
    started = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=120)
    return time.perf_counter() - started, proc


def measure_doctor(name: str, root: Path, env: dict[str, str], runs: int) -> dict:
    """``runs`` timed runs of ``gpuprep --root ROOT --json doctor --no-container`` after one warm-up."""
    argv = [*gpuprep_argv(), "--root", str(root), "--json", "doctor", "--no-container"]
    timed(argv, env)  # warm the page cache and bytecode: we measure doctor, not the disk
    walls: list[float] = []
    per_check: dict[str, list[float]] = {}
    for _ in range(runs):
        wall, proc = timed(argv, env)
        report = json.loads(proc.stdout)  # a run that printed no report does not count as fast
        walls.append(wall)
        for c in report["checks"]:
            per_check.setdefault(c["id"], []).append(c["duration_ms"])
    median = statistics.median(walls)
    check_ms = {k: round(statistics.median(v), 1) for k, v in per_check.items()}
    statuses: dict[str, int] = {}
    for c in report["checks"]:
        statuses[c["status"]] = statuses.get(c["status"], 0) + 1
    return {
        "name": name, "runs": runs,
        "median_s": round(median, 3), "min_s": round(min(walls), 3), "max_s": round(max(walls), 3),
        "slowest_checks_ms": sorted(check_ms.items(), key=lambda kv: -kv[1])[:3],
        "check_ms_median": check_ms,
        "exit_code": proc.returncode, "status": report["status"], "statuses": statuses,
        "not_ok": {c["id"]: c["status"] for c in report["checks"] if c["status"] not in ("ok", "skipped")},
        "target_s": DOCTOR_TARGET_S, "met": median <= DOCTOR_TARGET_S and proc.returncode == 0,
    }


def live_unavailable() -> str | None:
    import shutil

    if os.geteuid() != 0:
        return "needs root (a private dockerd)"
    missing = [c for c in ("dockerd", "runc", "containerd", "rpmbuild", "createrepo_c", "rpm", "systemctl")
               if shutil.which(c) is None]
    return f"needs {', '.join(missing)} (make provision)" if missing else None


def bench_doctor_live(runs: int) -> dict:
    name = "doctor --no-container (healthy simulated p5 host, --root + live private dockerd via DOCKER_HOST)"
    why = live_unavailable()
    if why is not None:
        return {"name": name, "skipped": why, "met": True}
    sys.path.insert(0, str(REPO / "tests" / "integration"))
    from test_doctor_live import build_live_host  # the integration test's healthy host, so both agree

    with tempfile.TemporaryDirectory(prefix="gpuprep-bench-live-") as tmp:
        host = build_live_host(Path(tmp), Path(tmp) / "rpm-cache")
        try:
            env = {**clean_env(), "DOCKER_HOST": host.dockerd.url}
            return measure_doctor(name, host.root, env, runs)
        finally:
            host.dockerd.cleanup()


def bench_doctor(runs: int) -> dict:
    import hosttree

    with tempfile.TemporaryDirectory(prefix="gpuprep-bench-") as tmp:
        root = hosttree.build_named("healthy-p5-h100x8", Path(tmp) / "root")
        result = measure_doctor("doctor --no-container (healthy simulated p5 tree, --root only, no Engine)",
                                root, clean_env(), runs)
        # The same run in text, into a pipe as into a log or `| less`: the text renderer's own cost.
        text_argv = [*gpuprep_argv(), "--root", str(root), "doctor", "--no-container"]
        timed(text_argv, clean_env())
        result["text_median_s"] = round(statistics.median(timed(text_argv, clean_env())[0] for _ in range(runs)), 3)
    # This bare tree has no packages or ECS config, so its ecs/packages checks warn: only the time counts.
    result["met"] = result["median_s"] <= DOCTOR_TARGET_S
    return result


def bench_help(runs: int) -> dict:
    env = clean_env()
    help_argv = [*gpuprep_argv(), "--help"]
    typer_argv = [*python_argv(), "-c", "import typer"]
    timed(help_argv, env), timed(typer_argv, env)  # warm both
    helps, typers = [], []
    for _ in range(runs):  # interleaved, so a load spike hits both sides alike
        helps.append(timed(help_argv, env)[0])
        typers.append(timed(typer_argv, env)[0])
    ratio = statistics.median(helps) / statistics.median(typers)
    return {
        "name": "gpuprep --help (fresh process) vs python -c 'import typer'",
        "runs": runs, "help_median_s": round(statistics.median(helps), 3),
        "import_typer_median_s": round(statistics.median(typers), 3),
        "ratio": round(ratio, 2), "target_ratio": HELP_RATIO_TARGET, "met": ratio <= HELP_RATIO_TARGET,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=9)
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args()
    results = {
        "machine": f"{platform.node()} {platform.machine()}, {os.cpu_count()} CPUs, "
                   f"load {os.getloadavg()[0]:.2f}, Python {platform.python_version()}",
        "doctor_live": bench_doctor_live(args.runs),
        "doctor": bench_doctor(args.runs),
        "help": bench_help(args.runs),
    }
    results["load_after"] = round(os.getloadavg()[0], 2)
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        print(f"machine: {results['machine']} (load {results['load_after']:.2f} after)")
        for d in (results["doctor_live"], results["doctor"]):
            if "skipped" in d:
                print(f"{d['name']}: SKIPPED: {d['skipped']}")
                continue
            slowest = ", ".join(f"{k} {v:.0f} ms" for k, v in d["slowest_checks_ms"])
            counts = ", ".join(f"{n} {s}" for s, n in d["statuses"].items())
            print(f"{d['name']}: median {d['median_s']:.3f} s over {d['runs']} runs "
                  f"(min {d['min_s']:.3f}, max {d['max_s']:.3f}); exit {d['exit_code']} ({counts}); "
                  f"target <= {d['target_s']} s: {'met' if d['met'] else 'MISSED'}")
            print(f"  slowest checks (median duration_ms): {slowest}")
            if "text_median_s" in d:
                print(f"  the same in text, into a pipe: median {d['text_median_s']:.3f} s")
        h = results["help"]
        print(f"{h['name']}: {h['help_median_s']:.3f} s vs {h['import_typer_median_s']:.3f} s, "
              f"ratio {h['ratio']:.2f} over {h['runs']} runs; target <= {h['target_ratio']}: "
              f"{'met' if h['met'] else 'MISSED'}")
    missed = not all(results[k]["met"] for k in ("doctor_live", "doctor", "help"))
    return 1 if args.strict and missed else 0


if __name__ == "__main__":
    sys.exit(main())
