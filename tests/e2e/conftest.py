"""End-to-end fixtures: real broker, real processor and gateway processes, real gRPC channels."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers.kafka import free_port

from prgate.kafka.contract import Topics
from prgate.kafka.settings import KafkaSettings
from tests.e2e.stack import GatewayProcess, Stack


@pytest.fixture
def stack(kafka_settings: KafkaSettings, ensured_topics: Topics, tmp_path: Path) -> Iterator[Stack]:
    services = Stack(kafka_settings, tmp_path)
    try:
        yield services
    finally:
        services.close()
        # Shown by pytest only when the test failed.
        for service in services.services:
            print(f"----- {service.name} log tail -----\n{service.log_tail(60)}")


@pytest.fixture
def gateway(stack: Stack) -> GatewayProcess:
    """One processor and one gateway, the gateway SERVING."""
    stack.processor()
    return stack.gateway(free_port())
