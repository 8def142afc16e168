"""The processor's settings: one typed object from flags and ``PRGATE_*`` environment variables.

``ProcessorSettings`` extends :class:`prgate.kafka.settings.KafkaSettings`, so one object carries
the connection, the topic names and the processor's own knobs, and ``prgate.settings.load``
fills all of them with the precedence flag > environment > default.
"""

from __future__ import annotations

import os
import re
import socket
from dataclasses import dataclass
from typing import Any

from prgate.domain import Policy
from prgate.kafka.settings import KafkaSettings
from prgate.observability.tracing import MODES as TRACING_MODES
from prgate.policy_settings import PolicySettings
from prgate.settings import setting
from prgate.state.settings import StateSettings


def default_instance_id() -> str:
    """``<hostname>-<pid>``: unique per process, but not stable across restarts.

    Deployments that restart a processor in place (a StatefulSet pod, a systemd unit) should
    set a stable id, so the restarted process fences its predecessor and aborts its open
    transaction at once instead of after ``transaction_timeout_ms``.
    """
    return f"{socket.gethostname()}-{os.getpid()}"


@dataclass(frozen=True)
class ProcessorSettings(KafkaSettings, PolicySettings, StateSettings):
    """Everything a processor process is configured with (the domain rules and limits come
    from :class:`prgate.policy_settings.PolicySettings`, as the gateway's do)."""

    group_id: str = setting(
        "prgate-processor", "PRGATE_PROCESSOR_GROUP_ID", "consumer group of the processors"
    )
    instance_id: str = setting(
        "",
        "PRGATE_PROCESSOR_INSTANCE_ID",
        "stable name of this processor instance; the transactional.id is derived from it "
        "(empty: <hostname>-<pid>)",
    )
    instances: int = setting(
        1,
        "PRGATE_PROCESSOR_INSTANCES",
        "processor processes started by this command, each a group member with the instance"
        " id <instance_id>-<i> (its own transactional.id); a metrics address's port is that of"
        " instance 0, instance i adds i",
    )
    batch_max_records: int = setting(
        500, "PRGATE_PROCESSOR_BATCH_MAX_RECORDS", "most commands handled in one transaction"
    )
    batch_max_wait_ms: int = setting(
        2,
        "PRGATE_PROCESSOR_BATCH_MAX_WAIT_MS",
        "after the first command of a batch, how long to wait for more before committing;"
        " only after a batch of several commands (after a lone one: what is already fetched)",
    )
    transaction_timeout_ms: int = setting(
        10_000,
        "PRGATE_PROCESSOR_TRANSACTION_TIMEOUT_MS",
        "transaction.timeout.ms: how long a crashed processor's open transaction can block "
        "read_committed readers",
    )
    session_timeout_ms: int = setting(
        10_000,
        "PRGATE_PROCESSOR_SESSION_TIMEOUT_MS",
        "consumer session.timeout.ms: how soon a crashed processor's partitions move",
    )
    restore_timeout_ms: int = setting(
        120_000,
        "PRGATE_PROCESSOR_RESTORE_TIMEOUT_MS",
        "how long restoring assigned partitions from the pull-requests topic may go without reading"
        " a record (and the bound of the waits before reading): a cold restore of millions"
        " takes longer in total",
    )
    recent_commands_kept: int = setting(
        64,
        "PRGATE_RECENT_COMMANDS_KEPT",
        "command ids remembered per pull request to answer a redelivered command",
    )
    reply_topics: str = setting(
        "",
        "PRGATE_PROCESSOR_REPLY_TOPICS",
        "topics a command's reply-to header may name besides the results topic (comma-separated);"
        " any other reply-to is answered on the results topic",
    )
    reply_topics_regex: str = setting(
        "",
        "PRGATE_PROCESSOR_REPLY_TOPICS_REGEX",
        "more allowed reply-to topics: a regular expression the whole topic name must match"
        " (empty: none); internal (__*) and contract topics are never allowed",
    )
    metrics_listen: str = setting(
        "", "PRGATE_METRICS_LISTEN", "host:port to serve Prometheus /metrics on (empty: off)"
    )
    tracing: str = setting(
        "off",
        "PRGATE_TRACING",
        "OpenTelemetry tracing: off, console (spans on stdout) or otlp (OTEL_EXPORTER_OTLP_*"
        " settings); needs the 'tracing' extra",
    )
    log_level: str = setting("INFO", "PRGATE_LOG_LEVEL", "log level")

    def __post_init__(self) -> None:
        super().__post_init__()  # the Kafka properties file
        # Fail at start, with the setting's name, rather than deep inside librdkafka.
        checks: list[tuple[bool, str]] = [
            (bool(self.group_id), "group_id must not be empty"),
            (self.batch_max_records >= 1, "batch_max_records must be >= 1"),
            (self.batch_max_wait_ms >= 0, "batch_max_wait_ms must be >= 0"),
            (self.transaction_timeout_ms >= 1000, "transaction_timeout_ms must be >= 1000"),
            (self.session_timeout_ms >= 1000, "session_timeout_ms must be >= 1000"),
            (self.restore_timeout_ms >= 1000, "restore_timeout_ms must be >= 1000"),
            (self.tracing in TRACING_MODES, f"tracing must be one of {', '.join(TRACING_MODES)}"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)
        self.policy()  # validates the rule settings
        StateSettings.__post_init__(self)
        try:
            re.compile(self.reply_topics_regex)
        except re.error as exc:
            raise ValueError(f"reply_topics_regex is no regular expression: {exc}") from None

    @property
    def allowed_reply_topics(self) -> tuple[str, ...]:
        """The names of ``reply_topics``, without blanks."""
        return tuple(t.strip() for t in self.reply_topics.split(",") if t.strip())

    @property
    def resolved_instance_id(self) -> str:
        """The instance id, or ``<hostname>-<pid>`` when none is configured."""
        return self.instance_id or default_instance_id()

    def policy(self, **extra: Any) -> Policy:
        """The domain policy these settings describe, with ``recent_commands_kept``."""
        return super().policy(recent_commands_kept=self.recent_commands_kept, **extra)

    def transactional_id(self, instance_id: str) -> str:
        """Stable per instance, so a restarted instance fences its zombie (KIP-447 model)."""
        return f"{self.topic_prefix}processor-{instance_id}"

    def consumer_config(self, instance_id: str) -> dict[str, Any]:
        """The commands consumer: manual offsets inside transactions, committed reads only."""
        return self.client_config(
            **{
                "group.id": self.group_id,
                "client.id": f"prgate-processor-{instance_id}",
                "enable.auto.commit": False,
                "enable.auto.offset.store": False,
                "isolation.level": "read_committed",
                "auto.offset.reset": "earliest",
                # Incremental: a rebalance revokes only the partitions that move, so the others
                # keep their in-memory state and keep running (see processor/loop.py).
                "partition.assignment.strategy": "cooperative-sticky",
                "session.timeout.ms": self.session_timeout_ms,
                "heartbeat.interval.ms": max(500, self.session_timeout_ms // 4),
                "enable.partition.eof": False,
            }
        )

    def producer_config(self, instance_id: str) -> dict[str, Any]:
        """The transactional producer of events, snapshots, results and dead letters."""
        return self.client_config(
            **{
                "client.id": f"prgate-processor-{instance_id}",
                "transactional.id": self.transactional_id(instance_id),
                "transaction.timeout.ms": self.transaction_timeout_ms,
                "enable.idempotence": True,
                "acks": "all",
                # commit_transaction flushes anyway; a short linger only groups one batch.
                "linger.ms": 1,
                # A batch that starts while the previous commit's markers are still being
                # written gets CONCURRENT_TRANSACTIONS on AddPartitionsToTxn/AddOffsetsToTxn;
                # librdkafka retries after retry.backoff.ms, 100 ms by default, which showed
                # as a 100 ms step in p50 and p99 under load (prgate bench, README).
                "retry.backoff.ms": 5,
                "retry.backoff.max.ms": 100,
            }
        )

    def restore_config(self) -> dict[str, Any]:
        """The assign-only consumer that reads the pull-requests topic on assignment."""
        return self.client_config(
            **{
                "group.id": f"{self.group_id}-restore",  # never joins, never commits
                "enable.auto.commit": False,
                "enable.auto.offset.store": False,
                "isolation.level": "read_committed",
                "enable.partition.eof": True,
                "auto.offset.reset": "earliest",
                # The end of an empty or caught-up partition is only known from a fetch
                # response; do not let the broker hold it for the default 500 ms.
                "fetch.wait.max.ms": 20,
            }
        )
