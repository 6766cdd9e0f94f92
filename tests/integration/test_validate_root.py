"""``dockerd --validate`` for a --root image, with this machine's dockerd when its major version is the image's.

Real: Engine 26.1.5's dockerd (Debian trixie's docker.io, unpacked by tests/provision.sh) and 20.10's
(Debian 12's), real rpm databases in the trees (fixture RPMs named ``docker`` at the versions an AL2023
image carries, built by rpmbuild; they install no files, so they stand in for the package's metadata only).
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from conftest import FIXTURES, REPO, require, require_engine26, require_root
from contract import json_output
from rpmfixtures import PkgSpec, build_rpm

GPUPREP = [str(REPO / ".venv" / "bin" / "gpuprep")]
RUNTIME = "/usr/bin/nvidia-container-runtime"


def image(tmp_path: Path, request, docker: str, daemon_json: str) -> Path:
    """An AL2023 tree whose rpm database holds ``docker-<docker>``, with the given daemon.json."""
    require("rpmbuild", "rpm")
    require_root()
    cache = Path(request.config.cache.mkdir("rpmfixtures"))
    rpm = build_rpm(PkgSpec("docker", docker, "1.amzn2023.0.1"), cache / "validate-rpms", cache=cache / "pkgs")
    root = tmp_path / "root"
    (root / "etc/docker").mkdir(parents=True)
    (root / "etc/os-release").write_bytes((FIXTURES / "distros/amzn-2023/etc/os-release").read_bytes())
    (root / "etc/docker/daemon.json").write_text(daemon_json)
    subprocess.run(["rpm", "--root", str(root), "--dbpath", "/var/lib/rpm", "-i", "--nodeps", "--justdb", str(rpm)],
                   check=True, capture_output=True, timeout=60)
    return root


def install(root: Path, sbin: Path, *, system_sbin: bool = True) -> subprocess.CompletedProcess:
    """``install --only docker-runtime`` with ``sbin`` first on PATH (without /usr/sbin, where Debian 12's
    dockerd is, unless ``system_sbin``)."""
    path = f"{sbin}:/usr/bin:/bin" + (":/usr/sbin:/sbin" if system_sbin else "")
    env = {**os.environ, "PATH": path, "NO_COLOR": "1"}
    env.pop("DOCKER_HOST", None)
    return subprocess.run([*GPUPREP, "--root", str(root), "--json", "install", "--only", "docker-runtime",
                           "--runtime-path", RUNTIME], capture_output=True, text=True, timeout=120, env=env)


def step(out: subprocess.CompletedProcess) -> dict:
    return next(s for s in json_output(out.stdout)["steps"] if s["id"] == "docker-runtime")


def test_a_value_dockerd_26_refuses_stops_the_edit(tmp_path, request):
    """Types alone pass (-3 is a number): only dockerd knows the value is invalid. Nothing written."""
    engine = require_engine26()
    root = image(tmp_path, request, "26.1.5", '{"max-concurrent-downloads": -3}\n')
    before = (root / "etc/docker/daemon.json").read_bytes()
    out = install(root, engine / "usr/sbin")
    assert out.returncode == 1, out.stderr
    assert "gpuprep: error: docker-runtime: dockerd rejects the new daemon.json: " in out.stderr
    assert "invalid max concurrent downloads: -3" in out.stderr and "/tmp/daemon." not in out.stderr
    assert (root / "etc/docker/daemon.json").read_bytes() == before
    assert sorted(p.name for p in (root / "etc/docker").iterdir()) == ["daemon.json"]


def test_same_major_validates_and_writes(tmp_path, request):
    engine = require_engine26()
    root = image(tmp_path, request, "26.1.5", '{"log-driver": "json-file"}\n')
    out = install(root, engine / "usr/sbin")
    assert out.returncode == 0, out.stderr
    assert f"validated by {engine}/usr/sbin/dockerd --validate" in step(out)["summary"]
    config = json.loads((root / "etc/docker/daemon.json").read_text())
    assert config["runtimes"]["nvidia"]["path"] == RUNTIME and config["log-driver"] == "json-file"


def test_another_major_is_not_asked_and_says_so(tmp_path, request):
    """Engine 26 on this machine, an image with 25.0.6 (the 2026 ECS AMI's pin): 26's --validate knows keys
    25 would refuse, so it is not asked, and the summary says why."""
    engine = require_engine26()
    root = image(tmp_path, request, "25.0.6", "{}\n")
    out = install(root, engine / "usr/sbin")
    assert out.returncode == 0, out.stderr
    assert (f"not validated: this machine's {engine}/usr/sbin/dockerd is 26.1.5, the image's Engine 25.0.6"
            in step(out)["summary"])


def test_a_same_major_engine_without_validate_says_so(tmp_path, request):
    """Debian 12's dockerd 20.10 and an image with docker 20.10.25: same major, but 20.10 has no --validate."""
    require("dockerd")
    root = image(tmp_path, request, "20.10.25", "{}\n")
    out = install(root, Path("/usr/sbin"))
    assert out.returncode == 0, out.stderr
    assert "not validated: /usr/sbin/dockerd has no --validate (Engine 23+ has it)" in step(out)["summary"]


@pytest.mark.parametrize("what", ["no docker package", "no dockerd here"])
def test_nothing_to_match_says_so(tmp_path, request, what):
    engine = require_engine26()
    root = image(tmp_path, request, "26.1.5", "{}\n")
    sbin = engine / "usr/sbin"
    if what == "no docker package":
        subprocess.run(["rpm", "--root", str(root), "--dbpath", "/var/lib/rpm", "-e", "--justdb", "--nodeps",
                        "docker"], check=True, capture_output=True, timeout=60)
        expected = "not validated: the image has no docker package installed"
    else:
        sbin = tmp_path / "empty-bin"
        sbin.mkdir()
        expected = "not validated: this machine has no dockerd (the image's Engine is 26.1.5)"
    out = install(root, sbin, system_sbin=what != "no dockerd here")
    assert out.returncode == 0, out.stderr
    assert expected in step(out)["summary"]
