"""Host's ways to the Engine against a private real dockerd (docs/testbed.md 1): the docker-py client's API
version, and the GET on the socket (gpuprep/dockersock.py) that doctor's read-only checks use instead.

Real: dockerd 20.10 (API 1.41) and 26.1.5 (API 1.45, docker-py 7's own default), docker-py. A Docker 29 Engine,
which refuses API versions below 1.44, is simulated in tests/unit/engine/test_engine_checks.py (the testbed has no
such Engine).
"""

from __future__ import annotations

import pytest

from gpuprep.host import Host, ping_engine


def test_the_client_speaks_the_api_version_the_engine_reports(dockerd_factory, docker_engine):
    d = dockerd_factory()
    reported = d.client().version()["ApiVersion"]  # what docker-py's version="auto" asks for and uses
    assert reported == {20: "1.41", 26: "1.45", 28: "1.51"}[docker_engine.major]
    assert ping_engine(d.url, timeout=10)["API-Version"] == reported
    client = Host("/", env={"DOCKER_HOST": d.url}).docker()
    assert client.api.api_version == reported
    assert client.info()["ServerVersion"]


def test_pinging_a_socket_nobody_serves_raises_an_os_error(tmp_path):
    with pytest.raises(FileNotFoundError):
        ping_engine(f"unix://{tmp_path}/none.sock", timeout=2)


def test_the_socket_get_reads_what_docker_py_reads(dockerd_factory):
    """/info and /version through the socket alone equal docker-py's, field for field (a 20.10 Engine's /info
    is a few KB: the body handling of a real Go server, not a stand-in's)."""
    d = dockerd_factory()
    host = Host("/", env={"DOCKER_HOST": d.url})
    client = d.client()
    ours, theirs = host.engine_info(timeout=10), client.info()
    volatile = {"SystemTime", "NGoroutines", "NFd", "NEventsListener", "MemTotal", "Containers", "ContainersRunning",
                "ContainersStopped", "ContainersPaused"}
    steady = {k: v for k, v in ours.items() if k not in volatile}
    assert steady == {k: v for k, v in theirs.items() if k not in volatile}
    assert host.engine_get("/version", timeout=10).json()["ApiVersion"] == client.version()["ApiVersion"]
    assert host.engine_server and host.engine_server.startswith("Docker/")
