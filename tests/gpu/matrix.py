#!/usr/bin/env python3
"""The mode x route table of tests/gpu/real_gpu.sh's evidence: for each container it ran through NVIDIA's real
toolkit (records named ``matrix|ENGINE|TOOLKIT|MODE|ROUTE``), whether nvidia-smi saw the host's GPUs and whether
the CUDA proof's kernel returned the expected value inside the container, or the error that stopped it, with the
container's wall time. tests/unit/gpu/test_real_toolkit_evidence.py reads the committed evidence with these same
functions.

    python3 matrix.py DIR        # prints the table as Markdown
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

GPU_LINE = re.compile(r"^GPU \d+: .* \(UUID: (GPU-[0-9a-f-]{36})\)", re.M)
MODES = ("legacy", "cdi", "jit-cdi", "auto")
ROUTES = ("ecs", "runtime", "cdi", "gpus")
ROUTE_TITLES = {"ecs": "default runtime + NVIDIA_VISIBLE_DEVICES (ECS)", "runtime": "--runtime nvidia",
                "cdi": "--device nvidia.com/gpu=all", "gpus": "--gpus all"}


def records(directory: Path) -> list[dict]:
    path = directory / "evidence.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def cuda_result(stdout: str) -> dict | None:
    """The CUDA proof's JSON object, the last line of the container's output that parses as one."""
    for line in reversed(stdout.splitlines()):
        line = line.strip()
        if line.startswith("{") and line.endswith("}"):
            try:
                return json.loads(line)
            except ValueError:
                continue
    return None


def first_error(record: dict) -> str:
    for text in (record.get("stderr", ""), record.get("stdout", "")):
        for line in text.splitlines():
            line = line.strip()
            if line and not line.startswith("---"):
                return line[:200]
    return f"exit {record.get('rc')}"


def cell(record: dict) -> dict:
    """What one container showed: GPUs seen by nvidia-smi, the CUDA proof's verdict and values, pass or fail."""
    out = record.get("stdout", "")
    uuids = GPU_LINE.findall(out)
    cuda = cuda_result(out)
    devices = (cuda or {}).get("devices", [])
    ok = record.get("rc") == 0 and bool(uuids) and bool(cuda) and cuda.get("ok") is True
    c = {"rc": record.get("rc"), "uuids": uuids, "cuda_ok": bool(cuda and cuda.get("ok")),
         "kernel": [(d.get("result"), d.get("expected")) for d in devices], "ms": record.get("ms"), "ok": ok}
    if not ok:
        c["error"] = (f"{cuda.get('error')} at {cuda.get('call')}" if cuda and not cuda.get("ok") and cuda.get("error")
                      else first_error(record))
    return c


def matrix(directory: Path) -> dict[tuple[str, str, str, str], dict]:
    """(engine, toolkit, mode, route) -> cell, from the records named matrix|..."""
    out = {}
    for r in records(directory):
        parts = r["name"].split("|")
        if len(parts) == 5 and parts[0] == "matrix":
            out[tuple(parts[1:])] = cell(r)
    return out


def render(m: dict[tuple[str, str, str, str], dict]) -> str:
    lines = []
    for engine, toolkit in sorted({(k[0], k[1]) for k in m}):
        lines += [f"### Engine {engine}, toolkit {toolkit}", "",
                  "| mode | " + " | ".join(ROUTE_TITLES[r] for r in ROUTES) + " |",
                  "|---|" + "---|" * len(ROUTES)]
        for mode in MODES:
            row = [m.get((engine, toolkit, mode, r)) for r in ROUTES]
            if not any(row):
                continue
            cells = []
            for c in row:
                if c is None:
                    cells.append("not run")
                elif c["ok"]:
                    vals = ", ".join(str(v[0]) for v in c["kernel"])
                    cells.append(f"pass: {len(c['uuids'])} GPU, kernel {vals} ({c['ms']:.0f} ms)")
                else:
                    cells.append(f"FAIL: {c['error']} ({c['ms']:.0f} ms)".replace("|", "/"))
            lines.append(f"| {mode} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    print(render(matrix(Path(sys.argv[1]))))


if __name__ == "__main__":
    main()
