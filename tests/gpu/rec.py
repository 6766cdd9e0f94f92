#!/usr/bin/env python3
"""Run one command of tests/gpu/real_gpu.sh and record it: a JSON line (name, argv, exit code, stdout, stderr, wall
time, UTC time) appended to $EVIDENCE (default /tmp/gpuprep-evidence/evidence.jsonl), and a short account on stdout
for the run's log. The unit tests (tests/unit/test_real_gpu_fixture.py) read the lines back by name.

    python3 rec.py NAME [--env K=V ...] -- ARGV...
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import datetime, timezone


def main() -> int:
    args = sys.argv[1:]
    name = args.pop(0)
    env = dict(os.environ)
    while args and args[0] == "--env":
        key, _, value = args[1].partition("=")
        env[key] = value
        args = args[2:]
    if args and args[0] == "--":
        args = args[1:]
    started = time.perf_counter()
    try:
        proc = subprocess.run(args, capture_output=True, text=True, errors="replace", env=env, timeout=300)
        rc, out, err = proc.returncode, proc.stdout, proc.stderr
    except subprocess.TimeoutExpired as exc:
        rc, out, err = 124, str(exc.stdout or ""), f"timed out after 300 s: {exc}"
    ms = round((time.perf_counter() - started) * 1000, 1)
    record = {"name": name, "argv": args, "rc": rc, "ms": ms, "stdout": out, "stderr": err[-20000:],
              "at": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")}
    with open(os.environ.get("EVIDENCE", "/tmp/gpuprep-evidence/evidence.jsonl"), "a") as f:
        f.write(json.dumps(record) + "\n")
    print(f"== {name}: exit {rc} in {ms:.0f} ms: {' '.join(args)[:200]}")
    for label, text in (("out", out), ("err", err)):
        lines = text.strip().splitlines()
        for line in lines[:25]:
            print(f"   {label}| {line[:220]}")
        if len(lines) > 25:
            print(f"   {label}| ... ({len(lines) - 25} more lines)")
    return rc


if __name__ == "__main__":
    sys.exit(main())
