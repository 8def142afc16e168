"""Command ids for hand-made commands: bound to their pull request, as the gateway makes them
(:mod:`prgate.kafka.command_ids`), and readable in a test from a short name."""

from __future__ import annotations

import uuid

from prgate.kafka import command_ids

_NAMESPACE = uuid.UUID("0b6a3c2e-2f4d-4a59-8f0e-7c1d2e3f4a5b")


def base(name: str) -> str:
    """A base (32 hex digits) derived from ``name``: the same name, the same base."""
    return uuid.uuid5(_NAMESPACE, name).hex


def bound_id(name: str, pull_request_id: str) -> str:
    """The command id named ``name`` on ``pull_request_id`` (bound, as the processor wants)."""
    return command_ids.bind(base(name), pull_request_id)


def new_id(pull_request_id: str) -> str:
    """A fresh random command id bound to ``pull_request_id``."""
    return command_ids.bind(command_ids.new_base(), pull_request_id)
