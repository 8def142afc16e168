"""PullRequestCommandService: validate synchronously, accept onto Kafka, return or stream results.

A command call goes through these steps, each of which can end it:

1. build the CommandEnvelope (command id from the idempotency key, or new; OpenPullRequest
   gets a pull request id derived from its command id);
2. idempotency: a retry of a command this gateway already accepted is answered from what is
   known (nothing is produced again); a key reused for a different command is ALREADY_EXISTS;
3. field rules (INVALID_ARGUMENT with BadRequest details);
4. read-your-writes: wait (bounded) for this gateway's earlier commands on the same pull
   request to complete, then a dry run of the domain's ``decide`` on the read model;
5. reserve a waiting slot (RESOURCE_EXHAUSTED past the bound), produce, and report ACCEPTED
   only after the broker acknowledged the record (UNAVAILABLE otherwise);
6. COMPLETED mode: wait for the processor's result until just before the call's deadline;
   when time runs out, DEADLINE_EXCEEDED carrying the command id for WatchCommand.
"""

from __future__ import annotations

import contextvars
import logging
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

from google.protobuf.message import Message
from google.rpc import code_pb2

from gateway import errors
from gateway.command_requests import (
    IDEMPOTENCY_METADATA,
    build_envelope,
    metadata_value,
    receipt_for,
    reply_budget,
    response_mode,
)
from gateway.command_specs import ACCEPTED, SPECS, CommandSpec
from gateway.command_watch import CommandWatch
from gateway.idempotency import (
    IdempotencyTable,
    KeyUse,
    PendingCommands,
    VersionTable,
)
from gateway.ports import CommandSender, PullRequestView, ResultSource
from gateway.producer import AckTimeout, KafkaUnavailable
from gateway.reply_router import TooManyWaiting
from gateway.settings import GatewaySettings
from prgate.metrics import GatewayMetrics
from prgate.tracing import Span, Tracing
from prgate.v1 import command_service_pb2 as svc
from prgate.v1 import command_service_pb2_grpc as svc_grpc
from prgate.v1 import commands_pb2, outcome_pb2, results_pb2
from processor.contract import HEADER_TRACEPARENT
from processor.domain import (
    Policy,
    Rejected,
    command_type_name,
    decide,
    find_processed,
    fingerprint,
    validate_fields,
)

log = logging.getLogger("prgate.gateway")
# When the current call arrived (each grpc.aio call runs in its own task and context).
_started: contextvars.ContextVar[float] = contextvars.ContextVar("started", default=0.0)
# The current call's span when tracing is on (README "Tracing").
_span: contextvars.ContextVar[Span | None] = contextvars.ContextVar("span", default=None)
# Codes that are the server's failure, not the caller's (OpenTelemetry's gRPC conventions).
SERVER_ERROR_OUTCOMES = frozenset(
    ("unknown", "deadline_exceeded", "unimplemented", "internal", "unavailable", "data_loss")
)


class CommandService(svc_grpc.PullRequestCommandServiceServicer):
    """The command servicer. Kafka access comes in through the ports, so tests can fake it."""

    def __init__(
        self,
        *,
        settings: GatewaySettings,
        results_topic: str,
        sender: CommandSender,
        results: ResultSource,
        view: PullRequestView,
        caller_of: Any = None,
        clock: Any = time.time,
        metrics: GatewayMetrics | None = None,
        tracing: Tracing | None = None,
    ) -> None:
        self._settings = settings
        self._results_topic = results_topic
        self._sender = sender
        self._results = results
        self._view = view
        self._policy = Policy(required_approvals=settings.required_approvals)
        self._pending = PendingCommands(ttl_s=max(60.0, settings.result_cache_ttl_s))
        self._accepted = IdempotencyTable(settings.idempotency_cache_size)
        # Highest version each pull request's results have announced (bounded, newest kept).
        self._announced = VersionTable(settings.idempotency_cache_size)
        self._caller_of = caller_of or (lambda context: "")
        self._clock = clock
        self._metrics = metrics
        self._tracing = tracing
        self._watch = CommandWatch(settings, results, self._accepted)
        results.add_listener(self._on_result)

    def _on_result(self, result: results_pb2.CommandResult) -> None:
        # Every result seen (from any gateway) updates the read model first, then releases
        # this gateway's read-your-writes wait on the pull request.
        self._view.apply_result(result)
        if result.version > 0:
            self._announced.raise_to(result.pull_request_id, result.version)
        self._pending.done(result.command_id)

    # -- the eight command RPCs -------------------------------------------------------------

    async def OpenPullRequest(self, request: Any, context: Any) -> Any:
        return await self._call(SPECS["OpenPullRequest"], request, context)

    async def ChangePullRequestTitle(self, request: Any, context: Any) -> Any:
        return await self._call(SPECS["ChangePullRequestTitle"], request, context)

    async def ApprovePullRequest(self, request: Any, context: Any) -> Any:
        return await self._call(SPECS["ApprovePullRequest"], request, context)

    async def RecordCheckResult(self, request: Any, context: Any) -> Any:
        return await self._call(SPECS["RecordCheckResult"], request, context)

    async def MergePullRequest(self, request: Any, context: Any) -> Any:
        return await self._call(SPECS["MergePullRequest"], request, context)

    async def ClosePullRequest(self, request: Any, context: Any) -> Any:
        return await self._call(SPECS["ClosePullRequest"], request, context)

    async def ReopenPullRequest(self, request: Any, context: Any) -> Any:
        return await self._call(SPECS["ReopenPullRequest"], request, context)

    async def RevertPullRequest(self, request: Any, context: Any) -> Any:
        return await self._call(SPECS["RevertPullRequest"], request, context)

    async def _call(self, spec: CommandSpec, request: Any, context: Any) -> Message:
        _started.set(time.perf_counter())
        if self._tracing is None:
            return await self._respond(spec, request, context)
        # A child of the caller's trace when it sent a traceparent in the call metadata.
        span = self._tracing.start_call(spec.rpc, metadata_value(context, HEADER_TRACEPARENT))
        _span.set(span)
        try:
            return await self._respond(spec, request, context)
        finally:
            span.end()

    async def _respond(self, spec: CommandSpec, request: Any, context: Any) -> Message:
        try:
            receipt = await self._handle(spec, request, context)
        except errors.GatewayError as exc:
            info = errors.details_of(exc.status).get("ErrorInfo")
            ids = dict(info.metadata) if info is not None else {}  # type: ignore[attr-defined]
            self._outcome(
                spec,
                exc.code.name.lower(),
                ids.get("command_id", ""),
                ids.get("pull_request_id", ""),
                message=str(exc),
            )
            await errors.abort(context, exc)
        state = outcome_pb2.CommandState.Name(receipt.state).removeprefix("COMMAND_STATE_")
        self._outcome(spec, state.lower(), receipt.command_id, receipt.pull_request_id)
        return spec.response_type(receipt=receipt)

    def _outcome(
        self,
        spec: CommandSpec,
        outcome: str,
        command_id: str,
        pull_request_id: str,
        message: str = "",
    ) -> None:
        """One log line and one count per command call, with its ids."""
        elapsed_ms = (time.perf_counter() - _started.get()) * 1000
        if self._metrics is not None:
            self._metrics.commands.labels(spec.rpc, outcome).inc()
        span = _span.get()
        if span is not None:
            span.set(command_id=command_id, pull_request_id=pull_request_id, outcome=outcome)
            if outcome in SERVER_ERROR_OUTCOMES:
                span.error(message or outcome)
        log.info(
            "event=command_outcome rpc=%s outcome=%s command_id=%s pull_request_id=%s ms=%.1f%s",
            spec.rpc,
            outcome,
            command_id or "-",
            pull_request_id or "-",
            elapsed_ms,
            f" message={message!r}" if message else "",
        )

    # -- the steps ----------------------------------------------------------------------------

    async def _handle(self, spec: CommandSpec, request: Any, context: Any) -> svc.CommandReceipt:
        if not self._view.caught_up():
            raise errors.read_model_catching_up()
        envelope = build_envelope(
            spec,
            request,
            caller=str(self._caller_of(context)),
            key=request.options.idempotency_key or metadata_value(context, IDEMPOTENCY_METADATA),
            now=self._clock(),
        )
        mode = response_mode(spec, request)
        budget_end = time.monotonic() + reply_budget(context, self._settings.default_wait_s)
        command_id, pull_request_id = envelope.command_id, envelope.pull_request_id
        ids = {"command_id": command_id, "pull_request_id": pull_request_id}

        previous = self._accepted.get(command_id)
        digest = fingerprint(envelope)
        if previous is not None and previous.fingerprint != digest:
            raise errors.idempotency_key_reused(command_id, pull_request_id)
        if previous is not None and previous.accepted:
            return await self._answer(envelope, mode, budget_end, produced=False)

        violations = validate_fields(envelope, self._policy)
        if violations:
            raise errors.from_violations(violations, **ids)
        known = self._results.lookup(command_id)
        if known is not None:
            if (known.pull_request_id, known.command_type) != (
                pull_request_id,
                command_type_name(envelope),
            ):
                # The key was used (on some gateway) for another command: never replay that
                # command's result as this one's.
                raise errors.idempotency_key_reused(command_id, pull_request_id)
            # A retry of a command that already finished (through any gateway): its result,
            # not a dry run against the state it produced.
            return self._completed(known)

        remaining = budget_end - time.monotonic()
        settled = await self._pending.wait_idle(
            pull_request_id, min(remaining, self._settings.pending_wait_s)
        )
        announced = self._announced.get(pull_request_id)
        state = self._view.get(pull_request_id)
        if settled and announced and (state is None or state.version < announced):
            # A result told of a version the read model has not got yet (results of one pull
            # request can arrive out of order across partitions): wait for its snapshot.
            settled = await self._view.wait_for_version(
                pull_request_id,
                announced,
                max(0.0, min(budget_end - time.monotonic(), self._settings.pending_wait_s)),
            )
            state = self._view.get(pull_request_id)
        already = find_processed(state, command_id)
        if already is not None:
            # Handled before (e.g. a retry through another gateway): answer, produce nothing.
            if already.state == outcome_pb2.COMMAND_STATE_REJECTED and already.violations:
                raise errors.from_violations(already.violations, **ids)
            return svc.CommandReceipt(
                command_id=command_id, pull_request_id=pull_request_id, state=already.state
            )
        if settled:
            # Without settling, the read model may lag this gateway's own earlier commands;
            # then the processor's authoritative check is the only one.
            decision = decide(
                state,
                envelope,
                now=datetime.fromtimestamp(self._clock(), UTC),
                policy=self._policy,
            )
            if isinstance(decision, Rejected):
                raise errors.from_violations(decision.violations, **ids)

        self._accepted.put(command_id, KeyUse(digest, pull_request_id))
        return await self._answer(envelope, mode, budget_end, produced=True)

    async def _answer(
        self,
        envelope: commands_pb2.CommandEnvelope,
        mode: int,
        budget_end: float,
        *,
        produced: bool,
    ) -> svc.CommandReceipt:
        command_id, pull_request_id = envelope.command_id, envelope.pull_request_id
        ids = {"command_id": command_id, "pull_request_id": pull_request_id}
        known = self._results.lookup(command_id)
        if known is not None:
            return self._completed(known)
        try:
            async with self._results.waiting(command_id) as waiter:
                if produced:
                    await self._produce(envelope, budget_end)
                if mode == ACCEPTED:
                    return svc.CommandReceipt(
                        command_id=command_id,
                        pull_request_id=pull_request_id,
                        state=outcome_pb2.COMMAND_STATE_ACCEPTED,
                    )
                result = await waiter.result(max(0.0, budget_end - time.monotonic()))
                span = _span.get()
                if result is not None and span is not None:
                    span.event(
                        "result",
                        state=outcome_pb2.CommandState.Name(result.state),
                        version=result.version,
                    )
                if result is not None and self._metrics is not None:
                    self._metrics.round_trip_seconds.labels(result.command_type).observe(
                        time.perf_counter() - _started.get()
                    )
        except TooManyWaiting as exc:
            raise errors.error(
                code_pb2.RESOURCE_EXHAUSTED,
                "too many commands are waiting for results on this gateway; retry later",
                errors.error_info("TOO_MANY_WAITING", **ids),
                errors.retry_after(1.0),
            ) from exc
        if result is None:
            raise errors.error(
                code_pb2.DEADLINE_EXCEEDED,
                f"command {command_id} was accepted but its result did not arrive in time;"
                " follow it with WatchCommand",
                errors.error_info("RESULT_NOT_IN_TIME", **ids),
            )
        return self._completed(result)

    async def _produce(self, envelope: commands_pb2.CommandEnvelope, budget_end: float) -> None:
        command_id, pull_request_id = envelope.command_id, envelope.pull_request_id
        timeout = min(self._settings.accept_timeout_s, max(0.0, budget_end - time.monotonic()))
        self._pending.add(pull_request_id, command_id)
        span = _span.get()
        try:
            await self._sender.send(
                envelope,
                reply_to=self._results_topic,
                timeout=timeout,
                traceparent=span.traceparent if span is not None else None,
            )
        except AckTimeout as exc:
            if timeout >= self._settings.accept_timeout_s:
                self._pending.done(command_id)
                raise self._unavailable(envelope, exc) from exc
            # The caller's deadline, not Kafka, cut the wait short: the record may still be
            # delivered and processed, so the caller gets the command id to watch, and this
            # gateway keeps waiting for its result before checking later commands.
            raise errors.error(
                code_pb2.DEADLINE_EXCEEDED,
                f"command {command_id} was sent but not acknowledged before the call's deadline;"
                " follow it with WatchCommand, or retry with the same idempotency key",
                errors.error_info(
                    "ACCEPT_NOT_CONFIRMED", command_id=command_id, pull_request_id=pull_request_id
                ),
            ) from exc
        except KafkaUnavailable as exc:
            # The key stays unaccepted, so a retry with the same key produces again.
            self._pending.done(command_id)
            raise self._unavailable(envelope, exc) from exc
        use = self._accepted.get(command_id)
        if use is not None:
            use.accepted = True
        if self._metrics is not None:
            self._metrics.accept_seconds.labels(command_type_name(envelope)).observe(
                time.perf_counter() - _started.get()
            )

    @staticmethod
    def _unavailable(
        envelope: commands_pb2.CommandEnvelope, exc: KafkaUnavailable
    ) -> errors.GatewayError:
        return errors.error(
            code_pb2.UNAVAILABLE,
            f"Kafka did not acknowledge the command: {exc}",
            errors.error_info(
                "KAFKA_UNAVAILABLE",
                command_id=envelope.command_id,
                pull_request_id=envelope.pull_request_id,
            ),
            errors.retry_after(1.0),
        )

    def _completed(self, result: results_pb2.CommandResult) -> svc.CommandReceipt:
        """The receipt of a finished command; a refusal becomes the matching error status."""
        ids = {"command_id": result.command_id, "pull_request_id": result.pull_request_id}
        if result.state == outcome_pb2.COMMAND_STATE_REJECTED and result.violations:
            raise errors.from_violations(result.violations, **ids)
        if result.state == outcome_pb2.COMMAND_STATE_FAILED:
            raise errors.error(
                code_pb2.ABORTED,
                f"the processor could not apply the command: {result.error_message}",
                errors.error_info("COMMAND_FAILED", **ids),
            )
        return receipt_for(result)

    # -- WatchCommand -------------------------------------------------------------------------

    async def WatchCommand(self, request: Any, context: Any) -> AsyncIterator[Message]:
        try:
            async for receipt in self._watch.watch(request.command_id, context):
                yield svc.WatchCommandResponse(receipt=receipt)
        except errors.GatewayError as exc:
            await errors.abort(context, exc)
