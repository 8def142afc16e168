"""The gateway's read model: the compacted pull-requests topic, in memory or in a local
RocksDB store (``ReadModelState``) that a restart reads on from its checkpoints.

Reads every partition of ``prgate.pull-requests`` from the beginning (no consumer group,
read_committed, see :mod:`prgate.kafka.tail`) and keeps the newest snapshot per pull request.
It serves validation, Get/List and WatchPullRequest, and reports ``caught_up()`` once it has
reached the end offsets seen at start (the gateway is NOT_SERVING until then).

Read-your-writes: the reply router hands every CommandResult to :meth:`ReadModel.apply_result`;
a successful result whose events continue the current version is folded onto the entity right
away, so the gateway's next validation sees it even before the snapshot arrives. The snapshot
at the same version later replaces the folded entity (it carries the processor's metadata).
All state lives on the event loop; the consumer thread only decodes.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from confluent_kafka import OFFSET_BEGINNING, Consumer, Message, TopicPartition

from gateway.read_model_hub import DEFAULT_QUEUE_SIZE, Subscription, WatchHub
from gateway.read_model_store import PullRequestStore, StoredPullRequests
from prgate.kafka import codec
from prgate.kafka.settings import KafkaSettings
from prgate.kafka.tail import TopicTail
from prgate.state import SnapshotStore, StoreIdentity, StoreLocked, StoreResources
from prgate.v1.events_pb2 import EventEnvelope
from prgate.v1.outcome_pb2 import COMMAND_STATE_SUCCEEDED
from prgate.v1.pull_request_pb2 import PullRequest
from prgate.v1.results_pb2 import CommandResult

log = logging.getLogger(__name__)

Fold = Callable[[Iterable[EventEnvelope], PullRequest | None], PullRequest | None]


@dataclass(slots=True)
class _Record:
    """A decoded record of the pull-requests topic (decoded on the consumer thread)."""

    key: str
    offset: int
    entity: PullRequest | None = None  # None with garbage="" means tombstone
    garbage: str = ""
    partition: int = 0
    raw: bytes | None = None  # the entity's bytes as the topic carries them


@dataclass(frozen=True)
class ReadModelState:
    """Where the read model keeps its RocksDB store (``<state_dir>/gateway/<topic>``), the
    process's RocksDB memory, and how many decoded entities are cached in front of it."""

    state_dir: Path
    resources: StoreResources
    cache_entries: int


def _default_fold(events: Iterable[EventEnvelope], state: PullRequest | None) -> PullRequest | None:
    # Imported lazily: the domain package is optional for the Kafka side of the read model.
    from prgate.domain import fold

    result: PullRequest | None = fold(events, state)
    return result


class ReadModel:
    """Pull requests by id, kept current from the compacted topic."""

    def __init__(
        self,
        kafka: KafkaSettings,
        *,
        watch_queue_size: int = DEFAULT_QUEUE_SIZE,
        fold: Fold | None = None,
        extra: dict[str, str] | None = None,
        state: ReadModelState | None = None,
    ) -> None:
        self.topic = kafka.topics.pull_requests
        # With ``state``, replaced by the RocksDB table once the tail knows the cluster (on its
        # thread, before any record is read); empty and unused until then.
        self._store: PullRequestStore | StoredPullRequests = PullRequestStore()
        self._state = state
        self._stored: StoredPullRequests | None = None
        self._hub = WatchHub(watch_queue_size)
        self._fold = fold or _default_fold
        # Ids whose current entity was folded from a result rather than read as a snapshot.
        self._folded: set[str] = set()
        self._version_waiters: dict[str, list[tuple[int, asyncio.Future[None]]]] = {}
        self._caught_up_event = asyncio.Event()
        self._counts = {
            "records": 0,
            "garbage": 0,
            "tombstones": 0,
            "stale": 0,
            "updates": 0,
            "folded": 0,
            # wait_for_version calls that had to wait (read-your-writes, consistency tokens),
            # and those of them that ran out of time.
            "version_waits": 0,
            "version_waits_timed_out": 0,
        }
        self._tail: TopicTail[_Record] = TopicTail(
            kafka,
            self.topic,
            name="gateway-read-model",
            decode=_decode,
            apply=self._apply_records,
            start_offsets=self._start_offsets,
            on_caught_up=self._on_caught_up,
            extra=extra,
        )

    async def start(self) -> None:
        """Start the consumer thread and return at once (it retries until Kafka answers)."""
        assigned = self._tail.start()
        # Nobody awaits the assignment; keep a failed one from being reported as unretrieved.
        assigned.add_done_callback(lambda f: f.cancelled() or f.exception())

    def caught_up(self) -> bool:
        """True once the model reached the end offsets the topic had when it started."""
        return self._tail.caught_up()

    async def wait_caught_up(self, timeout: float) -> bool:
        """Wait (at most ``timeout`` seconds) until caught up; returns caught_up()."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._caught_up_event.wait(), timeout)
        return self.caught_up()

    def get(self, pull_request_id: str) -> PullRequest | None:
        """The current entity, or None (unknown, or not read yet)."""
        return self._store.get(pull_request_id)

    def list(
        self, *, repository: str = "", status: int = 0, after: str = "", limit: int = 100
    ) -> list[PullRequest]:
        """Up to ``limit`` pull requests after the id ``after``, filtered; see
        :meth:`PullRequestStore.list` (ValueError: negative limit)."""
        return self._store.list(repository=repository, status=status, after=after, limit=limit)

    def subscribe(self, pull_request_id: str) -> Subscription:
        """Watch one pull request: the current snapshot (if any), then each new version."""
        return self._hub.subscribe(pull_request_id, self._store.get(pull_request_id))

    def apply_result(self, result: CommandResult) -> None:
        """Fold a successful result's events onto the entity when they continue its version."""
        if result.state != COMMAND_STATE_SUCCEEDED or not result.events:
            return
        events = list(result.events)
        first = events[0].version
        if any(e.version != first + i for i, e in enumerate(events)):
            log.warning("result_events_not_consecutive", extra={"command_id": result.command_id})
            return
        key = result.pull_request_id or events[0].pull_request_id
        current = self._store.get(key)
        expected = 1 if current is None else current.version + 1
        if first != expected:
            return  # already applied (snapshot came first), or a gap: the snapshot will tell
        try:
            entity = self._fold(events, current)
        except Exception:
            log.exception("fold_failed", extra={"command_id": result.command_id})
            return
        if entity is None or entity.pull_request_id != key:
            return
        self._counts["folded"] += 1
        self._folded.add(key)
        self._update(entity, folded=True)

    async def wait_for_version(self, pull_request_id: str, version: int, timeout: float) -> bool:
        """Wait until the entity has at least ``version``; False after ``timeout`` seconds."""
        current = self._store.get(pull_request_id)
        if current is not None and current.version >= version:
            return True
        self._counts["version_waits"] += 1
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (version, future)
        self._version_waiters.setdefault(pull_request_id, []).append(entry)
        try:
            await asyncio.wait_for(future, timeout)
            return True
        except TimeoutError:
            self._counts["version_waits_timed_out"] += 1
            return False
        finally:
            waiters = self._version_waiters.get(pull_request_id)
            if waiters is not None and entry in waiters:
                waiters.remove(entry)
                if not waiters:
                    del self._version_waiters[pull_request_id]

    def stats(self) -> dict[str, int]:
        """Entities, records read, garbage, tombstones, stale snapshots, updates, folded
        results, version waits (and those timed out), calls waiting for a version now,
        watchers, consumer errors."""
        return {
            "entities": len(self._store),
            **self._counts,
            "version_waiters": sum(len(w) for w in self._version_waiters.values()),
            "watchers": self._hub.watchers(),
            "errors": self._tail.errors,
        }

    async def close(self) -> None:
        """Stop the consumer thread, close the consumer and end every subscription."""
        self._hub.close_all()
        await self._tail.close()
        if self._stored is not None:
            self._stored.close()

    # --- the store (tail thread, before the first record) -----------------------------------

    def _start_offsets(
        self, consumer: Consumer, partitions: builtins.list[TopicPartition]
    ) -> builtins.list[TopicPartition]:
        """Where each partition starts: its store checkpoint when the store can be trusted,
        else the beginning (no store, a locked, corrupt, foreign or untrusted one)."""
        beginning = [TopicPartition(tp.topic, tp.partition, OFFSET_BEGINNING) for tp in partitions]
        if self._state is None:
            return beginning
        if self._stored is None:
            cluster_id = consumer.list_topics(self.topic, timeout=5.0).cluster_id or ""
            identity = StoreIdentity(
                cluster_id, self.topic, tuple(tp.partition for tp in partitions)
            )
            path = self._state.state_dir / "gateway" / self.topic
            try:
                store, reason = SnapshotStore.open(
                    path, identity, self._state.resources, indexed=True
                )
            except (StoreLocked, OSError) as exc:
                # Another gateway on this host uses it: this one keeps its state in memory.
                log.warning("read_model_store_unavailable", extra={"path": path, "error": exc})
                self._state = None
                return beginning
            log.info("read_model_store_opened", extra={"path": path, "reason": reason or "warm"})
            self._stored = StoredPullRequests(store, self._state.cache_entries)
        stored = self._stored
        checkpoints = stored.store.checkpoints()
        for tp in partitions:
            checkpoint = checkpoints.get(tp.partition)
            if checkpoint is None:
                continue
            low, high = consumer.get_watermark_offsets(tp, timeout=5.0)
            if checkpoint > high or checkpoint < low:
                reason = "ahead_of_log" if checkpoint > high else "behind_log_start"
                log.warning(
                    "read_model_store_untrusted",
                    extra={
                        "partition": tp.partition,
                        "checkpoint": checkpoint,
                        "log_start": low,
                        "log_end": high,
                        "reason": reason,
                    },
                )
                stored.store.reset(reason)
                checkpoints = {}
                break
        self._store = stored
        if not checkpoints and stored.store.count() == 0 and not stored.cold_loading:
            # An empty store filled from the beginning: the cold-load path (see begin_cold_load).
            expected = 0
            for tp in partitions:
                low, high = consumer.get_watermark_offsets(tp, timeout=5.0)
                expected += max(0, high - low)
            stored.begin_cold_load(expected)
            log.info("read_model_store_cold_load", extra={"records": expected})
        return [
            TopicPartition(tp.topic, tp.partition, checkpoints.get(tp.partition, OFFSET_BEGINNING))
            for tp in partitions
        ]

    def _on_caught_up(self) -> None:
        if self._stored is not None:
            self._stored.end_cold_load()
        self._caught_up_event.set()

    def compacting(self) -> bool:
        """True while the store's RocksDB still compacts what a cold load wrote (False without
        a store)."""
        return self._stored is not None and self._stored.store.compacting()

    # --- applying records (event loop) ------------------------------------------------------

    def _apply_records(self, records: Sequence[_Record]) -> None:
        stored = self._stored
        if (
            stored is not None
            and stored.cold_loading
            and not self._folded
            and not self._version_waiters
            and not self._hub.watchers()
            and all(r.entity is not None for r in records)
        ):
            self._load_records(stored, records)
            return
        checkpoints: dict[int, int] = {}
        # The stored versions the batch is checked against, in one read (a store only).
        self._store.prefetch(r.key for r in records if r.entity is not None)
        for record in records:
            self._counts["records"] += 1
            checkpoints[record.partition] = max(
                checkpoints.get(record.partition, 0), record.offset + 1
            )
            if record.garbage:
                self._counts["garbage"] += 1
                log.warning(
                    "snapshot_garbage",
                    extra={
                        "topic": self.topic,
                        "offset": record.offset,
                        "key": record.key,
                        "reason": record.garbage,
                    },
                )
            elif record.entity is None:
                self._counts["tombstones"] += 1
                removed = self._store.remove(record.key)
                self._folded.discard(record.key)
                log.info("snapshot_tombstone", extra={"key": record.key, "removed": removed})
            else:
                self._apply_snapshot(record.entity, record.raw)
        self._store.flush(checkpoints)

    def _load_records(self, stored: StoredPullRequests, records: Sequence[_Record]) -> None:
        """A batch of snapshots only, during a cold load that nobody watches or waits on and
        with nothing folded: what _apply_records does, in one pass (see StoredPullRequests.load)."""
        checkpoints: dict[int, int] = {}
        snapshots: list[tuple[PullRequest, bytes]] = []
        for record in records:
            # A partition's records come in offset order: its last one is its checkpoint.
            checkpoints[record.partition] = record.offset + 1
            snapshots.append((record.entity, record.raw))  # type: ignore[arg-type]
        applied, stale = stored.load(snapshots, checkpoints)
        self._counts["records"] += len(records)
        self._counts["updates"] += applied
        self._counts["stale"] += stale

    def _apply_snapshot(self, entity: PullRequest, raw: bytes | None) -> None:
        key = entity.pull_request_id
        current = self._store.version_of(key)
        if current is not None:
            newer = entity.version > current
            replaces_folded = entity.version == current and key in self._folded
            if not (newer or replaces_folded):
                self._counts["stale"] += 1
                return
            if replaces_folded:
                # Same version as what we folded: take the processor's copy, tell nobody.
                self._store.put(entity, raw)
                self._folded.discard(key)
                return
        self._folded.discard(key)
        self._update(entity, raw)

    def _update(
        self, entity: PullRequest, raw: bytes | None = None, *, folded: bool = False
    ) -> None:
        if folded:
            self._store.put_folded(entity)
        else:
            self._store.put(entity, raw)
        self._counts["updates"] += 1
        self._hub.publish(entity)
        waiters = self._version_waiters.get(entity.pull_request_id)
        if waiters:
            for version, future in waiters:
                if version <= entity.version and not future.done():
                    future.set_result(None)


def _decode(msg: Message) -> _Record:
    """Runs on the consumer thread."""
    raw_key, value = msg.key(), msg.value()
    key, offset, partition = codec.key_text(raw_key), msg.offset() or 0, msg.partition() or 0
    try:
        entity = codec.decode_snapshot(raw_key, value, msg.headers())
    except codec.Undecodable as exc:
        return _Record(key, offset, None, str(exc), partition)
    return _Record(key, offset, entity, "", partition, value)
