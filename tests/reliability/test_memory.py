"""doctor's peak memory stays under 200 MB whatever the host's kernel log holds (issue 23).

A host whose kernel log holds 200 MB (a driver spamming it, a long boot) took doctor to 685 MB: it read
``journalctl -k -b`` whole, then split it. The case runs the real ``gpuprep doctor`` on this machine, with a
stand-in ``journalctl`` first on PATH, and measures the peak resident memory of the run (``getrusage``
``RUSAGE_CHILDREN`` of a fresh Python that runs only it, so no other child of the test counts).

SIMULATED: the kernel log itself (``journalctl``: 200,000 lines of 1 KB, then an Xid 79 line, as the journal
prints them with ``-o cat``): this machine's own journal cannot be made to hold 200 MB of kernel messages
without flooding it. Everything else doctor reads is this machine's.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import reliability_kit as kit
from contract import json_output

_figure = kit.module_figure("memory", "stayed under 200 MB")

LIMIT_MB = 200
XID = "NVRM: Xid (PCI:0000:00:1e): 79, pid=0, GPU has fallen off the bus."
# Run the command given and print the peak RSS of its process tree (KiB on Linux) as the last line.
MEASURE = ("import resource, subprocess, sys\n"
           "p = subprocess.run(sys.argv[1:], capture_output=True, text=True, cwd='/')\n"
           "sys.stdout.write(p.stdout)\n"
           "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n")


def test_doctor_over_a_200_mb_kernel_log_peaks_under_200_mb(tmp_path: Path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    journalctl = bin_dir / "journalctl"
    journalctl.write_text("#!/bin/sh\n# SIMULATED journalctl: a 200 MB kernel log (see the module's docstring)\n"
                          "line=$(printf 'kernel: usb 1-1: reset high-speed USB device %01000d' 0)\n"
                          'yes "$line" | head -n 200000\n'
                          f"echo '{XID}'\n")
    journalctl.chmod(0o755)
    env = kit.env(PATH=f"{bin_dir}:{os.environ['PATH']}")
    proc = subprocess.run([sys.executable, "-c", MEASURE, *kit.cli("--json", "doctor", "--no-container")],
                          capture_output=True, text=True, env=env, cwd="/", timeout=120)
    out, _, peak = proc.stdout.rstrip("\n").rpartition("\n")
    peak_mb = int(peak) / 1024
    problems = []
    xid = next((c for c in json_output(out)["checks"] if c["id"] == "gpu-xid"), None)
    if xid is None or "Xid 79" not in xid["summary"]:
        problems.append(f"doctor did not read the stand-in kernel log to its end: {xid}")
    if peak_mb >= LIMIT_MB:
        problems.append(f"peak {peak_mb:.0f} MB")
    kit.figure("doctor memory", not problems, 1, [f"kernel-log-200MB ({peak_mb:.0f} MB)"] if problems else [])
    print(f"doctor over a 200 MB kernel log: peak {peak_mb:.0f} MB")
    assert not problems, problems
