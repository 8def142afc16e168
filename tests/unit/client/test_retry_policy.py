"""RetryPolicy: which errors are retried and how long the client waits (no network)."""

from __future__ import annotations

import grpc
import pytest

from prgate.client import errors
from prgate.client.retry import RetryPolicy


def error(code: grpc.StatusCode) -> errors.PrgateError:
    return errors.error_for(code, "x")


def test_only_unavailable_is_retried_and_only_within_the_attempts() -> None:
    policy = RetryPolicy(max_attempts=3)
    assert policy.should_retry(error(grpc.StatusCode.UNAVAILABLE), 1)
    assert policy.should_retry(error(grpc.StatusCode.UNAVAILABLE), 2)
    assert not policy.should_retry(error(grpc.StatusCode.UNAVAILABLE), 3)
    for code in grpc.StatusCode:
        if code not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.OK):
            assert not policy.should_retry(error(code), 1), code


def test_backoff_grows_with_equal_jitter_up_to_the_cap() -> None:
    policy = RetryPolicy(initial_backoff=0.1, multiplier=2.0, max_backoff=0.5)
    unavailable = error(grpc.StatusCode.UNAVAILABLE)
    lows = [policy.delay(n, unavailable, rng=lambda: 0.0) for n in range(1, 6)]
    highs = [policy.delay(n, unavailable, rng=lambda: 1.0) for n in range(1, 6)]
    assert lows == pytest.approx([0.05, 0.1, 0.2, 0.25, 0.25])
    assert highs == pytest.approx([0.1, 0.2, 0.4, 0.5, 0.5])


def test_retry_info_from_the_server_wins_but_is_capped() -> None:
    policy = RetryPolicy(initial_backoff=0.1, max_server_delay=2.0)
    told = error(grpc.StatusCode.UNAVAILABLE)
    told.retry_delay = 1.25
    assert policy.delay(1, told) == 1.25
    told.retry_delay = 60.0
    assert policy.delay(1, told) == 2.0


def test_nonsense_policies_are_refused() -> None:
    with pytest.raises(ValueError, match="max_attempts"):
        RetryPolicy(max_attempts=0)
    with pytest.raises(ValueError, match="multiplier"):
        RetryPolicy(multiplier=0.5)
