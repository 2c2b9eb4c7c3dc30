"""Pure-ish tests of the shared cloud policy: retry classification, Retry-After, token bucket, naming."""

from __future__ import annotations

import threading

import pytest
from botocore.exceptions import ClientError
from google.api_core import exceptions as gexc

from routectl.cloud import aws as awsmod
from routectl.cloud import gce as gcemod
from routectl.cloud.base import NodeProblem
from routectl.cloud.factory import make_driver
from routectl.cloud.ratelimit import TokenBucket
from routectl.cloud.retry import call_with_retry, classify, retry_after
from routectl.routes.model import NodeRoutes


def _boto(code: str, status: int, headers: dict | None = None) -> ClientError:
    meta = {"HTTPStatusCode": status, "HTTPHeaders": headers or {}}
    return ClientError({"Error": {"Code": code, "Message": code}, "ResponseMetadata": meta}, "CreateRoute")


@pytest.mark.parametrize(("exc", "kind"), [
    (_boto("RequestLimitExceeded", 503), "throttled"),
    (_boto("InternalError", 500), "server"),
    (_boto("RouteAlreadyExists", 400), None),
    (_boto("InvalidParameterValue", 400), None),
    (_boto("RouteLimitExceeded", 400), None),
    (gexc.TooManyRequests("x"), "throttled"),
    (gexc.ServiceUnavailable("x"), "server"),
    (gexc.InternalServerError("x"), "server"),
    (gexc.MethodNotImplemented("x"), None),
    (_boto("NotImplemented", 501), None),
    (gexc.Conflict("x"), None),
    (gexc.BadRequest("x"), None),
    (gexc.Forbidden("x", errors=[{"reason": "QUOTA_EXCEEDED"}]), None),
    (gexc.Forbidden("x", errors=[{"reason": "rateLimitExceeded"}]), "throttled"),
    (TimeoutError(), "timeout"),
    (ValueError("bad"), None),
])
def test_classify(exc: BaseException, kind: str | None) -> None:
    assert classify(exc) == kind


def test_retry_after_header_is_read_and_capped() -> None:
    assert retry_after(_boto("Throttling", 429, {"retry-after": "2"})) == 2.0
    assert retry_after(_boto("Throttling", 429, {"retry-after": "9999"})) == 60.0
    assert retry_after(_boto("Throttling", 429)) is None


def test_call_with_retry_retries_transient_only() -> None:
    seen: list[str] = []
    attempts = iter([_boto("RequestLimitExceeded", 503), _boto("InternalError", 500)])

    def flaky() -> str:
        e = next(attempts, None)
        if e:
            raise e
        return "ok"

    out = call_with_retry(flaky, initial=0.001, maximum=0.002, on_retryable=lambda k, e: seen.append(k))
    assert out == "ok"
    assert seen == ["throttled", "server"]
    calls = []

    def invalid() -> None:
        calls.append(1)
        raise _boto("InvalidParameterValue", 400)

    with pytest.raises(ClientError):
        call_with_retry(invalid, initial=0.001)
    assert calls == [1]


def test_retry_after_is_honoured() -> None:
    waits: list[float] = []
    n = iter(range(3))

    def once() -> str:
        if next(n) == 0:
            raise _boto("Throttling", 429, {"retry-after": "0.2"})
        return "ok"

    import time

    t0 = time.monotonic()
    call_with_retry(once, initial=0.001, maximum=0.002, on_retryable=lambda k, e: waits.append(1))
    assert time.monotonic() - t0 >= 0.2  # slept at least Retry-After (not a timing bound on speed)


def test_token_bucket_with_fake_clock() -> None:
    now = [0.0]
    slept: list[float] = []

    def sleep(s: float) -> None:
        slept.append(s)
        now[0] += s

    b = TokenBucket(10, 3, clock=lambda: now[0], sleep=sleep)
    assert [b.acquire() for _ in range(3)] == [0.0, 0.0, 0.0]
    assert b.acquire() == pytest.approx(0.1)
    assert not b.try_acquire()
    now[0] += 1.0
    assert b.try_acquire()
    b.drain()
    assert not b.try_acquire()
    with pytest.raises(ValueError):
        TokenBucket(0, 1)


def test_token_bucket_is_thread_safe() -> None:
    now = [0.0]
    lock = threading.Lock()

    def sleep(s: float) -> None:
        pass

    b = TokenBucket(1, 100, clock=lambda: now[0], sleep=sleep)
    got = []

    def worker() -> None:
        for _ in range(50):
            if b.try_acquire():
                with lock:
                    got.append(1)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(got) == 100


def test_gce_provider_id_and_names() -> None:
    got = gcemod.parse_provider_id("gce://my-proj/us-central1-a/node-1")
    assert got == ("my-proj", "us-central1-a", "node-1")
    for bad in (None, "", "aws:///us-east-1a/i-123", "gce://p/zone/Bad_Name", "gce://proj/us-central1-a"):
        with pytest.raises(NodeProblem) as e:
            gcemod.parse_provider_id(bad)
        assert e.value.reason == "InvalidProviderID"
    drv = gcemod.GCERouteDriver("p", "default", "A Very Long Cluster Name That Goes On And On", endpoint="http://x:1")
    node = NodeRoutes("n", "5c9b8f8e-7d6c-4b5a-9f8e-7d6c5b4a3f2e", "gce://p/us-central1-a/n",
                      ("10.0.0.0/24", "fd00::/64", "10.1.0.0/24"))
    names = [drv.route_name(node, c) for c in node.pod_cidrs]
    assert len(set(names)) == 3
    for n in names:
        assert len(n) <= 63 and gcemod.re.fullmatch(r"[a-z]([-a-z0-9]*[a-z0-9])?", n)
    assert names[1].endswith("-v6") and names[2].endswith("-1")
    url = "https://h/compute/v1/projects/p/zones/z/instances/i"
    assert gcemod.instance_path(url) == "projects/p/zones/z/instances/i"


def test_gce_names_stay_unique_with_longest_prefix_and_suffix() -> None:
    """A max-length cluster prefix plus `-v6-1`: the uid part is hashed, not cut, so uids that differ
    only in their last characters still get different names; names that fit are unchanged."""
    drv = gcemod.GCERouteDriver("p", "default", "x" * 40, endpoint="http://x:1")
    assert len(drv.prefix) == 22  # the longest prefix name_prefix() makes
    cidrs = ("10.0.0.0/24", "fd00::/64", "fd00:0:0:1::/64", "10.1.0.0/24")
    uids = ("5c9b8f8e-7d6c-4b5a-9f8e-7d6c5b4a3f2e", "5c9b8f8e-7d6c-4b5a-9f8e-7d6c5b4a3f2f")
    names = [drv.route_name(NodeRoutes("n", u, None, cidrs), c) for u in uids for c in cidrs]
    assert len(set(names)) == len(names) == 8
    for n in names:
        assert len(n) <= 63 and gcemod.re.fullmatch(r"[a-z]([-a-z0-9]*[a-z0-9])?", n), n
    assert names[0] == f"{drv.prefix}-{uids[0]}" and names[1] == f"{drv.prefix}-{uids[0]}-v6"
    assert names[2].endswith("-v6-1") and uids[0] not in names[2]


def test_aws_provider_id() -> None:
    got = awsmod.parse_provider_id("aws:///us-east-1a/i-0123456789abcdef0")
    assert got == ("us-east-1a", "i-0123456789abcdef0")
    assert awsmod.parse_provider_id("aws:///i-0123abcd") == (None, "i-0123abcd")
    for bad in (None, "gce://p/z/i", "aws:///us-east-1a/node-1", "aws:///us-east-1a/i-XYZ"):
        with pytest.raises(NodeProblem):
            awsmod.parse_provider_id(bad)


def test_factory_errors_are_clear() -> None:
    with pytest.raises(ValueError, match="unknown cloud provider 'azure'"):
        make_driver("azure")
    with pytest.raises(ValueError, match="needs setting"):
        make_driver("gce", project="p")
    with pytest.raises(ValueError, match="unknown gce driver setting"):
        make_driver("gce", project="p", network="n", cluster_name="c", colour="red")
    drv = make_driver("gce", project="p", network="n", cluster_id="c", endpoint="http://127.0.0.1:1",
                      tags="a,b", cluster_cidrs=["10.0.0.0/8"], region=None)
    assert drv.tags == ["a", "b"] and drv.cluster_name == "c"
