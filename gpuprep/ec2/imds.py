"""The instance's type from the EC2 instance metadata service (IMDS), asked within one short bound.

IMDSv2 first, as the AWS SDKs do (docs.aws.amazon.com/sdkref/latest/guide/feature-imds-credentials.html): ``PUT
/latest/api/token`` with ``X-aws-ec2-metadata-token-ttl-seconds``, then ``GET /latest/meta-data/instance-type`` with
``X-aws-ec2-metadata-token``; IMDSv1 (the GET without a token) only where the PUT is refused with 403, 404 or
405. The SDKs' own settings are honoured: ``AWS_EC2_METADATA_SERVICE_ENDPOINT`` names another endpoint (a proxy;
the tests serve one on 127.0.0.1), ``AWS_EC2_METADATA_DISABLED=true`` turns the service off.

A machine that is not an EC2 instance is not asked at all unless the endpoint is named: its DMI data (the
target's ``/sys``) says so without a packet sent, so doctor and the boot gate lose no time there. Every answer
comes within ``BUDGET_S`` in all, or the question is given up with the reason.
"""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from gpuprep.host import Host

if TYPE_CHECKING:
    import http.client

DEFAULT_ENDPOINT = "http://169.254.169.254"
ENDPOINT_ENV = "AWS_EC2_METADATA_SERVICE_ENDPOINT"
DISABLED_ENV = "AWS_EC2_METADATA_DISABLED"
BUDGET_S = 1.0  # IMDS answers in milliseconds on an instance; a second is "not there"
TOKEN_TTL_S = 60  # the token serves one question
V1_FALLBACK = (403, 404, 405)
# What EC2 writes in DMI: "Amazon EC2" as the system vendor on Nitro; Xen-based types (p2, p3, g3) have a BIOS
# version ending ".amazon" and a hypervisor UUID starting "ec2".
DMI_FILES = ("/sys/class/dmi/id/sys_vendor", "/sys/class/dmi/id/bios_vendor", "/sys/class/dmi/id/bios_version",
             "/sys/hypervisor/uuid")


@dataclass
class InstanceType:
    value: str | None = None  # "p5.48xlarge"
    endpoint: str = ""
    via: str = ""  # "IMDSv2" | "IMDSv1"
    skipped: str = ""  # why nothing was asked, or why no answer counts
    duration_ms: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v not in ("", None)}


def on_ec2(host: Host) -> bool:
    """The target's DMI data names EC2 (inside --root only where its /sys is bound in)."""
    for path in DMI_FILES:
        try:
            text = (host.read_text(path) or "").strip().lower()
        except OSError:
            continue
        if text.startswith("amazon ec2") or text.endswith(".amazon") or text == "amazon" or text.startswith("ec2"):
            return True
    return False


def endpoint_for(host: Host) -> tuple[str | None, bool]:
    """(endpoint, named): the endpoint to ask, and whether the environment named it; (None, _) when turned off."""
    if host.env.get(DISABLED_ENV, "").strip().lower() == "true":
        return None, True
    named = host.env.get(ENDPOINT_ENV, "").strip()
    return (named.rstrip("/"), True) if named else (DEFAULT_ENDPOINT, False)


def read_instance_type(host: Host, budget_s: float = BUDGET_S) -> InstanceType:
    endpoint, named = endpoint_for(host)
    if endpoint is None:
        return InstanceType(skipped=f"instance metadata turned off ({DISABLED_ENV}=true)")
    if not named and not on_ec2(host):
        return InstanceType(skipped="not an EC2 instance (its DMI data names no Amazon EC2): no instance type to "
                            f"compare with (set {ENDPOINT_ENV} to ask a metadata service anyway)")
    import http.client  # only where there is a metadata service to ask: doctor off EC2 spares its import (issue 14)

    started = time.monotonic()
    try:
        value, via = _ask(endpoint, started + budget_s)
    except (OSError, http.client.HTTPException, ValueError) as exc:
        took = time.monotonic() - started
        timed_out = isinstance(exc, socket.timeout)
        reason = f"no answer within {budget_s:g}s" if timed_out else str(exc) or type(exc).__name__
        return InstanceType(endpoint=endpoint, duration_ms=took * 1000,
                            skipped=f"the instance metadata service at {endpoint} did not tell the instance type "
                            f"({reason}); on EC2: `aws ec2 modify-instance-metadata-options --instance-id ID "
                            "--http-endpoint enabled`")
    return InstanceType(value, endpoint, via, duration_ms=(time.monotonic() - started) * 1000)


def _ask(endpoint: str, deadline: float) -> tuple[str, str]:
    answers, via = ask_paths(endpoint, deadline, ["meta-data/instance-type"])
    body = answers["meta-data/instance-type"]
    if not body or len(body) > 64 or any(c.isspace() for c in body):
        raise ValueError(f"meta-data/instance-type answered {body[:64]!r}")
    return body, via


def ask_paths(endpoint: str, deadline: float, paths: list[str], *, v1: bool = True,
              limit: int = 4096) -> tuple[dict[str, str], str]:
    """``GET /latest/<path>`` for each of ``paths`` with one IMDSv2 token (IMDSv1 only where ``v1`` and the token
    PUT is refused); ({path: body}, via). Any answer but 200 raises ValueError naming the path."""
    answers, via = _get_all(endpoint, deadline, paths, v1=v1, limit=limit)
    for path, (status, body) in answers.items():
        if status != 200:
            raise ValueError(f"{path} answered HTTP {status}: {body[:64]!r}")
    return {path: body for path, (_, body) in answers.items()}, via


def get_metadata(endpoint: str, deadline: float, path: str) -> tuple[int, str, str]:
    """(HTTP status, body, "IMDSv2" | "IMDSv1") of ``GET path`` (``/latest/...``), token first; straight to the
    endpoint, never through a proxy (http.client reads no proxy settings), within ``deadline``."""
    answers, via = _get_all(endpoint, deadline, [path.removeprefix("/latest/")])
    status, body = next(iter(answers.values()))
    return status, body, via


def _get_all(endpoint: str, deadline: float, paths: list[str], *, v1: bool = True,
             limit: int = 4096) -> tuple[dict[str, tuple[int, str]], str]:
    """({path: (HTTP status, body)}, via) for ``GET /latest/<path>`` of each path, with one token."""
    parts = urlsplit(endpoint)
    if parts.scheme != "http" or not parts.hostname:
        raise ValueError(f"{ENDPOINT_ENV}={endpoint!r} is not an http:// URL")
    import http.client

    conn = http.client.HTTPConnection(parts.hostname, parts.port or 80, timeout=_left(deadline))
    try:
        status, token = _request(conn, deadline, "PUT", "/latest/api/token",
                                 {"X-aws-ec2-metadata-token-ttl-seconds": str(TOKEN_TTL_S)})
        if status == 200:
            headers, via = {"X-aws-ec2-metadata-token": token}, "IMDSv2"
        elif v1 and status in V1_FALLBACK:
            headers, via = {}, "IMDSv1"
        else:
            raise ValueError(f"the token request answered HTTP {status}")
        answers = {}
        for path in paths:
            answers[path] = _request(conn, deadline, "GET", f"/latest/{path}", headers, limit)
        return answers, via
    finally:
        conn.close()


def _request(conn: http.client.HTTPConnection, deadline: float, method: str, path: str,
             headers: dict[str, str], limit: int = 4096) -> tuple[int, str]:
    conn.timeout = _left(deadline)
    if conn.sock is not None:
        conn.sock.settimeout(conn.timeout)
    conn.request(method, path, headers=headers)
    response = conn.getresponse()
    body = response.read(limit).decode("utf-8", errors="replace").strip()
    if response.getheader("Connection", "").lower() == "close":
        conn.close()
    return response.status, body


def _left(deadline: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise socket.timeout("budget spent")
    return left
