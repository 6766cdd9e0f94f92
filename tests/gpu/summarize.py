#!/usr/bin/env python3
"""Read the evidence of tests/gpu/real_gpu.sh (a directory: evidence.jsonl, host.txt, timings.json) and say what it
shows: the host's GPUs, what each container saw, each check's verdict in each case, the timings. Writes
DIR/summary.json and prints a table. tests/unit/test_real_gpu_fixture.py reads the committed evidence with these
same functions and checks the claims.

    python3 summarize.py DIR
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

UUID = re.compile(r"\b(GPU|MIG)-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b")


def records(directory: Path) -> dict[str, dict]:
    """evidence.jsonl by name (a name recorded twice: the last one)."""
    out = {}
    path = directory / "evidence.jsonl"
    for line in path.read_text().splitlines() if path.exists() else []:
        r = json.loads(line)
        out[r["name"]] = r
    return out


def host_gpus(directory: Path) -> list[dict]:
    """The host's GPUs as nvidia-smi --query-gpu printed them into host.txt: index, name, uuid, bus id, driver."""
    text = (directory / "host.txt").read_text()
    block = text.split("# nvidia-smi --query-gpu", 1)[1].split("\n# ", 1)[0]
    rows = [[c.strip() for c in line.split(",")] for line in block.strip().splitlines()[1:] if line.strip()]
    return [{"index": int(r[0]), "name": r[1], "uuid": r[2], "pci_bus_id": r[3], "driver_version": r[4]} for r in rows]


def report(record: dict) -> dict:
    """The JSON report a gpuprep --json run printed."""
    return json.loads(record["stdout"])  # schema: test_real_toolkit_evidence.py checks these


def checks(record: dict) -> dict[str, dict]:
    return {c["id"]: c for c in report(record)["checks"]}


def steps(record: dict) -> dict[str, dict]:
    return {s["id"]: s for s in report(record)["steps"]}


def seen_in_container(record: dict) -> dict:
    """What a `nvidia-smi --query-gpu=index,uuid; ls /dev | grep nvidia` container printed."""
    lines = record["stdout"].splitlines()
    return {"rc": record["rc"], "uuids": [m.group(0) for line in lines for m in [UUID.search(line)] if m],
            "gpu_nodes": sorted(line.strip() for line in lines if re.fullmatch(r"nvidia\d+", line.strip()))}


def per_gpu(recs: dict[str, dict], route: str, gpus: list[dict]) -> dict:
    out = {}
    for g in gpus:
        for how in ("uuid", "index"):
            r = recs.get(f"{route}-{how}-{g['index']}")
            if r is not None:
                out[f"{how}-{g['index']}"] = {"asked": g["uuid"] if how == "uuid" else str(g["index"]),
                                              **seen_in_container(r)}
    for name in ("all", "unknown-uuid"):
        r = recs.get(f"{route}-{name}")
        if r is not None:
            out[name] = seen_in_container(r) if name == "all" else {"rc": r["rc"], "said": r["stderr"].strip()[-300:]}
    return out


def summary(directory: Path) -> dict:
    recs = records(directory)
    gpus = host_gpus(directory)
    out: dict = {"host_gpus": gpus, "records": sorted(recs)}

    def verdicts(name: str, ids: tuple[str, ...]) -> dict | None:
        if name not in recs:
            return None
        c = checks(recs[name])
        return {"rc": recs[name]["rc"], "status": report(recs[name])["status"],
                **{i: {"status": c[i]["status"], "summary": c[i]["summary"][:240]} for i in ids if i in c}}

    if "install-json" in recs:
        out["install"] = {n: {"rc": recs[n]["rc"], **{i: s["status"] for i, s in steps(recs[n]).items()}}
                          for n in ("install-json", "install-again-json", "install-docker-cdi-json") if n in recs}
        gc = steps(recs["install-json"]).get("gpu-check", {}).get("data", {})
        out["gpu_check"] = {"inside": gc.get("uuids"), "host": gc.get("host_uuids")}
    main = ("gpu-nvml", "gpu-count", "gpu-container", "docker-engine", "docker-default-runtime", "toolkit-stack",
            "toolkit-cdi-specs", "ecs-gpu-info")
    for name in ("doctor-json", "doctor-cdi-json", "ecs-gpu-info-host", "ecs-gpu-info-changed",
                 "neg-missing-node-doctor", "neg-stale-driver-doctor", "neg-runc-default-doctor",
                 "neg-runc-default-fixed-doctor", "smoke-doctor-json"):
        v = verdicts(name, main)
        if v is not None:
            out[name] = v
    if "doctor-json" in recs:
        c = checks(recs["doctor-json"])
        out["container_check"] = {"inside": c["gpu-container"]["data"].get("uuids"),
                                  "host": c["gpu-container"]["data"].get("host_uuids"),
                                  "nvml": [g["uuid"] for g in c["gpu-nvml"]["data"].get("gpus", [])]}
    for route in ("standin", "cdi"):
        pg = per_gpu(recs, route, gpus)
        if pg:
            out[f"per_gpu_{route}"] = pg
    for name in ("neg-missing-node-cdi-run", "neg-stale-driver-cdi-run", "plain-docker-run", "smoke-container"):
        if name in recs:
            out[name] = {"rc": recs[name]["rc"], "said": (recs[name]["stderr"] or recs[name]["stdout"]).strip()[-300:]}
    t = directory / "timings.json"
    if t.exists():
        timings = json.loads(t.read_text())
        out["timings_median_ms"] = timings["median_ms"]
        out["timings_ratio_to_import_typer"] = timings["ratio_to_baseline"]
    return out


def main() -> None:
    directory = Path(sys.argv[1])
    s = summary(directory)
    (directory / "summary.json").write_text(json.dumps(s, indent=2))
    print(json.dumps({k: v for k, v in s.items() if k != "records"}, indent=1)[:9000])


if __name__ == "__main__":
    main()
