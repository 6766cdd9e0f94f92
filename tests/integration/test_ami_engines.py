"""install on trees laid out like the 2026 AL2023 ECS GPU AMI and a 2024 AMI, against both real Engines (issue 14's
"Done when": the dry run and the real run do the right thing, and a second run changes nothing).

Real: Docker Engine 20.10 (Debian 12), 26.1.5 (trixie's) and 28.5.2 (sid's; tests/provision.sh), each a private
dockerd reading the tree's daemon.json and started as each AMI's docker.service starts it (the 2026 AMI: Amazon Linux's
docker-setup-runtimes.sh turns /etc/docker-runtimes.d/nvidia into ``--add-runtime nvidia=...``); SIGHUP and restart;
``dockerd --validate`` where the Engine has it; rpm databases in the trees (fixture RPMs stand in for the toolkit's and
Docker's package metadata only: they install no files); the gpuprep CLI with ``--root`` and ``DOCKER_HOST``.
The nvidia runtime is NVIDIA's real nvidia-container-runtime 1.20.0 (tests/testbed.py ``write_nvidia_runtime``; its
wrapper at the toolkit's path inside the tree, which the 2026 tree's runtimes.d wrapper execs by its path on this
machine, since the Engine runs outside the tree). It runs in cdi mode with a config.toml of the test's own, not the
tree's: the tree's modes (jit-cdi, legacy) need a driver, which this machine lacks.
SIMULATED (no GPU, driver or NVIDIA packages here): the GPU's device nodes (mknod, tests/fixtures/hosts), the
toolkit's other files, and the device nodes and nvidia-smi the runtime's CDI spec names.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import hosttree
from conftest import require
from rpmfixtures import PkgSpec, build_rpm
from testbed import DEFAULT_GPUS, gpuprep_json, tiny_image, write_fake_nvidia_smi

UUIDS = [g["uuid"] for g in DEFAULT_GPUS]
STEPS = "docker-runtime,docker-reload,dev-char-links,cdi-spec,gpu-check"
RUNTIME = "usr/bin/nvidia-container-runtime"
# The toolkit each AMI carries, in the auto mode it ships: 1.18 resolves to jit-cdi, 1.17 to legacy.
LAYOUTS = {"al2023-ecs-gpu-2026": "1.18.1", "al2-ecs-gpu-2024": "1.17.8"}


def tree(tmp_path: Path, request, layout: str, engine) -> Path:
    require("rpmbuild", "rpm")
    root = hosttree.build_named(layout, tmp_path / "root")
    cache = Path(request.config.cache.mkdir("rpmfixtures"))
    docker = engine.name.split("+")[0]
    rpms = [build_rpm(PkgSpec(n, v, r), cache / "ami-engine-rpms", cache=cache / "pkgs")
            for n, v, r in (("nvidia-container-toolkit-base", LAYOUTS[layout], "1"), ("docker", docker, "1.amzn2023"))]
    subprocess.run(["rpm", "--root", str(root), "--dbpath", "/var/lib/rpm", "-i", "--nodeps", "--justdb",
                    *map(str, rpms)], check=True, capture_output=True, timeout=60)
    write_fake_nvidia_smi(root / "usr/bin/nvidia-smi")  # the host's view of its GPUs (SIMULATED)
    return root


gpuprep = gpuprep_json


def install_runtime(root: Path, wrapper: Path) -> Path:
    """NVIDIA's runtime (its wrapper, which names everything by absolute path) where the toolkit puts it in the tree."""
    runtime = root / RUNTIME
    runtime.parent.mkdir(parents=True, exist_ok=True)
    runtime.write_bytes(wrapper.read_bytes())
    runtime.chmod(0o755)
    return runtime


def statuses(report: dict) -> dict[str, str]:
    return {s["id"]: s["status"] for s in report["steps"] if s["status"] != "skipped"}


def steps(report: dict) -> dict[str, dict]:
    return {s["id"]: s for s in report["steps"]}


def test_2026_ami_layout(tmp_path, request, dockerd_factory, docker_engine, fake_gpu):
    """runtimes.d registers nvidia, runc is the default, toolkit 1.18.1 (jit-cdi) with nvidia-cdi-refresh enabled,
    Docker's CDI off: install sets nvidia as the default (Engine 26: that key alone; 20.10 validates daemon.json
    before the flags, so there the runtime is defined in the file too, with the flag's path), SIGHUP takes it up,
    the container proves it; nothing else changes, and a second run changes nothing."""
    root = tree(tmp_path, request, "al2023-ecs-gpu-2026", docker_engine)
    runtime = install_runtime(root, fake_gpu["runtime"])
    wrapper = root / "etc/docker-runtimes.d/nvidia"
    wrapper.write_text(f'#!/bin/sh\nexec {runtime} "$@"\n')  # the AMI's wrapper, by the runtime's path here
    wrapper.chmod(0o755)
    daemon_json = root / "etc/docker/daemon.json"
    dockerd = dockerd_factory(config_path=daemon_json, config={}, args=(f"--add-runtime=nvidia={wrapper}",))
    tiny_image(dockerd.client())
    pid = dockerd.current_pid()
    before = daemon_json.read_bytes()
    args = ("install", "--only", STEPS, "--image", "tiny:latest")

    code, plan, err = gpuprep(root, dockerd.url, *args, "--dry-run")
    assert code == 0, err
    assert statuses(plan) == {"docker-runtime": "planned", "docker-reload": "planned",
                              "dev-char-links": "ok", "cdi-spec": "ok", "gpu-check": "planned"}, plan
    s = steps(plan)
    assert '"default-runtime": "nvidia"' in s["docker-runtime"]["diff"]
    assert s["docker-reload"]["commands"] == [["kill", "-HUP", str(pid)]]
    assert "runtime mode jit-cdi" in s["dev-char-links"]["summary"]
    assert "refreshed at boot by nvidia-cdi-refresh" in s["cdi-spec"]["summary"]
    # Docker's CDI: off on 20.10 and 26, on by default on 28 (28.2+), where it reads the runtime's spec too.
    assert s["gpu-check"]["data"]["routes"] == ["default-runtime", *(["cdi"] if docker_engine.major >= 28 else [])]
    assert daemon_json.read_bytes() == before

    code, done, err = gpuprep(root, dockerd.url, *args)
    assert code == 0, err
    assert statuses(done) == {"docker-runtime": "changed", "docker-reload": "changed",
                              "dev-char-links": "ok", "cdi-spec": "ok", "gpu-check": "ok"}, done
    config = json.loads(daemon_json.read_text())
    assert config["default-runtime"] == "nvidia"
    if docker_engine.major >= 23:
        assert "runtimes" not in config  # runtimes.d stays the one definition
        assert f"validated by {docker_engine.dockerd} --validate" in steps(done)["docker-runtime"]["summary"]
    else:
        assert config["runtimes"]["nvidia"]["path"] == str(wrapper)  # the flag's own path: one meaning
    assert steps(done)["docker-reload"]["data"]["done"] == "reload" and dockerd.current_pid() == pid
    assert steps(done)["gpu-check"]["data"]["uuids"] == UUIDS

    stat = daemon_json.stat()
    code, again, err = gpuprep(root, dockerd.url, *args)
    assert code == 0 and again["status"] == "ok", (err, again)
    assert set(statuses(again).values()) == {"ok"}, again
    assert dockerd.current_pid() == pid and daemon_json.stat().st_mtime_ns == stat.st_mtime_ns


def test_2024_ami_layout(tmp_path, request, dockerd_factory, docker_engine, fake_gpu):
    """nvidia in daemon.json as the default, toolkit 1.17.8 (legacy mode), no /dev/char links: the Engine side is
    already right (nothing to write, no reload); install adds the udev rule that makes the links at every boot, the
    container proves it; a second run changes nothing."""
    root = tree(tmp_path, request, "al2-ecs-gpu-2024", docker_engine)
    runtime = install_runtime(root, fake_gpu["runtime"])
    daemon_json = root / "etc/docker/daemon.json"
    config = json.loads(daemon_json.read_text())
    config["runtimes"]["nvidia"]["path"] = str(runtime)  # the AMI's runtime, by its path on this machine
    dockerd = dockerd_factory(config_path=daemon_json, config=config)
    tiny_image(dockerd.client())
    pid = dockerd.current_pid()
    rule = root / "etc/udev/rules.d/71-nvidia-dev-char.rules"
    args = ("install", "--only", STEPS, "--image", "tiny:latest", "--runtime-path", str(runtime))

    # Engine 28 has Docker's CDI on by default (28.2+): its CDI route needs a spec at every boot, and toolkit 1.17.8
    # has no nvidia-cdi-refresh, so cdi-spec installs gpuprep's own generator unit.
    cdi = docker_engine.major >= 28
    code, plan, err = gpuprep(root, dockerd.url, *args, "--dry-run")
    assert code == 0, err
    assert statuses(plan) == {"docker-runtime": "ok", "docker-reload": "ok", "dev-char-links": "planned",
                              "cdi-spec": "planned" if cdi else "ok", "gpu-check": "planned"}, plan
    assert "nvidia-ctk system create-dev-char-symlinks --create-all" in steps(plan)["dev-char-links"]["diff"]
    assert ("gpuprep-cdi-generate.service" if cdi else "no CDI spec needed") in steps(plan)["cdi-spec"]["summary"], \
        steps(plan)["cdi-spec"]
    assert not rule.exists()

    code, done, err = gpuprep(root, dockerd.url, *args)
    assert code == 0, err
    assert statuses(done) == {"docker-runtime": "ok", "docker-reload": "ok", "dev-char-links": "changed",
                              "cdi-spec": "changed" if cdi else "ok", "gpu-check": "ok"}, done
    assert rule.exists() and steps(done)["gpu-check"]["data"]["uuids"] == UUIDS

    code, again, err = gpuprep(root, dockerd.url, *args)
    assert code == 0 and set(statuses(again).values()) == {"ok"}, (err, again)
    assert dockerd.current_pid() == pid  # never reloaded nor restarted
