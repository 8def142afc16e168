"""The processor refuses to start on topics that break the contract."""

from __future__ import annotations

import subprocess
import sys

from confluent_kafka.admin import AdminClient, NewTopic
from integration.processor_helpers import processor_settings
from integration.processor_runners import REPO_ROOT, processor_env

from prgate.kafka.settings import KafkaSettings


def test_refuses_commands_and_pull_requests_with_different_partition_counts(
    kafka_settings: KafkaSettings,
) -> None:
    topics = kafka_settings.topics
    admin = AdminClient(kafka_settings.client_config())
    created = admin.create_topics(
        [
            NewTopic(topics.commands, 3, 1, config={"cleanup.policy": "delete"}),
            NewTopic(topics.events, 3, 1, config={"cleanup.policy": "delete"}),
            NewTopic(topics.pull_requests, 2, 1, config={"cleanup.policy": "compact"}),
            NewTopic(topics.results, 3, 1, config={"cleanup.policy": "delete"}),
            NewTopic(topics.dlq, 1, 1, config={"cleanup.policy": "delete"}),
        ]
    )
    for future in created.values():
        future.result(timeout=15)
    run = subprocess.run(
        [sys.executable, "-m", "processor"],
        cwd=REPO_ROOT,
        env=processor_env(processor_settings(kafka_settings)),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert run.returncode == 2, run.stderr[-2000:]
    assert "different partition counts" in run.stderr
    assert f"{topics.pull_requests}=2" in run.stderr
