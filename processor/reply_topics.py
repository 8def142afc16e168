"""Which topic a command's result goes to: its ``reply-to`` header, when the operator allowed it.

The header comes from whoever wrote the command record, so it is untrusted. Results go to the
deployment's results topic, or to a topic the operator allowed
(``PRGATE_PROCESSOR_REPLY_TOPICS``, ``PRGATE_PROCESSOR_REPLY_TOPICS_REGEX``) that exists.
Anything else falls back to the results topic, with a reason:

==================  ============================================================================
reason              the reply-to named
==================  ============================================================================
``invalid_name``    no valid Kafka topic name (1 to 249 of ``a-z A-Z 0-9 . _ -``, not . or ..)
``internal_topic``  a Kafka internal topic (``__consumer_offsets``, ``__transaction_state``, ...:
                    every name starting with ``__``); a write there fails every transaction
``contract_topic``  the commands, events, pull-requests or DLQ topic: results would corrupt them
``not_allowed``     a topic the operator did not allow (another application's, say)
``missing_topic``   an allowed topic that does not exist (a write would fail the transaction)
``unwritable``      an allowed topic a write to which failed (:meth:`ReplyTopics.unwritable`)
==================  ============================================================================

Warnings are rate-limited (one line per reason every :data:`WARN_INTERVAL_S`, with how many
were left out); the processor counts every fallback in
``prgate_processor_reply_to_refused_total{reason}``. Answers are cached, boundedly: a topic
found is looked up once, a missing or unwritable one again after :data:`REFUSED_TTL_S`.
"""

from __future__ import annotations

import logging
import re
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from confluent_kafka import KafkaException

from prgate.kafka.contract import Topics

log = logging.getLogger(__name__)

METADATA_TIMEOUT_S = 5.0
WARN_INTERVAL_S = 10.0
REFUSED_TTL_S = 60.0
CACHE_SIZE = 4096
REASONS = (
    "invalid_name",
    "internal_topic",
    "contract_topic",
    "not_allowed",
    "missing_topic",
    "unwritable",
)
# Kafka's own rule for topic names (org.apache.kafka.common.internals.Topic).
_TOPIC_NAME = re.compile(r"[a-zA-Z0-9._-]{1,249}")


@dataclass(frozen=True, slots=True)
class Reply:
    """Where to answer: ``topic``, and why the requested one was refused ("" when it was not)."""

    topic: str
    refused: str = ""


def valid_topic_name(name: str) -> bool:
    """Whether Kafka accepts ``name`` as a topic name."""
    return name not in (".", "..") and _TOPIC_NAME.fullmatch(name) is not None


class ReplyTopics:
    """Resolves reply-to headers; ``list_topics`` is a client's metadata call for one topic."""

    def __init__(
        self,
        topics: Topics,
        list_topics: Callable[[str, float], Any],
        *,
        allowed: Iterable[str] = (),
        pattern: str = "",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``list_topics`` should be a consumer's: its metadata requests never auto-create.
        ``allowed`` names and ``pattern`` (a regular expression the whole name must match,
        "" for none) are the topics allowed besides the results topic."""
        self._fallback = topics.results
        self._list_topics = list_topics
        self._allowed = frozenset(a for a in allowed if a)
        self._pattern = re.compile(pattern) if pattern else None
        self._clock = clock
        self._contract = {topics.commands, topics.events, topics.pull_requests, topics.dlq}
        self._known: OrderedDict[str, None] = OrderedDict()
        self._refused: OrderedDict[str, tuple[str, float]] = OrderedDict()  # reason, until
        self._warned: dict[str, tuple[float, int]] = {}  # reason -> (last warning, left out)

    def __call__(self, requested: str | None) -> str:
        """The topic to answer on for a reply-to header value (None: no header)."""
        return self.resolve(requested).topic

    def resolve(self, requested: str | None) -> Reply:
        """The topic to answer on, and why ``requested`` was refused when it was."""
        if not requested or requested == self._fallback:
            return Reply(self._fallback)
        if requested in self._known:
            self._known.move_to_end(requested)
            return Reply(requested)
        cached = self._refused.get(requested)
        if cached is not None and cached[1] > self._clock():
            return self._refuse(requested, cached[0], cache=False)
        reason = self._static_refusal(requested)
        if reason:
            return self._refuse(requested, reason)
        try:
            metadata = self._list_topics(requested, METADATA_TIMEOUT_S)
        except KafkaException as exc:
            log.warning("reply_topic_lookup_failed", extra={"topic": requested, "error": exc})
            return Reply(self._fallback)  # not cached: ask again next time
        topic = metadata.topics.get(requested)
        if topic is None or topic.error is not None or not topic.partitions:
            return self._refuse(requested, "missing_topic")
        self._known[requested] = None
        if len(self._known) > CACHE_SIZE:
            self._known.popitem(last=False)
        return Reply(requested)

    def unwritable(self, topic: str) -> None:
        """A write to ``topic`` failed for good (authorization, say): refuse it for a while."""
        if topic == self._fallback:
            return
        self._known.pop(topic, None)
        self._remember(topic, "unwritable")

    def _static_refusal(self, requested: str) -> str:
        """The reason to refuse ``requested`` without asking Kafka, or ""."""
        if not valid_topic_name(requested):
            return "invalid_name"
        if requested.startswith("__"):
            return "internal_topic"
        if requested in self._contract:
            return "contract_topic"
        if requested in self._allowed:
            return ""
        if self._pattern is not None and self._pattern.fullmatch(requested):
            return ""
        return "not_allowed"

    def _refuse(self, requested: str, reason: str, *, cache: bool = True) -> Reply:
        if cache:
            self._remember(requested, reason)
        self._warn(requested, reason)
        return Reply(self._fallback, reason)

    def _remember(self, requested: str, reason: str) -> None:
        self._refused[requested] = (reason, self._clock() + REFUSED_TTL_S)
        self._refused.move_to_end(requested)
        if len(self._refused) > CACHE_SIZE:
            self._refused.popitem(last=False)

    def _warn(self, requested: str, reason: str) -> None:
        """One warning per reason every WARN_INTERVAL_S: a flood of bad headers must not
        flood the log (the metric counts every one)."""
        now = self._clock()
        last, left_out = self._warned.get(reason, (float("-inf"), 0))
        if now - last < WARN_INTERVAL_S:
            self._warned[reason] = (last, left_out + 1)
            return
        self._warned[reason] = (now, 0)
        log.warning(
            "reply_to_refused",
            extra={
                "topic": requested[:200],
                "reason": reason,
                "fallback": self._fallback,
                "left_out": left_out,
            },
        )
