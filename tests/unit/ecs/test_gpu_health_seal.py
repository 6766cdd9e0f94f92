"""seal's ``gpu-health-state`` step (issue 28, item 9) on a root laid out as the AL2023 ECS GPU AMI's, with the
files dcgm-init and DCGM's host engine leave (their content stand-ins: these machines run neither). The CLI, the
runner and the removals are the real ones; --dry-run lists what the real run then does."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from conftest import FIXTURES
from contract import json_output
from typer.testing import CliRunner

from gpuprep.cli import app

pytestmark = pytest.mark.allow_subp("rpm")  # the stamp step asks the image's rpm database
NO_DOCKER = "stop-ecs,containers,images"
METRICS = {"timestamp": "2026-12-07T10:00:00Z", "healthy": True, "unhealthy_reason": "",
           "gpus": [{"uuid": "GPU-0e7d3af2-be49-affe-ae6c-f6fcf358f2ea"}]}


def seal(root: Path, *args: str) -> tuple[int, dict]:
    out = CliRunner().invoke(app, ["--root", str(root), "--json", "seal", "--yes", "--skip", NO_DOCKER, *args],
                             env={"DOCKER_HOST": None})
    return out.exit_code, json_output(out.stdout)


def step(report: dict) -> dict:
    return next(s for s in report["steps"] if s["id"] == "gpu-health-state")


def test_gpu_metrics_goes_and_the_dcgm_logs_are_emptied(tmp_path):
    root = tmp_path / "root"
    shutil.copytree(FIXTURES / "distros/amzn-2023", root)
    (root / "var/run/ecs").mkdir(parents=True)
    (root / "var/run/ecs/gpu-metrics.json").write_text(json.dumps(METRICS))
    (root / "var/log/ecs").mkdir(parents=True)
    for name in ("nv-hostengine.log", "dcgm-init.log"):
        (root / "var/log/ecs" / name).write_text("2026-12-07 10:00:00 build machine's GPU GPU-0e7d3af2\n")
    (root / "var/log/ecs/ecs-agent.log").write_text("not ours to touch\n")

    code, dry = seal(root, "--dry-run")
    assert code == 0 and step(dry)["status"] == "planned", dry
    assert (root / "var/run/ecs/gpu-metrics.json").exists()

    code, real = seal(root)
    assert code == 0 and step(real)["status"] == "changed", real
    assert step(real)["data"]["remove"] == step(dry)["data"]["remove"]
    assert not (root / "var/run/ecs/gpu-metrics.json").exists()
    assert all(os.path.getsize(root / "var/log/ecs" / n) == 0 for n in ("nv-hostengine.log", "dcgm-init.log"))
    assert (root / "var/log/ecs/ecs-agent.log").read_text() == "not ours to touch\n"

    code, again = seal(root)
    assert code == 0 and step(again)["status"] == "ok", again
