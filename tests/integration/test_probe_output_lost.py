"""A probe container that exits 0 and whose output dockerd dropped is run once more (gpuprep/engine/probe_run.py).

dockerd waits at most 2 s after a container exits for its output to be copied, then closes its streams
(moby/moby ``daemon/monitor.go``, ``handleContainerExit``): on a loaded host ``docker logs`` comes back empty for a
program that exited 0. Seen once in this suite under ``stress-ng --cpu 2``: gpu-check said "nvidia-smi in the
container listed no GPU" (link driver) of a host whose driver was fine.

Real: Docker Engine 26.1 (a private dockerd reading the --root tree's daemon.json), NVIDIA's nvidia-container-runtime
1.20.0 in cdi mode as its default runtime (tests/testbed.py ``write_nvidia_runtime``), runc, the containers, the
gpuprep CLI. STAND-INS: the GPU side (device nodes, nvidia-smi: no GPU or driver here), and, for the Engine's loss (a
race of dockerd's own this machine cannot be made to lose on purpose), an nvidia-smi that exits 0 and prints
nothing while a folder the CDI spec binds into the container (read-write) holds a file, taking one file each run:
what gpuprep then reads from the Engine is what it reads after a real loss.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from conftest import FIXTURES
from testbed import gpuprep_json, tiny_image, write_fake_nvidia_smi

STATE = "/gpuprep-lost"  # the state folder, inside the container


ALWAYS = "always"  # while this file is in the state folder, every run's output is lost


def lossy(program: Path, state: Path, losses: int | None) -> None:
    """Make the stand-in ``program`` (a busybox sh script) exit 0 silently while ``state`` holds a file, taking one
    file a run: ``losses`` files to start with, or (None) the file ``ALWAYS``, which no run takes."""
    state.mkdir(exist_ok=True)
    for name in [ALWAYS] if losses is None else [f"loss-{n}" for n in range(losses)]:
        (state / name).write_text("")
    shebang, rest = program.read_text().split("\n", 1)
    program.write_text(f"{shebang}\n# STAND-IN for output dockerd lost: exit 0, print nothing, while {STATE} holds "
                       f"a file\n[ -e {STATE}/{ALWAYS} ] && exit 0\n"
                       f"for f in {STATE}/*; do [ -e \"$f\" ] && /bin/busybox rm -f \"$f\" && exit 0; done\n" + rest)


class LossyHost:
    """A --root tree and Engine 26 whose default runtime is NVIDIA's (cdi mode), its spec binding ``state``."""

    def __init__(self, tmp_path: Path, dockerd_factory, fake_gpu, losses: int):
        self.root = tmp_path / "root"
        (self.root / "etc/docker").mkdir(parents=True)
        shutil.copy(FIXTURES / "distros/amzn-2023/etc/os-release", self.root / "etc/os-release")
        write_fake_nvidia_smi(self.root / "usr/bin/nvidia-smi")  # the host's view of its GPUs (SIMULATED)
        runtime = fake_gpu["nvidia"]
        self.state = Path(fake_gpu["dir"]) / "lost"
        lossy(fake_gpu["smi"], self.state, losses)
        spec = json.loads(runtime.spec.read_text())
        spec["containerEdits"]["mounts"].append({"hostPath": str(self.state), "containerPath": STATE,
                                                 "options": ["rw", "rbind", "rprivate"]})
        runtime.spec.write_text(json.dumps(spec))
        config = {"runtimes": {"nvidia": {"path": str(runtime.path), "runtimeArgs": []}}, "default-runtime": "nvidia"}
        self.dockerd = dockerd_factory(config_path=self.root / "etc/docker/daemon.json", config=config,
                                       engine_id="26")
        self.client = self.dockerd.client()
        tiny_image(self.client)

    def probe(self):
        """The default route proven in-process, as a script drives ``probe``."""
        from gpuprep.engine.gpu_container import probe
        from gpuprep.host import Host

        host = Host(str(self.root), env={"DOCKER_HOST": self.dockerd.url})
        try:
            return probe(host, "tiny:latest", host_view=None, pull=False)
        finally:
            host.close()

    def left(self) -> list[str]:
        return sorted(p.name for p in self.state.iterdir())

    def probe_containers(self) -> list:
        return self.client.containers.list(all=True, filters={"label": "io.gpuprep.probe"})


@pytest.fixture
def lossy_host(request, tmp_path, dockerd_factory, fake_gpu):
    host = LossyHost(tmp_path, dockerd_factory, fake_gpu, request.param)
    yield host
    host.client.close()


@pytest.mark.parametrize("lossy_host", [1], indirect=True)
def test_one_lost_output_is_proven_again_and_passes(lossy_host):
    result = lossy_host.probe()
    assert lossy_host.left() == []  # the first container ran, exited 0 and printed nothing
    assert result.ok and len(result.gpus) == 2 and result.exit_code == 0, result  # the second one's answer
    assert lossy_host.probe_containers() == []  # both removed


@pytest.mark.parametrize("lossy_host", [2], indirect=True)
def test_output_lost_twice_fails_the_probe_saying_so(lossy_host):
    result = lossy_host.probe()
    assert not result.ok and result.link == "output-lost" and result.exit_code == 0, result
    assert result.summary == ("nvidia-smi in the container exited 0, but dockerd gave back none of its output: it "
                              "drops what it has not copied 2 s after a container exits, and this host was that "
                              "busy, twice"), result
    assert lossy_host.left() == [] and lossy_host.probe_containers() == []


@pytest.mark.parametrize("lossy_host", [None], indirect=True)
def test_doctor_names_the_loss_not_the_driver_and_its_fix_clears_it_once_the_load_falls(lossy_host):
    code, report, err = gpuprep_json(lossy_host.root, lossy_host.dockerd.url, "doctor", "--image", "tiny:latest")
    check = next(c for c in report["checks"] if c["id"] == "gpu-container")
    assert check["status"] == "critical" and check["data"]["link"] == "output-lost", check
    assert "nvidia-smi in the container exited 0, but dockerd gave back none of its output" in check["summary"]
    assert "driver" not in check["summary"]
    assert lossy_host.probe_containers() == []
    [fix] = check["fixes"]
    assert fix["argv"] == ["gpuprep", "--root", str(lossy_host.root), "doctor", "--image", "tiny:latest"], fix
    (lossy_host.state / ALWAYS).unlink()  # the load fell
    code, report, err = gpuprep_json(lossy_host.root, lossy_host.dockerd.url, *fix["argv"][3:])
    assert next(c for c in report["checks"] if c["id"] == "gpu-container")["status"] == "ok", err
