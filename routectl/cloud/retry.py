"""Retry policy shared by both drivers: throttling, 5xx and timeouts only, exponential backoff with jitter.

Validation errors (bad CIDR, unknown table, 409 conflicts, quota exceeded, 501 not implemented) are never
retried: retrying cannot fix them and only burns API quota. A server's Retry-After is honoured when given.
"""

from __future__ import annotations

import random
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import tenacity

T = TypeVar("T")

THROTTLE_CODES = {
    "RequestLimitExceeded", "Throttling", "ThrottlingException", "RequestThrottled",
    "TooManyRequestsException", "rateLimitExceeded", "userRateLimitExceeded", "EC2ThrottledException",
}
SERVER_CODES = {"InternalError", "InternalFailure", "ServiceUnavailable", "Unavailable", "backendError"}


def _google_reasons(exc: BaseException) -> set[str]:
    reasons: set[str] = set()
    for e in getattr(exc, "errors", None) or []:
        if isinstance(e, dict) and e.get("reason"):
            reasons.add(str(e["reason"]))
    return reasons


def classify(exc: BaseException) -> str | None:
    """'throttled', 'server', 'timeout' for retryable errors, None for everything else.

    Each SDK's exception classes are looked up only when that SDK is already imported (an error of a
    library not imported cannot be raised): classifying must never import boto3 into a GCE controller
    nor google-api-core (28 MB with grpc) into an AWS one.
    """
    boto = sys.modules.get("botocore.exceptions")
    if boto is not None:
        if isinstance(exc, boto.ClientError):
            code = exc.response.get("Error", {}).get("Code", "")
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
            if code in THROTTLE_CODES or status == 429:
                return "throttled"
            if code == "NotImplemented" or status == 501:
                return None  # permanent: the operation does not exist there
            if code in SERVER_CODES or (status and status >= 500):
                return "server"
            return None
        if isinstance(exc, boto.ReadTimeoutError | boto.ConnectionError):
            return "timeout"
    gexc = sys.modules.get("google.api_core.exceptions")
    if gexc is not None:
        if isinstance(exc, gexc.TooManyRequests):
            return "throttled"
        if isinstance(exc, gexc.Forbidden) and _google_reasons(exc) & THROTTLE_CODES:
            return "throttled"
        if isinstance(exc, gexc.MethodNotImplemented):
            return None  # 501 is permanent, unlike the other 5xx
        if isinstance(exc, gexc.ServerError):
            return "server"
        if isinstance(exc, gexc.DeadlineExceeded):
            return "timeout"
    if isinstance(exc, TimeoutError | ConnectionError):
        return "timeout"
    requests = sys.modules.get("requests")
    if requests is not None and isinstance(exc, requests.Timeout | requests.ConnectionError):
        return "timeout"
    return None


def retry_after(exc: BaseException) -> float | None:
    """Seconds from a Retry-After header on the error's response, if any (capped at 60)."""
    headers: Any = None
    resp = getattr(exc, "response", None)
    if isinstance(resp, dict):  # botocore
        headers = resp.get("ResponseMetadata", {}).get("HTTPHeaders")
    elif resp is not None:  # requests.Response inside google.api_core exceptions
        headers = getattr(resp, "headers", None)
    if not headers:
        return None
    value = headers.get("Retry-After") or headers.get("retry-after")
    try:
        return min(60.0, max(0.0, float(value))) if value is not None else None
    except (TypeError, ValueError):
        return None


class _Wait(tenacity.wait.wait_base):
    """Full-jitter exponential backoff, but never shorter than the server's Retry-After."""

    def __init__(self, initial: float, maximum: float) -> None:
        self.initial = initial
        self.maximum = maximum

    def __call__(self, retry_state: tenacity.RetryCallState) -> float:
        n = retry_state.attempt_number
        backoff = random.uniform(self.initial, min(self.maximum, self.initial * 2 ** (n - 1)) + self.initial)
        exc = retry_state.outcome.exception() if retry_state.outcome else None
        ra = retry_after(exc) if exc else None
        return max(backoff, ra) if ra is not None else backoff


def call_with_retry(
    fn: Callable[[], T],
    *,
    attempts: int = 8,
    initial: float = 0.05,
    maximum: float = 5.0,
    on_retryable: Callable[[str, BaseException], None] | None = None,
) -> T:
    """Run `fn` under the policy; `on_retryable(kind, exc)` is told about every retryable failure."""

    def _retryable(exc: BaseException) -> bool:
        kind = classify(exc)
        if kind and on_retryable:
            on_retryable(kind, exc)
        return kind is not None

    retryer = tenacity.Retrying(
        retry=tenacity.retry_if_exception(_retryable),
        wait=_Wait(initial, maximum),
        stop=tenacity.stop_after_attempt(attempts),
        reraise=True,
    )
    return retryer(fn)
