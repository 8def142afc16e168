"""Error mapping: gRPC codes to exception classes, google.rpc details decoded (no network)."""

from __future__ import annotations

from typing import Any

import grpc
import pytest
from google.rpc import code_pb2

from gateway import errors as server_errors
from prgate.client import errors
from prgate.v1 import outcome_pb2, results_pb2


class FakeRpcError(grpc.RpcError):
    """What a failed call raises: code, details and trailing metadata."""

    def __init__(self, code: grpc.StatusCode, message: str, trailers: Any = ()) -> None:
        self._code, self._message, self._trailers = code, message, trailers

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._message

    def trailing_metadata(self) -> Any:
        return self._trailers


def raised_by_gateway(exc: server_errors.GatewayError) -> FakeRpcError:
    """The RpcError a client sees for a GatewayError the real gateway aborts with."""
    return FakeRpcError(exc.code, exc.status.message, server_errors.trailing_metadata(exc))


def violation(kind: int, reason: str, **fields: str) -> outcome_pb2.Violation:
    return outcome_pb2.Violation(kind=kind, reason=reason, **fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("code", "cls"),
    [
        (grpc.StatusCode.INVALID_ARGUMENT, errors.InvalidArgument),
        (grpc.StatusCode.FAILED_PRECONDITION, errors.FailedPrecondition),
        (grpc.StatusCode.NOT_FOUND, errors.NotFound),
        (grpc.StatusCode.ABORTED, errors.Aborted),
        (grpc.StatusCode.ALREADY_EXISTS, errors.AlreadyExists),
        (grpc.StatusCode.RESOURCE_EXHAUSTED, errors.ResourceExhausted),
        (grpc.StatusCode.UNAVAILABLE, errors.Unavailable),
        (grpc.StatusCode.DEADLINE_EXCEEDED, errors.DeadlineExceeded),
        (grpc.StatusCode.UNAUTHENTICATED, errors.Unauthenticated),
        (grpc.StatusCode.PERMISSION_DENIED, errors.PermissionDenied),
        (grpc.StatusCode.CANCELLED, errors.Cancelled),
        (grpc.StatusCode.UNIMPLEMENTED, errors.Unimplemented),
        (grpc.StatusCode.INTERNAL, errors.Internal),
        (grpc.StatusCode.UNKNOWN, errors.Internal),
        (grpc.StatusCode.DATA_LOSS, errors.Internal),
        (grpc.StatusCode.OUT_OF_RANGE, errors.OutOfRange),
    ],
)
def test_every_code_maps_to_its_class(code: grpc.StatusCode, cls: type[errors.PrgateError]) -> None:
    error = errors.error_from_rpc(FakeRpcError(code, "boom"))
    assert type(error) is cls
    assert error.code == code and error.message == "boom"
    assert str(error) == f"{code.name}: boom"
    rejected = code in {
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.FAILED_PRECONDITION,
        grpc.StatusCode.NOT_FOUND,
        grpc.StatusCode.ABORTED,
        grpc.StatusCode.ALREADY_EXISTS,
        grpc.StatusCode.OUT_OF_RANGE,
    }
    assert isinstance(error, errors.Rejected) is rejected


def test_field_violations_of_invalid_argument() -> None:
    sent = server_errors.from_violations(
        [
            violation(
                outcome_pb2.VIOLATION_KIND_INVALID_ARGUMENT,
                "TITLE_REQUIRED",
                field="command.title",
                description="title is required",
            ),
            violation(
                outcome_pb2.VIOLATION_KIND_INVALID_ARGUMENT,
                "AUTHOR_REQUIRED",
                field="command.author",
                description="author is required",
            ),
        ],
        command_id="c1",
        pull_request_id="pr-1",
    )
    error = errors.error_from_rpc(raised_by_gateway(sent), idempotency_key="k1")
    assert isinstance(error, errors.InvalidArgument)
    assert error.field_violations == (
        errors.FieldViolation("command.title", "title is required", "TITLE_REQUIRED"),
        errors.FieldViolation("command.author", "author is required", "AUTHOR_REQUIRED"),
    )
    assert error.reason == "TITLE_REQUIRED" and error.domain == "prgate.v1"
    assert error.command_id == "c1" and error.pull_request_id == "pr-1"
    assert error.idempotency_key == "k1"
    text = error.describe()
    assert "field command.title: title is required (TITLE_REQUIRED)" in text
    assert text.startswith("INVALID_ARGUMENT: title is required; author is required")


def test_precondition_violations_of_failed_precondition() -> None:
    sent = server_errors.from_violations(
        [
            violation(
                outcome_pb2.VIOLATION_KIND_FAILED_PRECONDITION,
                "NOT_APPROVED",
                subject="pr-1",
                description="merging needs 1 approval(s)",
            ),
            violation(
                outcome_pb2.VIOLATION_KIND_FAILED_PRECONDITION,
                "CHECKS_NOT_PASSING",
                subject="ci",
                description="check ci is FAILURE, not SUCCESS",
            ),
        ],
        command_id="c2",
        pull_request_id="pr-1",
    )
    error = errors.error_from_rpc(raised_by_gateway(sent))
    assert isinstance(error, errors.FailedPrecondition)
    assert [(v.type, v.subject) for v in error.precondition_violations] == [
        ("NOT_APPROVED", "pr-1"),
        ("CHECKS_NOT_PASSING", "ci"),
    ]
    assert "precondition CHECKS_NOT_PASSING on ci: check ci is FAILURE" in error.describe()


def test_not_found_carries_the_resource() -> None:
    sent = server_errors.from_violations(
        [
            violation(
                outcome_pb2.VIOLATION_KIND_NOT_FOUND,
                "PULL_REQUEST_NOT_FOUND",
                description="pull request pr-x does not exist",
            )
        ],
        pull_request_id="pr-x",
    )
    error = errors.error_from_rpc(raised_by_gateway(sent))
    assert isinstance(error, errors.NotFound)
    assert error.resource == errors.Resource(
        "prgate.v1.PullRequest", "pr-x", "pull request pr-x does not exist"
    )
    assert error.pull_request_id == "pr-x"


def test_deadline_exceeded_carries_the_command_id_and_retry_info_its_delay() -> None:
    late = server_errors.error(
        code_pb2.DEADLINE_EXCEEDED,
        "accepted but not in time",
        server_errors.error_info("RESULT_NOT_IN_TIME", command_id="c9", pull_request_id="p9"),
    )
    error = errors.error_from_rpc(raised_by_gateway(late))
    assert isinstance(error, errors.DeadlineExceeded)
    assert (error.command_id, error.reason) == ("c9", "RESULT_NOT_IN_TIME")

    busy = server_errors.error(
        code_pb2.UNAVAILABLE,
        "Kafka did not acknowledge",
        server_errors.error_info("KAFKA_UNAVAILABLE"),
        server_errors.retry_after(1.5),
    )
    error = errors.error_from_rpc(raised_by_gateway(busy))
    assert isinstance(error, errors.Unavailable)
    assert error.retry_delay == pytest.approx(1.5)
    assert "retry after: 1.5s" in error.describe()


def test_a_call_without_details_still_maps() -> None:
    error = errors.error_from_rpc(FakeRpcError(grpc.StatusCode.UNAVAILABLE, "connect failed"))
    assert isinstance(error, errors.Unavailable)
    assert error.details == {} and error.reason == "" and error.retry_delay is None


def test_details_of_another_code_are_ignored() -> None:
    other = server_errors.error(
        code_pb2.NOT_FOUND, "x", server_errors.error_info("X", command_id="c")
    )
    error = errors.error_from_rpc(
        FakeRpcError(grpc.StatusCode.INTERNAL, "proxy", server_errors.trailing_metadata(other))
    )
    assert isinstance(error, errors.Internal) and error.command_id == ""


def test_rejected_result_becomes_the_exception_of_its_kind() -> None:
    result = results_pb2.CommandResult(
        command_id="c1",
        pull_request_id="pr-1",
        state=outcome_pb2.COMMAND_STATE_REJECTED,
        violations=[
            violation(
                outcome_pb2.VIOLATION_KIND_FAILED_PRECONDITION,
                "NOT_APPROVED",
                description="merging needs approval",
            ),
            violation(
                outcome_pb2.VIOLATION_KIND_VERSION_CONFLICT,
                "VERSION_MISMATCH",
                description="expected version 3, is 4",
            ),
        ],
    )
    error = errors.error_from_result(result)
    # docs/contract.md's order: a version conflict is more fundamental than a failed precondition.
    assert isinstance(error, errors.Aborted)
    assert error.message == "expected version 3, is 4"
    assert error.reason == "VERSION_MISMATCH" and error.command_id == "c1"

    result.ClearField("violations")
    result.violations.add(
        kind=outcome_pb2.VIOLATION_KIND_INVALID_ARGUMENT,
        reason="TITLE_REQUIRED",
        field="command.title",
        description="title is required",
    )
    error = errors.error_from_result(result)
    assert isinstance(error, errors.InvalidArgument)
    assert error.field_violations[0].field == "command.title"


def test_failed_result_is_aborted_and_success_is_no_error() -> None:
    failed = results_pb2.CommandResult(
        command_id="c1", state=outcome_pb2.COMMAND_STATE_FAILED, error_message="unknown command"
    )
    error = errors.error_from_result(failed)
    assert isinstance(error, errors.Aborted) and "unknown command" in error.message
    assert error.reason == "COMMAND_FAILED"
    ok = results_pb2.CommandResult(command_id="c1", state=outcome_pb2.COMMAND_STATE_SUCCEEDED)
    assert errors.error_from_result(ok) is None
