"""Commands for the processor's integration tests and producing them as the gateway does
(key = pull request id, the contract's headers). Reading back: ``processor_helpers``."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from confluent_kafka import KafkaError, Producer
from helpers.ids import new_id

from prgate.kafka import codec
from prgate.kafka.contract import TYPE_COMMAND_ENVELOPE
from prgate.kafka.settings import KafkaSettings
from prgate.v1 import commands_pb2
from prgate.v1.commands_pb2 import CommandEnvelope
from prgate.v1.pull_request_pb2 import CHECK_CONCLUSION_SUCCESS

# -- commands -------------------------------------------------------------------------------


def envelope(
    pull_request_id: str, command_id: str | None = None, **command: Any
) -> CommandEnvelope:
    """A CommandEnvelope; ``command`` is one keyword, the oneof field name, e.g.
    ``open_pull_request=OpenPullRequest(...)``. Without ``command_id`` a fresh id bound to
    the pull request, as the gateway makes them."""
    env = CommandEnvelope(
        command_id=command_id or new_id(pull_request_id), pull_request_id=pull_request_id
    )
    ((field, message),) = command.items()
    getattr(env, field).CopyFrom(message)
    env.issued_at.GetCurrentTime()
    return env


def open_pr(pr: str, author: str = "alice", title: str = "Add feature") -> CommandEnvelope:
    return envelope(
        pr,
        open_pull_request=commands_pb2.OpenPullRequest(
            repository="acme/widgets",
            title=title,
            description="d",
            author=author,
            source_branch=f"feature/{pr}",
            target_branch="main",
        ),
    )


def retitle(pr: str, title: str) -> CommandEnvelope:
    return envelope(
        pr,
        change_pull_request_title=commands_pb2.ChangePullRequestTitle(
            pull_request_id=pr, title=title, changed_by="alice"
        ),
    )


def approve(pr: str, reviewer: str) -> CommandEnvelope:
    return envelope(
        pr,
        approve_pull_request=commands_pb2.ApprovePullRequest(pull_request_id=pr, reviewer=reviewer),
    )


def check(pr: str, name: str, conclusion: int = CHECK_CONCLUSION_SUCCESS) -> CommandEnvelope:
    return envelope(
        pr,
        record_check_result=commands_pb2.RecordCheckResult(
            pull_request_id=pr, check_name=name, conclusion=conclusion
        ),
    )


def merge(pr: str, user: str = "bob") -> CommandEnvelope:
    return envelope(
        pr,
        merge_pull_request=commands_pb2.MergePullRequest(pull_request_id=pr, merged_by_user=user),
    )


def close(pr: str) -> CommandEnvelope:
    return envelope(
        pr, close_pull_request=commands_pb2.ClosePullRequest(pull_request_id=pr, actor="a")
    )


def reopen(pr: str) -> CommandEnvelope:
    return envelope(
        pr, reopen_pull_request=commands_pb2.ReopenPullRequest(pull_request_id=pr, actor="a")
    )


def stream_for(pr: str, length: int) -> list[CommandEnvelope]:
    """``length`` commands on one pull request that mostly succeed and sometimes are rejected:
    open, then check results, retitles, approvals (some by the author: rejected),
    close/reopen, and a merge at the end."""
    commands = [open_pr(pr, author="alice")]
    step = 0
    while len(commands) < length - 1:
        kind = step % 7
        if kind in (0, 1):
            commands.append(check(pr, f"ci-{step % 3}"))
        elif kind == 2:
            commands.append(retitle(pr, f"title {step}"))
        elif kind == 3:
            commands.append(approve(pr, f"reviewer-{step % 4}"))
        elif kind == 4:
            commands.append(close(pr))
        elif kind == 5:
            commands.append(reopen(pr))
        else:
            commands.append(approve(pr, "alice"))
        step += 1
    commands.append(merge(pr))
    return commands


def interleave(streams: Iterable[list[CommandEnvelope]]) -> list[CommandEnvelope]:
    """Round-robin over per-PR streams, keeping each stream's order."""
    lists = [list(s) for s in streams]
    out: list[CommandEnvelope] = []
    for i in range(max(len(s) for s in lists)):
        out.extend(s[i] for s in lists if i < len(s))
    return out


# -- producing ------------------------------------------------------------------------------


def command_headers(command_id: str, reply_to: str) -> codec.Headers:
    """The headers of a command record as the gateway writes them (for hand-made records)."""
    return codec.record_headers(TYPE_COMMAND_ENVELOPE, correlation_id=command_id, reply_to=reply_to)


class CommandProducer:
    """Produces commands as the gateway does: key = pull request id, the fixed headers."""

    def __init__(self, kafka: KafkaSettings) -> None:
        self._kafka = kafka
        self._producer = Producer(
            kafka.client_config(**{"enable.idempotence": True, "acks": "all", "linger.ms": 2})
        )
        self.errors: list[str] = []

    def _delivered(self, err: KafkaError | None, msg: Any) -> None:
        if err is not None:
            self.errors.append(str(err))

    def send(self, env: CommandEnvelope) -> None:
        record = codec.command_record(
            self._kafka.topics.commands, env, reply_to=self._kafka.topics.results
        )
        self.raw(record.key, record.value, record.headers)

    def raw(self, key: bytes | None, value: bytes | None, headers: codec.Headers) -> None:
        self._producer.produce(
            self._kafka.topics.commands,
            value=value,
            key=key,
            headers=headers,
            on_delivery=self._delivered,
        )
        self._producer.poll(0)

    def flush(self, timeout: float = 15.0) -> None:
        remaining = self._producer.flush(timeout)
        assert remaining == 0 and not self.errors, (remaining, self.errors)

    def close(self) -> None:
        self.flush()
        self._producer.close()


def send_all(kafka: KafkaSettings, commands: Iterable[CommandEnvelope]) -> None:
    producer = CommandProducer(kafka)
    for env in commands:
        producer.send(env)
    producer.close()
