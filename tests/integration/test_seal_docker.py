"""seal's Docker steps on a private real dockerd (TESTBED.md 1), named by DOCKER_HOST with --root.

50 containers (running ones sleeping, stopped ones exited, one named ``ecs-agent`` like the agent's),
10 images (tag variants of the busybox image, each with different content so each is its own image),
two kept with --keep-image (one by tag, one by id). After ``gpuprep --root ROOT seal --yes`` only the
two kept images remain, no container does, and the agent state in ROOT is gone; a second run reports
every step ok. Nothing is simulated: the Engine, runc and containerd are real.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from conftest import FIXTURES

N_CONTAINERS = 50
N_IMAGES = 10


def gpuprep(url: str, root: Path, *args: str) -> tuple[int, dict, str]:
    env = {**os.environ, "DOCKER_HOST": url}
    proc = subprocess.run([sys.executable, "-m", "gpuprep", "--root", str(root), "--json", "seal", *args],
                          capture_output=True, text=True, env=env, timeout=300)
    report = json.loads(proc.stdout) if proc.stdout.strip().startswith("{") else {}
    return proc.returncode, report, proc.stderr


@pytest.fixture
def engine(dockerd_factory):
    from testbed import tiny_image

    d = dockerd_factory()
    client = d.client()
    tags = [f"tiny:v{i}" for i in range(N_IMAGES)]
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda t: tiny_image(client, t, extra_files={"/etc/variant": t}), tags))

    def create(i: int):
        name = "ecs-agent" if i == 0 else f"task-{i:02d}"
        running = i % 2 == 0
        c = client.containers.create(tags[i % N_IMAGES], ["sleep", "3600"] if running else ["true"],
                                     name=name, network_mode="none")
        if running:
            c.start()
        return c

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(create, range(N_CONTAINERS)))
    yield d, client, tags
    # dockerd's own shutdown waits 10 s for each `sleep` that ignores SIGTERM: remove them first.
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda c: client.api.remove_container(c["Id"], force=True), client.api.containers(all=True)))
    client.close()


def _root(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    shutil.copytree(FIXTURES / "distros/amzn-2023", root)
    (root / "var/lib/ecs/data/metadata").mkdir(parents=True)
    (root / "var/lib/ecs/data/agent.db").write_text("bolt")
    return root


def test_seal_removes_every_container_and_all_but_the_kept_images(engine, tmp_path):
    d, client, tags = engine
    root = _root(tmp_path)
    assert len(client.api.containers(all=True)) == N_CONTAINERS
    assert len(client.api.containers(filters={"status": "running"})) == N_CONTAINERS // 2
    kept_by_id = client.images.get(tags[7]).id.split(":", 1)[1][:12]

    code, dry, err = gpuprep(d.url, root, "--dry-run", "--keep-image", tags[3], "--keep-image", kept_by_id)
    assert code == 0, err
    steps = {s["id"]: s for s in dry["steps"]}
    assert steps["containers"]["status"] == "planned" and len(steps["containers"]["data"]["remove"]) == N_CONTAINERS
    assert "ecs-agent" in [r["name"] for r in steps["containers"]["data"]["remove"]]
    assert len(steps["images"]["data"]["remove"]) == N_IMAGES - 2
    assert len(client.api.containers(all=True)) == N_CONTAINERS  # dry run: nothing removed

    code, real, err = gpuprep(d.url, root, "--yes", "--keep-image", tags[3], "--keep-image", kept_by_id)
    assert code == 0, err
    steps_real = {s["id"]: s for s in real["steps"]}
    assert steps_real["stop-ecs"]["status"] == "skipped"
    for sid in ("containers", "images"):
        assert steps_real[sid]["status"] == "changed", steps_real[sid]
        assert steps_real[sid]["data"]["remove"] == steps[sid]["data"]["remove"]  # what --dry-run listed

    assert client.api.containers(all=True) == []
    left = sorted(t for img in client.api.images() for t in img["RepoTags"] or [])
    assert left == sorted([tags[3], tags[7]])
    kept = steps_real["images"]["data"]["kept"]
    assert sorted(k["tags"][0] for k in kept) == sorted([tags[3], tags[7]])
    assert all(k["size"] > 0 and k["id"].startswith("sha256:") for k in kept)
    assert not (root / "var/lib/ecs/data/agent.db").exists()
    stamp = json.loads((root / "etc/gpuprep/seal.json").read_text())
    assert sorted(k["tags"][0] for k in stamp["kept_images"]) == sorted([tags[3], tags[7]])

    code, again, err = gpuprep(d.url, root, "--yes", "--keep-image", tags[3], "--keep-image", kept_by_id)
    assert code == 0, err
    assert again["status"] == "ok", [(s["id"], s["status"], s["summary"]) for s in again["steps"]]
    assert {s["id"]: s["status"] for s in again["steps"]}["images"] == "ok"


def test_keep_image_naming_nothing_is_bad_input_and_removes_nothing(engine, tmp_path):
    d, client, _ = engine
    root = _root(tmp_path)
    code, report, err = gpuprep(d.url, root, "--yes", "--keep-image", "nosuch:image")
    assert code == 2, err
    assert report["steps"][0]["id"] == "preflight" and report["steps"][0]["status"] == "failed"
    assert "--keep-image nosuch:image" in report["steps"][0]["summary"]
    assert len(client.api.containers(all=True)) == N_CONTAINERS
    assert (root / "var/lib/ecs/data/agent.db").exists()


def test_stop_ecs_stops_a_running_agent_container_and_waits(dockerd_factory):
    """stop-ecs on the running system, its Engine the private one: the agent container (a stand-in
    that exits on SIGTERM like the real agent) is stopped, not removed, and the step waits for it.
    This machine runs no ecs service, so the init-system half is only asked (systemctl show), never acted on."""
    from testbed import tiny_image

    from gpuprep.options import SealOptions
    from gpuprep.platform import detect
    from gpuprep.report import StepStatus
    from gpuprep.seal import StopEcsStep
    from gpuprep.steps import Context, run_steps

    d = dockerd_factory()
    client = d.client()
    tiny_image(client, "tiny:latest")
    agent = client.containers.run("tiny:latest", ["sh", "-c", "trap 'exit 0' TERM; while :; do sleep 0.2; done"],
                                  name="ecs-agent", network_mode="none", detach=True)
    host_env = {**os.environ, "DOCKER_HOST": d.url}

    def seal_stop():
        from gpuprep.host import Host

        host = Host("/", env=host_env)
        try:
            return run_steps(Context(host, detect(host), SealOptions(yes=True)), "seal", [StopEcsStep()]).steps[0]
        finally:
            host.close()

    first = seal_stop()
    assert first.status is StepStatus.CHANGED, first.summary
    assert ["docker", "stop", "ecs-agent"] in first.commands
    agent.reload()
    assert agent.status == "exited"  # stopped, left for `containers` to remove
    again = seal_stop()
    assert again.status is StepStatus.OK, again.summary
    client.close()
