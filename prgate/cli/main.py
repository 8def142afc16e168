"""The ``prgate`` command line: the top-level parser and the dispatch, nothing else.

    prgate kafka start|stop|status      the project's local single-node broker (prgate.cli.kafka)
    prgate topics ensure|describe       create and verify / show the topics (prgate.cli.topics)
    prgate processor [ARGS]             run a processor (processor.app:main)
    prgate gateway [ARGS]               run a gateway (gateway.server:main)
    prgate archive [maintain] [ARGS]    the audit archive (archive.app:main)
    prgate audit QUESTION               query the archive (archive.audit:main)
    prgate bench [ARGS]                 benchmark, from a source checkout (prgate.cli.bench)
    prgate dev                          broker + topics + processor + gateway (prgate.cli.dev)
    prgate pr ACTION                    call the gateway (prgate.cli.pr)
    prgate events tail                  print the events topic live (prgate.cli.events)
    prgate decode TOPIC                 any topic's records as JSON Lines (prgate.cli.decode)

Each group's module adds its subparser (``register``) and runs its commands. The services are
reached only through their ``main`` entry points, imported lazily by name (:data:`DELEGATED`),
so the CLI never imports ``gateway`` or ``processor`` itself. Every Kafka subcommand takes the
flags of :class:`~prgate.kafka.settings.KafkaSettings` (flag > ``PRGATE_*`` /
``KAFKA_BOOTSTRAP_SERVERS`` environment > default). Expected failures (a missing tool, a
timeout, a topic contract violation) print one clear message and exit 1, without a traceback;
a refused setting (a value that does not parse, a configuration file that cannot be used: a
:class:`~prgate.settings.SettingsError`) exits 2, also from a delegated subcommand.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import sys
from collections.abc import Callable, Sequence

from prgate.cli import bench, decode, dev, events, kafka, pr, topics
from prgate.cli.entry import EXIT_INTERRUPTED
from prgate.kafka.local import LocalKafkaError
from prgate.kafka.topic_checks import TopicContractError
from prgate.kafka.topics import TopicAdminError
from prgate.observability import logs
from prgate.settings import SettingsError

EXPECTED_ERRORS = (LocalKafkaError, TopicContractError, TopicAdminError)
EXIT_SETTINGS = 2

# --- registration points for subcommands implemented elsewhere -------------------------------
# Each maps a subcommand to "module:function"; the function takes argv (the arguments after the
# subcommand) and returns an exit code (or None). Imported lazily so the CLI works without them.
DELEGATED: dict[str, tuple[str, str]] = {
    "processor": ("processor.app:main", "run a processor in the foreground"),
    "gateway": ("gateway.server:main", "run a gateway in the foreground (default 127.0.0.1:50051)"),
    "bench": ("bench.run:main", "benchmark against same-run baselines on a private broker"),
    "archive": ("archive.app:main", "archive the topics into Delta tables (maintain: compact)"),
    "audit": ("archive.audit:main", "audit questions answered from the archive tables"),
}
# Run before the import of a delegated subcommand; returns None, or why it cannot run.
PREPARE: dict[str, Callable[[], str | None]] = {"bench": bench.make_importable}
# ----------------------------------------------------------------------------------------------


def run_delegated(name: str, argv: Sequence[str]) -> int:
    """Import ``module:function`` of a delegated subcommand lazily and run it with ``argv``."""
    target, _ = DELEGATED[name]
    module_name, _, func_name = target.partition(":")
    problem = PREPARE[name]() if name in PREPARE else None
    if problem is not None:
        print(f"prgate: error: {problem}", file=sys.stderr)
        return 1
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        print(
            f"prgate: error: `prgate {name}` is not available: cannot import {module_name} ({exc})",
            file=sys.stderr,
        )
        return 1
    func: Callable[[list[str]], int | None] = getattr(module, func_name)
    try:
        return int(func(list(argv)) or 0)
    except SettingsError as exc:  # the services report their own; this catches the rest
        print(f"prgate {name}: error: {exc}", file=sys.stderr)
        return EXIT_SETTINGS


def build_parser() -> argparse.ArgumentParser:
    """The ``prgate`` parser: each group's subparser, in the order ``prgate --help`` lists."""
    parser = argparse.ArgumentParser(
        prog="prgate",
        description="Run and operate prgate: local Kafka, topics, processor, gateway.",
    )
    parser.add_argument("--version", action="version", version=f"prgate {version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    kafka.register(sub)
    topics.register(sub)
    for name, (target, help_text) in DELEGATED.items():
        sub.add_parser(name, help=f"{help_text} ({target}; takes its own flags)", add_help=False)
    dev.register(sub)
    pr.register(sub)
    events.register(sub)
    decode.register(sub)
    return parser


def version() -> str:
    """The installed distribution's version (``pyproject.toml``), or ``unknown`` when prgate
    runs from a checkout that was never installed."""
    try:
        return importlib.metadata.version("prgate")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def chosen_parser(
    parser: argparse.ArgumentParser, args: argparse.Namespace
) -> argparse.ArgumentParser:
    """The innermost subcommand's parser that ``args`` went through (``prgate pr get``'s for
    ``prgate pr get --bogus``), so an error prints that subcommand's usage."""
    while True:
        subparsers = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if not subparsers:
            return parser
        chosen = getattr(args, subparsers[0].dest, None)
        inner = subparsers[0].choices.get(chosen) if chosen is not None else None
        if not isinstance(inner, argparse.ArgumentParser):
            return parser
        parser = inner


def parse(parser: argparse.ArgumentParser, arguments: list[str]) -> argparse.Namespace:
    """``parser.parse_args``, but an unknown flag is reported by the subcommand it was given
    to: its usage line and ``unrecognized arguments``, exit 2."""
    args, unknown = parser.parse_known_args(arguments)
    if unknown:
        chosen_parser(parser, args).error(f"unrecognized arguments: {' '.join(unknown)}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``prgate`` script; returns the exit code."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    if arguments and arguments[0] in DELEGATED:
        return run_delegated(arguments[0], arguments[1:])  # it configures its own logging
    args = parse(build_parser(), arguments)
    logs.configure()
    try:
        code: int = args.func(args)
    except SettingsError as exc:
        print(f"prgate: error: {exc}", file=sys.stderr)
        return EXIT_SETTINGS
    except EXPECTED_ERRORS as exc:
        print(f"prgate: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    return code


if __name__ == "__main__":
    sys.exit(main())
