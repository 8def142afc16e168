"""When the client retries a call, and how long it waits in between.

Only UNAVAILABLE is retried: the gateway or Kafka could not be reached, so nothing happened
or the same idempotency key makes the retry harmless. Every other code is an answer. A
``google.rpc.RetryInfo`` delay from the server is honoured (capped); otherwise the delay
grows exponentially with jitter.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass

import grpc

from prgate.client.errors import PrgateError, error_for, error_from_rpc


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded retries of UNAVAILABLE. ``max_attempts`` counts the first try too."""

    max_attempts: int = 5
    initial_backoff: float = 0.2
    max_backoff: float = 5.0
    multiplier: float = 2.0
    # The most a server's RetryInfo may make the client wait before one retry.
    max_server_delay: float = 30.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if self.initial_backoff < 0 or self.max_backoff < 0 or self.multiplier < 1:
            raise ValueError("backoffs must be >= 0 and multiplier >= 1")

    def should_retry(self, error: PrgateError, attempt: int) -> bool:
        """Whether to try again after ``error`` ended attempt number ``attempt`` (1-based)."""
        return error.code == grpc.StatusCode.UNAVAILABLE and attempt < self.max_attempts

    def delay(
        self, attempt: int, error: PrgateError, rng: Callable[[], float] = random.random
    ) -> float:
        """Seconds to wait after attempt ``attempt`` failed with ``error``."""
        if error.retry_delay is not None:
            return max(0.0, min(error.retry_delay, self.max_server_delay))
        ceiling = min(self.max_backoff, self.initial_backoff * self.multiplier ** (attempt - 1))
        # "Equal jitter": at least half the backoff, so retries never bunch up at zero.
        return ceiling / 2 + rng() * ceiling / 2


NO_RETRY = RetryPolicy(max_attempts=1)


@dataclass(frozen=True)
class RetryEvent:
    """Passed to a client's ``on_retry`` hook before it sleeps and tries again."""

    method: str
    attempt: int
    error: PrgateError
    delay: float


@dataclass
class Attempts:
    """The retry state of one logical call; both clients keep one per call.

    ``number`` is the attempt running now (1-based). ``idempotency_key`` is the key the call
    sends, named in its errors ("" for queries); ``on_retry`` is the client's hook.
    """

    method: str
    policy: RetryPolicy
    on_retry: Callable[[RetryEvent], None] | None = None
    idempotency_key: str = ""
    number: int = 1

    def failed(self, exc: grpc.RpcError) -> float:
        """After ``exc`` ended the attempt: seconds to wait before the next one (the hook has
        seen it). Raises the :class:`PrgateError` of ``exc`` when no attempt follows."""
        return self.retry(error_from_rpc(exc, idempotency_key=self.idempotency_key), exc)

    def retry(self, error: PrgateError, cause: BaseException) -> float:
        """:meth:`failed` for an error already decoded from ``cause``."""
        if not self.policy.should_retry(error, self.number):
            raise error from cause
        delay = self.policy.delay(self.number, error)
        if self.on_retry is not None:
            self.on_retry(RetryEvent(self.method, self.number, error, delay))
        self.number += 1
        return delay

    def restart(self) -> None:
        """The call made progress (a stream yielded something new): the budget starts over."""
        self.number = 1


def remaining(deadline: float | None) -> float | None:
    """Seconds until a ``time.monotonic()`` deadline (None: no deadline); raises
    DeadlineExceeded once it has passed."""
    if deadline is None:
        return None
    left = deadline - time.monotonic()
    if left <= 0:
        raise error_for(grpc.StatusCode.DEADLINE_EXCEEDED, "the client's timeout passed")
    return left
