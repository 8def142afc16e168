"""The gateway's connection policy, listen checks, reflection index and start-up exit codes,
without a broker (tests/faults/test_transport.py and test_process_edges.py run the processes).
"""

from __future__ import annotations

import json
import logging
import socket
from dataclasses import replace
from pathlib import Path

import pytest
from google.protobuf import descriptor_pb2
from prometheus_client import CollectorRegistry

from gateway import exits, server
from gateway.auth_tokens import TokenStore, token_digest
from gateway.reflection import Descriptors, reflection_v1_file, symbols
from gateway.settings import GatewaySettings
from gateway.transport import ListenError, check_can_listen, server_options
from prgate.observability import logs, metrics
from processor import app


def test_server_options_accept_standard_client_pings_and_bound_connections() -> None:
    options = dict(server_options(GatewaySettings()))
    # Pings every second are fine, also without calls; three faster ones in a row are not.
    assert options["grpc.http2.min_ping_interval_without_data_ms"] == 1000
    assert options["grpc.keepalive_permit_without_calls"] == 1
    assert options["grpc.http2.max_ping_strikes"] == 2
    # The gateway's own pings find dead peers; an unanswered one closes the connection.
    assert options["grpc.keepalive_time_ms"] == 30_000
    assert options["grpc.keepalive_timeout_ms"] == options["grpc.http2.ping_timeout_ms"] == 10_000
    assert options["grpc.http2.max_pings_without_data"] == 0
    assert options["grpc.max_concurrent_streams"] == 1000
    assert options["grpc.max_connection_age_ms"] == 1_800_000
    assert options["grpc.max_connection_age_grace_ms"] == 300_000
    never = dict(server_options(replace(GatewaySettings(), max_connection_age_s=0)))
    assert "grpc.max_connection_age_ms" not in never


def test_a_taken_or_malformed_address_is_a_listen_error() -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        with pytest.raises(ListenError, match="Address already in use"):
            check_can_listen(f"127.0.0.1:{port}")
    check_can_listen(f"127.0.0.1:{port}")  # free again
    check_can_listen("127.0.0.1:0")
    for bad in ("127.0.0.1", "127.0.0.1:http", "127.0.0.1:70000"):
        with pytest.raises(ListenError, match="is not host:port"):
            check_can_listen(bad)
    with pytest.raises(ListenError, match="cannot listen"):
        check_can_listen("host.invalid:50051")


def test_a_taken_metrics_address_is_one_error() -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        taken = f"127.0.0.1:{holder.getsockname()[1]}"
        with pytest.raises(metrics.MetricsListenError, match="cannot serve metrics"):
            metrics.serve(taken, CollectorRegistry())
    with pytest.raises(metrics.MetricsListenError, match="not host:port"):
        metrics.serve("nonsense", CollectorRegistry())


# -- reflection's index ------------------------------------------------------------------------


def test_every_declared_name_is_indexed_nested_ones_too() -> None:
    proto = descriptor_pb2.FileDescriptorProto(name="x.proto", package="p.v1")
    outer = proto.message_type.add(name="Outer")
    outer.field.add(name="id")
    outer.oneof_decl.add(name="choice")
    outer.nested_type.add(name="Inner").field.add(name="deep")
    inner_enum = outer.enum_type.add(name="Kind")
    inner_enum.value.add(name="KIND_A")
    top_enum = proto.enum_type.add(name="Color")
    top_enum.value.add(name="COLOR_RED")
    service = proto.service.add(name="Things")
    service.method.add(name="Get")
    assert set(symbols(proto)) == {
        "p.v1.Outer",
        "p.v1.Outer.id",
        "p.v1.Outer.choice",
        "p.v1.Outer.Inner",
        "p.v1.Outer.Inner.deep",
        "p.v1.Outer.Kind",
        "p.v1.Outer.KIND_A",
        "p.v1.Color",
        "p.v1.COLOR_RED",
        "p.v1.Things",
        "p.v1.Things.Get",
    }


def test_the_gateway_descriptors_resolve_methods_and_keep_comments() -> None:
    found = Descriptors.of_gateway()
    name = found.file_of_symbol("prgate.v1.PullRequestQueryService.ListPullRequests")
    assert name == "prgate/v1/query_service.proto"
    served = [
        descriptor_pb2.FileDescriptorProto.FromString(b) for b in found.with_dependencies(name)
    ]
    assert served[0].name == name and served[0].source_code_info.location
    assert {"prgate/v1/pull_request.proto", "google/protobuf/timestamp.proto"} <= {
        f.name for f in served
    }
    assert found.file_of_symbol("grpc.reflection.v1.ServerReflection.ServerReflectionInfo")
    assert found.file_of_symbol("grpc.health.v1.Health.Watch")
    # Loaded by the process (the error details), found in its descriptor pool.
    assert found.file_of_symbol("google.rpc.BadRequest") == "google/rpc/error_details.proto"
    assert found.file_of_symbol("no.such.Symbol") is None
    assert found.file_named("no/such.proto") is None


def test_the_v1_reflection_file_is_the_v1alpha_one_renamed() -> None:
    v1 = reflection_v1_file()
    assert v1.package == "grpc.reflection.v1"
    (method,) = v1.service[0].method
    assert method.input_type == ".grpc.reflection.v1.ServerReflectionRequest"
    assert method.client_streaming and method.server_streaming
    referenced = {f.type_name for m in v1.message_type for f in m.field if f.type_name}
    assert referenced and all(t.startswith(".grpc.reflection.v1.") for t in referenced)


# -- token listeners ---------------------------------------------------------------------------


def test_token_store_tells_listeners_of_each_reload(tmp_path: Path) -> None:
    path = tmp_path / "tokens.json"
    token = "a-token-of-sixteen-chars"
    path.write_text(json.dumps({"tokens": [{"principal": "ada", "token": token}]}))
    store = TokenStore(path, check_interval_s=0)
    heard: list[bool] = []
    store.add_listener(lambda: heard.append(store.knows(token_digest(token))))
    assert store.knows(token_digest(token))
    path.write_text(json.dumps({"tokens": []}))
    assert store.reload()
    assert heard == [False]


# -- start-up failures: one line, one exit code ------------------------------------------------


def exit_lines(caplog: pytest.LogCaptureFixture, event: str) -> list[str]:
    """The ``event`` lines as logfmt (``event=gateway_exit code=3 …``), fields included."""
    line = logs.LogfmtFormatter()
    return [line.format(r) for r in caplog.records if r.getMessage() == event]


def test_gateway_refuses_bad_settings_with_exit_2(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    monkeypatch.setattr(server.logs, "configure", lambda level: None)
    caplog.set_level(logging.INFO)
    monkeypatch.setenv("PRGATE_MAX_WAITING", "many")
    assert server.main([]) == exits.EXIT_CONFIG
    monkeypatch.delenv("PRGATE_MAX_WAITING")
    missing = str(tmp_path / "missing.json")
    assert server.main(["--auth-token-file", missing]) == exits.EXIT_CONFIG
    lines = exit_lines(caplog, "gateway_exit")
    assert len(lines) == 2 and all("code=2" in line for line in lines), lines
    assert "PRGATE_MAX_WAITING" in lines[0] and "token file" in lines[1]


def test_gateway_on_a_taken_port_exits_3(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(server.logs, "configure", lambda level: None)
    caplog.set_level(logging.INFO)
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        taken = f"127.0.0.1:{holder.getsockname()[1]}"
        # Kafka is never contacted: the address is checked first.
        args = ["--bootstrap-servers", "127.0.0.1:1", "--listen", taken]
        assert server.main(args) == exits.EXIT_LISTEN
    (line,) = exit_lines(caplog, "gateway_exit")
    assert "code=3" in line and "Address already in use" in line


def test_exit_codes_are_documented_in_the_readme() -> None:
    readme = (Path(__file__).resolve().parents[3] / "README.md").read_text()
    for process, codes in (("gateway", exits.EXIT_CODES), ("processor", app.EXIT_CODES)):
        for code in codes:
            assert f"| {process} | {code} |" in readme, f"{process} exit code {code}"
