"""seal on an Engine whose images live in containerd (issue 28, item 9): Docker 29 makes the containerd image store
the default on fresh installs, and there no image is under /var/lib/docker/overlay2; seal removes them through the
Engine's API, so containerd's ``moby`` namespace is emptied too.

Real: Engine 28.5.2 (Debian sid's docker.io and containerd 2.1.9, unpacked in /var/cache/gpuprep-tests/engine28 by
provisioning) with ``"features": {"containerd-snapshotter": true}``, Debian 12's runc (sid's needs glibc 2.38), and
containerd's own ``ctr`` to look into the namespace (tests/testbed.py's ``ENGINES["28"]``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest
from conftest import FIXTURES
from contract import json_output


@pytest.fixture
def containerd_store_engine(dockerd_factory):
    return dockerd_factory(engine_id="28", config={"features": {"containerd-snapshotter": True}})


def moby_images(d) -> list[str]:
    """What containerd itself holds in the Engine's namespace."""
    from testbed import ENGINE28

    done = subprocess.run([str(ENGINE28 / "usr/bin/ctr"), "-a", str(d.exec_root / "containerd/containerd.sock"),
                           "-n", "moby", "images", "ls", "-q"], capture_output=True, text=True, timeout=30, check=True)
    return done.stdout.split()


def test_seal_empties_the_containerd_image_store(containerd_store_engine, tmp_path):
    from testbed import tiny_image

    d = containerd_store_engine
    client = d.client()
    assert dict(client.info()["DriverStatus"]).get("driver-type") == "io.containerd.snapshotter.v1"
    for tag in ("tiny:v1", "tiny:v2", "team/train:2026"):
        tiny_image(client, tag, extra_files={"/etc/variant": tag})
    client.containers.create("tiny:v1", ["true"], name="task-1", network_mode="none")
    assert len(moby_images(d)) == 3

    root = tmp_path / "root"
    shutil.copytree(FIXTURES / "distros/amzn-2023", root)
    proc = subprocess.run([sys.executable, "-m", "gpuprep", "--root", str(root), "--json", "seal", "--yes", "--only",
                           "preflight,containers,images"], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "DOCKER_HOST": d.url})
    report = json_output(proc.stdout)
    assert proc.returncode == 0, (report, proc.stderr[-2000:])
    steps = {s["id"]: s["status"] for s in report["steps"]}
    assert steps["containers"] == steps["images"] == "changed"
    assert client.images.list(all=True) == [] and client.containers.list(all=True) == []
    assert moby_images(d) == []  # containerd's own store is empty, not only the Engine's view
