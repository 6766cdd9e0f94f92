"""doctor's early CUDA container (engine/cuda_container.py ``start_early``) never waits in doctor's own thread.

Real: a unix socket on this machine standing where the Engine's is (``DOCKER_HOST``), which accepts each connection
and answers nothing until the test lets it go: an Engine that hangs. What is observed is the order of events: the
call returns while the socket still holds a request it has not answered (a call that waited on the Engine would
return only once its own timeout closed the connection, which the socket sees first).
"""

from __future__ import annotations

import socket
import threading
from pathlib import Path

import pytest

from gpuprep.engine import cuda_container
from gpuprep.host import Host


class SilentEngine:
    """A unix socket that accepts and never answers; ``held`` is set once a request has come, ``closed_by_client``
    once a client gave up on one (its timeout) before ``release``."""

    def __init__(self, path: Path) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(str(path))
        self.sock.listen(8)
        self.held = threading.Event()
        self.released = threading.Event()
        self.closed_by_client = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while not self.released.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._hold, args=(conn,), daemon=True).start()

    def _hold(self, conn: socket.socket) -> None:
        with conn:
            if conn.recv(65536):
                self.held.set()
            conn.settimeout(0.05)
            while not self.released.is_set():
                try:
                    if conn.recv(65536) == b"":  # the client closed its end: it stopped waiting
                        self.closed_by_client.set()
                        return
                except socket.timeout:
                    continue

    def release(self) -> None:
        self.released.set()
        self.sock.close()


@pytest.fixture
def silent(tmp_path):
    engine = SilentEngine(tmp_path / "docker.sock")
    host = Host(tmp_path / "root", env={"DOCKER_HOST": f"unix://{tmp_path / 'docker.sock'}"})
    yield engine, host
    engine.release()
    host.close()


def test_start_early_returns_while_the_engine_holds_its_request(silent):
    engine, host = silent
    early = cuda_container.start_early(host, "python:3.12")
    assert early is not None
    assert engine.held.wait(30)  # the thread asked the Engine
    assert not engine.closed_by_client.is_set()  # and doctor's thread is already past it
    early.discard()  # the Engine never answered the create: nothing to wait for, nothing to remove
    assert not engine.closed_by_client.is_set()
    assert host not in [e.host for e in cuda_container._early.values()]


def test_no_engine_to_reach_starts_nothing(tmp_path):
    host = Host(tmp_path / "root")  # --root without DOCKER_HOST: no Engine
    assert cuda_container.start_early(host, None) is None
