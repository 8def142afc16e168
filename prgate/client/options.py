"""The options of one command call: :class:`CallOptions`, and the keywords that set them.

Every command method (``open_pull_request`` … ``revert``) takes the same keywords:

- ``mode``: ``"accepted"`` returns once the command is durably on Kafka, ``"completed"`` waits
  for the processor's result; ``None`` is the command's default (COMPLETED, but ACCEPTED for
  merge and revert, which callers follow with ``watch_command``/``wait_command``);
- ``idempotency_key``: a key of the caller's (default: a new uuid4 per call, reused for the
  client's own retries);
- ``expected_version``: apply only at exactly this pull request version, else ``Aborted``;
- ``timeout``: seconds per attempt (default: the client's ``timeout``);
- ``options``: a :class:`CallOptions` holding any of the above, e.g. shared by many calls; a
  keyword given beside it (and not None) wins over its field.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, fields, replace
from typing import Any, TypedDict

from prgate.client.requests import MODES, Mode, lookup
from prgate.v1 import command_service_pb2 as svc


@dataclass(frozen=True)
class CallOptions:
    """How one command call is made; None everywhere means the default (see the module).

    ``mode`` is checked when the options are made: anything but ``"accepted"`` or
    ``"completed"`` (any case) raises ValueError before a call is made.
    """

    mode: Mode | None = None
    idempotency_key: str | None = None
    expected_version: int | None = None
    timeout: float | None = None

    def __post_init__(self) -> None:
        if self.mode is not None:
            lookup(MODES, self.mode, "mode")

    @classmethod
    def of(cls, keywords: CallKeywords) -> CallOptions:
        """The options of a command method's ``**keywords``: ``options`` (or all defaults),
        overridden by every other keyword that is not None. An unknown keyword raises
        TypeError, as it would on an explicit signature."""
        given: dict[str, Any] = dict(keywords)
        base = given.pop("options", None) or cls()
        unknown = given.keys() - {f.name for f in fields(cls)}
        if unknown:
            raise TypeError(f"unexpected keyword argument(s): {', '.join(sorted(unknown))}")
        return replace(base, **{name: value for name, value in given.items() if value is not None})

    def command_options(self) -> svc.CommandOptions:
        """The request's ``CommandOptions``, with a fresh uuid4 key when none was given."""
        options = svc.CommandOptions(idempotency_key=self.idempotency_key or uuid.uuid4().hex)
        if self.mode is not None:
            options.response_mode = lookup(MODES, self.mode, "mode")
        if self.expected_version is not None:
            options.expected_version = self.expected_version
        return options


class CallKeywords(TypedDict, total=False):
    """The keywords of every command method (see the module); the fields of
    :class:`CallOptions`, plus ``options`` itself."""

    mode: Mode | None
    idempotency_key: str | None
    expected_version: int | None
    timeout: float | None
    options: CallOptions | None
