"""gpu-check and doctor's gpu-container prove the CDI route where Docker's CDI is on (issue 14).

Real: Docker Engine 26.1.5 (trixie's, unpacked by tests/provision.sh; CDI exists from 25) with
``"features": {"cdi": true}`` and ``cdi-spec-dirs`` naming the test's own folder, its CDI injection (the CDI
library inside dockerd resolves the device, stats its host node, adds it to the container), runc, docker-py's
``DeviceRequest(driver="cdi")``, the gpuprep CLI with ``--root`` and ``DOCKER_HOST``; Engine 20.10 for the
route forced where it has no CDI.
SIMULATED (no GPU or NVIDIA driver on these machines): the CDI spec (tests/testbed.py ``write_cdi_spec``) names
stand-in device nodes, character devices with /dev/null's numbers made by mknod, and binds a fake nvidia-smi
that fails as the real one does (exit 9) when the container lacks /dev/nvidiactl or /dev/nvidia0, so only a
container that got the spec's device nodes lists the GPUs. The default route's nvidia runtime is NVIDIA's real one
(tests/testbed.py ``write_nvidia_runtime``, cdi mode, its own spec of the same stand-ins).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from conftest import FIXTURES
from testbed import DEFAULT_GPUS, gpuprep_json, make_char_node, tiny_image, write_cdi_spec, write_fake_nvidia_smi

UUIDS = [g["uuid"] for g in DEFAULT_GPUS]
GENERATE_HINT = "nvidia-ctk cdi generate --output=/var/run/cdi/nvidia.yaml"
NODES = ("/dev/nvidiactl", "/dev/nvidia0", "/dev/nvidia1")


gpuprep = gpuprep_json


def step(report: dict, step_id: str) -> dict:
    return next(s for s in report["steps"] if s["id"] == step_id)


def check(report: dict, check_id: str) -> dict:
    return next(c for c in report["checks"] if c["id"] == check_id)


def routes(data: dict) -> dict[str, dict]:
    return {r["route"]: r for r in data["routes"]}


class CdiHost:
    """A --root tree, a private Engine 26 reading its daemon.json, NVIDIA's runtime as the default runtime,
    and a CDI spec folder of the test's own with a SIMULATED spec and stand-in device nodes."""

    def __init__(self, tmp_path: Path, dockerd_factory, fake_gpu, *, cdi: bool = True, engine_id: str = "26"):
        self.root = tmp_path / "root"
        (self.root / "etc/docker").mkdir(parents=True)
        shutil.copy(FIXTURES / "distros/amzn-2023/etc/os-release", self.root / "etc/os-release")
        write_fake_nvidia_smi(self.root / "usr/bin/nvidia-smi")  # the host's view of its GPUs (SIMULATED)
        self.work = Path(fake_gpu["dir"])
        self.spec_dir = self.work / "cdi"
        self.spec_dir.mkdir()
        self.nodes = {n: make_char_node(self.work / "dev" / n.rsplit("/", 1)[1]) for n in NODES}
        self.smi = write_fake_nvidia_smi(self.work / "cdi-bin/nvidia-smi", needs_nodes=NODES[:2])
        self.spec = write_cdi_spec(self.spec_dir / "nvidia.json", self.smi, self.nodes)
        config = {"runtimes": {"nvidia": {"path": str(fake_gpu["runtime"]), "runtimeArgs": []}},
                  "default-runtime": "nvidia", "cdi-spec-dirs": [str(self.spec_dir)]}
        if cdi:
            config["features"] = {"cdi": True}
        self.daemon_json = self.root / "etc/docker/daemon.json"
        self.dockerd = dockerd_factory(config_path=self.daemon_json, config=config, engine_id=engine_id)
        client = self.dockerd.client()
        tiny_image(client)
        client.close()

    def run(self, *args: str) -> tuple[int, dict, str]:
        return gpuprep(self.root, self.dockerd.url, *args)

    def gpu_check(self, *extra: str) -> tuple[int, dict, str]:
        return self.run("install", "--only", "gpu-check", "--image", "tiny:latest", *extra)

    def doctor(self) -> dict:
        code, report, err = self.run("doctor", "--image", "tiny:latest")
        return check(report, "gpu-container")


@pytest.fixture
def cdi_host(tmp_path, dockerd_factory, fake_gpu):
    return CdiHost(tmp_path, dockerd_factory, fake_gpu)


def test_both_routes_are_proven_and_each_sees_the_hosts_gpus(cdi_host):
    code, plan, err = cdi_host.gpu_check("--dry-run")
    assert code == 0, err
    planned = step(plan, "gpu-check")
    assert planned["status"] == "planned" and planned["data"]["routes"] == ["default-runtime", "cdi"], planned
    assert ["docker", "run", "--rm", "--network", "none", "--runtime", "runc", "--device", "nvidia.com/gpu=all",
            "tiny:latest"] == planned["commands"][1][:10]

    code, report, err = cdi_host.gpu_check()
    assert code == 0, err
    s = step(report, "gpu-check")
    assert s["status"] == "ok", s
    by_route = routes(s["data"])
    assert list(by_route) == ["default-runtime", "cdi"]
    assert all(r["ok"] and r["uuids"] == UUIDS and r["seconds"] > 0 for r in by_route.values()), by_route
    assert "without --runtime" in s["summary"] and "through CDI (nvidia.com/gpu=all, runtime runc" in s["summary"]
    # then the CUDA proof's line (issue 25): tiny:latest has no python3, so it is said not proven
    assert "(UUIDs match the host's); CUDA in the container not proven" in s["summary"]
    assert "CDISpecDirs" in s["data"]["cdi_why"]

    container = cdi_host.doctor()
    assert container["status"] == "ok", container
    assert [r["route"] for r in container["data"]["routes"] if r["ok"]] == ["default-runtime", "cdi"]


def test_a_missing_spec_fails_the_cdi_route_naming_it_and_the_generator(cdi_host):
    """Docker's CDI on, no spec defines nvidia.com/gpu=all: "unresolvable CDI devices" (Engine 26's words)."""
    cdi_host.spec.unlink()
    code, report, err = cdi_host.gpu_check()
    assert code == 1, err
    s = step(report, "gpu-check")
    assert s["status"] == "failed" and s["summary"].startswith("cdi-unresolvable: through CDI"), s
    assert f"no CDI spec in {cdi_host.spec_dir} defines nvidia.com/gpu=all" in s["summary"]
    assert "unresolvable CDI devices nvidia.com/gpu=all" in s["summary"]
    assert s["summary"].endswith("(route default-runtime passed)")
    # --root kept in the hint (issue 16): the command acts on the tree doctor looked at
    assert GENERATE_HINT in s["hint"] and f"gpuprep --root {cdi_host.root} install --only cdi-spec" in s["hint"]
    by_route = routes(s["data"])
    assert by_route["default-runtime"]["ok"] and by_route["default-runtime"]["uuids"] == UUIDS
    assert not by_route["cdi"]["ok"] and by_route["cdi"]["link"] == "cdi-unresolvable"
    assert s["data"]["link"] == "cdi-unresolvable"

    container = cdi_host.doctor()
    assert container["status"] == "critical" and container["summary"].startswith("cdi-unresolvable:"), container
    assert GENERATE_HINT in container["hint"]


def test_a_spec_naming_a_missing_device_node_fails_the_cdi_route(cdi_host):
    """The spec outlived its device node (a driver reload renumbered it, a GPU fell off the bus): dockerd cannot
    stat the host device and says so; gpuprep names the spec and the generator."""
    cdi_host.nodes["/dev/nvidia1"].unlink()
    code, report, err = cdi_host.gpu_check()
    assert code == 1, err
    s = step(report, "gpu-check")
    assert s["summary"].startswith("cdi-injection: through CDI"), s
    assert f'failed to stat CDI host device "{cdi_host.nodes["/dev/nvidia1"]}"' in s["summary"]
    assert GENERATE_HINT in s["hint"] and "toolkit-cdi-specs" in s["hint"]
    assert routes(s["data"])["default-runtime"]["ok"]


def test_a_spec_that_gives_no_device_nodes_is_seen_by_nvidia_smi(cdi_host):
    """A spec whose device entry lists no node: the container starts, but nvidia-smi cannot reach the driver
    (the stand-in exits 9 without /dev/nvidia0, as the real one does): the CDI route names the driver link."""
    spec = json.loads(cdi_host.spec.read_text())
    for device in spec["devices"]:
        device["containerEdits"] = {"env": [f"STAND_IN_DEVICE={device['name']}"]}  # a device needs some edit
    spec["containerEdits"]["deviceNodes"] = []
    cdi_host.spec.write_text(json.dumps(spec))
    code, report, err = cdi_host.gpu_check()
    assert code == 1, err
    s = step(report, "gpu-check")
    assert s["summary"].startswith("driver: through CDI"), s
    assert "exited 9" in s["summary"] and routes(s["data"])["cdi"]["exit_code"] == 9


def test_features_cdi_not_taken_up_says_restart_and_the_hint_clears_it(tmp_path, dockerd_factory, fake_gpu):
    """daemon.json turns CDI on after dockerd started (SIGHUP does not turn it on): the CDI route fails cdi-off
    with a hint; the hint, run, restarts dockerd, and then both routes pass."""
    host = CdiHost(tmp_path, dockerd_factory, fake_gpu, cdi=False)
    config = json.loads(host.daemon_json.read_text())
    host.daemon_json.write_text(json.dumps({**config, "features": {"cdi": True}}, indent=2))
    container = host.doctor()
    assert container["status"] == "critical" and container["summary"].startswith("cdi-off: through CDI"), container
    assert "Docker's CDI is off in the running Engine" in container["summary"]
    assert "dockerd has not restarted since" in container["data"]["cdi_why"]
    hint = container["hint"].split("`")[1]
    assert hint == f"gpuprep --root {host.root} install --only docker-reload"  # --root kept (issue 16)
    pid = host.dockerd.current_pid()
    code, done, err = host.run(*hint.split()[3:])  # gpuprep() adds --root and DOCKER_HOST itself
    assert code == 0 and step(done, "docker-reload")["data"]["done"] == "restart", err
    assert host.dockerd.current_pid() not in (None, pid)
    assert host.doctor()["status"] == "ok"


def test_docker_cdi_turns_it_on_and_gpu_check_proves_the_new_route_then_nothing_changes(tmp_path, dockerd_factory,
                                                                                     fake_gpu):
    host = CdiHost(tmp_path, dockerd_factory, fake_gpu, cdi=False)
    args = ("install", "--only", "docker-runtime,docker-reload,gpu-check", "--docker-cdi", "--image", "tiny:latest",
            "--runtime-path", str(fake_gpu["runtime"]))
    code, plan, err = host.run(*args, "--dry-run")
    assert code == 0, err
    assert step(plan, "gpu-check")["data"]["routes"] == ["default-runtime", "cdi"]
    assert step(plan, "gpu-check")["data"]["cdi_why"] == "--docker-cdi turns it on in this run"
    code, done, err = host.run(*args)
    assert code == 0, err
    assert step(done, "docker-reload")["data"]["done"] == "restart"
    assert [r["route"] for r in step(done, "gpu-check")["data"]["routes"] if r["ok"]] == ["default-runtime", "cdi"]
    pid = host.dockerd.current_pid()
    code, again, err = host.run(*args)
    assert code == 0 and again["status"] == "ok", (err, again)
    assert host.dockerd.current_pid() == pid


def test_a_script_forcing_the_cdi_route_where_the_engine_has_none(dockerd_factory, fake_gpu, tmp_path):
    """``probe(route="cdi")`` is what a script drives; on Engine 20.10 (no CDI) the Engine's own refusal comes
    back as cdi-off with the flag that turns CDI on (and the Engine it needs)."""
    from gpuprep.engine.gpu_container import CDI_OFF, CDI_ROUTE, probe
    from gpuprep.host import Host

    dockerd = dockerd_factory(engine_id="20.10")
    tiny_image(dockerd.client())
    host = Host("/", env={"DOCKER_HOST": dockerd.url})
    try:
        result = probe(host, "tiny:latest", route=CDI_ROUTE, host_view=None, pull=False)
    finally:
        host.close()
    assert not result.ok and result.link == CDI_OFF and result.route == "cdi", result
    assert 'could not select device driver "cdi"' in result.summary
    assert "gpuprep install --docker-cdi --only docker-runtime,docker-reload" in result.hint
