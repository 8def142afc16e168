"""``prgate topics ensure|describe``: create and verify / show the contract topics.

The work is :mod:`prgate.kafka.topics`; a contract violation or an admin failure raises
:class:`~prgate.kafka.topic_checks.TopicContractError` /
:class:`~prgate.kafka.topics.TopicAdminError`, which ``prgate`` prints as one line (exit 1).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Any

from prgate.kafka.contract import DAY_MS
from prgate.kafka.settings import KafkaSettings
from prgate.kafka.topics import contract_specs, describe_topics, ensure_topics, format_states
from prgate.settings import add_arguments, load, setting


@dataclass(frozen=True)
class TopicsCommandSettings:
    """Options of ``prgate topics`` beyond the Kafka connection."""

    events_retention_ms: int = setting(
        7 * DAY_MS, "PRGATE_EVENTS_RETENTION_MS", "retention of the events topic when created"
    )
    admin_timeout: float = setting(
        30.0, "PRGATE_ADMIN_TIMEOUT", "seconds each Kafka admin request may take"
    )


def ensure(args: argparse.Namespace) -> int:
    """``prgate topics ensure``: create the missing topics, verify all, print them; 0."""
    kafka = load(KafkaSettings, args)
    options = load(TopicsCommandSettings, args)
    specs = contract_specs(kafka, events_retention_ms=options.events_retention_ms)
    states = ensure_topics(kafka, specs=specs, timeout=options.admin_timeout)
    print(format_states({s.name: s for s in states}))
    return 0


def describe(args: argparse.Namespace) -> int:
    """``prgate topics describe``: print the topics with partitions and configs; 0."""
    kafka = load(KafkaSettings, args)
    options = load(TopicsCommandSettings, args)
    print(format_states(describe_topics(kafka, timeout=options.admin_timeout)))
    return 0


def register(sub: Any) -> None:
    """Add ``prgate topics ensure|describe`` to the top-level subparsers of ``prgate``."""
    topics = sub.add_parser("topics", help="the contract topics")
    actions = topics.add_subparsers(dest="action", required=True, metavar="ACTION")
    for action, func, help_text in (
        ("ensure", ensure, "create missing topics and verify all of them"),
        ("describe", describe, "show the topics with partitions and configs"),
    ):
        p = actions.add_parser(action, help=help_text)
        add_arguments(p, KafkaSettings)
        add_arguments(p, TopicsCommandSettings)
        p.set_defaults(func=func)
