"""Host's docker-py client against a private real dockerd (docs/testbed.md 1): the API version it speaks.

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
    assert reported == {20: "1.41", 26: "1.45"}[docker_engine.major]
    assert ping_engine(d.url, timeout=10)["API-Version"] == reported
    client = Host("/", env={"DOCKER_HOST": d.url}).docker()
    assert client.api.api_version == reported
    assert client.info()["ServerVersion"]


def test_pinging_a_socket_nobody_serves_raises_what_docker_py_raises(tmp_path):
    import requests

    with pytest.raises(requests.exceptions.ConnectionError):
        ping_engine(f"unix://{tmp_path}/none.sock", timeout=2)
