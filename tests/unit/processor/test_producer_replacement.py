"""Replacing the transactional producer outlasts a Kafka outage (no broker needed: fakes)."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException

from processor import txn_producer
from processor.settings import ProcessorSettings
from processor.txn_producer import StopRequested, TransactionalProducer


class FakeProducer:
    """Runs a script for init_transactions: an exception to raise, "hang", or "ok"."""

    def __init__(self, script: list[Any]) -> None:
        self.script = script
        self.inits = 0
        self.closed = False
        self.release = threading.Event()

    def init_transactions(self, timeout: float) -> None:
        self.inits += 1
        step = self.script.pop(0) if self.script else "ok"
        if step == "hang":
            self.release.wait(5)
        elif isinstance(step, BaseException):
            raise step

    def purge(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True


def timed_out() -> KafkaException:
    return KafkaException(KafkaError(KafkaError._TIMED_OUT, "down", retriable=True))


@pytest.fixture(autouse=True)
def fast(monkeypatch: pytest.MonkeyPatch) -> None:
    # A retry budget far shorter than the outage below: replacement must not depend on it.
    monkeypatch.setattr(txn_producer, "RETRY_BUDGET_S", 0.05)
    monkeypatch.setattr(txn_producer, "REPLACE_BACKOFF_S", 0.01)
    monkeypatch.setattr(txn_producer, "REPLACE_BACKOFF_MAX_S", 0.02)
    monkeypatch.setattr(txn_producer, "TXN_CALL_TIMEOUT_S", 0.1)
    monkeypatch.setattr(txn_producer, "STUCK_MARGIN_S", 0.1)


def owner(
    monkeypatch: pytest.MonkeyPatch,
    producers: list[FakeProducer],
    stop: threading.Event | None = None,
) -> TransactionalProducer:
    made = iter(producers)
    monkeypatch.setattr(txn_producer, "Producer", lambda config: next(made))
    txn = TransactionalProducer(
        ProcessorSettings(), "p0", on_error=lambda error: None, stop=stop or threading.Event()
    )
    txn.start()
    return txn


def test_replacement_keeps_trying_while_kafka_is_down(monkeypatch: pytest.MonkeyPatch) -> None:
    first = FakeProducer([])
    second = FakeProducer([timed_out() for _ in range(12)])
    txn = owner(monkeypatch, [first, second])

    txn.replace("commit failed")

    assert txn.producer is second  # type: ignore[comparison-overlap]
    assert second.inits == 13 and first.closed


def test_a_hanging_or_broken_candidate_is_left_for_a_fresh_producer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    first = FakeProducer([])
    hangs = FakeProducer(["hang"])
    broken = FakeProducer([KafkaException(KafkaError(KafkaError._STATE, "bad state"))])
    good = FakeProducer([timed_out()])
    txn = owner(monkeypatch, [first, hangs, broken, good])

    txn.replace("wedged", wedged=True)

    assert txn.producer is good  # type: ignore[comparison-overlap]
    assert not first.closed  # a wedged producer is never closed, only left behind
    assert not hangs.closed and broken.closed
    hangs.release.set()


def test_a_stop_request_ends_the_replacement(monkeypatch: pytest.MonkeyPatch) -> None:
    stop = threading.Event()
    first = FakeProducer([])

    class StopsKafkaDown(FakeProducer):
        def init_transactions(self, timeout: float) -> None:
            if self.inits == 3:
                stop.set()
            super().init_transactions(timeout)

    candidate = StopsKafkaDown([timed_out() for _ in range(100)])
    txn = owner(monkeypatch, [first, candidate], stop)

    with pytest.raises(StopRequested):
        txn.replace("commit failed")
    assert candidate.closed and candidate.inits == 4
    txn.close(in_transaction=True)  # nothing left to close; does not raise


def test_a_fenced_replacement_is_fatal(monkeypatch: pytest.MonkeyPatch) -> None:
    fenced = KafkaException(KafkaError(KafkaError._FENCED, "fenced", fatal=True))
    txn = owner(monkeypatch, [FakeProducer([]), FakeProducer([fenced])])
    with pytest.raises(KafkaException):
        txn.replace("commit failed")


def test_a_fatal_error_of_a_replaced_producer_does_not_reach_the_loop(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    configs: list[dict[str, Any]] = []
    made = iter([FakeProducer([]), FakeProducer([])])

    def factory(config: dict[str, Any]) -> FakeProducer:
        configs.append(config)
        return next(made)

    monkeypatch.setattr(txn_producer, "Producer", factory)
    seen: list[KafkaError] = []
    txn = TransactionalProducer(
        ProcessorSettings(), "p0", on_error=seen.append, stop=threading.Event()
    )
    txn.start()
    txn.replace("wedged", wedged=True)
    fenced = KafkaError(KafkaError._FENCED, "fenced by its successor", fatal=True)
    configs[0]["error_cb"](fenced)  # the abandoned one wakes up fenced
    assert seen == []
    configs[1]["error_cb"](fenced)
    assert seen == [fenced]
