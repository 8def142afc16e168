"""Which topic a command's result goes to: its ``reply-to`` header, when that is safe.

A reply-to naming a missing topic would make every commit of its batch fail, forever (the
processor would abort and retry the same batch); one naming a contract topic would write results
into the history or the snapshots. Both fall back to the results topic, with one warning per
topic name. Answers are cached: the metadata lookup happens once per new name.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from confluent_kafka import KafkaException

from processor.contract import Topics

log = logging.getLogger(__name__)

METADATA_TIMEOUT_S = 5.0


class ReplyTopics:
    """Resolves reply-to headers; ``list_topics`` is a client's metadata call for one topic."""

    def __init__(self, topics: Topics, list_topics: Callable[[str, float], Any]) -> None:
        """``list_topics`` should be a consumer's: its metadata requests never auto-create."""
        self._fallback = topics.results
        self._list_topics = list_topics
        self._known = {topics.results}
        self._refused: set[str] = set()
        self._contract = {topics.commands, topics.events, topics.pull_requests, topics.dlq}

    def __call__(self, requested: str | None) -> str:
        """The topic to answer on for a reply-to header value (None: no header)."""
        if not requested or requested in self._known:
            return requested or self._fallback
        if requested in self._refused:
            return self._fallback
        if requested in self._contract:
            self._refuse(requested, "contract_topic")
            return self._fallback
        try:
            metadata = self._list_topics(requested, METADATA_TIMEOUT_S)
        except KafkaException as exc:
            log.warning("event=reply_topic_lookup_failed topic=%s error=%s", requested, exc)
            return self._fallback  # not cached: ask again next time
        topic = metadata.topics.get(requested)
        if topic is not None and topic.error is None and topic.partitions:
            self._known.add(requested)
            return requested
        self._refuse(requested, "missing_topic")
        return self._fallback

    def _refuse(self, requested: str, reason: str) -> None:
        self._refused.add(requested)
        log.warning(
            "event=reply_to_refused topic=%s reason=%s fallback=%s",
            requested,
            reason,
            self._fallback,
        )
