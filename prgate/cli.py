"""The ``prgate`` command line.

    prgate kafka start|stop|status      the project's local single-node broker
    prgate topics ensure|describe       create and verify / show the contract topics
    prgate processor [ARGS]             run a processor (processor.app:main)
    prgate gateway [ARGS]               run a gateway (gateway.server:main)
    prgate dev                          broker + topics + processor + gateway, Ctrl-C stops all
    prgate pr ACTION                    call the gateway (prgate.cli_pr)
    prgate events tail                  print the events topic live (prgate.events_tail)

Every subcommand takes the Kafka flags of :class:`KafkaSettings` (flag > ``PRGATE_*`` /
``KAFKA_BOOTSTRAP_SERVERS`` environment > default). Expected failures (a missing tool, a
timeout, a topic contract violation) print one clear message and exit 1, without a traceback.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import logging
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from prgate import cli_pr, events_tail
from prgate.kafka_settings import KafkaSettings
from prgate.local_kafka import (
    KAFKA_VERSION,
    LocalKafkaError,
    LocalKafkaSettings,
    broker_answers,
    foreign_broker_serves,
)
from prgate.settings import add_arguments, load, setting
from processor.contract import DAY_MS
from processor.topics import (
    TopicAdminError,
    TopicContractError,
    contract_specs,
    describe_topics,
    ensure_topics,
    format_states,
)

log = logging.getLogger("prgate.cli")

EXPECTED_ERRORS = (LocalKafkaError, TopicContractError, TopicAdminError)

# --- registration points for subcommands implemented elsewhere -------------------------------
# Each maps a subcommand to "module:function"; the function takes argv (the arguments after the
# subcommand) and returns an exit code (or None). Imported lazily so the CLI works without them.
DELEGATED: dict[str, tuple[str, str]] = {
    "processor": ("processor.app:main", "run a processor in the foreground"),
    "gateway": ("gateway.server:main", "run a gateway in the foreground (default 127.0.0.1:50051)"),
    "bench": ("bench.run:main", "benchmark against same-run baselines on a private broker"),
}
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TopicsCommandSettings:
    """Options of ``prgate topics`` beyond the Kafka connection."""

    events_retention_ms: int = setting(
        7 * DAY_MS, "PRGATE_EVENTS_RETENTION_MS", "retention of the events topic when created"
    )
    admin_timeout: float = setting(
        30.0, "PRGATE_ADMIN_TIMEOUT", "seconds each Kafka admin request may take"
    )


def configure_logging(environ: Mapping[str, str] | None = None) -> None:
    """One key=value line per event on stderr; level from ``PRGATE_LOG_LEVEL`` (INFO)."""
    env = os.environ if environ is None else environ
    logging.basicConfig(
        level=env.get("PRGATE_LOG_LEVEL", "INFO").upper(),
        format="%(asctime)s level=%(levelname)s logger=%(name)s %(message)s",
        stream=sys.stderr,
    )


def loopback_port(bootstrap: str) -> int | None:
    """The port of a single ``127.0.0.1:PORT`` / ``localhost:PORT`` bootstrap, else None."""
    host, sep, port = bootstrap.strip().rpartition(":")
    if sep and "," not in bootstrap and host in ("127.0.0.1", "localhost") and port.isdigit():
        return int(port)
    return None


def remote_bootstrap(args: argparse.Namespace, environ: Mapping[str, str]) -> str | None:
    """A non-loopback cluster chosen by --bootstrap-servers or KAFKA_BOOTSTRAP_SERVERS.

    Then no local broker is started. A loopback address instead selects the local broker's
    port (unless --port is given), so the same variable drives both cases.
    """
    if getattr(args, "port", None) is not None:
        return None
    chosen = args.bootstrap_servers or environ.get("KAFKA_BOOTSTRAP_SERVERS")
    return chosen if chosen and loopback_port(chosen) is None else None


def local_broker(args: argparse.Namespace, environ: Mapping[str, str]) -> LocalKafkaSettings:
    """Local broker settings; without --port/PRGATE_KAFKA_PORT the port follows a loopback
    bootstrap address, so ``KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:19092 prgate kafka stop`` works."""
    settings = load(LocalKafkaSettings, args, environ)
    if args.port is None and "PRGATE_KAFKA_PORT" not in environ:
        bootstrap = args.bootstrap_servers or environ.get("KAFKA_BOOTSTRAP_SERVERS", "")
        port = loopback_port(bootstrap)
        if port is not None:
            settings = dataclasses.replace(settings, port=port)
    return settings


def _kafka_start(args: argparse.Namespace) -> int:
    remote = remote_bootstrap(args, os.environ)
    if remote is not None:
        if not broker_answers(remote, timeout=10.0):
            raise LocalKafkaError(
                f"KAFKA_BOOTSTRAP_SERVERS={remote} is set but no broker answers there; unset "
                "it to start the project's own broker"
            )
        print(f"using the Kafka cluster at {remote}; not starting a local broker")
        return 0
    settings = local_broker(args, os.environ)
    broker = settings.broker()
    if foreign_broker_serves(broker):
        print(f"a Kafka broker not started by prgate already serves at {broker.bootstrap_servers}")
        return 0
    broker.start(settings.start_timeout)
    port_flag = f" --port {broker.port}" if broker.port != 9092 else ""
    print(
        f"Kafka {KAFKA_VERSION} serves at {broker.bootstrap_servers} (pid {broker.pid()}, "
        f"log {broker.log_file}); stop it with `prgate kafka stop{port_flag}`"
    )
    if broker.port != 9092:
        print(f"export KAFKA_BOOTSTRAP_SERVERS={broker.bootstrap_servers}")
    return 0


def _kafka_stop(args: argparse.Namespace) -> int:
    broker = local_broker(args, os.environ).broker()
    if broker.stop():
        print(f"stopped the Kafka broker at {broker.bootstrap_servers}")
    else:
        print(f"no Kafka broker started by prgate runs at {broker.bootstrap_servers}")
    return 0


def _kafka_status(args: argparse.Namespace) -> int:
    broker = local_broker(args, os.environ).broker()
    pid = broker.pid()
    serving = pid is not None and broker_answers(broker.bootstrap_servers, timeout=5.0)
    state = "serving" if serving else ("starting or unhealthy" if pid else "not running")
    if pid is None and foreign_broker_serves(broker):
        state = "not running (a broker not started by prgate serves on that port)"
    print(
        f"kafka {state}: bootstrap={broker.bootstrap_servers} pid={pid or '-'} "
        f"state_dir={broker.state_dir} log={broker.log_file}"
    )
    return 0 if serving else 1


def _topics_ensure(args: argparse.Namespace) -> int:
    kafka = load(KafkaSettings, args)
    options = load(TopicsCommandSettings, args)
    specs = contract_specs(kafka, events_retention_ms=options.events_retention_ms)
    states = ensure_topics(kafka, specs=specs, timeout=options.admin_timeout)
    print(format_states({s.name: s for s in states}))
    return 0


def _topics_describe(args: argparse.Namespace) -> int:
    kafka = load(KafkaSettings, args)
    options = load(TopicsCommandSettings, args)
    print(format_states(describe_topics(kafka, timeout=options.admin_timeout)))
    return 0


def _dev(args: argparse.Namespace) -> int:
    from prgate.dev import run_dev

    kafka = load(KafkaSettings, args)
    local = local_broker(args, os.environ)
    return run_dev(
        kafka,
        broker=None if remote_bootstrap(args, os.environ) is not None else local.broker(),
        start_timeout=local.start_timeout,
    )


def run_delegated(name: str, argv: Sequence[str]) -> int:
    """Import ``module:function`` of a delegated subcommand lazily and run it with ``argv``."""
    target, _ = DELEGATED[name]
    module_name, _, func_name = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        print(
            f"prgate: error: `prgate {name}` is not available: cannot import {module_name} ({exc})",
            file=sys.stderr,
        )
        return 1
    func: Callable[[list[str]], int | None] = getattr(module, func_name)
    return int(func(list(argv)) or 0)


def _with_kafka_flags(parser: argparse.ArgumentParser, *extra: type) -> None:
    add_arguments(parser, KafkaSettings)
    for cls in extra:
        add_arguments(parser, cls)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="prgate",
        description="Run and operate prgate: local Kafka, topics, processor, gateway.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    kafka = sub.add_parser("kafka", help=f"the project's local Kafka {KAFKA_VERSION} broker")
    kafka_sub = kafka.add_subparsers(dest="action", required=True, metavar="ACTION")
    actions: dict[str, tuple[Callable[[argparse.Namespace], int], str]] = {
        "start": (_kafka_start, "provision (cached) and start; return once it serves"),
        "stop": (_kafka_stop, "stop it (SIGTERM, then SIGKILL after a bound)"),
        "status": (_kafka_status, "show whether it runs and serves (exit 1 if not)"),
    }
    for action, (func, help_text) in actions.items():
        p = kafka_sub.add_parser(action, help=help_text)
        _with_kafka_flags(p, LocalKafkaSettings)
        p.set_defaults(func=func)

    topics = sub.add_parser("topics", help="the contract topics")
    topics_sub = topics.add_subparsers(dest="action", required=True, metavar="ACTION")
    for action, func, help_text in (
        ("ensure", _topics_ensure, "create missing topics and verify all of them"),
        ("describe", _topics_describe, "show the topics with partitions and configs"),
    ):
        p = topics_sub.add_parser(action, help=help_text)
        _with_kafka_flags(p, TopicsCommandSettings)
        p.set_defaults(func=func)

    for name, (target, help_text) in DELEGATED.items():
        sub.add_parser(name, help=f"{help_text} ({target}; takes its own flags)", add_help=False)

    dev = sub.add_parser("dev", help="broker, topics, processor and gateway; Ctrl-C stops all")
    _with_kafka_flags(dev, LocalKafkaSettings)
    dev.set_defaults(func=_dev)
    cli_pr.register(sub)
    events_tail.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``prgate`` script; returns the exit code."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    if arguments and arguments[0] in DELEGATED:
        return run_delegated(arguments[0], arguments[1:])  # it configures its own logging
    args = build_parser().parse_args(arguments)
    configure_logging()
    try:
        code: int = args.func(args)
    except EXPECTED_ERRORS as exc:
        print(f"prgate: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
