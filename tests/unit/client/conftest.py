"""Fixtures of the client unit tests: a scripted fake gateway on a loopback port."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.unit.client.fake_gateway import FakeGateway


@pytest.fixture
def fake() -> Iterator[FakeGateway]:
    server = FakeGateway().start()
    try:
        yield server
    finally:
        server.stop()
