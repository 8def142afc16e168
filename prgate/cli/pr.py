"""``prgate pr …``: call the gateway from the command line, over :class:`prgate.client.Client`.

    prgate pr open --repository acme/widgets --title "Add a widget" --author ada \\
        --source-branch feature/widget --target-branch main
    prgate pr approve PR_ID --reviewer bob
    prgate pr check PR_ID --name ci --conclusion success
    prgate pr merge PR_ID --by bob             # waits for the result (--no-wait: ACCEPTED)
    prgate pr get PR_ID / prgate pr list --status open / prgate pr watch PR_ID

Exit codes: 0 done; 1 refused (INVALID_ARGUMENT, FAILED_PRECONDITION, NOT_FOUND, ABORTED,
ALREADY_EXISTS, and also UNAUTHENTICATED, PERMISSION_DENIED, INTERNAL); 2 usage or a refused
setting; 3 no answer (UNAVAILABLE, DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED; also a ``--max`` not
reached within ``--timeout``); 130 Ctrl-C, 141 stdout's reader gone (:mod:`prgate.cli.entry`).
Errors print the code, the message and every violation on stderr (and with ``--json`` the
``google.rpc.Status`` as JSON on stdout), never a traceback.

Read-your-writes from one command line to the next, on any gateway: the client's consistency
tokens (:class:`prgate.client.Session`) are kept in ``PRGATE_CONSISTENCY_FILE`` (default
``~/.cache/prgate/consistency-tokens.json``; empty: none kept), read before each call and
written back after it, so ``prgate pr open`` through one gateway and ``prgate pr approve``
through another right after finds the pull request. Two ``prgate`` processes writing the file
at once keep one of their sessions (the file is replaced whole, never torn).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

import grpc

from prgate.cli import render
from prgate.cli.client_settings import ClientSettings
from prgate.client import (
    Client,
    DeadlineExceeded,
    PrgateError,
    ResourceExhausted,
    Unavailable,
)
from prgate.client.errors import error_from_result
from prgate.client.requests import CONCLUSIONS, MODES, STATUSES, TERMINAL
from prgate.settings import add_arguments, count_flag, load
from prgate.v1 import command_service_pb2 as svc

EXIT_OK, EXIT_REJECTED, EXIT_USAGE, EXIT_NO_ANSWER = 0, 1, 2, 3
NO_ANSWER = (Unavailable, DeadlineExceeded, ResourceExhausted)


def exit_code(error: PrgateError) -> int:
    return EXIT_NO_ANSWER if isinstance(error, NO_ANSWER) else EXIT_REJECTED


def report(error: PrgateError, args: argparse.Namespace) -> int:
    print(f"prgate: {render.error_text(error.describe())}", file=sys.stderr)
    if args.json:
        print(render.to_json(error.status))
    return exit_code(error)


def emit(args: argparse.Namespace, message: Any, human: Callable[[Any], str]) -> None:
    print(render.to_json(message) if args.json else human(message), flush=True)


# -- commands ------------------------------------------------------------------------------


def command_options(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "mode": args.mode,
        "idempotency_key": args.idempotency_key,
        "expected_version": args.expected_version,
    }


def _follow(client: Client, args: argparse.Namespace, receipt: svc.CommandReceipt) -> int:
    """Print the final receipt; for an ACCEPTED merge/revert follow it unless --no-wait."""
    if receipt.state not in TERMINAL and getattr(args, "wait", False) and args.mode != "accepted":
        with render.Spinner(f"waiting for command {receipt.command_id}"):
            receipt = client.wait_command(
                receipt.command_id, timeout=args.timeout_s, raise_on_rejection=False
            )
    emit(args, receipt, render.receipt_table)
    error = error_from_result(receipt.result) if receipt.state in TERMINAL else None
    if error is not None:
        print(f"prgate: {render.error_text(error.describe())}", file=sys.stderr)
        return EXIT_REJECTED
    return EXIT_OK


def _command(call: Callable[[Client, argparse.Namespace], svc.CommandReceipt]) -> Any:
    def run(client: Client, args: argparse.Namespace) -> int:
        with render.Spinner("waiting for the gateway"):
            receipt = call(client, args)
        return _follow(client, args, receipt)

    return run


COMMANDS: dict[str, tuple[str, Callable[[Client, argparse.Namespace], svc.CommandReceipt]]] = {
    "open": (
        "open a pull request",
        lambda c, a: c.open_pull_request(
            a.repository,
            a.title,
            a.author,
            a.source_branch,
            a.target_branch,
            a.description,
            **command_options(a),
        ),
    ),
    "retitle": (
        "change the title",
        lambda c, a: c.change_title(a.id, a.title, a.changed_by, **command_options(a)),
    ),
    "approve": (
        "approve as a reviewer",
        lambda c, a: c.approve(a.id, a.reviewer, **command_options(a)),
    ),
    "check": (
        "record a check's result",
        lambda c, a: c.record_check(a.id, a.name, a.conclusion, **command_options(a)),
    ),
    "merge": (
        "merge (waits for the result unless --no-wait)",
        lambda c, a: c.merge(a.id, a.merged_by, a.message, **command_options(a)),
    ),
    "close": ("close", lambda c, a: c.close(a.id, a.actor, **command_options(a))),
    "reopen": ("reopen", lambda c, a: c.reopen(a.id, a.actor, **command_options(a))),
    "revert": (
        "revert a merged pull request (waits unless --no-wait)",
        lambda c, a: c.revert(a.id, a.actor, a.reason, **command_options(a)),
    ),
}


def _command_flags(name: str, p: argparse.ArgumentParser) -> None:
    if name == "open":
        p.add_argument("--repository", required=True, help='"owner/name"')
        p.add_argument("--title", required=True)
        p.add_argument("--author", required=True)
        p.add_argument("--source-branch", required=True)
        p.add_argument("--target-branch", required=True)
        p.add_argument("--description", default="")
    else:
        p.add_argument("id", metavar="PULL_REQUEST_ID")
    if name == "retitle":
        p.add_argument("--title", required=True)
        p.add_argument("--changed-by", required=True)
    elif name == "approve":
        p.add_argument("--reviewer", required=True)
    elif name == "check":
        p.add_argument("--name", required=True, help="the check's name, e.g. ci")
        p.add_argument("--conclusion", required=True, choices=sorted(CONCLUSIONS))
    elif name == "merge":
        p.add_argument("--by", dest="merged_by", required=True, help="the merging user")
        p.add_argument("--message", default="", help="commit message (default: from the title)")
    elif name in ("close", "reopen", "revert"):
        p.add_argument("--actor", required=True)
    if name == "revert":
        p.add_argument("--reason", default="")
    if name in ("merge", "revert"):
        p.add_argument("--no-wait", dest="wait", action="store_false", help="return once ACCEPTED")
    p.add_argument(
        "--mode", choices=sorted(MODES), help="accepted or completed (default: the command's)"
    )
    p.add_argument("--idempotency-key", help="reuse to retry this exact command safely")
    p.add_argument(
        "--expected-version", type=count_flag(int), help="apply only at this version (else ABORTED)"
    )
    p.set_defaults(run=_command(COMMANDS[name][1]))


# -- queries -------------------------------------------------------------------------------


def _get(client: Client, args: argparse.Namespace) -> int:
    emit(args, client.get(args.id), render.pull_request_table)
    return EXIT_OK


def _list(client: Client, args: argparse.Namespace) -> int:
    found = client.list(args.repository, args.status, args.page_size)
    rows = []
    for count, pr in enumerate(found, start=1):
        if args.json:
            print(render.to_json(pr))
        else:
            rows.append(render.list_row(pr))
        if args.limit and count >= args.limit:
            break
    if not args.json:
        print(render.table(render.LIST_HEADER, rows) if rows else "no pull requests")
    return EXIT_OK


def _watch(client: Client, args: argparse.Namespace) -> int:
    # A live view has no deadline unless --timeout is given (PRGATE_TIMEOUT is per call).
    timeout = float(args.timeout) if args.timeout is not None else None
    if args.command_id:
        return _watch_command(client, args, timeout)
    if not args.id:
        print("prgate: error: give a PULL_REQUEST_ID or --command COMMAND_ID", file=sys.stderr)
        return EXIT_USAGE
    seen = 0
    try:
        for seen, pr in enumerate(client.watch_pull_request(args.id, timeout=timeout), 1):
            emit(args, pr, render.version_line)
            if args.max and seen >= args.max:
                return EXIT_OK
    except DeadlineExceeded:
        # Only the watch's own --timeout ends WatchPullRequest this way: the end of a live
        # view, which is a failure only when --max asked for more versions.
        if args.max:
            print(f"prgate: {seen} of {args.max} versions within {timeout:g}s", file=sys.stderr)
            return EXIT_NO_ANSWER
    return EXIT_OK


def _watch_command(client: Client, args: argparse.Namespace, timeout: float | None) -> int:
    last: svc.CommandReceipt | None = None
    for receipt in client.watch_command(args.command_id, timeout=timeout):
        emit(args, receipt, lambda r: render.receipt_table(r, hint=False))
        last = receipt
    if last is not None and last.state in TERMINAL:
        error = error_from_result(last.result)
        if error is not None:
            print(f"prgate: {render.error_text(error.describe())}", file=sys.stderr)
            return EXIT_REJECTED
    return EXIT_OK


# -- parser --------------------------------------------------------------------------------


def _common(parser: argparse.ArgumentParser) -> None:
    add_arguments(parser, ClientSettings)
    parser.add_argument("--json", action="store_true", help="print protobuf JSON (one per line)")


def register(sub: Any) -> None:
    """Add ``prgate pr …`` to the top-level subparsers of ``prgate``."""
    pr = sub.add_parser("pr", help="call the gateway: commands, get, list, watch")
    actions = pr.add_subparsers(dest="action", required=True, metavar="ACTION")
    for name, (help_text, _) in COMMANDS.items():
        p = actions.add_parser(name, help=help_text)
        _command_flags(name, p)
        _common(p)
    p = actions.add_parser("get", help="show one pull request")
    p.add_argument("id", metavar="PULL_REQUEST_ID")
    p.set_defaults(run=_get)
    _common(p)
    p = actions.add_parser("list", help="list pull requests (every page)")
    p.add_argument("--repository", default="")
    p.add_argument("--status", choices=sorted(STATUSES))
    p.add_argument("--page-size", type=count_flag(int), default=100)
    p.add_argument("--limit", type=count_flag(int), default=0, help="stop after this many (0: all)")
    p.set_defaults(run=_list)
    _common(p)
    p = actions.add_parser(
        "watch", help="live view: every new version of a pull request, or a command's states"
    )
    p.add_argument("id", metavar="PULL_REQUEST_ID", nargs="?")
    p.add_argument("--command", dest="command_id", help="watch this command instead")
    p.add_argument("--max", type=count_flag(int), default=0, help="stop after this many versions")
    p.epilog = "--timeout bounds the whole watch (default: none); exit 3 if --max is not reached"
    p.set_defaults(run=_watch)
    _common(p)
    pr.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    """Run a parsed ``prgate pr`` command; returns the exit code."""
    settings = load(ClientSettings, args)
    args.timeout_s = settings.timeout
    session = settings.session()
    try:
        with settings.client(session) as client:
            code: int = args.run(client, args)
            return code
    except PrgateError as error:
        return report(error, args)
    except ValueError as error:
        print(f"prgate: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except grpc.RpcError as error:  # pragma: no cover - the client maps every RpcError
        print(f"prgate: {error}", file=sys.stderr)
        return EXIT_REJECTED
    finally:
        # Also after a refusal or an interrupted watch: what was answered before counts.
        settings.save(session)
