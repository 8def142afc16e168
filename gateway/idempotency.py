"""Command ids, idempotency keys and the commands this gateway still waits on.

The same idempotency key from the same caller for the same pull request always maps to the
same command id, on every gateway (:mod:`prgate.kafka.command_ids`: the key gives the id's
base, the pull request its tag); the processor recognises a command id it has handled and
answers it again without new events. This module also remembers, per gateway, what each key was
used for, so reusing a key for a different command, on the same pull request or another one, is
refused with ALREADY_EXISTS.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from dataclasses import dataclass

from prgate.kafka import command_ids


def new_command_id(pull_request_id: str) -> str:
    """A fresh command id for a call without an idempotency key on ``pull_request_id``."""
    return command_ids.bind(command_ids.new_base(), pull_request_id)


def command_id_for_key(caller: str, idempotency_key: str, pull_request_id: str) -> str:
    """The command id of an idempotency key on ``pull_request_id``: stable for the same caller,
    key and pull request."""
    return command_ids.bind(command_ids.key_base(caller, idempotency_key), pull_request_id)


def open_ids_for_key(caller: str, idempotency_key: str) -> tuple[str, str]:
    """``(command id, pull request id)`` of an OpenPullRequest sent with an idempotency key."""
    base = command_ids.key_base(caller, idempotency_key)
    pull_request_id = command_ids.opened_pull_request_id(base)
    return command_ids.bind(base, pull_request_id), pull_request_id


def pull_request_id_for(base: str) -> str:
    """OpenPullRequest's new id, derived from its command id's base so a retried open creates
    one pull request (``pr-<base>``)."""
    return command_ids.opened_pull_request_id(base)


@dataclass
class KeyUse:
    fingerprint: bytes
    pull_request_id: str
    accepted: bool = False


class IdempotencyTable:
    """Bounded LRU of command id -> what it was used for on this gateway, and of command id
    base -> the command id that used it (:meth:`id_of_base`), so one idempotency key used for
    two pull requests (two command ids, one base) is told apart from two keys."""

    def __init__(self, capacity: int) -> None:
        self._capacity = capacity
        self._uses: OrderedDict[str, KeyUse] = OrderedDict()
        self._bases: OrderedDict[str, str] = OrderedDict()

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
        self.saw(command_id)

    def saw(self, command_id: str) -> None:
        """Remember that ``command_id`` was used (accepted here, or a result seen from any
        gateway); the first id of a base is kept."""
        base = command_ids.base_of(command_id)
        if base is None:
            return
        self._bases.setdefault(base, command_id)
        self._bases.move_to_end(base)
        while len(self._bases) > self._capacity:
            self._bases.popitem(last=False)

    def id_of_base(self, base: str) -> str | None:
        """The command id this gateway saw first with ``base`` (recently), or None."""
        return self._bases.get(base)

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
        # wait_idle calls that found an earlier command pending and waited for it.
        self.waits = 0

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
        self.waits += 1
        try:
            await asyncio.wait_for(event.wait(), timeout=max(0.0, timeout))
        except TimeoutError:
            return not self.has_pending(pull_request_id)
        return True

    def __len__(self) -> int:
        return len(self._pr_of)
