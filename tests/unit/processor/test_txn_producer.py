"""The processor's guards around librdkafka's transactional calls (no broker needed)."""

from __future__ import annotations

import threading
import time

import pytest
from confluent_kafka import KafkaError, KafkaException

from processor.settings import ProcessorSettings
from processor.txn_producer import (
    StuckCallError,
    TransactionalProducer,
    bounded_call,
    kafka_error,
    retrying,
)


def test_bounded_call_returns_and_passes_errors_through() -> None:
    seen: list[int] = []
    bounded_call("ok", lambda: seen.append(1), 1.0)
    assert seen == [1]
    with pytest.raises(KafkaException):
        bounded_call("fails", lambda: (_ for _ in ()).throw(KafkaException(KafkaError(-185))), 1.0)


def test_bounded_call_gives_up_on_a_call_that_ignores_its_timeout() -> None:
    release = threading.Event()
    started = time.monotonic()
    with pytest.raises(StuckCallError, match="hangs did not return within 0s"):
        bounded_call("hangs", lambda: release.wait(10), 0.2)
    # Given up after its 0.2 s, not after the call's 10 s (slack for a busy machine).
    assert time.monotonic() - started < 5.0
    release.set()


def retriable(code: int = KafkaError._TIMED_OUT) -> KafkaException:
    return KafkaException(KafkaError(code, "boom", retriable=True))


def test_retrying_repeats_retriable_errors_until_success() -> None:
    attempts: list[int] = []

    def flaky() -> None:
        attempts.append(1)
        if len(attempts) < 3:
            raise retriable()

    retrying("flaky", flaky, threading.Event())
    assert len(attempts) == 3


def test_retrying_raises_non_retriable_errors_at_once_and_stops_on_request() -> None:
    calls: list[int] = []

    def fatal() -> None:
        calls.append(1)
        raise KafkaException(KafkaError(KafkaError._FENCED, "fenced", fatal=True))

    with pytest.raises(KafkaException) as raised:
        retrying("fatal", fatal, threading.Event())
    assert calls == [1]
    error = kafka_error(raised.value)
    assert error is not None and error.fatal()

    stop = threading.Event()
    stop.set()
    with pytest.raises(KafkaException):
        retrying("stopped", lambda: (_ for _ in ()).throw(retriable()), stop)


class FencedProducer:
    """A producer after another instance fenced it: every call fails with _FENCED."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def _fenced(self, call: str) -> None:
        self.calls.append(call)
        raise KafkaException(
            KafkaError(KafkaError._FENCED, "fenced by a newer instance", fatal=True)
        )

    def abort_transaction(self, _timeout: float) -> None:
        self._fenced("abort_transaction")

    def flush(self, _timeout: float) -> int:
        self._fenced("flush")
        return 0

    def close(self) -> None:
        self._fenced("close")


def test_closing_a_fenced_producer_never_raises(caplog: pytest.LogCaptureFixture) -> None:
    """The stop line and the metrics shutdown come after the close: it must not raise."""
    owner = TransactionalProducer(
        ProcessorSettings(), "p0", on_error=lambda _error: None, stop=threading.Event()
    )
    fenced = FencedProducer()
    owner._producer = fenced  # type: ignore[assignment]
    owner.close(in_transaction=True)
    assert fenced.calls == ["abort_transaction", "flush", "close"]
    logged = [(r.getMessage(), str(r.__dict__.get("error"))) for r in caplog.records]
    assert any(m == "producer_flush_failed" and "_FENCED" in e for m, e in logged), logged
    owner.close(in_transaction=False)  # closed: nothing left to do
    assert fenced.calls == ["abort_transaction", "flush", "close"]
