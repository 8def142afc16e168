"""``prgate decode`` and the README's kcat + buf recipe against a real broker: records a real
gateway and processor wrote, decoded with the descriptor set shipped in the package."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

from google.protobuf import timestamp_pb2
from helpers.kafka import produce

from prgate.client import Client
from prgate.kafka.contract import Topics
from prgate.kafka.settings import KafkaSettings
from prgate.v1 import events_pb2
from tests.e2e.stack import GatewayProcess

ROOT = Path(__file__).resolve().parents[2]


def decode(kafka: KafkaSettings, *args: str, expect: int = 0) -> list[dict[str, Any]]:
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
        "PRGATE_TOPIC_PREFIX": kafka.topic_prefix,
    }
    done = subprocess.run(
        [sys.executable, "-m", "prgate.cli", "decode", *args, "--timeout", "60"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == expect, f"{done.stdout}\n{done.stderr}"
    return [json.loads(line) for line in done.stdout.splitlines()]


def test_decode_prints_any_topic_s_records_in_an_offset_range(
    gateway: GatewayProcess, kafka_settings: KafkaSettings
) -> None:
    with Client(gateway.target, timeout=20) as client:
        pr = client.open_pull_request(
            "acme/decode", "Decode me", "ada", f"f/{uuid.uuid4().hex[:8]}", "main"
        ).pull_request_id
        client.approve(pr, "bob")
    topics = kafka_settings.topics

    events = [r for r in decode(kafka_settings, topics.events) if r["key"] == pr]
    assert [r["message_type"] for r in events] == ["prgate.v1.EventEnvelope"] * 2
    assert "pullRequestOpened" in events[0]["value"]
    assert events[1]["value"]["pullRequestApproved"]["reviewer"] == "bob"
    assert events[1]["headers"]["message-type"] == "prgate.v1.EventEnvelope"

    # One record by its partition and offset range.
    opened = events[0]
    (only,) = decode(
        kafka_settings,
        topics.events,
        "--partition",
        str(opened["partition"]),
        "--start-offset",
        str(opened["offset"]),
        "--end-offset",
        str(opened["offset"] + 1),
    )
    assert only == opened

    snapshots = [r for r in decode(kafka_settings, topics.pull_requests) if r["key"] == pr]
    assert [s["value"]["version"] for s in snapshots] == ["1", "2"]
    commands = [r for r in decode(kafka_settings, topics.commands) if r["key"] == pr]
    assert [c["message_type"] for c in commands] == ["prgate.v1.CommandEnvelope"] * 2

    missing = subprocess.run(
        [sys.executable, "-m", "prgate.cli", "decode", f"{topics.prefix}no-such-topic"],
        cwd=ROOT,
        env={**os.environ, "KAFKA_BOOTSTRAP_SERVERS": kafka_settings.bootstrap_servers},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert missing.returncode == 1
    assert f"prgate: error: topic {topics.prefix}no-such-topic does not exist" in missing.stderr


def readme_recipe() -> str:
    text = (ROOT / "README.md").read_text()
    block = re.search(
        r"<!-- kcat-recipe:begin -->\n```sh\n(.*?)```\n<!-- kcat-recipe:end -->", text, re.S
    )
    assert block, "README lost its kcat + buf recipe"
    return block.group(1)


def test_readme_kcat_and_buf_recipe_decodes_a_record(
    gateway: GatewayProcess, kafka_settings: KafkaSettings
) -> None:
    kcat = shutil.which("kcat")
    assert kcat, "kcat is not installed: `apt-get install kcat` (Debian)"
    with Client(gateway.target, timeout=20) as client:
        pr = client.open_pull_request(
            "acme/kcat", "Read me with kcat", "ada", f"f/{uuid.uuid4().hex[:8]}", "main"
        ).pull_request_id
    (record,) = [r for r in decode(kafka_settings, kafka_settings.topics.events) if r["key"] == pr]
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": kafka_settings.bootstrap_servers,
        "TOPIC": kafka_settings.topics.events,
        "PARTITION": str(record["partition"]),
        "OFFSET": str(record["offset"]),
    }
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", readme_recipe()],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    decoded = json.loads(done.stdout)
    assert decoded["pullRequestId"] == pr
    assert decoded["pullRequestOpened"]["title"] == "Read me with kcat"


def test_crafted_records_are_error_lines_for_decode_and_events_tail(
    kafka_settings: KafkaSettings, ensured_topics: Topics
) -> None:
    """Attack: records anyone with write access to a topic can produce, that prgate never
    writes: not protobuf, a bad UTF-8 string, a Timestamp out of range (json_format raised and
    both commands ended in a traceback), a key and a header that are not UTF-8. Each is one
    line with ``error`` and the bytes; both commands exit 0."""
    far = timestamp_pb2.Timestamp(seconds=2**62)
    crafted = [
        (b"pr-\xff", b"\x0a\x05\xff\xff\xff\xff\xff", [("odd", b"\xff\xfe")]),
        (b"pr-1", b"\xff\xff\xff\xff", []),
        (
            b"pr-2",
            events_pb2.EventEnvelope(
                event_id="e-1", pull_request_id="pr-2", occurred_at=far
            ).SerializeToString(),
            [("message-type", b"prgate.v1.EventEnvelope")],
        ),
    ]
    produce(kafka_settings, ensured_topics.events, crafted)
    lines = decode(kafka_settings, ensured_topics.events)
    assert len(lines) == 3
    assert all(line["error"] and line["value_base64"] for line in lines), lines
    assert any("cannot be shown as JSON" in line["error"] for line in lines), lines

    tail_args = ["events", "tail", "--from-beginning", "--json", "--max", "1", "--timeout", "60"]
    tail = subprocess.run(
        [sys.executable, "-m", "prgate.cli", *tail_args],
        cwd=ROOT,
        env={
            **os.environ,
            "KAFKA_BOOTSTRAP_SERVERS": kafka_settings.bootstrap_servers,
            "PRGATE_TOPIC_PREFIX": kafka_settings.topic_prefix,
        },
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert tail.returncode == 0, tail.stderr
    assert "Traceback" not in tail.stderr
    # The partitions are read side by side: --max 1 may end before the others' garbage.
    reported = tail.stderr.splitlines()[1:]
    assert all(line.startswith("prgate: undecodable record at ") for line in reported), reported
    (shown,) = [json.loads(line) for line in tail.stdout.splitlines()]
    assert shown["message_type"] == "prgate.v1.EventEnvelope"
    assert "cannot be shown as protobuf JSON" in shown["error"]
