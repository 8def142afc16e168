"""Realistic messages for the benchmark: the command mix, and canned results of real size.

The canned results and snapshots are produced once as the processor makes them
(``prgate.domain.apply`` over one pull request's life), so the baselines send and receive
messages of the same size as prgate does, and the restore benchmark fills the compacted topic
with valid PullRequest snapshots.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache

from prgate.domain import Outcome, apply
from prgate.kafka import command_ids
from prgate.v1 import command_service_pb2 as svc
from prgate.v1 import commands_pb2, pull_request_pb2, results_pb2

COMPLETED = svc.RESPONSE_MODE_COMPLETED
ACCEPTED = svc.RESPONSE_MODE_ACCEPTED

# The mix: one pull request's life, in order. Each step is (rpc name, builder).
STEPS = ("OpenPullRequest", "ApprovePullRequest", "RecordCheckResult", "MergePullRequest")
# The CommandEnvelope oneof field of each step.
ENVELOPE_FIELDS = (
    "open_pull_request",
    "approve_pull_request",
    "record_check_result",
    "merge_pull_request",
)

_DESCRIPTION = (
    "Benchmark change: refactors the request path, adds tests for the new behaviour and "
    "updates the documentation. No functional change for existing callers."
)


def _options(mode: int) -> svc.CommandOptions:
    return svc.CommandOptions(response_mode=mode)  # type: ignore[arg-type]


def open_request(worker: int, n: int, mode: int = COMPLETED) -> svc.OpenPullRequestRequest:
    return svc.OpenPullRequestRequest(
        command=commands_pb2.OpenPullRequest(
            repository=f"bench/repo-{worker % 8}",
            title=f"Benchmark change {worker}-{n}",
            description=_DESCRIPTION,
            author=f"author-{worker}",
            source_branch=f"feature/bench-{worker}-{n}",
            target_branch="main",
        ),
        options=_options(mode),
    )


def step_request(step: int, pull_request_id: str, worker: int, n: int, mode: int) -> object:
    """The request of step ``step`` (index into STEPS) for ``pull_request_id``."""
    if step == 0:
        return open_request(worker, n, mode)
    if step == 1:
        return svc.ApprovePullRequestRequest(
            command=commands_pb2.ApprovePullRequest(
                pull_request_id=pull_request_id, reviewer=f"reviewer-{worker}"
            ),
            options=_options(mode),
        )
    if step == 2:
        return svc.RecordCheckResultRequest(
            command=commands_pb2.RecordCheckResult(
                pull_request_id=pull_request_id,
                check_name="ci/build",
                conclusion=pull_request_pb2.CHECK_CONCLUSION_SUCCESS,
            ),
            options=_options(mode),
        )
    return svc.MergePullRequestRequest(
        command=commands_pb2.MergePullRequest(
            pull_request_id=pull_request_id, merged_by_user=f"maintainer-{worker}"
        ),
        options=_options(mode),
    )


def unapproved_merge(pull_request_id: str) -> svc.MergePullRequestRequest:
    """A merge the gateway refuses synchronously (FAILED_PRECONDITION: not approved)."""
    return svc.MergePullRequestRequest(
        command=commands_pb2.MergePullRequest(
            pull_request_id=pull_request_id, merged_by_user="maintainer"
        ),
        options=_options(COMPLETED),
    )


@dataclass(frozen=True)
class Life:
    """The envelopes, results and snapshots of one pull request's life (one per step)."""

    envelopes: tuple[commands_pb2.CommandEnvelope, ...]
    results: tuple[results_pb2.CommandResult, ...]
    snapshots: tuple[pull_request_pb2.PullRequest, ...]


@cache
def sample_life() -> Life:
    """Run the mix through ``apply`` once: messages of the sizes prgate really sends."""
    now = datetime(2026, 1, 1, tzinfo=UTC)
    pull_request_id = f"pr-{uuid.UUID(int=1).hex}"
    state: pull_request_pb2.PullRequest | None = None
    envelopes, results, snapshots = [], [], []
    for step, rpc in enumerate(STEPS):
        request = step_request(step, pull_request_id, 0, 0, COMPLETED)
        command_id = command_ids.bind(uuid.UUID(int=100 + step).hex, pull_request_id)
        envelope = commands_pb2.CommandEnvelope(
            command_id=command_id, pull_request_id=pull_request_id
        )
        envelope.issued_at.FromDatetime(now)
        getattr(envelope, ENVELOPE_FIELDS[step]).CopyFrom(request.command)  # type: ignore[attr-defined]
        applied = apply(state, envelope, now=now)
        if applied.outcome is not Outcome.SUCCEEDED or applied.state is None:
            raise AssertionError(f"sample life: {rpc} was not applied: {applied.result}")
        state = applied.state
        envelopes.append(envelope)
        results.append(applied.result)
        snapshots.append(state)
    return Life(tuple(envelopes), tuple(results), tuple(snapshots))


def canned_response(rpc: str) -> bytes:
    """Serialized ``<rpc>Response`` with a COMPLETED receipt of the sample life's size."""
    life = sample_life()
    step = STEPS.index(rpc)
    result = life.results[step]
    response_type = getattr(svc, f"{rpc}Response")
    receipt = svc.CommandReceipt(
        command_id=result.command_id,
        pull_request_id=result.pull_request_id,
        state=result.state,
        result=result,
    )
    data: bytes = response_type(receipt=receipt).SerializeToString()
    return data


def snapshot_for(pull_request_id: str) -> bytes:
    """A valid, merged PullRequest snapshot (the sample life's last one) under a new id."""
    snapshot = pull_request_pb2.PullRequest()
    snapshot.CopyFrom(sample_life().snapshots[-1])
    snapshot.pull_request_id = pull_request_id
    return snapshot.SerializeToString()
