#!/usr/bin/env python3
"""STAND-IN for nvidia-container-runtime in CDI mode. It is not NVIDIA's runtime, and it is labelled so
wherever tests/gpu/real_gpu.sh uses it.

Registered with dockerd as the ``nvidia`` runtime on the accelerator machine (which has the driver but not
NVIDIA's container toolkit): as the real runtime does in CDI mode (NVIDIA/nvidia-container-toolkit
``internal/modifier/cdi.go``), when the container's environment asks for GPUs through NVIDIA_VISIBLE_DEVICES
(as the ECS agent and gpuprep's gpu-check set it) it applies the CDI spec's edits to the OCI bundle's
config.json, then execs runc with the same arguments:
- ``all``, or a comma-separated list of indices and UUIDs, each looked up as the device of that name in the spec
  (``nvidia-ctk cdi generate`` names every GPU by index and by UUID, and adds ``all``), so
  ``NVIDIA_VISIBLE_DEVICES=GPU-<uuid>`` gives exactly that GPU's /dev/nvidiaN;
- the spec's common edits (control nodes, the driver's nvidia-smi and libnvidia-ml) and each device's own;
- a device node becomes a linux.devices entry with the major/minor stat() gives and a cgroup allow rule;
- unset, empty, ``void`` or ``none``: nothing is added (runc alone);
- a name the spec does not have: the container is refused, as the real runtime refuses an unresolvable CDI device.

What it does not do (the real runtime does): the OCI hooks (nvidia-container-runtime-hook, the
update-ldcache and create-symlinks hooks, so no ldconfig runs inside the container), NVIDIA_DRIVER_CAPABILITIES
(every spec edit is applied whatever the capabilities), the ``auto``/``legacy``/``csv`` modes, jit-cdi's
generation of a spec from NVML at each start, MIG devices, IMEX channels, and its config.toml and log file.

Configuration by environment (dockerd passes its own environment to runtimes): NVIDIA_STANDIN_SPEC, the CDI spec
(JSON) to apply, default /etc/cdi/nvidia.json; NVIDIA_STANDIN_RUNC, the runc to exec, default ``runc`` on PATH.
"""

from __future__ import annotations

import json
import os
import sys

SPEC = os.environ.get("NVIDIA_STANDIN_SPEC", "/etc/cdi/nvidia.json")
RUNC = os.environ.get("NVIDIA_STANDIN_RUNC", "runc")
OFF = ("", "void", "none")


def requested(config: dict) -> list[str] | None:
    env = dict(e.split("=", 1) for e in (config.get("process") or {}).get("env") or [] if "=" in e)
    value = env.get("NVIDIA_VISIBLE_DEVICES")
    if value is None or value.strip() in OFF:
        return None
    return [v.strip() for v in value.split(",") if v.strip()]


def edits_for(spec: dict, names: list[str]) -> list[dict]:
    devices = {str(d["name"]): d.get("containerEdits") or {} for d in spec.get("devices") or []}
    unknown = [n for n in names if n not in devices]
    if unknown:
        kind = spec.get("kind", "nvidia.com/gpu")
        names = ", ".join(f"{kind}={n}" for n in unknown)
        sys.stderr.write(f"nvidia-runtime-standin: unresolvable CDI devices {names}\n")
        sys.exit(1)
    return [spec.get("containerEdits") or {}, *(devices[n] for n in names)]


def apply(config: dict, edits: list[dict]) -> None:
    linux = config.setdefault("linux", {})
    devices = linux.setdefault("devices", [])
    allow = linux.setdefault("resources", {}).setdefault("devices", [])
    env = config.setdefault("process", {}).setdefault("env", [])
    seen = {d.get("path") for d in devices}
    for e in edits:
        for node in e.get("deviceNodes") or []:
            path, host_path = node["path"], node.get("hostPath") or node["path"]
            if path in seen:
                continue
            seen.add(path)
            st = os.stat(host_path)  # a node the spec names but the host lacks: the start fails here, as it would
            major, minor = os.major(st.st_rdev), os.minor(st.st_rdev)
            devices.append({"path": path, "type": "c", "major": major, "minor": minor, "fileMode": 0o666,
                            "uid": 0, "gid": 0})
            allow.append({"allow": True, "type": "c", "major": major, "minor": minor, "access": "rwm"})
        for mount in e.get("mounts") or []:
            if not os.path.exists(mount["hostPath"]):
                sys.stderr.write(f"nvidia-runtime-standin: mount source {mount['hostPath']} does not exist\n")
                sys.exit(1)
            config.setdefault("mounts", []).append({"destination": mount["containerPath"],
                                                    "source": mount["hostPath"], "type": "bind",
                                                    "options": mount.get("options") or ["ro", "nosuid", "nodev",
                                                                                        "bind"]})
        for entry in e.get("env") or []:  # as the CDI library's AddProcessEnv: a variable set again is replaced
            key = entry.split("=", 1)[0]
            env[:] = [v for v in env if v.split("=", 1)[0] != key] + [entry]


def main(args: list[str]) -> None:
    if "create" in args and "--bundle" in args:
        path = os.path.join(args[args.index("--bundle") + 1], "config.json")
        with open(path) as f:
            config = json.load(f)
        names = requested(config)
        if names is not None:
            with open(SPEC) as f:
                spec = json.load(f)
            apply(config, edits_for(spec, names))
            with open(path, "w") as f:
                json.dump(config, f)
    os.execvp(RUNC, [RUNC, *args])


if __name__ == "__main__":
    main(sys.argv[1:])
