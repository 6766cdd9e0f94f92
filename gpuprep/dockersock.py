"""The Engine half of Host: one HTTP request to the Docker Engine's API, with the standard library's socket alone.

doctor reads the Engine (``/_ping``, ``/info``, ``/version``) and starts its CUDA container early this way
(``engine/cuda_container.py``, ``start_early``); docker-py, which gpuprep keeps for running containers, costs more
to import than the rest of doctor together (requests and urllib3: 0.61 s of a 1.07 s doctor on the accelerator
machine, issue 14; bench/RESULTS.md). A request on the Engine's socket needs none of it.
Only ``gpuprep.host`` imports this module: Host stays the one door to the Engine.

What it speaks: HTTP/1.1, ``Connection: close``, over ``unix://PATH`` or plain ``tcp://HOST:PORT``; a body sized by
Content-Length, chunked (Go's net/http chunks a large ``/info`` when the handler streams it), or ended by the
server's close. Unversioned paths: every Engine serves them at its own newest API version (moby's router
registers each route with and without ``/v{version}``), so no version has to be learnt first.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

MAX_BODY = 16 * 1024 * 1024  # /info of an Engine with thousands of images is tens of KB; more is no Engine


class EngineHTTPError(OSError):
    """The Engine answered with an error status, or not in HTTP. An OSError, as a refused or missing socket
    is, so one ``except OSError`` covers every way an Engine fails to answer."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class Headers(Mapping[str, str]):
    """Header names compare without case, as HTTP says and as requests' headers do: Go's net/http sends
    ``Api-Version`` for the ``API-Version`` dockerd sets."""

    def __init__(self, pairs: Mapping[str, str] | None = None) -> None:
        self._items = {k.lower(): (k, v) for k, v in (pairs or {}).items()}

    def __getitem__(self, name: str) -> str:
        return self._items[name.lower()][1]

    def __iter__(self) -> Iterator[str]:
        return (k for k, _ in self._items.values())

    def __len__(self) -> int:
        return len(self._items)


@dataclass(frozen=True)
class Answer:
    status: int
    reason: str
    headers: Headers
    body: bytes

    def header(self, name: str) -> str | None:
        return self.headers.get(name)

    def json(self) -> dict[str, Any]:
        """The body as a JSON object; EngineHTTPError naming the status and the Engine's own message when it is
        no 200, or naming what came instead of an object."""
        if self.status != 200:
            raise EngineHTTPError(f"{self.status} {self.reason}: {_message(self.body)}", self.status)
        try:
            body = json.loads(self.body)
        except ValueError as exc:
            raise EngineHTTPError(f"the answer is not JSON ({exc})", self.status) from None
        if not isinstance(body, dict):
            raise EngineHTTPError(f"the answer is JSON but not an object ({type(body).__name__})", self.status)
        return body


def speaks(url: str) -> bool:
    """Whether ``get`` can reach ``url``: a unix socket, or TCP without TLS (DOCKER_TLS_VERIFY's client
    certificates and ssh:// are docker-py's to handle)."""
    return url.startswith(("unix://", "tcp://", "http://"))


def get(url: str, path: str, timeout: float) -> Answer:
    """``GET path`` from the Engine at ``url``, the whole exchange bounded by ``timeout`` seconds.

    OSError when the Engine cannot be reached or does not answer in time (FileNotFoundError: no socket;
    ConnectionRefusedError: nobody listens; PermissionError: not root nor in group docker; TimeoutError);
    EngineHTTPError when what comes back is not HTTP. An error status is an Answer: ``Answer.json`` raises it.
    """
    return call(url, "GET", path, timeout)


def call(url: str, method: str, path: str, timeout: float, data: Mapping[str, Any] | None = None) -> Answer:
    """``METHOD path`` with ``data`` as its JSON body (none when None), bounded and answered as ``get``'s."""
    deadline = time.monotonic() + timeout
    body = b"" if data is None else json.dumps(data).encode()
    sized = f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n" if data is not None or \
        method != "GET" else ""
    with _connect(url, timeout) as conn:
        conn.sendall(f"{method} {path} HTTP/1.1\r\nHost: docker\r\nUser-Agent: gpuprep\r\n"
                     f"Accept: application/json\r\n{sized}Connection: close\r\n\r\n".encode("ascii") + body)
        reader = _Reader(conn, deadline)
        first = reader.until(b"\r\n")
        if not first.startswith(b"HTTP/"):  # say so at once: another protocol may never send a blank line
            raise EngineHTTPError(f"not an HTTP answer: {first[:80].decode('latin-1')!r}")
        fields = b"" if reader.until_at_start(b"\r\n") else reader.until(b"\r\n\r\n")
        status, reason, headers = _parse_head(first, fields)
        if "chunked" in headers.get("Transfer-Encoding", "").lower():
            body = reader.chunked()
        elif "Content-Length" in headers:
            try:
                length = int(headers["Content-Length"])
            except ValueError:
                raise EngineHTTPError(f"bad Content-Length {headers['Content-Length']!r}") from None
            body = reader.exactly(length)
        else:
            body = reader.to_end()
    return Answer(status, reason, headers, body)


def _connect(url: str, timeout: float) -> socket.socket:
    if url.startswith("unix://"):
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        conn.settimeout(timeout)
        try:
            conn.connect(url[len("unix://"):])
        except BaseException:
            conn.close()
            raise
        return conn
    hostport = url.split("://", 1)[1].split("/", 1)[0]
    host, _, port = hostport.rpartition(":")
    return socket.create_connection((host.strip("[]") or "localhost", int(port or 2375)), timeout=timeout)


class _Reader:
    """Reads from the socket as the parse needs, bounded by the deadline and by MAX_BODY."""

    def __init__(self, conn: socket.socket, deadline: float) -> None:
        self.conn, self.deadline, self.buf, self.eof = conn, deadline, b"", False

    def _more(self) -> None:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("timed out")
        self.conn.settimeout(left)
        chunk = self.conn.recv(65536)
        if not chunk:
            self.eof = True
        self.buf += chunk
        if len(self.buf) > MAX_BODY:
            raise EngineHTTPError(f"the answer is larger than {MAX_BODY} bytes")

    def until(self, marker: bytes) -> bytes:
        while marker not in self.buf:
            if self.eof:
                raise EngineHTTPError("the connection closed before the answer's header ended"
                                      + (f" (it began {self.buf[:40]!r})" if self.buf else " (nothing came)"))
            self._more()
        out, _, self.buf = self.buf.partition(marker)
        return out

    def until_at_start(self, marker: bytes) -> bool:
        """Consume ``marker`` if the data starts with it (an answer with no header fields)."""
        while len(self.buf) < len(marker) and not self.eof:
            self._more()
        if self.buf.startswith(marker):
            self.buf = self.buf[len(marker):]
            return True
        return False

    def exactly(self, n: int) -> bytes:
        while len(self.buf) < n:
            if self.eof:
                raise EngineHTTPError(f"the connection closed after {len(self.buf)} of {n} bytes")
            self._more()
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def to_end(self) -> bytes:
        while not self.eof:
            self._more()
        out, self.buf = self.buf, b""
        return out

    def chunked(self) -> bytes:
        parts: list[bytes] = []
        while True:
            size_line = self.until(b"\r\n").split(b";", 1)[0].strip()
            try:
                size = int(size_line, 16)
            except ValueError:
                raise EngineHTTPError(f"bad chunk size {size_line[:20]!r}") from None
            if size == 0:
                return b"".join(parts)  # trailers, if any, are not read: the connection closes
            parts.append(self.exactly(size))
            self.exactly(2)  # the CRLF after each chunk


def _parse_head(status_line: bytes, fields: bytes) -> tuple[int, str, Headers]:
    first = status_line.decode("latin-1").split(" ", 2)
    if len(first) < 2 or not first[1].isdigit():
        raise EngineHTTPError(f"not an HTTP answer: {status_line[:80].decode('latin-1')!r}")
    headers = {}
    for line in fields.decode("latin-1").split("\r\n"):
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip()] = value.strip()
    return int(first[1]), first[2] if len(first) > 2 else "", Headers(headers)


def _message(body: bytes) -> str:
    """The Engine's error message ({"message": ...}), or the start of whatever came."""
    try:
        doc = json.loads(body)
        if isinstance(doc, dict) and doc.get("message"):
            return str(doc["message"])[:300]
    except ValueError:
        pass
    return body.decode(errors="replace").strip()[:200] or "(no body)"
