"""The Kafka contract shared by processor and gateway: topic names, configs, headers.

Names and headers marked fixed in docs/contract.md are public API; change them only with a
migration.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# Fixed header names (docs/contract.md, "Kafka contract").
HEADER_CORRELATION_ID = "correlation-id"
HEADER_REPLY_TO = "reply-to"
HEADER_MESSAGE_TYPE = "message-type"
HEADER_TRACEPARENT = "traceparent"
# Headers the processor adds to a dead-lettered record.
HEADER_DLQ_ERROR = "dlq-error"
HEADER_DLQ_SOURCE = "dlq-source"
# Added last to a dead letter cut to fit the DLQ topic: the original record's size in bytes.
HEADER_DLQ_ORIGINAL_SIZE = "dlq-original-size"

# Full protobuf names, the values of the message-type header.
TYPE_COMMAND_ENVELOPE = "prgate.v1.CommandEnvelope"
TYPE_EVENT_ENVELOPE = "prgate.v1.EventEnvelope"
TYPE_PULL_REQUEST = "prgate.v1.PullRequest"
TYPE_COMMAND_RESULT = "prgate.v1.CommandResult"
TYPE_COMMAND_REFUSAL = "prgate.v1.CommandRefusal"

DEFAULT_PREFIX = "prgate."
DAY_MS = 24 * 60 * 60 * 1000


@dataclass(frozen=True)
class TopicSpec:
    """One topic of the contract and the configs the project insists on."""

    name: str
    partitions: int
    configs: dict[str, str] = field(default_factory=dict)
    # Topics that must have the same partition count (co-partitioned by pull_request_id).
    co_partitioned: bool = False

    @property
    def cleanup_policy(self) -> str:
        return self.configs["cleanup.policy"]


@dataclass(frozen=True)
class Topics:
    """Topic names derived from one prefix (default ``prgate.``)."""

    prefix: str = DEFAULT_PREFIX

    @property
    def commands(self) -> str:
        return f"{self.prefix}commands"

    @property
    def events(self) -> str:
        return f"{self.prefix}pull-request-events"

    @property
    def pull_requests(self) -> str:
        return f"{self.prefix}pull-requests"

    @property
    def results(self) -> str:
        return f"{self.prefix}command-results"

    @property
    def dlq(self) -> str:
        return f"{self.prefix}commands.dlq"

    @property
    def refusals(self) -> str:
        """Commands the gateway refused synchronously (never on the commands topic); audit only."""
        return f"{self.prefix}command-refusals"

    def specs(
        self,
        partitions: int = 6,
        results_partitions: int | None = None,
        events_retention_ms: int = 7 * DAY_MS,
    ) -> list[TopicSpec]:
        """The six topics with their required configs."""
        return [
            TopicSpec(
                self.commands,
                partitions,
                {"cleanup.policy": "delete", "retention.ms": str(DAY_MS)},
                co_partitioned=True,
            ),
            TopicSpec(
                self.events,
                partitions,
                {"cleanup.policy": "delete", "retention.ms": str(events_retention_ms)},
                co_partitioned=True,
            ),
            TopicSpec(
                self.pull_requests,
                partitions,
                # Compaction is only correct because every value is a whole PullRequest.
                {"cleanup.policy": "compact", "min.compaction.lag.ms": "0"},
                co_partitioned=True,
            ),
            TopicSpec(
                self.results,
                results_partitions or partitions,
                {"cleanup.policy": "delete", "retention.ms": str(DAY_MS)},
            ),
            TopicSpec(
                self.dlq,
                1,
                {"cleanup.policy": "delete", "retention.ms": str(7 * DAY_MS)},
            ),
            # Read only by the audit archive: kept longer than the commands, so an archive that
            # was down for a few days still copies every refusal.
            TopicSpec(
                self.refusals,
                partitions,
                {"cleanup.policy": "delete", "retention.ms": str(7 * DAY_MS)},
            ),
        ]
