"""doctor's ``docker info`` (gpuprep.checks.docker.engine_info, docker-py underneath) against stand-in servers.

Real: unix sockets, docker-py, the checks. Simulated: the Engine's side, a few lines of HTTP on a socket in a
temp dir (a real dockerd answers in tests/integration/test_docker_checks.py and test_doctor_live.py); here the
failures a real one rarely shows on demand: refusing, hanging, answering 500 or not JSON.
"""

from __future__ import annotations

import json
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gpuprep.checks.docker import engine_info
from gpuprep.engine.dockerd import EngineDown
from gpuprep.host import Host

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def sock_dir() -> Iterator[Path]:
    # Unix socket paths are limited to 108 bytes: pytest's tmp paths can be longer.
    with tempfile.TemporaryDirectory(prefix="gpck-", dir="/tmp") as d:
        yield Path(d)


def serve(path: Path, reply: bytes | None) -> threading.Thread:
    """Answer ``GET /version`` as an Engine 20.10 would (docker-py asks it first, version="auto") and every
    other request with ``reply`` (None: say nothing, hold the line 2 s). Keep-alive, as dockerd does."""
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(4)
    version = http("200 OK", json.dumps({"ApiVersion": "1.41", "MinAPIVersion": "1.12"}).encode())

    def handle(conn: socket.socket) -> None:
        with conn:
            buf = b""
            while True:
                while b"\r\n\r\n" not in buf:
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    buf += chunk
                head, _, buf = buf.partition(b"\r\n\r\n")
                target = head.split(b" ")[1] if b" " in head else b""
                if target.endswith(b"/version"):
                    conn.sendall(version)
                elif reply is None:
                    time.sleep(2)
                    return
                else:
                    conn.sendall(reply)

    def run() -> None:
        server.settimeout(5)
        try:
            while True:
                conn, _ = server.accept()
                threading.Thread(target=handle, args=(conn,), daemon=True).start()
        except OSError:
            pass
        finally:
            server.close()

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def http(status: str, body: bytes, ctype: str = "application/json") -> bytes:
    return (f"HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {len(body)}\r\n"
            "\r\n").encode() + body


def host_for(path: Path) -> Host:
    return Host("/", env={"DOCKER_HOST": f"unix://{path}"})


def test_answers_with_the_info_document(sock_dir):
    doc = {"ServerVersion": "25.0.6", "DefaultRuntime": "nvidia", "Runtimes": {"nvidia": {"path": "x"}}}
    serve(sock_dir / "d.sock", http("200 OK", json.dumps(doc).encode()))
    assert engine_info(host_for(sock_dir / "d.sock")) == doc


def test_refused_socket_is_engine_down_with_the_fix(sock_dir):
    path = sock_dir / "dead.sock"
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(str(path))  # a socket file nobody listens on: what a crashed dockerd leaves
    try:
        with pytest.raises(EngineDown) as info:
            engine_info(host_for(path))
    finally:
        s.close()
    assert info.value.message.startswith(f"the Docker Engine at unix://{path} does not answer: ")
    assert "Connection refused" in info.value.message
    assert f"unix://{path}" in info.value.hint and "`unset DOCKER_HOST`" in info.value.hint


def test_missing_socket_says_so_at_once(sock_dir):
    with pytest.raises(EngineDown) as info:
        engine_info(host_for(sock_dir / "none.sock"))
    assert "no socket there (dockerd is not running)" in info.value.message
    assert "`unset DOCKER_HOST`" in info.value.hint


def test_a_hanging_engine_is_bounded_by_the_timeout(sock_dir):
    serve(sock_dir / "hang.sock", None)
    started = time.monotonic()
    with pytest.raises(EngineDown) as info:
        engine_info(host_for(sock_dir / "hang.sock"), timeout=0.2)
    assert time.monotonic() - started < 1.5
    assert "does not answer" in info.value.message and "timed out" in info.value.message


@pytest.mark.parametrize("reply, said", [
    (http("500 Internal Server Error", b'{"message": "layer store is corrupt"}'), "layer store is corrupt"),
    (http("200 OK", b"<html>a proxy</html>", "text/html"), "Expecting value"),
])
def test_an_error_or_non_json_answer_is_engine_down(sock_dir, reply, said):
    serve(sock_dir / "e.sock", reply)
    with pytest.raises(EngineDown) as info:
        engine_info(host_for(sock_dir / "e.sock"))
    assert "does not answer" in info.value.message and said in info.value.message
