"""Command ids, idempotency keys and the commands this gateway still waits on.

The same idempotency key from the same caller always maps to the same command id (a UUIDv5),
on every gateway; the processor recognises a command id it has handled and answers it again
without new events. This module also remembers, per gateway, what each key was used for, so
reusing a key for a different command is refused with ALREADY_EXISTS.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass

_COMMAND_NAMESPACE = uuid.UUID("6f1d2b8e-8c1e-4d47-9a0b-2f6f3c1d7a10")


def new_command_id() -> str:
    return uuid.uuid4().hex


def command_id_for_key(caller: str, idempotency_key: str) -> str:
    """The command id of an idempotency key: stable for the same caller and key."""
    return uuid.uuid5(_COMMAND_NAMESPACE, f"{caller}\x1f{idempotency_key}").hex


def pull_request_id_for(command_id: str) -> str:
    """OpenPullRequest's new id, derived from the command id so a retried open creates one PR."""
    return f"pr-{command_id}"


@dataclass
class KeyUse:
    fingerprint: bytes
    pull_request_id: str
    accepted: bool = False


class IdempotencyTable:
    """Bounded LRU of command id -> what it was used for on this gateway."""

    def __init__(self, capacity: int) -> None:
        self._capacity = capacity
        self._uses: OrderedDict[str, KeyUse] = OrderedDict()

    def get(self, command_id: str) -> KeyUse | None:
        use = self._uses.get(command_id)
        if use is not None:
            self._uses.move_to_end(command_id)
        return use

    def put(self, command_id: str, use: KeyUse) -> None:
        self._uses[command_id] = use
        self._uses.move_to_end(command_id)
        while len(self._uses) > self._capacity:
            self._uses.popitem(last=False)

    def __len__(self) -> int:
        return len(self._uses)


class VersionTable:
    """Bounded LRU of pull request id -> the highest version a result announced for it."""

    def __init__(self, capacity: int) -> None:
        self._capacity = capacity
        self._versions: OrderedDict[str, int] = OrderedDict()

    def raise_to(self, pull_request_id: str, version: int) -> None:
        if version > self._versions.get(pull_request_id, 0):
            self._versions[pull_request_id] = version
        if pull_request_id in self._versions:
            self._versions.move_to_end(pull_request_id)
        while len(self._versions) > self._capacity:
            self._versions.popitem(last=False)

    def get(self, pull_request_id: str) -> int:
        return self._versions.get(pull_request_id, 0)


class PendingCommands:
    """Commands this gateway accepted whose results have not arrived yet, by pull request.

    Read-your-writes: before checking a command against its read model, the gateway waits
    until the earlier commands it accepted for the same pull request have completed, so an
    ACCEPTED open followed by an approve is not refused as NOT_FOUND. Entries expire after
    ``ttl_s`` so a result that never comes cannot block a pull request forever.
    """

    def __init__(self, ttl_s: float) -> None:
        self._ttl_s = ttl_s
        self._by_pr: dict[str, dict[str, float]] = {}
        self._pr_of: dict[str, str] = {}
        self._idle: dict[str, asyncio.Event] = {}

    def add(self, pull_request_id: str, command_id: str) -> None:
        self._by_pr.setdefault(pull_request_id, {})[command_id] = time.monotonic() + self._ttl_s
        self._pr_of[command_id] = pull_request_id
        self._idle.setdefault(pull_request_id, asyncio.Event()).clear()

    def done(self, command_id: str) -> None:
        pull_request_id = self._pr_of.pop(command_id, None)
        if pull_request_id is None:
            return
        commands = self._by_pr.get(pull_request_id, {})
        commands.pop(command_id, None)
        self._settle(pull_request_id)

    def _settle(self, pull_request_id: str) -> None:
        now = time.monotonic()
        commands = self._by_pr.get(pull_request_id, {})
        for command_id, expires in list(commands.items()):
            if expires <= now:
                del commands[command_id]
                self._pr_of.pop(command_id, None)
        if not commands:
            self._by_pr.pop(pull_request_id, None)
            event = self._idle.pop(pull_request_id, None)
            if event is not None:
                event.set()

    def has_pending(self, pull_request_id: str) -> bool:
        self._settle(pull_request_id)
        return pull_request_id in self._by_pr

    async def wait_idle(self, pull_request_id: str, timeout: float) -> bool:
        """Wait until no command is pending for the pull request; False if time ran out."""
        if not self.has_pending(pull_request_id):
            return True
        event = self._idle[pull_request_id]
        try:
            await asyncio.wait_for(event.wait(), timeout=max(0.0, timeout))
        except TimeoutError:
            return not self.has_pending(pull_request_id)
        return True

    def __len__(self) -> int:
        return len(self._pr_of)
