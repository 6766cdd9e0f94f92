#!/usr/bin/env python3
"""Wall times of commands on the accelerator machine, interleaved run by run (a spike hits every command alike),
after one warm-up run each; medians, and ratios against the first command (the baseline, measured in the same run).

    python3 timings.py OUT.json RUNS NAME=COMMAND [NAME=COMMAND ...]

COMMAND runs through ``sh -c`` with stdout and stderr discarded; its exit codes are kept (a doctor that reports a
warning exits 1: the time still counts, and the code says what was timed).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time


def main() -> None:
    out, runs, pairs = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
    commands = dict(p.split("=", 1) for p in pairs)
    times: dict[str, list[float]] = {n: [] for n in commands}
    codes: dict[str, list[int]] = {n: [] for n in commands}

    def once(cmd: str) -> tuple[float, int]:
        started = time.perf_counter()
        rc = subprocess.run(["sh", "-c", cmd], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode
        return time.perf_counter() - started, rc

    for cmd in commands.values():
        once(cmd)  # warm-up: page cache, bytecode
    for _ in range(runs):
        for name, cmd in commands.items():
            took, rc = once(cmd)
            times[name].append(round(took * 1000, 1))
            codes[name].append(rc)
    base = next(iter(commands))
    medians = {n: statistics.median(t) for n, t in times.items()}
    result = {
        "runs": runs, "baseline": base, "commands": commands, "ms": times, "exit_codes": codes,
        "median_ms": medians, "ratio_to_baseline": {n: round(m / medians[base], 2) for n, m in medians.items()},
        "load_after": os.getloadavg()[0], "cpus": os.cpu_count(),
    }
    with open(out, "w") as f:
        json.dump(result, f, indent=2)
    width = max(len(n) for n in commands)
    for n in commands:
        print(f"{n:<{width}}  median {medians[n]:8.1f} ms  {result['ratio_to_baseline'][n]:5.2f}x  "
              f"(runs {', '.join(f'{t:.0f}' for t in times[n])}; exit {sorted(set(codes[n]))})")


if __name__ == "__main__":
    main()
