"""The processor's side of the consumer group: the group consumer on the commands topic, the
state of the partitions it owns, and its rebalance callbacks.

Rebalancing is cooperative-sticky: partitions that stay keep their in-memory state. On
assignment, each new partition's pull requests are restored from the compacted topic (with a
consumer of its own) before any of its commands is handled; revoked or lost partitions are
forgotten. Callbacks run inside ``consume()``, which the loop (:mod:`processor.loop`) calls
only between transactions. A group consumer that stops delivering is replaced
(:mod:`processor.watchdog`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition
from confluent_kafka.admin import AdminClient

from prgate.state import SnapshotStore, StoreIdentity, StoreLocked, StoreResources
from processor.observability import ProcessorObservability
from processor.reply_topics import METADATA_TIMEOUT_S
from processor.restore import RestoreError, RestoreStats, restore_partitions
from processor.settings import ProcessorSettings
from processor.state_store import MemoryPartition, PartitionState, PartitionStates, StoredPartition
from processor.watchdog import ConsumerWatchdog, lagging_partitions

log = logging.getLogger(__name__)

IDLE_POLL_S = 0.1  # bounds how long a stop request waits for the loop
_T = TypeVar("_T")  # what one consume() call returns a list of (Message)
LOCK_WAIT_S = 5.0  # longest wait for a store another process holds (then: state in memory)
RESTORE_BACKOFF_S = (0.2, 2.0)  # first and longest wait between restore attempts

# Errors that say "not now" while a cluster moves leaders or coordinators; librdkafka marks
# only some of them retriable (a broker handle destroyed by a metadata update is not).
_TRANSIENT_CODES = frozenset(
    {
        KafkaError._DESTROY_BROKER,
        KafkaError._NOENT,  # ListOffsets: "No leaders found" while a partition has none
        KafkaError._TRANSPORT,
        KafkaError._TIMED_OUT,
        KafkaError._ALL_BROKERS_DOWN,
        KafkaError._WAIT_COORD,
        KafkaError._UNKNOWN_PARTITION,
        KafkaError.NOT_LEADER_FOR_PARTITION,
        KafkaError.LEADER_NOT_AVAILABLE,
        KafkaError.REQUEST_TIMED_OUT,
        KafkaError.NOT_COORDINATOR,
        KafkaError.COORDINATOR_NOT_AVAILABLE,
        KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
        KafkaError.FENCED_LEADER_EPOCH,
        KafkaError.UNKNOWN_LEADER_EPOCH,
        KafkaError.OFFSET_NOT_AVAILABLE,
        KafkaError.NOT_ENOUGH_REPLICAS,
    }
)


def transient(error: KafkaError) -> bool:
    """True for an error that a later attempt of the same read can get past."""
    return not error.fatal() and (error.retriable() or error.code() in _TRANSIENT_CODES)


class GroupMember:
    """The group consumer, the restore consumer and the owned partitions' state.

    ``on_error`` is the consumer's ``error_cb``. ``fail(reason)`` ends the run (a restore that
    failed inside a callback, where raising would leave librdkafka's assignment half-done);
    while ``failed()`` is true an assignment restores nothing. ``watchdog`` is replaceable for
    tests.
    """

    def __init__(
        self,
        settings: ProcessorSettings,
        instance_id: str,
        observe: ProcessorObservability,
        *,
        on_error: Callable[[KafkaError], None],
        fail: Callable[[str], None],
        failed: Callable[[], bool],
    ) -> None:
        self._settings = settings
        self._topics = settings.topics
        self._instance_id = instance_id
        self._observe = observe
        self._on_error = on_error
        self._fail = fail
        self._failed = failed
        self.states = PartitionStates()
        self._offsets: AdminClient | None = None  # the watchdog's (see _lagging)
        self.watchdog = ConsumerWatchdog(lagging=self._lagging)
        self._consumer: Consumer | None = None
        self._restorer: Consumer | None = None
        self._cluster_id = ""
        self._last_batch = 0  # commands in the previous batch: whether waiting for more pays
        # One block cache and write-buffer budget for all of this process's stores.
        self.store_resources = (
            StoreResources(settings.state_memory()) if settings.state_path is not None else None
        )
        self.restores: list[RestoreStats] = []  # what each assignment's restore did

    def start(self) -> None:
        """Create the restore consumer (connected, leaders known) and join the group."""
        self._restorer = Consumer(self._settings.restore_config())
        # Connect and learn the partition leaders now, not inside the first assignment.
        metadata = self._restorer.list_topics(self._topics.pull_requests, METADATA_TIMEOUT_S)
        self._cluster_id = metadata.cluster_id or ""
        self._consumer = self._new_consumer()

    @property
    def consumer(self) -> Consumer:
        """The current group consumer (after :meth:`start`)."""
        assert self._consumer is not None
        return self._consumer

    def list_topics(self, topic: str, timeout: float) -> Any:
        """Metadata of ``topic`` from the group consumer, which never auto-creates it."""
        return self.consumer.list_topics(topic, timeout)

    def next_batch(self) -> list[Message]:
        """Wait (bounded) for a first command, then take what arrives within the batch wait.

        The wait is adaptive: only after a batch of more than one command (commands arrive
        while transactions commit, so waiting fills the next one) does it wait up to
        ``batch_max_wait_ms`` for more; after a lone command it takes only what is already
        fetched, so a command at low load is not held back for company that does not come.
        """
        settings = self._settings
        batch = take_batch(
            self.consumer.consume,
            settings.batch_max_records,
            settings.batch_max_wait_ms / 1000,
            self._last_batch,
        )
        if batch:
            self._last_batch = len(batch)
        return batch

    def _lagging(self, consumer: Consumer, timeout_s: float) -> dict[int, tuple[int, int]] | None:
        """The watchdog's query (:func:`processor.watchdog.lagging_partitions`) on an admin
        client of its own, replaced after a failed query (its metadata may name a dead leader)."""
        if self._offsets is None:
            self._offsets = AdminClient(self._settings.client_config())
        found = lagging_partitions(consumer, self._offsets, timeout_s)
        if found is None:
            self._offsets = None
        return found

    def delivered(self) -> None:
        """The consumer delivered records: it is not wedged."""
        self.watchdog.delivered()

    def idle(self) -> None:
        """Nothing came: let the watchdog check the consumer, and replace a wedged one."""
        wedged = self.watchdog.idle(self.consumer)
        if wedged is not None:
            self._replace_consumer(wedged)

    def restore(
        self,
        partitions: list[int],
        timeout_s: float,
        committed: Mapping[int, int] | None = None,
    ) -> None:
        """Bring ``partitions`` up to the pull-requests topic's end and install them.

        With a state directory each partition has a RocksDB store there that survives
        revocation and restarts, so only the records after its checkpoint are replayed.
        ``committed`` (partition -> the group's committed commands offset) lets a store that
        applied an uncommitted transaction be detected (see :func:`restore_partitions`).
        Raises KafkaException or RestoreError when that fails (the opened stores are closed).
        """
        topic = self._topics.pull_requests
        deadline = time.monotonic() + timeout_s
        # A partition restored again (a commit outcome in doubt) closes its store first: the
        # replay from its checkpoint then rebuilds what Kafka holds.
        self.states.drop(partitions)
        opened: dict[int, PartitionState] = {}
        try:
            for partition in partitions:
                opened[partition] = self._open_state(topic, partition, deadline)
            # New clients per attempt: ones kept across a leader change went on asking the
            # old leader, the admin client with its stale leader epoch (FENCED_LEADER_EPOCH)
            # for the whole restore deadline, the consumer fetching from a partitioned-off
            # broker until its socket timed out (60 s).
            reader = Consumer(self._settings.restore_config())
            try:
                self.restores.append(
                    restore_partitions(
                        reader,
                        topic,
                        opened,
                        max(1.0, deadline - time.monotonic()),
                        committed,
                        # Last stable offsets and log ends, to wait for open transactions.
                        offsets=AdminClient(self._settings.client_config()),
                    )
                )
            finally:
                _close_quietly(reader)
        except BaseException:
            for state in opened.values():
                state.close()
            raise
        for partition, state in opened.items():
            self.states.put_partition(partition, state)

    def _open_state(self, topic: str, partition: int, deadline: float) -> PartitionState:
        """The partition's state: in memory, or its store under the state directory.

        A store locked by another process (the partition's previous owner on this host still
        closing it, or a zombie with our instance id) is waited for at most
        ``LOCK_WAIT_S``; then this assignment keeps the partition in memory, restored from
        the beginning (correct, only not bounded), rather than stall the partition or
        deadlock with the holder.
        """
        root = self._settings.state_path
        if root is None or self.store_resources is None:
            return MemoryPartition()
        path = root / "processor" / self._settings.group_id / f"{topic}-{partition}"
        identity = StoreIdentity(self._cluster_id, topic, (partition,))
        wait_s = 0.05
        give_up = min(deadline, time.monotonic() + LOCK_WAIT_S)
        while True:
            try:
                store, reason = SnapshotStore.open(path, identity, self.store_resources)
                break
            except StoreLocked as exc:
                if time.monotonic() + wait_s > give_up:
                    log.warning(
                        "state_store_locked",
                        extra={
                            "partition": partition,
                            "path": path,
                            "error": exc,
                            "state": "memory",
                        },
                    )
                    return MemoryPartition()
                # The lock belongs to another process; it has no event to wait on.
                time.sleep(wait_s)
                wait_s = min(wait_s * 2, 1.0)
            except OSError as exc:
                raise RestoreError(f"state store {path} cannot be opened: {exc}") from exc
        if reason:
            log.info(
                "state_store_opened", extra={"partition": partition, "path": path, "reason": reason}
            )
        return StoredPartition(store, partition, self._settings.state_cache_entries)

    def fresh_committed(
        self, partitions: list[TopicPartition], timeout: float
    ) -> list[TopicPartition]:
        """The group's committed offsets of ``partitions``, read by a new consumer of the group
        that never joins it (its own coordinator connection); raises KafkaException."""
        config = self._settings.consumer_config(self._instance_id)
        config.pop("group.instance.id", None)
        config["client.id"] = f"{config.get('client.id', 'prgate-processor')}-offsets"
        fetcher = Consumer(config | {"error_cb": lambda error: None})
        try:
            return list(fetcher.committed(partitions, timeout=timeout))
        finally:
            try:
                fetcher.close()
            except (KafkaException, RuntimeError) as exc:
                log.warning("consumer_close_failed", extra={"error": exc})

    def close(self) -> None:
        """Leave the group (our partitions move at once), close both consumers and the
        partitions' state (stores stay on disk)."""
        if self._consumer is not None:
            try:
                self._consumer.close()
            except (KafkaException, RuntimeError) as exc:
                log.warning("consumer_close_failed", extra={"error": exc})
        if self._restorer is not None:
            try:
                self._restorer.close()
            except (KafkaException, RuntimeError) as exc:
                log.warning("restore_consumer_close_failed", extra={"error": exc})
        self.states.close()

    def _new_consumer(self) -> Consumer:
        consumer = Consumer(
            self._settings.consumer_config(self._instance_id) | {"error_cb": self._on_error}
        )
        consumer.subscribe(
            [self._topics.commands],
            on_assign=self._on_assign,
            on_revoke=self._on_revoke,
            on_lost=self._on_lost,
        )
        return consumer

    def _replace_consumer(self, reason: str) -> None:
        """A new group consumer for one that stopped delivering (:mod:`processor.watchdog`).

        Between batches nothing is staged, so the partitions are simply given up and restored
        again on the new consumer's assignment; callbacks of the old one are ignored.
        """
        log.warning("consumer_replacing", extra={"reason": reason})
        old, self._consumer = self._consumer, None
        self.states.drop(self.states.partitions())
        if old is not None:
            self.watchdog.retire(old)
        self._consumer = self._new_consumer()
        log.info("consumer_replaced")

    # -- rebalancing (inside consume()) ------------------------------------------------------

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        if not partitions or self._failed() or consumer is not self._consumer:
            return
        numbers = sorted(tp.partition for tp in partitions)
        log.info("partitions_assigned", extra={"partitions": ",".join(map(str, numbers))})
        timeout_s = self._settings.restore_timeout_ms / 1000
        deadline = time.monotonic() + timeout_s
        backoff_s = RESTORE_BACKOFF_S[0]
        attempt = 1
        while True:
            try:
                # Under read_committed this waits until a predecessor's pending transactional
                # offsets are resolved: only then do the snapshots we read match those offsets.
                offsets = consumer.committed(
                    partitions, timeout=max(1.0, deadline - time.monotonic())
                )
                self._observe.assigned(offsets)
                self.restore(
                    numbers,
                    max(1.0, deadline - time.monotonic()),
                    {tp.partition: tp.offset for tp in offsets if tp.error is None},
                )
                return
            except KafkaException as exc:
                error = exc.args[0] if exc.args and isinstance(exc.args[0], KafkaError) else None
                if (
                    error is not None
                    and transient(error)
                    and time.monotonic() + backoff_s < deadline
                    and not self._failed()
                ):
                    # A leader, coordinator or broker moved (a cluster losing a node): the
                    # same restore succeeds once metadata catches up.
                    log.warning(
                        "restore_retry",
                        extra={
                            "partitions": numbers,
                            "attempt": attempt,
                            "backoff_s": backoff_s,
                            "error": error,
                        },
                    )
                    time.sleep(backoff_s)  # inside consume(): there is no loop to yield to
                    backoff_s = min(backoff_s * 2, RESTORE_BACKOFF_S[1])
                    attempt += 1
                    continue
                failure: Exception = exc
            except RestoreError as exc:
                failure = exc
            # Raising here would leave librdkafka's assignment half-done; stop the loop instead.
            self._fail(f"restoring partitions {numbers} failed: {failure}")
            log.error("restore_failed", extra={"partitions": numbers, "error": failure})
            return

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        if consumer is not self._consumer:
            return  # a replaced consumer closing
        numbers = sorted(tp.partition for tp in partitions)
        self.states.drop(numbers)
        if numbers:
            log.info("partitions_revoked", extra={"partitions": ",".join(map(str, numbers))})

    def _on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        if consumer is not self._consumer:
            return
        numbers = sorted(tp.partition for tp in partitions)
        self.states.drop(numbers)
        log.warning("partitions_lost", extra={"partitions": ",".join(map(str, numbers))})


def _close_quietly(consumer: Consumer) -> None:
    try:
        consumer.close()
    except (KafkaException, RuntimeError) as exc:
        log.warning("restore_consumer_close_failed", extra={"error": exc})


def take_batch(
    consume: Callable[[int, float], list[_T]], most: int, wait_s: float, last: int
) -> list[_T]:
    """One batch from ``consume(n, timeout_s)`` (a consumer's ``consume``): wait up to
    :data:`IDLE_POLL_S` for a first record, then take up to ``most`` in all, waiting up to
    ``wait_s`` for them only when the previous batch had ``last`` > 1 records, else taking
    only what is already fetched (timeout 0)."""
    batch = consume(1, IDLE_POLL_S)
    if batch and most > 1:
        batch.extend(consume(most - 1, wait_s if last > 1 else 0.0))
    return batch
