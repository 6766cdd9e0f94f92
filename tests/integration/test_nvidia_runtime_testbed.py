"""The test bed's nvidia runtime is NVIDIA's own (docs/testbed.md 12): what every Engine-driven test relies on.

Real: NVIDIA's nvidia-container-runtime 1.20.0 in cdi mode through its wrapper (tests/testbed.py
``write_nvidia_runtime``), its nvidia-cdi-hook running the spec's create-symlinks hook, each Docker Engine
(``docker_engine``: 20.10, 26.1.5, 28.5.2) with the runtime as its default, runc, the container. STAND-INS (no GPU or
driver here): the device nodes the spec names (character devices with /dev/null's numbers) and its nvidia-smi.
"""

from __future__ import annotations

import re

import docker
import pytest
from testbed import DEFAULT_GPUS, SMI_LINK, tiny_image

# What the container sees: its /dev entries named nvidia*, the hook's link, and the stand-in nvidia-smi's GPU list.
LOOK = f"ls /dev | grep nvidia; readlink {SMI_LINK}; nvidia-smi -L"


@pytest.fixture
def engine_with_nvidia(dockerd_factory, docker_engine, fake_gpu):
    runtime = fake_gpu["nvidia"]
    dockerd = dockerd_factory(config={"runtimes": {"nvidia": {"path": str(runtime.path), "runtimeArgs": []}},
                                      "default-runtime": "nvidia"})
    client = dockerd.client()
    tiny_image(client)
    yield client, runtime
    client.close()


def run(client, env: dict[str, str]) -> tuple[int, str]:
    try:
        out = client.containers.run("tiny:latest", ["sh", "-c", LOOK], environment=env, remove=True,
                                    network_mode="none")
        return 0, out.decode()
    except docker.errors.ContainerError as exc:
        return exc.exit_status, (exc.stderr or b"").decode()


# NVIDIA_VISIBLE_DEVICES -> the /dev/nvidia* entries the container gets (the common edits bring nvidiactl).
ASKED = {"all": ["nvidia0", "nvidia1", "nvidiactl"], "1": ["nvidia1", "nvidiactl"],
         DEFAULT_GPUS[0]["uuid"]: ["nvidia0", "nvidiactl"]}


def test_nvidia_visible_devices_gets_that_devices_cdi_edits_and_no_device_nothing(engine_with_nvidia):
    """One Engine per run, each case a container (an Engine start costs more than all the cases)."""
    client, runtime = engine_with_nvidia
    for visible, nodes in ASKED.items():
        code, out = run(client, {"NVIDIA_VISIBLE_DEVICES": visible})
        assert code == 0, (visible, out)
        lines = out.splitlines()
        assert lines[:len(nodes)] == nodes, (visible, out)
        assert lines[len(nodes)] == "/usr/bin/nvidia-smi" and "UUID: GPU-" in out, (visible, out)  # the hook's link
        assert f"nvidia.com/gpu={visible}" in runtime.log_text(), visible
    assert "Using requested mode 'cdi'" in runtime.log_text()
    for env in ({}, {"NVIDIA_VISIBLE_DEVICES": "void"}, {"NVIDIA_VISIBLE_DEVICES": ""}):
        code, out = run(client, env)
        assert code == 127 and "nvidia-smi: not found" in out, (env, code, out)  # no nodes, no link, no nvidia-smi
    # Seen here, unlike legacy mode's "no GPU, driver mounted": in cdi mode the runtime asks CDI for
    # nvidia.com/gpu=none, which no spec defines, and the container does not start (the shim this replaced treated
    # "none" as nothing asked, and hid it).
    with pytest.raises(docker.errors.APIError, match="unresolvable CDI devices nvidia.com/gpu=none"):
        run(client, {"NVIDIA_VISIBLE_DEVICES": "none"})


# -- what gpuprep makes of NVIDIA's runtime failing -------------------------------------------------------------------
def test_gpu_check_names_the_real_runtimes_failures_by_their_cause(tmp_path, dockerd_factory, fake_gpu):
    """NVIDIA's runtime as the default, each way it fails on a host: gpu-check's link and hint name the cause, not
    "the runtime's binary cannot be run" (what every OCI runtime error read as while the tests had a shim). The
    runtime reads its config.toml at every container, so one Engine serves each case. No driver here: jit-cdi (auto
    on 1.18+) and legacy (auto before) fail as on a host whose driver is gone; cdi mode without its spec file fails
    as on a host where nothing wrote it."""
    import shutil

    from conftest import FIXTURES
    from testbed import gpuprep_json, toolkit_bin, write_fake_nvidia_smi, write_nvidia_runtime

    root = tmp_path / "root"
    (root / "etc/docker").mkdir(parents=True)
    shutil.copy(FIXTURES / "distros/amzn-2023/etc/os-release", root / "etc/os-release")
    write_fake_nvidia_smi(root / "usr/bin/nvidia-smi")
    runtimes = {v: write_nvidia_runtime(tmp_path / v, fake_gpu["smi"], version=v)
                for v in ("1.17.8", "1.18.0", "1.20.0") if (toolkit_bin(v) / "nvidia-container-runtime").exists()}
    assert len(runtimes) == 3, "needs NVIDIA's toolkit 1.17.8, 1.18.0 and 1.20.0 (run `make provision` as root)"
    # The Engine runs one registered wrapper; each case copies a version's wrapper over it (read at every container).
    registered = tmp_path / "nvidia-container-runtime"
    shutil.copy(runtimes["1.20.0"].path, registered)
    dockerd = dockerd_factory(config_path=root / "etc/docker/daemon.json",
                              config={"runtimes": {"nvidia": {"path": str(registered), "runtimeArgs": []}},
                                      "default-runtime": "nvidia"})
    tiny_image(dockerd.client())

    def gpu_check(version: str, mode: str) -> dict:
        runtime = runtimes[version]
        runtime.config.write_text(re.sub(r'(?m)^mode = ".*"$', f'mode = "{mode}"', runtime.config.read_text()))
        if mode == "cdi":
            runtime.spec.unlink()
        shutil.copy(runtime.path, registered)
        code, report, err = gpuprep_json(root, dockerd.url, "install", "--only", "gpu-check", "--image", "tiny:latest",
                                         "--runtime-path", str(registered))
        assert code == 1, (err, report)
        assert f"Using requested mode '{mode}'" in runtime.log_text() or mode == "auto", runtime.log_text()[-500:]
        return {s["id"]: s for s in report["steps"]}["gpu-check"]

    for version, mode in (("1.20.0", "auto"), ("1.18.0", "auto")):  # jit-cdi, no NVML
        check = gpu_check(version, mode)
        assert check["data"]["link"] == "driver", (version, check)
        assert "could not reach the NVIDIA driver (NVML)" in check["summary"] and "nvidia-smi" in check["hint"]
        assert "Auto-detected mode as 'jit-cdi'" in runtimes[version].log_text() or \
            "Using requested mode 'jit-cdi'" in runtimes[version].log_text(), runtimes[version].log_text()[-800:]
    check = gpu_check("1.17.8", "auto")  # legacy; libnvidia-container's nvidia-container-cli is not installed here
    assert check["data"]["link"] == "runtime-inject", check
    assert "cannot run nvidia-container-cli" in check["summary"] and "install --only packages" in check["hint"]
    check = gpu_check("1.20.0", "cdi")  # the spec file is gone
    assert check["data"]["link"] == "runtime-inject", check
    assert "finds no CDI spec" in check["summary"] and "nvidia-ctk cdi generate" in check["hint"]
