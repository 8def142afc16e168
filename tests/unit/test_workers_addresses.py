"""Per-process listen addresses of ``--workers N`` / ``--instances N`` (prgate/workers.py)."""

from __future__ import annotations

import pytest

from prgate.workers import Supervisor, nth_address


@pytest.mark.parametrize(
    ("address", "index", "expected"),
    [
        ("127.0.0.1:9100", 0, "127.0.0.1:9100"),
        ("127.0.0.1:9100", 3, "127.0.0.1:9103"),
        ("[::1]:9100", 1, "[::1]:9101"),
        (":9100", 2, ":9102"),
        ("127.0.0.1:0", 5, "127.0.0.1:0"),  # any free port, for each worker
        ("", 4, ""),  # off stays off
    ],
)
def test_worker_i_listens_on_port_plus_i(address: str, index: int, expected: str) -> None:
    assert nth_address(address, index) == expected


def test_an_address_without_a_port_is_refused() -> None:
    with pytest.raises(ValueError, match="host:port"):
        nth_address("localhost", 1)


def test_a_supervisor_needs_at_least_one_process() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        Supervisor("gateway", 0, lambda index: 0, ())
