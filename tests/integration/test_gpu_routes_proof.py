"""doctor's toolkit-gpu-routes proves each route on a live Engine (issue 28, item 1): ECS's (the nvidia runtime as
the default, no --runtime) and ``docker run --gpus all``, side by side; where ECS's works and ``--gpus`` does not,
the routes disagree and doctor says so with the fix.

Real: dockerd 20.10 on its own socket, its daemon.json the one in the --root tree, NVIDIA's real
nvidia-container-runtime in cdi mode (tests/conftest.py ``fake_gpu``), runc, the gpuprep CLI. SIMULATED (no GPU or
driver here): the GPU's device nodes and nvidia-smi (``fake_gpu``), and for the healthy case a STAND-IN
``nvidia-container-runtime-hook`` on dockerd's PATH that exits 0 (tests/testbed.py ``with_gpus_hook``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import FIXTURES, REPO
from contract import json_output


def make_root(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    (root / "etc/docker").mkdir(parents=True)
    shutil.copy(FIXTURES / "distros/amzn-2023/etc/os-release", root / "etc/os-release")
    return root


def routes_check(root: Path, url: str) -> dict:
    env = {**os.environ, "DOCKER_HOST": url, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-m", "gpuprep", "--root", str(root), "--json", "doctor", "--image",
                           "tiny:latest"], capture_output=True, text=True, timeout=300, env=env)
    report = json_output(proc.stdout)
    return next(c for c in report["checks"] if c["id"] == "toolkit-gpu-routes")


@pytest.fixture
def engine_with(tmp_path, fake_gpu):
    """A private dockerd with the NVIDIA runtime as the default; ``hook``: a stand-in hook on its PATH."""
    from testbed import ENGINES, PrivateDockerd, tiny_image, with_gpus_hook

    started = []

    def start(hook: bool) -> tuple[Path, PrivateDockerd]:
        root = make_root(tmp_path / ("hook" if hook else "bare"))
        engine = with_gpus_hook(ENGINES["20.10"], tmp_path / "hook-bin") if hook else ENGINES["20.10"]
        d = PrivateDockerd(config_path=root / "etc/docker/daemon.json", config={
            "runtimes": {"nvidia": {"path": str(fake_gpu["runtime"]), "runtimeArgs": []}},
            "default-runtime": "nvidia"}, engine=engine)
        started.append(d)
        d.start()
        client = d.client()
        tiny_image(client)
        client.close()
        return root, d

    yield start
    for d in started:
        d.cleanup()


def test_gpus_unserved_while_ecs_works_is_a_disagreement(engine_with):
    root, dockerd = engine_with(hook=False)
    check = routes_check(root, dockerd.url)
    assert check["status"] == "warning", check
    assert "the routes disagree: ECS's route (without --runtime) sees 2 GPU(s), but with --gpus all" in \
        check["summary"]
    assert "could not select device driver" in check["summary"]
    assert "nvidia-container-runtime-hook" in check["hint"]
    routes = {r["route"]: r for r in check["data"]["proof"]["routes"]}
    assert routes["default-runtime"]["ok"] and not routes["gpus"]["ok"]


def test_every_route_proven(engine_with):
    root, dockerd = engine_with(hook=True)
    check = routes_check(root, dockerd.url)
    assert check["status"] == "ok", check
    assert "proven here: without --runtime" in check["summary"] and "with --gpus all" in check["summary"]
