"""gpuprep/ec2/autoscaling.py signs SetInstanceHealth as botocore does (SigV4): botocore's own signer, from the
test extra (moto's dependency), is the oracle; gpuprep itself does not depend on it. Nothing simulated."""

from __future__ import annotations

import datetime

import pytest

from gpuprep.ec2.autoscaling import signed_headers

URL = "https://autoscaling.eu-west-1.amazonaws.com/"
BODY = ("Action=SetInstanceHealth&Version=2011-01-01&InstanceId=i-0123456789abcdef0&HealthStatus=Unhealthy"
        "&ShouldRespectGracePeriod=false")
NOW = datetime.datetime(2026, 12, 7, 21, 50, 1, tzinfo=datetime.timezone.utc)


@pytest.mark.parametrize("token", ["", "IQoJb3JpZ2luX2VjEXAMPLE/session+token=="])
def test_signature_matches_botocores(token, monkeypatch):
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    ours = signed_headers(URL, "eu-west-1", ("ASIAEXAMPLEKEY", "secret/with+chars", token), BODY, NOW)
    request = AWSRequest(method="POST", url=URL, data=BODY,
                         headers={"content-type": "application/x-www-form-urlencoded; charset=utf-8"})

    class Frozen(datetime.datetime):
        @classmethod
        def utcnow(cls):
            return NOW.replace(tzinfo=None)

        @classmethod
        def now(cls, tz=None):
            return NOW if tz else NOW.replace(tzinfo=None)

    monkeypatch.setattr("botocore.auth.datetime.datetime", Frozen)
    SigV4Auth(Credentials("ASIAEXAMPLEKEY", "secret/with+chars", token or None), "autoscaling",
              "eu-west-1").add_auth(request)
    assert ours["authorization"] == request.headers["Authorization"]
    assert ours["x-amz-date"] == request.headers["X-Amz-Date"] == "20261207T215001Z"
    assert ours.get("x-amz-security-token") == request.headers.get("X-Amz-Security-Token")
