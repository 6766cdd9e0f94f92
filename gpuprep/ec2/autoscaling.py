"""The boot gate's opt-in signal: mark this instance Unhealthy in its Auto Scaling group (`doctor --boot
--mark-unhealthy`), so the group terminates and replaces it instead of a gated host running, billed and unseen.

The Auto Scaling query API's SetInstanceHealth (docs.aws.amazon.com/autoscaling/ec2/APIReference/
API_SetInstanceHealth.html): ``Action=SetInstanceHealth&Version=2011-01-01&InstanceId=...&HealthStatus=Unhealthy
&ShouldRespectGracePeriod=false`` POSTed to ``https://autoscaling.<region>.amazonaws.com/``, signed with Signature
Version 4 (docs.aws.amazon.com/IAM/latest/UserGuide/reference_sigv4-create-signed-request.html). Grace period not
respected: the gate runs at boot, inside any health check grace period, where a respected one would be ignored.

Who and where from IMDSv2 (gpuprep/ec2/imds.py): the instance id, the region and the instance profile's temporary
credentials (``meta-data/iam/security-credentials/<role>``); the role needs ``autoscaling:SetInstanceHealth``.
Standard library only: no SDK is a dependency of gpuprep for one signed POST. The SDKs' endpoint settings are
honoured (``AWS_ENDPOINT_URL_AUTO_SCALING``, then ``AWS_ENDPOINT_URL``; docs.aws.amazon.com/sdkref/latest/guide/
feature-ss-endpoints.html): the tests point them at a local AWS API stand-in. Nothing is sent without the option.
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import json
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

from gpuprep.ec2.imds import ask_paths, endpoint_for
from gpuprep.host import Host

BUDGET_S = 15.0  # IMDS answers in milliseconds and the API in well under a second; the boot must not hang on it
SERVICE = "autoscaling"
API_VERSION = "2011-01-01"
ENDPOINT_ENVS = ("AWS_ENDPOINT_URL_AUTO_SCALING", "AWS_ENDPOINT_URL")


@dataclass
class Outcome:
    ok: bool
    message: str  # one line: what was done, or why not and what to do


def mark_unhealthy(host: Host, budget_s: float = BUDGET_S) -> Outcome:
    """SetInstanceHealth(Unhealthy) for the instance gpuprep runs on; never raises."""
    deadline = time.monotonic() + budget_s
    imds, _ = endpoint_for(host)
    if imds is None:
        return Outcome(False, "not marked Unhealthy: instance metadata is turned off (AWS_EC2_METADATA_DISABLED)")
    try:
        facts = _instance(imds, deadline)
    except (OSError, ValueError, KeyError) as exc:
        return Outcome(False, f"not marked Unhealthy: the instance metadata service at {imds} did not give the "
                       f"instance, region and credentials ({exc or type(exc).__name__}); the instance profile's role "
                       "needs autoscaling:SetInstanceHealth")
    endpoint = _endpoint(host, facts["region"])
    body = urlencode({"Action": "SetInstanceHealth", "Version": API_VERSION, "InstanceId": facts["instance_id"],
                      "HealthStatus": "Unhealthy", "ShouldRespectGracePeriod": "false"})
    try:
        status, text = _post(endpoint, facts["region"], facts["credentials"], body, deadline)
    except (OSError, ValueError) as exc:
        return Outcome(False, f"not marked Unhealthy: {endpoint} did not answer ({exc or type(exc).__name__})")
    if status == 200:
        return Outcome(True, f"marked {facts['instance_id']} Unhealthy in its Auto Scaling group (SetInstanceHealth): "
                       "the group replaces it")
    return Outcome(False, f"not marked Unhealthy: SetInstanceHealth for {facts['instance_id']} answered HTTP {status}: "
                   f"{_error_text(text)}")


def _instance(imds: str, deadline: float) -> dict[str, Any]:
    left = max(0.1, deadline - time.monotonic())
    found, _ = ask_paths(imds, time.monotonic() + min(left, 5.0),
                         ["meta-data/instance-id", "meta-data/placement/region",
                          "meta-data/iam/security-credentials/"], v1=False)
    role = found["meta-data/iam/security-credentials/"].splitlines()[0].strip()
    if not role:
        raise ValueError("no instance profile (iam/security-credentials/ is empty)")
    creds, _ = ask_paths(imds, time.monotonic() + min(max(0.1, deadline - time.monotonic()), 5.0),
                         [f"meta-data/iam/security-credentials/{role}"], v1=False, limit=16384)
    doc = json.loads(creds[f"meta-data/iam/security-credentials/{role}"])
    return {"instance_id": found["meta-data/instance-id"], "region": found["meta-data/placement/region"],
            "credentials": (doc["AccessKeyId"], doc["SecretAccessKey"], doc.get("Token", ""))}


def _endpoint(host: Host, region: str) -> str:
    for name in ENDPOINT_ENVS:
        value = host.env.get(name, "").strip()
        if value:
            return value.rstrip("/") + "/"
    suffix = "amazonaws.com.cn" if region.startswith("cn-") else "amazonaws.com"
    return f"https://{SERVICE}.{region}.{suffix}/"


def signed_headers(url: str, region: str, credentials: tuple[str, str, str], body: str,
                   now: datetime.datetime) -> dict[str, str]:
    """SigV4 headers for a form POST of ``body`` to ``url`` (the query API's shape)."""
    access_key, secret_key, token = credentials
    parts = urlsplit(url)
    amz_date = now.strftime("%Y%m%dT%H%M%SZ")
    day = amz_date[:8]
    headers = {"content-type": "application/x-www-form-urlencoded; charset=utf-8", "host": parts.netloc,
               "x-amz-date": amz_date}
    if token:
        headers["x-amz-security-token"] = token
    names = sorted(headers)
    canonical = "\n".join([
        "POST", quote(parts.path or "/", safe="/-_.~"), "",
        "".join(f"{n}:{headers[n].strip()}\n" for n in names), ";".join(names),
        hashlib.sha256(body.encode()).hexdigest()])
    scope = f"{day}/{region}/{SERVICE}/aws4_request"
    to_sign = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()])
    key = ("AWS4" + secret_key).encode()
    for part in (day, region, SERVICE, "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    headers["authorization"] = (f"AWS4-HMAC-SHA256 Credential={access_key}/{scope}, "
                                f"SignedHeaders={';'.join(names)}, Signature={signature}")
    return headers


def _post(url: str, region: str, credentials: tuple[str, str, str], body: str, deadline: float) -> tuple[int, str]:
    import http.client

    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise ValueError(f"{url!r} is not an http(s):// URL")
    timeout = max(0.1, deadline - time.monotonic())
    if parts.scheme == "https":
        conn: http.client.HTTPConnection = http.client.HTTPSConnection(parts.hostname, parts.port or 443,
                                                                        timeout=timeout)
    else:
        conn = http.client.HTTPConnection(parts.hostname, parts.port or 80, timeout=timeout)
    headers = signed_headers(url, region, credentials, body, datetime.datetime.now(datetime.timezone.utc))
    try:
        conn.request("POST", parts.path or "/", body=body.encode(), headers=headers)
        response = conn.getresponse()
        return response.status, response.read(8192).decode("utf-8", errors="replace")
    finally:
        conn.close()


def _error_text(xml: str) -> str:
    """The query API's <Code> and <Message> out of its ErrorResponse, else the text's start."""
    import re

    code = re.search(r"<Code>([^<]*)</Code>", xml)
    message = re.search(r"<Message>([^<]*)</Message>", xml)
    if code or message:
        return ": ".join(m.group(1) for m in (code, message) if m)
    return " ".join(xml.split())[:200]
