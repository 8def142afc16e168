"""Admission: from a command request to a receipt or a refusal, on asyncio, without gRPC.

A command call goes through these steps, each of which can end it:

1. build the CommandEnvelope (command id from the idempotency key, or new, bound to its pull
   request; OpenPullRequest gets a pull request id derived from its command id);
2. idempotency: a retry of a command this gateway already accepted is answered from what is
   known (nothing is produced again); a key reused for a different command, also on another
   pull request, is ALREADY_EXISTS;
3. field rules (INVALID_ARGUMENT with BadRequest details);
4. read-your-writes: wait (bounded) until the read model has reached the request's
   consistency token (:mod:`gateway.consistency_tokens`: writes through any gateway; a bad
   token is INVALID_ARGUMENT, one not reached in time UNAVAILABLE) and for this gateway's
   earlier commands on the same pull request to complete, then a dry run of the domain's
   ``decide`` on the read model;
5. reserve a waiting slot (RESOURCE_EXHAUSTED past the bound), produce, and report ACCEPTED
   only after the broker acknowledged the record (UNAVAILABLE otherwise);
6. COMPLETED mode: wait for the processor's result until just before the call's deadline;
   when time runs out, DEADLINE_EXCEEDED carrying the command id for WatchCommand.

Every receipt (also WatchCommand's) carries a consistency token of its pull request: the
result's version when there is one, else the version this gateway's read model holds, and
never older than the token the call carried.

A refusal the gateway decides itself before producing (steps 2 to 5: a reused key, field rules,
the dry run, no waiting slot) goes to the :class:`gateway.ports.RefusalLog` as a CommandRefusal,
best effort and without delaying the answer, so the audit archive sees attempts that never
reached the commands topic.

:meth:`Admission.admit` returns the ``CommandReceipt`` or raises a
:class:`gateway.refusals.Refusal` (code, message, google.rpc details). The transport hands in
the request, a :class:`CallContext` (caller, headers, deadline) and
:class:`gateway.call_hooks.CallHooks` (the trace context to put on the record; the moments
metrics and spans measure). The Kafka side comes in through the ports. Everything runs on one
event loop. The refusals built from Kafka's answers, and the record of the gateway's own, are
in :mod:`gateway.admission_refusals`.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime

from google.rpc import code_pb2

from gateway import refusals
from gateway.admission_refusals import RefusalRecorder, finished_receipt, kafka_unavailable
from gateway.call_hooks import CallHooks, NoHooks
from gateway.command_requests import (
    IDEMPOTENCY_METADATA,
    CallContext,
    CommandRequest,
    build_envelope,
    reply_budget,
    response_mode,
)
from gateway.command_specs import ACCEPTED, CommandSpec
from gateway.command_watch import CommandWatch
from gateway.consistency_tokens import ConsistencyGate, ConsistencyTokens, Position
from gateway.idempotency import IdempotencyTable, KeyUse, PendingCommands, VersionTable
from gateway.ports import (
    AckTimeout,
    CommandSender,
    KafkaUnavailable,
    NoRefusalLog,
    PullRequestView,
    RefusalLog,
    ResultSource,
    TooManyWaiting,
)
from gateway.refusals import Refusal
from gateway.settings import GatewaySettings
from prgate.domain import (
    Rejected,
    command_type_name,
    decide,
    find_processed,
    fingerprint,
    validate_fields,
)
from prgate.kafka import command_ids
from prgate.v1 import command_service_pb2 as svc
from prgate.v1 import commands_pb2, outcome_pb2, results_pb2


class Admission:
    """Admits commands onto Kafka and follows them to their results (one per gateway)."""

    def __init__(
        self,
        *,
        settings: GatewaySettings,
        results_topic: str,
        sender: CommandSender,
        results: ResultSource,
        view: PullRequestView,
        refusal_log: RefusalLog | None = None,
        clock: Callable[[], float] = time.time,
        tokens: ConsistencyTokens | None = None,
    ) -> None:
        """``results_topic`` is the reply-to of every command; ``refusal_log`` gets the
        synchronous refusals (none kept when None); ``clock`` gives Unix seconds
        (``issued_at``, the dry run's "now", ``refused_at``); ``tokens`` issues and reads
        consistency tokens (default: keyed by ``page_token_secret`` and no deployment name)."""
        self._refused = RefusalRecorder(refusal_log or NoRefusalLog(), clock)
        self._settings = settings
        self._results_topic = results_topic
        self._sender = sender
        self._results = results
        self._view = view
        self._clock = clock
        self._policy = settings.policy()
        self._pending = PendingCommands(ttl_s=max(60.0, settings.result_cache_ttl_s))
        self._accepted = IdempotencyTable(settings.idempotency_cache_size)
        # Highest version each pull request's results have announced (bounded, newest kept).
        self._announced = VersionTable(settings.idempotency_cache_size)
        self._watch = CommandWatch(settings, results, self._accepted)
        self._consistency = ConsistencyGate(
            tokens
            or ConsistencyTokens.for_deployment(
                settings.page_token_secret, "", settings.page_token_accepted_secret
            ),
            view,
            default_wait_s=settings.consistency_wait_s,
        )
        results.add_listener(self._on_result)

    @property
    def pending(self) -> PendingCommands:
        """This gateway's accepted commands without their result yet (read-your-writes)."""
        return self._pending

    def _on_result(self, result: results_pb2.CommandResult) -> None:
        # Every result seen (from any gateway) updates the read model first, then releases
        # this gateway's read-your-writes wait on the pull request.
        self._view.apply_result(result)
        self._accepted.saw(result.command_id)
        if result.version > 0:
            self._announced.raise_to(result.pull_request_id, result.version)
        self._pending.done(result.command_id)

    async def watch(self, command_id: str, call: CallContext) -> AsyncIterator[svc.CommandReceipt]:
        """WatchCommand: ACCEPTED (when known), then the terminal state, each with its
        consistency token; Refusal otherwise."""
        async for receipt in self._watch.watch(command_id, call):
            yield self._stamped(receipt)

    def _stamped(self, receipt: svc.CommandReceipt, *, at_least: int = 0) -> svc.CommandReceipt:
        """``receipt`` with the consistency token of its pull request (see module docstring)."""
        receipt.consistency_token = self._consistency.issue(
            receipt.pull_request_id, receipt.result.version, at_least
        )
        return receipt

    async def admit(
        self,
        spec: CommandSpec,
        request: CommandRequest,
        call: CallContext,
        hooks: CallHooks | None = None,
    ) -> svc.CommandReceipt:
        """Run the steps of the module docstring for one command call.

        Returns the receipt (ACCEPTED, or the terminal state with the result in COMPLETED
        mode); raises Refusal with the status the caller gets.
        """
        hooks = hooks or NoHooks()
        if not self._view.caught_up():
            raise refusals.read_model_catching_up()
        envelope = build_envelope(
            spec,
            request,
            caller=call.caller(),
            key=request.options.idempotency_key or call.header(IDEMPOTENCY_METADATA),
            now=self._clock(),
        )
        try:
            position = self._consistency.read(
                request.options.consistency_token,
                "options.consistency_token",
                envelope.pull_request_id,
            )
        except Refusal as refusal:
            raise self._refused(refusal, envelope, hooks) from None
        receipt = await self._admit(spec, request, envelope, position, call=call, hooks=hooks)
        return self._stamped(receipt, at_least=position.version if position else 0)

    async def _admit(
        self,
        spec: CommandSpec,
        request: CommandRequest,
        envelope: commands_pb2.CommandEnvelope,
        position: Position | None,
        *,
        call: CallContext,
        hooks: CallHooks,
    ) -> svc.CommandReceipt:
        mode = response_mode(spec, request)
        budget_end = time.monotonic() + reply_budget(
            call.time_remaining(), self._settings.default_wait_s
        )
        command_id, pull_request_id = envelope.command_id, envelope.pull_request_id
        ids = {"command_id": command_id, "pull_request_id": pull_request_id}

        previous = self._accepted.get(command_id)
        digest = fingerprint(envelope)
        if previous is not None and previous.fingerprint != digest:
            raise self._refused(
                refusals.idempotency_key_reused(command_id, pull_request_id), envelope, hooks
            )
        if previous is None and envelope.idempotency_key:
            # The key's command ids differ per pull request: one seen with another pull
            # request is the key reused for a different command.
            first = self._accepted.id_of_base(command_ids.base_of(command_id) or "")
            if first is not None and first != command_id:
                raise self._refused(
                    refusals.idempotency_key_reused(command_id, pull_request_id), envelope, hooks
                )
        if previous is not None and previous.accepted:
            return await self._answer(envelope, mode, budget_end, hooks, produced=False)

        violations = validate_fields(envelope, self._policy)
        if violations:
            refusal = refusals.from_violations(violations, **ids)
            raise self._refused(refusal, envelope, hooks, violations)
        known = self._results.lookup(command_id)
        if known is not None:
            if (known.pull_request_id, known.command_type) != (
                pull_request_id,
                command_type_name(envelope),
            ):
                # The key was used (on some gateway) for another command: never replay that
                # command's result as this one's.
                refusal = refusals.idempotency_key_reused(command_id, pull_request_id)
                raise self._refused(refusal, envelope, hooks)
            # A retry of a command that already finished (through any gateway): its result,
            # not a dry run against the state it produced.
            return finished_receipt(known)

        if position is not None:
            # Writes through other gateways: wait until the read model has what the token names.
            wait = self._consistency.budget(call.time_remaining())
            await self._consistency.reach(position, min(budget_end - time.monotonic(), wait))
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
                raise refusals.from_violations(already.violations, **ids)
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
                refusal = refusals.from_violations(decision.violations, **ids)
                raise self._refused(refusal, envelope, hooks, decision.violations)

        self._accepted.put(command_id, KeyUse(digest, pull_request_id))
        return await self._answer(envelope, mode, budget_end, hooks, produced=True)

    async def _answer(
        self,
        envelope: commands_pb2.CommandEnvelope,
        mode: int,
        budget_end: float,
        hooks: CallHooks,
        *,
        produced: bool,
    ) -> svc.CommandReceipt:
        command_id, pull_request_id = envelope.command_id, envelope.pull_request_id
        ids = {"command_id": command_id, "pull_request_id": pull_request_id}
        known = self._results.lookup(command_id)
        if known is not None:
            return finished_receipt(known)
        try:
            async with self._results.waiting(command_id) as waiter:
                if produced:
                    await self._produce(envelope, budget_end, hooks)
                if mode == ACCEPTED:
                    return svc.CommandReceipt(
                        command_id=command_id,
                        pull_request_id=pull_request_id,
                        state=outcome_pb2.COMMAND_STATE_ACCEPTED,
                    )
                result = await waiter.result(max(0.0, budget_end - time.monotonic()))
                if result is not None:
                    hooks.result_arrived(result)
        except TooManyWaiting as exc:
            refusal = refusals.error(
                code_pb2.RESOURCE_EXHAUSTED,
                "too many commands are waiting for results on this gateway; retry later",
                refusals.error_info("TOO_MANY_WAITING", **ids),
                refusals.retry_after(1.0),
            )
            # Not produced yet (a retry of an accepted command was on Kafka already).
            raise (self._refused(refusal, envelope, hooks) if produced else refusal) from exc
        if result is None:
            raise refusals.error(
                code_pb2.DEADLINE_EXCEEDED,
                f"command {command_id} was accepted but its result did not arrive in time;"
                " follow it with WatchCommand",
                refusals.error_info("RESULT_NOT_IN_TIME", **ids),
            )
        return finished_receipt(result)

    async def _produce(
        self, envelope: commands_pb2.CommandEnvelope, budget_end: float, hooks: CallHooks
    ) -> None:
        command_id, pull_request_id = envelope.command_id, envelope.pull_request_id
        timeout = min(self._settings.accept_timeout_s, max(0.0, budget_end - time.monotonic()))
        self._pending.add(pull_request_id, command_id)
        try:
            await self._sender.send(
                envelope,
                reply_to=self._results_topic,
                timeout=timeout,
                traceparent=hooks.traceparent,
            )
        except AckTimeout as exc:
            if timeout >= self._settings.accept_timeout_s:
                self._pending.done(command_id)
                raise kafka_unavailable(envelope, exc) from exc
            # The caller's deadline, not Kafka, cut the wait short: the record may still be
            # delivered and processed, so the caller gets the command id to watch, and this
            # gateway keeps waiting for its result before checking later commands.
            raise refusals.error(
                code_pb2.DEADLINE_EXCEEDED,
                f"command {command_id} was sent but not acknowledged before the call's deadline;"
                " follow it with WatchCommand, or retry with the same idempotency key",
                refusals.error_info(
                    "ACCEPT_NOT_CONFIRMED", command_id=command_id, pull_request_id=pull_request_id
                ),
            ) from exc
        except KafkaUnavailable as exc:
            # The key stays unaccepted, so a retry with the same key produces again.
            self._pending.done(command_id)
            raise kafka_unavailable(envelope, exc) from exc
        use = self._accepted.get(command_id)
        if use is not None:
            use.accepted = True
        hooks.acknowledged(envelope)
