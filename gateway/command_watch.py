"""WatchCommand: a command's states, ACCEPTED then one terminal state, on any gateway.

The result comes from the reply router's cache (recent results, also those read back at start
from the lookback window) or is waited for. ACCEPTED is sent first when this gateway accepted
the command; for a command it does not know, ACCEPTED follows once the result proves the
command was accepted somewhere. An id no result arrives for within the wait is NOT_FOUND.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from google.rpc import code_pb2

from gateway import refusals
from gateway.command_requests import MAX_ID_LENGTH, CallContext, receipt_for, reply_budget
from gateway.idempotency import IdempotencyTable
from gateway.ports import ResultSource, TooManyWaiting
from gateway.settings import GatewaySettings
from prgate.v1 import command_service_pb2 as svc
from prgate.v1 import outcome_pb2


class CommandWatch:
    """Follows one command id through the reply router."""

    def __init__(
        self, settings: GatewaySettings, results: ResultSource, accepted: IdempotencyTable
    ) -> None:
        self._settings = settings
        self._results = results
        self._accepted = accepted

    async def watch(self, command_id: str, call: CallContext) -> AsyncIterator[svc.CommandReceipt]:
        """ACCEPTED (when known), then the terminal state; a Refusal when it cannot tell.

        Waits at most until just before the call's deadline (``default_wait_s`` without one,
        ``unknown_command_wait_s`` for a command this gateway did not accept).
        """
        if not command_id or len(command_id) > MAX_ID_LENGTH:
            raise refusals.invalid_argument(
                "command_id",
                "INVALID_COMMAND_ID",
                f"command_id must be 1 to {MAX_ID_LENGTH} characters",
            )
        local = self._accepted.get(command_id)
        known_here = local is not None and local.accepted
        pull_request_id = local.pull_request_id if local is not None else ""
        accepted = svc.CommandReceipt(
            command_id=command_id,
            pull_request_id=pull_request_id,
            state=outcome_pb2.COMMAND_STATE_ACCEPTED,
        )
        result = self._results.lookup(command_id)
        if result is None:
            if known_here:
                yield accepted
            default = (
                self._settings.default_wait_s
                if known_here
                else self._settings.unknown_command_wait_s
            )
            budget = reply_budget(call.time_remaining(), default)
            try:
                async with self._results.waiting(command_id) as waiter:
                    result = await waiter.result(budget)
            except TooManyWaiting as exc:
                raise refusals.error(
                    code_pb2.RESOURCE_EXHAUSTED,
                    "too many calls are waiting for results on this gateway; retry later",
                    refusals.error_info("TOO_MANY_WAITING", command_id=command_id),
                    refusals.retry_after(1.0),
                ) from exc
            if result is None:
                if known_here:
                    raise refusals.error(
                        code_pb2.DEADLINE_EXCEEDED,
                        f"command {command_id} has not completed yet; watch it again",
                        refusals.error_info(
                            "RESULT_NOT_IN_TIME",
                            command_id=command_id,
                            pull_request_id=pull_request_id,
                        ),
                    )
                raise refusals.error(
                    code_pb2.NOT_FOUND,
                    f"no result for command {command_id}: it was not accepted, or its result"
                    " is older than this gateway remembers",
                    refusals.error_info("UNKNOWN_COMMAND", command_id=command_id),
                )
            if not known_here:
                accepted.pull_request_id = result.pull_request_id
                yield accepted
        else:
            accepted.pull_request_id = result.pull_request_id
            yield accepted
        yield receipt_for(result)
