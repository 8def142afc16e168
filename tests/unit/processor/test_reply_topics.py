"""The reply-to allowlist (processor/reply_topics.py): what falls back, why, and how often it
is logged and looked up."""

from __future__ import annotations

import logging
from types import SimpleNamespace
from typing import Any

import pytest
from confluent_kafka import KafkaError

from prgate.kafka.contract import Topics
from prgate.observability import logs
from processor.reply_topics import (
    REFUSED_TTL_S,
    WARN_INTERVAL_S,
    Reply,
    ReplyTopics,
    valid_topic_name,
)

TOPICS = Topics("u.")
EXISTING = {"u.inbox", "u.replies.a", "u.other-app", "__consumer_offsets", "__transaction_state"}


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def resolver(clock: Clock | None = None, calls: list[str] | None = None) -> ReplyTopics:
    def list_topics(topic: str, timeout: float) -> Any:
        if calls is not None:
            calls.append(topic)
        error = None if topic in EXISTING else KafkaError(KafkaError.UNKNOWN_TOPIC_OR_PART)
        meta = SimpleNamespace(error=error, partitions={0: object()} if error is None else {})
        return SimpleNamespace(topics={topic: meta})

    return ReplyTopics(
        TOPICS,
        list_topics,
        allowed=["u.inbox", "__consumer_offsets", TOPICS.events],
        pattern=r"u\.replies\..*",
        clock=clock or Clock(),
    )


@pytest.mark.parametrize(
    ("requested", "expected"),
    [
        (None, Reply(TOPICS.results)),
        ("", Reply(TOPICS.results)),
        (TOPICS.results, Reply(TOPICS.results)),
        ("u.inbox", Reply("u.inbox")),
        ("u.replies.a", Reply("u.replies.a")),
        # Never, even when listed: Kafka's internal topics and the contract topics.
        ("__consumer_offsets", Reply(TOPICS.results, "internal_topic")),
        ("__transaction_state", Reply(TOPICS.results, "internal_topic")),
        (TOPICS.events, Reply(TOPICS.results, "contract_topic")),
        (TOPICS.commands, Reply(TOPICS.results, "contract_topic")),
        (TOPICS.pull_requests, Reply(TOPICS.results, "contract_topic")),
        (TOPICS.dlq, Reply(TOPICS.results, "contract_topic")),
        ("u.other-app", Reply(TOPICS.results, "not_allowed")),
        ("u.replies", Reply(TOPICS.results, "not_allowed")),  # the pattern is a full match
        ("u.replies.missing", Reply(TOPICS.results, "missing_topic")),
        ("bad name!", Reply(TOPICS.results, "invalid_name")),
        ("x" * 250, Reply(TOPICS.results, "invalid_name")),
        ("..", Reply(TOPICS.results, "invalid_name")),
        ("u.inbox\n", Reply(TOPICS.results, "invalid_name")),
    ],
)
def test_a_reply_to_is_followed_only_when_allowed_and_writable(
    requested: str | None, expected: Reply
) -> None:
    assert resolver().resolve(requested) == expected


def test_only_allowed_names_are_looked_up_and_answers_are_cached() -> None:
    calls: list[str] = []
    clock = Clock()
    reply = resolver(clock, calls)
    for _ in range(3):
        reply.resolve("u.inbox")
        reply.resolve("u.other-app")
        reply.resolve("__consumer_offsets")
        reply.resolve("u.replies.missing")
    assert calls == ["u.inbox", "u.replies.missing"]
    clock.now += REFUSED_TTL_S + 1  # a missing topic may have been created since
    reply.resolve("u.replies.missing")
    assert calls == ["u.inbox", "u.replies.missing", "u.replies.missing"]


def test_an_unwritable_topic_falls_back_until_its_time_is_up() -> None:
    clock = Clock()
    reply = resolver(clock)
    assert reply.resolve("u.inbox") == Reply("u.inbox")
    reply.unwritable("u.inbox")
    assert reply.resolve("u.inbox") == Reply(TOPICS.results, "unwritable")
    reply.unwritable(TOPICS.results)  # the fallback itself is never given up
    assert reply.resolve(None) == Reply(TOPICS.results)


def test_warnings_are_rate_limited_per_reason(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    reply = resolver(clock)
    with caplog.at_level(logging.WARNING, logger="processor.reply_topics"):
        for n in range(50):
            reply.resolve(f"__flood-{n}")
            reply.resolve(f"u.app-{n}")
        clock.now += WARN_INTERVAL_S
        reply.resolve("__again")
    lines = [logs.LogfmtFormatter().format(r) for r in caplog.records]
    assert len(lines) == 3, lines
    assert "reason=internal_topic" in lines[0] and "reason=not_allowed" in lines[1]
    assert "left_out=49" in lines[2]


def test_topic_names_as_kafka_takes_them() -> None:
    assert valid_topic_name("a.b_c-D9") and valid_topic_name("x" * 249)
    assert not any(map(valid_topic_name, ["", ".", "..", "a b", "ä", "x" * 250, "a/b"]))
