"""A STAND-IN for the EC2 instance metadata service (IMDS): these machines are no EC2 instances.

It answers what gpuprep asks, the way IMDSv2 does (docs.aws.amazon.com/AWSEC2/latest/UserGuide/
instancedata-data-retrieval.html): ``PUT /latest/api/token`` with ``X-aws-ec2-metadata-token-ttl-seconds``
returns a token; ``GET /latest/meta-data/instance-type`` needs that token in ``X-aws-ec2-metadata-token`` (401
without it, as with ``HttpTokens=required``). A real HTTP server on 127.0.0.1, so gpuprep's client meets real
sockets, timeouts and headers.

Modes: ``v2`` (the default), ``v1`` (the token PUT refused with 403, the GET answered without a token, as when
IMDSv2 is not offered), ``hang`` (accepts and never answers: the bound must hold).

Two uses: ``serve(...)`` in a test's process (a thread, stopped with ``.close()``), and
``python3 imds_standin.py PORT TYPE [MODE]`` inside a booted host (tests/system), python3's standard library only:
it binds the port, then forks and the parent exits, so a ``Type=forking`` unit is started only once it listens.
"""

from __future__ import annotations

import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

TOKEN = "AQAEAStandInTokenForGpuprepTests=="


def make_handler(instance_type: str, mode: str = "v2", seen: list | None = None, extra: dict | None = None,
                 paths: dict | None = None):
    """``extra``: more ``/latest/<path>`` answers keyed by ``<path>`` (meta-data/instance-id,
    meta-data/placement/region, meta-data/iam/security-credentials/ and .../<role>, the credentials' JSON as IMDS
    gives it); ``paths``: the same keyed by the whole path (``/latest/meta-data/events/maintenance/scheduled``)."""
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):  # quiet: the test's output is gpuprep's
            pass

        def _answer(self, status: int, body: str = "") -> None:
            data = body.encode()
            self.send_response(status)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_PUT(self):
            if seen is not None:
                seen.append(("PUT", self.path, dict(self.headers)))
            if mode == "hang":
                time.sleep(30)
                return
            if self.path != "/latest/api/token":
                return self._answer(404)
            if mode == "v1":
                return self._answer(403)
            if not self.headers.get("X-aws-ec2-metadata-token-ttl-seconds"):
                return self._answer(400)
            return self._answer(200, TOKEN)

        def do_GET(self):
            if seen is not None:
                seen.append(("GET", self.path, dict(self.headers)))
            if mode == "hang":
                time.sleep(30)
                return
            if mode == "v2" and self.headers.get("X-aws-ec2-metadata-token") != TOKEN:
                return self._answer(401)
            if self.path == "/latest/meta-data/instance-type":
                return self._answer(200, instance_type)
            if extra and self.path.removeprefix("/latest/") in extra:
                return self._answer(200, extra[self.path.removeprefix("/latest/")])
            if paths and self.path in paths:
                return self._answer(200, paths[self.path])
            return self._answer(404)

    return Handler


class StandIn:
    def __init__(self, instance_type: str, mode: str = "v2", extra: dict | None = None,
                 paths: dict | None = None) -> None:
        self.seen: list = []
        self.server = ThreadingHTTPServer(("127.0.0.1", 0),
                                          make_handler(instance_type, mode, self.seen, extra, paths))
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), name="imds-standin",
                                        daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def serve(instance_type: str, mode: str = "v2", extra: dict | None = None, paths: dict | None = None) -> StandIn:
    """``paths``: other metadata paths and their bodies (``/latest/meta-data/events/maintenance/scheduled``: the
    JSON list EC2 serves there, docs.aws.amazon.com/AWSEC2/latest/UserGuide/viewing_scheduled_events.html)."""
    return StandIn(instance_type, mode, extra, paths)


if __name__ == "__main__":
    port, itype = int(sys.argv[1]), sys.argv[2]
    server = ThreadingHTTPServer(("127.0.0.1", port), make_handler(itype, sys.argv[3] if len(sys.argv) > 3 else "v2"))
    server.daemon_threads = True
    import os

    if os.fork():
        os._exit(0)  # listening already: systemd may start what waits for it
    server.serve_forever()
