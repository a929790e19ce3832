"""The retry policy and Retry-After parsing, without any network."""

from __future__ import annotations

import random
from datetime import UTC, datetime

import pytest

from controller.webhooks import AttemptResult, RetryPolicy, parse_retry_after

POLICY = RetryPolicy(max_attempts=6, first_delay_s=1.0, max_delay_s=8.0, max_retry_after_s=30.0)


def answered(status: int | None, retry_after_s: float | None = None) -> AttemptResult:
    return AttemptResult(status, None if status else "ClientConnectorError: refused", 5.0, retry_after_s)


@pytest.mark.parametrize("status", [None, 429, 500, 502, 503, 504, 599])
def test_network_errors_429_and_5xx_back_off_exponentially_with_jitter(status):
    rng = random.Random(3)
    for attempt, (low, high) in enumerate([(0.5, 1), (1, 2), (2, 4), (4, 8), (4, 8)], start=1):
        delays = [POLICY.delay(attempt, answered(status), rng) for _ in range(200)]
        assert all(low <= d <= high for d in delays), attempt
        assert max(delays) - min(delays) > (high - low) / 2  # spread out, not one fixed value
    assert POLICY.delay(6, answered(status), rng) is None  # the sixth attempt was the last


@pytest.mark.parametrize("status", [200, 201, 204, 299, 301, 307, 400, 401, 403, 404, 409, 410, 422])
def test_success_redirects_and_other_client_errors_end_the_delivery(status):
    assert POLICY.delay(1, answered(status), random.Random(1)) is None


def test_retry_after_lengthens_the_wait_up_to_its_cap():
    rng = random.Random(5)
    assert POLICY.delay(1, answered(429, 12.0), rng) == 12.0
    assert POLICY.delay(1, answered(503, 3600.0), rng) == 30.0
    assert 0.5 <= POLICY.delay(1, answered(429, 0.0), rng) <= 1.0  # shorter than the backoff: backoff wins
    assert POLICY.delay(6, answered(429, 1.0), rng) is None


def test_retry_after_seconds_and_http_dates():
    now = datetime(2026, 11, 25, 9, 30, tzinfo=UTC)
    assert parse_retry_after("120", now) == 120.0
    assert parse_retry_after(" 0 ", now) == 0.0
    assert parse_retry_after("Wed, 25 Nov 2026 09:31:30 GMT", now) == 90.0
    assert parse_retry_after("Wed, 25 Nov 2026 09:00:00 GMT", now) == 0.0  # already past: at once
    for unreadable in (None, "", "-5", "1.5", "soon", "Wed, 25 Nov 2026 09:31:30"):
        assert parse_retry_after(unreadable, now) is None, unreadable


def test_unusable_policies_are_refused():
    for bad in (dict(max_attempts=0), dict(first_delay_s=-1), dict(first_delay_s=5, max_delay_s=1),
                dict(timeout_s=0)):
        with pytest.raises(ValueError, match="unusable retry policy"):
            RetryPolicy(**bad)
