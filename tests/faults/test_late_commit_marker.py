"""A commit marker late on the pull-requests partition when a processor takes partitions over,
on the three-node cluster.

A transaction's markers reach its partitions independently (the transaction coordinator writes
each to that partition's leader), so the marker on ``__consumer_offsets`` (which releases the
new owner's ``committed()`` under ``read_committed``) can land before the one on the
pull-requests partition. Until that second marker is written, the predecessor's last snapshot
is part of an open transaction: a ``read_committed`` reader's end of the partition (the last
stable offset) is before it. This test makes that state on purpose and holds it: a
transactional producer writes a pull request's next snapshot and does not commit; a processor
starts and is assigned the partitions. It must not decide a command on the older snapshot: its
restore waits until the last stable offset reaches the log end (processor/restore.py), and the
next command of that pull request gets the version after the late snapshot's.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from confluent_kafka import Producer

from prgate.kafka import codec
from prgate.kafka.cluster import LocalCluster
from prgate.kafka.settings import KafkaSettings
from prgate.kafka.topics import ensure_topics
from prgate.v1 import command_service_pb2 as svc
from tests.faults.conftest import close_stack, open_stack, wait_log
from tests.faults.ledger import Ledger
from tests.faults.load import Client, open_fields
from tests.faults.readback import read_events, read_topic

pytestmark = pytest.mark.cluster

LATE_TITLE = "Retitled in a transaction whose marker is late"


def test_a_restore_waits_for_a_commit_marker_late_on_the_pull_requests_partition(
    session_cluster: LocalCluster, topic_prefix: str, tmp_path: Path
) -> None:
    session_cluster.wait_fully_replicated(timeout=180)
    kafka = KafkaSettings(
        bootstrap_servers=session_cluster.bootstrap_servers,
        topic_prefix=topic_prefix,
        partitions=3,
    )
    ensure_topics(kafka)
    stack = open_stack(kafka, tmp_path)
    producer: Producer | None = None
    try:
        first = stack.processor("p0")
        gateway = stack.gateway()
        client = Client(lambda: [gateway], Ledger(), deadline_s=15.0)
        opened = client.send("OpenPullRequest", open_fields(1), svc.RESPONSE_MODE_COMPLETED)
        assert (opened.code, opened.state) == ("OK", "COMMAND_STATE_SUCCEEDED"), opened
        pr = opened.pull_request_id
        assert stack.stop(first) == 0

        # The predecessor's last transaction with its marker on the pull-requests partition
        # still on its way: the pull request's next snapshot, written and not committed.
        [record] = [
            m
            for m in read_topic(kafka, kafka.topics.pull_requests)
            if codec.key_text(m.key()) == pr
        ]
        late = codec.decode_snapshot(record.key(), record.value(), record.headers())
        assert late is not None and late.version == 1
        late.title = LATE_TITLE
        late.version = 2
        producer = Producer(
            kafka.client_config(**{"transactional.id": f"{topic_prefix}late-marker", "acks": "all"})
        )
        producer.init_transactions(30)
        producer.begin_transaction()
        producer.produce(
            kafka.topics.pull_requests,
            key=record.key(),
            value=late.SerializeToString(),
            headers=record.headers(),
            partition=record.partition(),
        )
        assert producer.flush(30) == 0

        successor = stack.processor("p1")
        wait_log(successor, '"event": "restore_waiting_for_transactions"', timeout=120)
        producer.commit_transaction(30)  # the marker lands
        wait_log(successor, '"event": "restore_transactions_settled"', timeout=60)
        wait_log(successor, '"event": "partitions_restored"', timeout=60)

        approved = client.send(
            "ApprovePullRequest",
            {"pull_request_id": pr, "reviewer": "bob"},
            svc.RESPONSE_MODE_COMPLETED,
        )
        assert (approved.code, approved.state) == ("OK", "COMMAND_STATE_SUCCEEDED"), approved
        versions = [e.version for e in read_events(kafka) if e.pull_request_id == pr]
        # 1: opened; 2: the late snapshot (no event of ours); 3: decided on the late snapshot.
        assert versions == [1, 3], versions
        [*_, last] = [
            m
            for m in read_topic(kafka, kafka.topics.pull_requests)
            if codec.key_text(m.key()) == pr
        ]
        snapshot = codec.decode_snapshot(last.key(), last.value(), last.headers())
        assert snapshot is not None
        assert (snapshot.version, snapshot.title) == (3, LATE_TITLE)
        stack.assert_alive()
    finally:
        if producer is not None:
            producer.flush(5)
        close_stack(stack)
