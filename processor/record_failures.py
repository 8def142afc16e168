"""Which commands the loop must answer FAILED because Kafka refused a record they caused.

When Kafka refuses one record of a transaction (see :mod:`processor.record_limits`), the loop
aborts that transaction and redoes the batch; :class:`RecordFailures` remembers, by the command
record's partition and offset, what to do differently the next time, so the redo commits:

- a record for a reply topic: that topic is refused from then on
  (:meth:`processor.reply_topics.ReplyTopics.unwritable`); the command answers on the results
  topic instead, nothing fails;
- a record of a contract topic (too large, malformed): the command is answered FAILED with the
  reason and a DLQ copy, and the topic's size limit is learned;
- the DLQ copy of such a command refused as well: FAILED without the copy.

Each refusal changes what the redo writes, at most twice per command, so a bad record costs at
most two aborts, never a loop. A refusal nothing can be changed for (the FAILED result itself
refused, or an error that is not the record's) is left to the loop's ordinary recovery.
"""

from __future__ import annotations

import dataclasses
import logging
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from confluent_kafka import KafkaError, KafkaException

from prgate.kafka import codec
from prgate.kafka.contract import Topics
from prgate.kafka.settings import KafkaSettings
from processor.record_limits import RecordFailure, RecordLimits, read_limits, record_error_name
from processor.reply_topics import ReplyTopics
from processor.settings import ProcessorSettings

log = logging.getLogger(__name__)

# Commands remembered as failed until their batch commits; more only while a huge batch keeps
# failing, and the oldest go first.
MAX_REMEMBERED = 10_000
LIMIT_TIMEOUT_S = 5.0  # reading one reply topic's limit, when it is first used

Source = tuple[int, int]  # partition and offset of a command record


@dataclass(frozen=True, slots=True)
class Refusal:
    """Kafka refused ``record``, caused by the command record at ``source``, with ``error``."""

    source: Source
    record: codec.Record
    error: KafkaError


class RecordsRefused(Exception):
    """Records of the open transaction were refused; the transaction must be aborted.

    ``delivered``: Kafka refused them in delivery reports (they had been sent, so they used up
    sequence numbers of the idempotent producer), rather than before sending.
    """

    def __init__(self, refusals: list[Refusal], *, delivered: bool = False) -> None:
        self.refusals = refusals
        self.delivered = delivered
        first = refusals[0]
        super().__init__(
            f"{len(refusals)} record(s) refused, first for {first.record.topic}: {first.error}"
        )


class RecordFailures:
    """The commands to answer FAILED on the next try, by command record source."""

    def __init__(self, topics: Topics, reply_topics: ReplyTopics, limits: RecordLimits) -> None:
        self._topics = topics
        self.reply_topics = reply_topics
        self.limits = limits
        self.batch_size = limits.batch_size(self.outputs)
        # Every other topic a record goes to is a command's reply topic.
        self.contract = frozenset(
            {topics.commands, topics.events, topics.pull_requests, topics.results, topics.dlq}
        )
        self._reply_topics = reply_topics
        self._limits = limits
        self._failed: OrderedDict[Source, RecordFailure] = OrderedDict()

    @classmethod
    def of(
        cls, settings: ProcessorSettings, instance_id: str, list_topics: Callable[[str, float], Any]
    ) -> RecordFailures:
        """For a processor of ``settings``: its reply-to allowlist (looked up with
        ``list_topics``) and its producer's and topics' limits (read when first needed)."""
        reply_topics = ReplyTopics(
            settings.topics,
            list_topics,
            allowed=settings.allowed_reply_topics,
            pattern=settings.reply_topics_regex,
        )
        limits = RecordLimits.of(settings, settings.producer_config(instance_id), LIMIT_TIMEOUT_S)
        return cls(settings.topics, reply_topics, limits)

    def get(self, source: Source) -> RecordFailure | None:
        return self._failed.get(source)

    def read_limits(self, kafka: KafkaSettings, timeout: float) -> None:
        """Read the output topics' size limits and set :attr:`batch_size` within them.
        Unreadable, the producer's limit applies until a refusal teaches better."""
        names = self.outputs
        self._limits.update(read_limits(kafka, names, timeout))
        self.batch_size = self._limits.batch_size(names)
        log.info(
            "record_limits",
            extra={
                "limits": {name: self._limits.limit(name) for name in names},
                "batch_size": self.batch_size,
            },
        )

    def check(self, record: codec.Record, source: Source) -> None:
        """Raise :class:`RecordsRefused` for a record over its topic's limit. The handler keeps
        records within the limits; one that got past is refused here rather than by Kafka,
        which would fail the whole transaction."""
        if not self._limits.fits(record):
            size, limit = codec.record_size(record), self._limits.limit(record.topic)
            too_large = KafkaError(KafkaError.MSG_SIZE_TOO_LARGE, f"{size} bytes, over {limit}")
            raise RecordsRefused([Refusal(source, record, too_large)])

    def refused_at_once(
        self, exc: KafkaException, record: codec.Record, source: Source
    ) -> RecordsRefused | None:
        """What ``produce()`` raising ``exc`` for ``record`` means: the record's own refusal,
        or None (Kafka's trouble: the caller re-raises)."""
        error = exc.args[0] if exc.args and isinstance(exc.args[0], KafkaError) else None
        if (
            error is None
            or record_error_name(error, reply_topic=record.topic not in self.contract) is None
        ):
            return None
        return RecordsRefused([Refusal(source, record, error)])

    def mark(self, refusals: Iterable[Refusal]) -> list[str]:
        """Change what the redo writes for each refusal it can; returns one line per change
        (empty: nothing changed, the refusals are not the records' own)."""
        changes: list[str] = []
        built_with = self.batch_size  # of the transaction that failed, for every refusal
        for refusal in refusals:
            change = self._mark(refusal, built_with)
            if change:
                changes.append(change)
        while len(self._failed) > MAX_REMEMBERED:
            self._failed.popitem(last=False)
        return changes

    def _mark(self, refusal: Refusal, built_with: int) -> str:
        topic, size = refusal.record.topic, codec.record_size(refusal.record)
        reply_topic = topic not in self.contract
        name = record_error_name(refusal.error, reply_topic=reply_topic)
        if name is None:
            return ""
        if reply_topic:
            self._reply_topics.unwritable(topic)
            return f"reply topic {topic!r} refused ({name}): results go to {self._topics.results}"
        if refusal.error.code() == KafkaError.MSG_SIZE_TOO_LARGE and self._limits.learn(
            topic, size, batched_up_to=built_with
        ):
            # Refused in a batch over a limit lowered since start, not for itself.
            self.batch_size = self._limits.batch_size(self.outputs)
            return f"{topic} takes less since start: batches of at most {self.batch_size} bytes"
        known = self._failed.get(refusal.source)
        if known is None:
            detail = refusal.error.str()[:300]
            self._failed[refusal.source] = RecordFailure(name, topic, size, detail)
            return f"command at {refusal.source} fails: {size}-byte record for {topic} ({name})"
        if known.dlq and topic == self._topics.dlq:
            self._failed[refusal.source] = dataclasses.replace(known, dlq=False)
            return f"command at {refusal.source} fails without its DLQ copy ({name})"
        return ""

    @property
    def outputs(self) -> list[str]:
        """The contract topics the processor writes."""
        topics = self._topics
        return [topics.events, topics.pull_requests, topics.results, topics.dlq]

    def refusals(
        self,
        failed: Iterable[tuple[str, bytes | None, bytes | None, KafkaError]],
        sent: Iterable[tuple[Source, list[codec.Record]]],
    ) -> list[Refusal]:
        """The failed deliveries (``(topic, key, value, error)``) that are records' own
        refusals, each with the command record it was produced for (``sent``: the records
        produced per command record, in order)."""
        refused: list[Refusal] = []
        sent = list(sent)
        for topic, key, value, error in failed:
            if record_error_name(error, reply_topic=topic not in self.contract) is None:
                continue
            for source, records in sent:
                match = next(
                    (r for r in records if (r.topic, r.key, r.value) == (topic, key, value)), None
                )
                if match is not None:
                    refused.append(Refusal(source, match, error))
                    break
        return refused

    def committed(self, offsets: Mapping[int, int]) -> None:
        """A batch committed up to ``offsets`` (partition: next offset): forget its commands."""
        for partition, offset in list(self._failed):
            if partition in offsets and offset < offsets[partition]:
                del self._failed[(partition, offset)]

    def __len__(self) -> int:
        return len(self._failed)
