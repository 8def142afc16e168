"""Two processor processes in one group split the partitions; stopping one (SIGTERM) moves its
partitions to the other, and the whole stream is still processed exactly once."""

from __future__ import annotations

from pathlib import Path

from helpers.logs import log_events
from integration.processor_commands import interleave, stream_for
from integration.processor_helpers import assert_exactly_once, processor_settings, tail
from integration.processor_runners import (
    PacedSender,
    ProcessorProcess,
    wait_assignment,
    with_instance,
)

from prgate.kafka.contract import Topics
from prgate.kafka.settings import KafkaSettings

PULL_REQUESTS = 9
COMMANDS_PER_PR = 30


def succeeded_count(log_text: str) -> int:
    found = [e for e in log_events(log_text) if e["event"] == "processor_stopped"]
    assert found, log_text[-2000:]
    return int(found[-1]["succeeded"]) + int(found[-1]["rejected"])


def test_two_processors_split_partitions_and_fail_over(
    kafka_settings: KafkaSettings, ensured_topics: Topics, tmp_path: Path
) -> None:
    commands = interleave(stream_for(f"pr-{n}", COMMANDS_PER_PR) for n in range(PULL_REQUESTS))
    base = processor_settings(kafka_settings)
    group = base.group_id
    one = ProcessorProcess(with_instance(base, "one"), tmp_path, "one")
    two = ProcessorProcess(with_instance(base, "two"), tmp_path, "two")
    try:
        split = wait_assignment(
            kafka_settings,
            group,
            lambda a: len(a) == 2 and all(a.values()) and set().union(*a.values()) == {0, 1, 2},
            45,
        )
        assert split["prgate-processor-one"].isdisjoint(split["prgate-processor-two"])
        sender = PacedSender(kafka_settings, commands, per_second=120)
        sender.start()
        with tail(kafka_settings, ensured_topics.results, "read_uncommitted") as t:
            t.wait_until(lambda recs: len(recs) >= 80, 30, "80 results written")
        assert sender.is_alive(), "the stream ended before the stop; slow the sender down"
        assert one.terminate() == 0, one.log_text()[-2000:]  # clean: commits, leaves the group
        # The group moves one's partitions to two (cooperatively: two keeps its own meanwhile).
        wait_assignment(
            kafka_settings, group, lambda a: a == {"prgate-processor-two": {0, 1, 2}}, 30
        )
        sender.finish()
        counts = assert_exactly_once(kafka_settings, commands, timeout=60)
        assert two.terminate() == 0, two.log_text()[-2000:]
    finally:
        one.close()
        two.close()
    handled_by_one = succeeded_count(one.log_text())
    handled_by_two = succeeded_count(two.log_text())
    print(f"group test: {counts}, handled by one={handled_by_one}, two={handled_by_two}")
    assert handled_by_one > 0 and handled_by_two > 0
    assert handled_by_one + handled_by_two == len(commands)
