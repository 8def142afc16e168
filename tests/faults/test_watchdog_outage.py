"""The processor's consumer watchdog across a broker outage, on a private broker: while the
broker is away its queries fail and prove nothing (no wedge alarm however long the outage
lasts, each query bounded), when it is back an idle caught-up consumer is not lagging, commands
are processed by the same consumer, and a consumer that genuinely stops fetching (its
partitions paused) is still declared wedged and replaced, after which the commands waiting
are processed.

The watchdog runs with a short stall (2 s) and frequent checks, so a false alarm would come
within the outage the test waits through (at least four failed queries of about 2 s each).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from confluent_kafka import Consumer
from integration.processor_commands import open_pr, send_all
from integration.processor_helpers import processor_settings, wait_results
from integration.processor_runners import ThreadedProcessor

from processor.watchdog import ConsumerWatchdog
from tests.faults.conftest import PrivateKafka


class CountingWatchdog(ConsumerWatchdog):
    """A watchdog that counts its queries' answers and its alarms."""

    def __init__(self, lagging: Callable[[Consumer, float], dict[int, tuple[int, int]] | None]):
        self.failed = 0
        self.caught_up = 0
        self.alarms: list[str] = []
        self.idles = 0
        self.answers: list[object] = []
        self._lock = threading.Lock()

        def counted(consumer: Consumer, timeout_s: float) -> dict[int, tuple[int, int]] | None:
            found = lagging(consumer, timeout_s)
            with self._lock:
                self.answers.append(found)
                if found is None:
                    self.failed += 1
                elif not found:
                    self.caught_up += 1
            return found

        super().__init__(stall_s=2.0, check_every_s=0.2, lagging=counted)

    def idle(self, consumer: Consumer) -> str | None:
        self.idles += 1
        wedged = super().idle(consumer)
        if wedged is not None:
            self.alarms.append(wedged)
        return wedged


def wait_until(
    what: str,
    condition: Callable[[], bool],
    timeout: float = 120,
    state: Callable[[], str] = str,
) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"{what}: {state()}"
        time.sleep(0.05)


def test_a_broker_outage_while_idle_is_no_wedge_and_a_paused_consumer_still_is(
    private_kafka: PrivateKafka,
) -> None:
    kafka, broker = private_kafka.kafka, private_kafka.broker
    runner = ThreadedProcessor(processor_settings(kafka))
    member = runner.processor.member
    watchdog = CountingWatchdog(member._lagging)
    member.watchdog = watchdog
    with runner:
        first = open_pr("pr-wo1")
        send_all(kafka, [first])
        wait_results(kafka, {first.command_id}, timeout=60)
        consumer = member._consumer
        wait_until("an idle check that found nothing lagging", lambda: watchdog.caught_up > 0)

        broker.stop()
        failed_before, answers_before = watchdog.failed, len(watchdog.answers)
        # Its queries fail while the group still holds the partitions; once the session
        # timeout passed the assignment is lost and nothing is lagging. Checks through both.
        wait_until(
            "failed queries, then thirty checks",
            lambda: (
                watchdog.failed > failed_before and len(watchdog.answers) >= answers_before + 30
            ),
            120,
            lambda: f"{watchdog.idles} idle, answers {watchdog.answers[-8:]}",
        )
        broker.restart()
        caught_up_before = watchdog.caught_up
        wait_until(
            "ten idle checks after the restart", lambda: watchdog.caught_up >= caught_up_before + 10
        )
        assert watchdog.alarms == []
        assert member._consumer is consumer

        second = open_pr("pr-wo2")
        send_all(kafka, [second])
        wait_results(kafka, {second.command_id}, timeout=60)
        assert watchdog.alarms == []
        assert member._consumer is consumer

        # A consumer that fetches nothing with commands waiting: wedged, replaced.
        consumer.pause(consumer.assignment())
        third = open_pr("pr-wo3")
        send_all(kafka, [third])
        wait_until("the paused consumer replaced", lambda: member._consumer is not consumer)
        assert len(watchdog.alarms) == 1 and "records waiting" in watchdog.alarms[0]
        wait_results(kafka, {third.command_id}, timeout=90)
    assert runner.exit_code == 0
