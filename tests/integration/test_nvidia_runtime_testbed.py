"""The test bed's nvidia runtime is NVIDIA's own (docs/testbed.md 12): what every Engine-driven test relies on.

Real: NVIDIA's nvidia-container-runtime 1.20.0 in cdi mode through its wrapper (tests/testbed.py
``write_nvidia_runtime``), its nvidia-cdi-hook running the spec's create-symlinks hook, each Docker Engine
(``docker_engine``: 20.10, 26.1.5, 28.5.2) with the runtime as its default, runc, the container. STAND-INS (no GPU or
driver here): the device nodes the spec names (character devices with /dev/null's numbers) and its nvidia-smi.
"""

from __future__ import annotations

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
