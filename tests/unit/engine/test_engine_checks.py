"""doctor's ``docker info`` (gpuprep.engine.checks.engine_info, docker-py underneath) against stand-in servers.

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
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from gpuprep.engine.dockerd import EngineDown, known_removal_deadlock, wait_ready
from gpuprep.engine.probes import engine_info
from gpuprep.host import Host


@pytest.fixture
def sock_dir() -> Iterator[Path]:
    # Unix socket paths are limited to 108 bytes: pytest's tmp paths can be longer.
    with tempfile.TemporaryDirectory(prefix="gpck-", dir="/tmp") as d:
        yield Path(d)


def serve(path: Path, reply: bytes | None) -> threading.Thread:
    """Answer ``GET /_ping`` and ``GET /version`` as an Engine 20.10 would (gpuprep pings first, for the API
    version) and every other request with ``reply`` (None: say nothing, hold the line 2 s)."""
    version = http("200 OK", json.dumps({"ApiVersion": "1.41", "MinAPIVersion": "1.12"}).encode())
    ping = http("200 OK", b"OK", "text/plain; charset=utf-8", {"API-Version": "1.41"})
    return serve_with(path, lambda target: version if target.endswith(b"/version") else
                      ping if target == b"/_ping" else reply)


def serve_with(path: Path, answer: Callable[[bytes], bytes | None]) -> threading.Thread:
    """A stand-in Engine on a unix socket: each request's answer is ``answer(target)`` (None: say nothing,
    hold the line 2 s). Keep-alive, as dockerd does."""
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(4)

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
                reply = answer(head.split(b" ")[1] if b" " in head else b"")
                if reply is None:
                    time.sleep(2)
                    return
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


def http(status: str, body: bytes, ctype: str = "application/json", headers: dict[str, str] | None = None) -> bytes:
    extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
    return (f"HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {len(body)}\r\n{extra}"
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


def docker_29(path: Path, info: dict, seen: list[bytes]) -> None:
    """An Engine as Docker 29 answers (simulated: the testbed's Engine is 20.10): API 1.52, minimum 1.44. Its
    version middleware refuses any path versioned below 1.44 with 400, `/_ping` included; an unversioned path
    is served at 1.52."""
    def answer(target: bytes) -> bytes:
        seen.append(target)
        path_, _, _ = target.partition(b"?")
        version, route = b"1.52", path_
        if path_.startswith(b"/v") and b"/" in path_[1:]:
            version, route = path_[2:].split(b"/", 1)[0], b"/" + path_[2:].split(b"/", 1)[1]
        if tuple(map(int, version.split(b"."))) < (1, 44):
            message = (f"client version {version.decode()} is too old. Minimum supported API version is 1.44, "
                       "please upgrade your client to a newer version")
            return http("400 Bad Request", json.dumps({"message": message}).encode())
        if route == b"/_ping":
            return http("200 OK", b"OK", "text/plain; charset=utf-8",
                        {"API-Version": "1.52", "Server": "Docker/29.0.1 (linux)"})
        if route == b"/info":
            return http("200 OK", json.dumps(info).encode())
        if route == b"/version":
            return http("200 OK", json.dumps({"ApiVersion": "1.52", "MinAPIVersion": "1.44"}).encode())
        return http("404 Not Found", b'{"message": "page not found"}')

    serve_with(path, answer)


def test_a_docker_29_engine_is_asked_in_the_api_version_its_ping_names(sock_dir):
    doc = {"ServerVersion": "29.0.1", "DefaultRuntime": "nvidia", "Runtimes": {"nvidia": {"path": "x"}}}
    seen: list[bytes] = []
    docker_29(sock_dir / "d29.sock", doc, seen)
    host = host_for(sock_dir / "d29.sock")
    assert engine_info(host) == doc
    # doctor's `docker info` is one unversioned GET, served at the Engine's own version: no ping, no docker-py.
    assert seen == [b"/info"]
    # The docker-py client (for running containers) learns the version from one unversioned ping: no GET
    # /version (which makes dockerd run `runc --version`).
    assert host.docker().api.api_version == "1.52"
    assert seen == [b"/info", b"/_ping"]


def test_waiting_for_a_restarted_docker_29_engine_sees_it_answer(sock_dir):
    # The wait after `systemctl restart docker` pinged /v1.24/_ping, which Docker 29 answers with 400: the
    # wait ran to its timeout on an Engine that was up.
    seen: list[bytes] = []
    docker_29(sock_dir / "d29.sock", {}, seen)
    started = time.monotonic()
    wait_ready(f"unix://{sock_dir / 'd29.sock'}", timeout=3)
    assert time.monotonic() - started < 1
    assert seen == [b"/_ping"]


@pytest.mark.parametrize("server, names_it", [
    ("Docker/20.10.24+dfsg1 (linux)", True),   # Debian 12's docker.io
    ("Docker/20.10.25 (linux)", True),
    ("Docker/20.10.27 (linux)", False),        # the fix (moby/moby#46693)
    ("Docker/25.0.8 (linux)", False),
    ("Docker/29.0.1 (linux)", False),
    (None, False),                             # never pinged, or no header
])
def test_a_hung_removal_names_the_engines_known_deadlock_only_where_it_has_it(server, names_it):
    said = known_removal_deadlock(server)
    assert (said is not None) == names_it
    if names_it:
        assert "moby/moby#46661" in said and "update Docker" in said and server.split("/")[1][:8] in said


def test_the_client_keeps_the_engines_server_header_from_its_ping(sock_dir):
    seen: list[bytes] = []
    docker_29(sock_dir / "d29.sock", {}, seen)
    host = host_for(sock_dir / "d29.sock")
    host.docker()
    assert host.engine_server == "Docker/29.0.1 (linux)"


# -- Host's GET on the socket (gpuprep/dockersock.py): the shapes of answer an Engine sends ---------------------
def chunked(status: str, body: bytes, headers: dict[str, str] | None = None) -> bytes:
    """As Go's net/http sends a body it did not size first: in chunks (a large /info)."""
    extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
    pieces = [body[i:i + 7] for i in range(0, len(body), 7)]
    return (f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n{extra}\r\n"
            .encode() + b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces) + b"0\r\n\r\n")


def test_a_chunked_info_is_read_whole_and_the_server_header_kept(sock_dir):
    doc = {"ServerVersion": "26.1.5", "CDISpecDirs": ["/etc/cdi", "/var/run/cdi"], "Runtimes": {"runc": {}}}
    serve_with(sock_dir / "c.sock", lambda target: chunked("200 OK", json.dumps(doc).encode(),
                                                           {"Server": "Docker/26.1.5 (linux)"}))
    host = host_for(sock_dir / "c.sock")
    assert engine_info(host) == doc
    assert host.engine_server == "Docker/26.1.5 (linux)"


def test_header_names_compare_without_case(sock_dir):
    # Go canonicalises the API-Version dockerd sets into Api-Version; docker-py's headers ignored case too.
    from gpuprep.host import ping_engine

    serve_with(sock_dir / "p.sock", lambda target: http("200 OK", b"OK", "text/plain", {"Api-Version": "1.45"}))
    headers = ping_engine(f"unix://{sock_dir / 'p.sock'}", timeout=2)
    assert headers["API-Version"] == headers.get("api-version") == "1.45"


def serve_once(path: Path, reply: bytes) -> None:
    """Answer one request with ``reply`` and close the connection: the end of the bytes is the end of the answer."""
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(1)

    def once() -> None:
        conn, _ = server.accept()
        with conn:
            conn.recv(65536)
            conn.sendall(reply)
        server.close()

    threading.Thread(target=once, daemon=True).start()


def test_an_answer_ended_by_the_close_is_read_to_the_end(sock_dir):
    # HTTP/1.0 style: no Content-Length, no chunks; the body ends where the server closes the connection.
    doc = {"ServerVersion": "20.10.24"}
    serve_once(sock_dir / "o.sock", b"HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n"
               + json.dumps(doc).encode())
    assert engine_info(host_for(sock_dir / "o.sock")) == doc


@pytest.mark.parametrize("reply, said", [
    (b"SSH-2.0-OpenSSH_9.2\r\n", "not an HTTP answer"),  # DOCKER_HOST pointing at the wrong port
    (b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{\"Server", "closed after"),
    (b"HTTP/1.1 200 OK\r\nContent-Le", "closed before the answer's header ended"),
])
def test_a_broken_answer_is_engine_down_saying_what_broke(sock_dir, reply, said):
    serve_once(sock_dir / "b.sock", reply)
    with pytest.raises(EngineDown) as info:
        engine_info(host_for(sock_dir / "b.sock"), timeout=2)
    assert said in info.value.message
