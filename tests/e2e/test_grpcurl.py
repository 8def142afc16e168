"""The README's grpcurl examples, run as written against a real gateway (reflection, no protos)."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Any

import grpc
from google.protobuf import descriptor_pb2
from grpc_reflection.v1alpha import reflection_pb2

from gateway.reflection import project_files
from tests.e2e.stack import GatewayProcess

ROOT = Path(__file__).resolve().parents[2]
README_ADDRESS = "127.0.0.1:50051"


def grpcurl() -> str:
    local = ROOT / ".venv" / "bin" / "grpcurl"
    found = str(local) if local.exists() else shutil.which("grpcurl")
    assert found, "grpcurl is not installed: run `make tools` (go install, pinned in the Makefile)"
    return found


def readme_examples() -> list[str]:
    text = (ROOT / "README.md").read_text()
    block = re.search(
        r"<!-- grpcurl-examples:begin -->\n```sh\n(.*?)```\n<!-- grpcurl-examples:end -->",
        text,
        re.S,
    )
    assert block, "README lost its grpcurl examples block"
    lines = [line for line in block.group(1).splitlines() if line.startswith("grpcurl ")]
    assert len(lines) >= 10
    return lines


def parse(text: str) -> Any:
    """grpcurl's JSON as printed, so the README's claims about its field names are checked:
    responses use protobuf's JSON names (``pullRequestId``), an error's ``google.rpc`` details
    (``-format-error``) the proto field names (``field_violations``)."""
    return json.loads(text)


def run(
    line: str, gateway: GatewayProcess, values: dict[str, str], max_time: float = 30
) -> subprocess.CompletedProcess[str]:
    for name in sorted(values, key=len, reverse=True):  # $PR2 before $PR
        line = line.replace(f"${name}", values[name])
    args = shlex.split(line.replace(README_ADDRESS, gateway.target))
    return subprocess.run(
        [grpcurl(), "-max-time", str(max_time), *args[1:]],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_reflection_lists_the_services(gateway: GatewayProcess) -> None:
    out = subprocess.run(
        [grpcurl(), "-plaintext", gateway.target, "list"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout.split()
    assert "prgate.v1.PullRequestCommandService" in out
    assert "prgate.v1.PullRequestQueryService" in out
    assert "grpc.health.v1.Health" in out
    described = subprocess.run(
        [
            grpcurl(),
            "-plaintext",
            gateway.target,
            "describe",
            "prgate.v1.PullRequestCommandService",
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout
    assert "rpc WatchCommand ( .prgate.v1.WatchCommandRequest )" in described
    assert "returns ( stream .prgate.v1.WatchCommandResponse )" in described


def test_readme_examples_run_as_written(gateway: GatewayProcess) -> None:
    values: dict[str, str] = {}
    outputs: list[str] = []
    lines = readme_examples()
    for line in lines[:-1]:
        if line.endswith("/WatchPullRequest"):
            # A watch never ends by itself (a person presses Ctrl-C): stop it after 3 s.
            watched = run(line, gateway, values, max_time=3)
            assert "DeadlineExceeded" in watched.stderr, watched.stderr
            snapshot = parse(watched.stdout)["pullRequest"]
            assert snapshot["pullRequestId"] == values["PR2"]
            assert snapshot["status"] == "PULL_REQUEST_STATUS_OPEN"
            continue
        done = run(line, gateway, values)
        assert done.returncode == 0, f"{line}\n{done.stderr}"
        outputs.append(done.stdout)
        if line.endswith("/OpenPullRequest"):
            receipt = parse(done.stdout)["receipt"]
            assert receipt["state"] == "COMMAND_STATE_SUCCEEDED"
            values["PR2" if "PR" in values else "PR"] = receipt["pullRequestId"]
        if line.endswith("/MergePullRequest"):
            receipt = parse(done.stdout)["receipt"]
            assert receipt["state"] == "COMMAND_STATE_ACCEPTED"
            values["CMD"] = receipt["commandId"]
        if line.endswith("/WatchCommand"):
            states = [
                parse(part)["receipt"]["state"]
                for part in re.split(r"(?<=})\n(?={)", done.stdout.strip())
            ]
            assert states == ["COMMAND_STATE_ACCEPTED", "COMMAND_STATE_SUCCEEDED"]
        if line.endswith("/GetPullRequest"):
            entity = parse(done.stdout)["pullRequest"]
            assert entity["status"] == "PULL_REQUEST_STATUS_MERGED"
            assert entity["title"] == "Add a better widget"
        if line.endswith("/ListPullRequests"):
            listed = parse(done.stdout)["pullRequests"]
            assert values["PR"] in [p["pullRequestId"] for p in listed]
        if line.endswith(("/ClosePullRequest", "/ReopenPullRequest")):
            receipt = parse(done.stdout)["receipt"]
            assert receipt["state"] == "COMMAND_STATE_SUCCEEDED"
            assert receipt["pullRequestId"] == values["PR2"]
        if line.endswith("/RevertPullRequest"):
            receipt = parse(done.stdout)["receipt"]
            assert receipt["state"] == "COMMAND_STATE_SUCCEEDED"
    assert '"SERVING"' in outputs[1]
    refused = run(lines[-1].replace("grpcurl ", "grpcurl -format-error ", 1), gateway, values)
    assert refused.returncode != 0
    status = parse(refused.stderr)
    assert status["code"] == 3, "INVALID_ARGUMENT"
    (bad_request,) = [d for d in status["details"] if d["@type"].endswith("BadRequest")]
    fields = {v["field"] for v in bad_request["field_violations"]}
    assert "command.title" in fields
    (error_info,) = [d for d in status["details"] if d["@type"].endswith("ErrorInfo")]
    assert set(error_info["metadata"]) == {"command_id", "pull_request_id"}


def leading_comment(file_name: str, path: list[int]) -> str:
    """The first line of the proto comment at ``path`` in the committed descriptor set."""
    (proto,) = [f for f in project_files() if f.name == file_name]
    (location,) = [loc for loc in proto.source_code_info.location if list(loc.path) == path]
    return str(location.leading_comments).strip().splitlines()[0]


def grpcurl_out(gateway: GatewayProcess, *args: str) -> str:
    done = subprocess.run(
        [grpcurl(), "-plaintext", gateway.target, *args],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, f"grpcurl {' '.join(args)}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def test_reflection_resolves_methods_and_messages_by_name_with_comments(
    gateway: GatewayProcess,
) -> None:
    """v1 and v1alpha are both served; grpcurl (which asks v1 first) resolves a method by its
    full name, a message and a nested name, and shows the protos' comments."""
    listed = grpcurl_out(gateway, "list").split()
    assert {"grpc.reflection.v1.ServerReflection", "grpc.reflection.v1alpha.ServerReflection"} <= (
        set(listed)
    )
    # FileDescriptorProto paths: service 6, method 2; message_type 4, field 2.
    method = grpcurl_out(gateway, "describe", "prgate.v1.PullRequestQueryService.ListPullRequests")
    assert "rpc ListPullRequests ( .prgate.v1.ListPullRequestsRequest )" in method
    assert leading_comment("prgate/v1/query_service.proto", [6, 0, 2, 1]) in method
    message = grpcurl_out(gateway, "describe", "prgate.v1.ListPullRequestsRequest")
    assert "message ListPullRequestsRequest {" in message
    assert leading_comment("prgate/v1/query_service.proto", [4, 2, 2, 2]) in message
    service = grpcurl_out(gateway, "describe", "prgate.v1.PullRequestCommandService")
    assert leading_comment("prgate/v1/command_service.proto", [6, 0]) in service
    # Every listed service resolves (grpcurl describes each one), health and reflection too.
    everything = grpcurl_out(gateway, "describe")
    for name in listed:
        assert f"{name} is a service:" in everything
    # A refusal's google.rpc details are found by reflection too (grpcurl decodes them).
    get = "prgate.v1.PullRequestQueryService/GetPullRequest"
    empty_id = ("-d", '{"pullRequestId": ""}')
    refused = subprocess.run(
        [grpcurl(), "-plaintext", "-format-error", *empty_id, gateway.target, get],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    details = parse(refused.stderr)["details"]
    assert details and all("@error" not in d for d in details), refused.stderr


def test_reflection_v1alpha_answers_like_v1(gateway: GatewayProcess) -> None:
    """Clients that only speak v1alpha (older grpcurl, ghz, Postman) get the same answers."""
    symbol = "prgate.v1.PullRequestQueryService.ListPullRequests"
    answers = {}
    with grpc.insecure_channel(gateway.target) as channel:
        for version in ("v1", "v1alpha"):
            info = channel.stream_stream(
                f"/grpc.reflection.{version}.ServerReflection/ServerReflectionInfo",
                request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
                response_deserializer=reflection_pb2.ServerReflectionResponse.FromString,
            )
            requests = [
                reflection_pb2.ServerReflectionRequest(file_containing_symbol=symbol),
                reflection_pb2.ServerReflectionRequest(file_containing_symbol="no.such.Symbol"),
            ]
            answers[version] = list(info(iter(requests), timeout=10))
    assert [str(a) for a in answers["v1"]] == [str(a) for a in answers["v1alpha"]]
    found, missing = answers["v1"]
    first = descriptor_pb2.FileDescriptorProto.FromString(
        found.file_descriptor_response.file_descriptor_proto[0]
    )
    assert first.name == "prgate/v1/query_service.proto"
    assert first.source_code_info.location
    assert missing.error_response.error_code == grpc.StatusCode.NOT_FOUND.value[0]
