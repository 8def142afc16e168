"""``prgate audit``: the questions an audit asks, answered from the archive tables.

    prgate audit pr PR_ID                      # the history of a pull request
    prgate audit actor NAME [--since --until]  # what someone sent, and what became of it
    prgate audit refusals [--since --until] [--reason REASON]   # refusals by reason

Tables for people; ``--json`` prints one JSON object per line (JSON Lines). Times are UTC.
Queries run in DuckDB over the Delta tables (:mod:`archive.query`).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from archive.query import NoArchive, connect
from archive.settings import default_root
from prgate.settings import add_arguments, load, setting

# Each row is placed after the command that caused it (its events by version, then its
# result), commands in the order they were issued; the Kafka time stands in for a missing one.
HISTORY = """
SELECT happened_at, kind, what, actor, command_id, detail FROM (
  SELECT *, min(CASE WHEN o = 0 THEN happened_at END) OVER (PARTITION BY command_id) AS anchor
  FROM (
    SELECT coalesce(issued_at, kafka_timestamp) AS happened_at, 0 AS o, NULL AS v,
           'command' AS kind, command_type AS what, coalesce(actor, caller) AS actor, command_id,
           concat_ws(' ', 'caller=' || caller, 'undecodable: ' || decode_error) AS detail
      FROM commands WHERE pull_request_id = $id
    UNION ALL
    SELECT coalesce(refused_at, issued_at, kafka_timestamp), 0, NULL, 'refused', command_type,
           coalesce(actor, caller), command_id, concat_ws(' ', code_name, reason, message)
      FROM refusals WHERE pull_request_id = $id
    UNION ALL
    SELECT coalesce(occurred_at, kafka_timestamp), 1, version, 'event', event_type, actor,
           command_id, concat_ws(' ', 'v' || version, to_status, title, check_name,
                                 check_conclusion, commit_message, revert_reason)
      FROM events WHERE pull_request_id = $id
    UNION ALL
    SELECT coalesce(completed_at, kafka_timestamp), 2, version, 'result', outcome, NULL,
           command_id, concat_ws(' ', command_type, 'v' || version, reason, error_message,
                                 CASE WHEN duplicate THEN '(duplicate answer)' END)
      FROM results WHERE pull_request_id = $id
  )
) ORDER BY coalesce(anchor, happened_at), command_id, o, v, happened_at
"""

# Commands of an actor with their outcome; `day` (the Kafka timestamp's date) prunes the
# partitions read, with a day's slack for a command issued just before midnight.
ACTOR = """
WITH answers AS (
  SELECT command_id, arg_min(outcome, duplicate) AS outcome,
         arg_min(coalesce(reason, error_message), duplicate) AS reason
    FROM results GROUP BY command_id
)
SELECT coalesce(c.issued_at, c.kafka_timestamp) AS happened_at, c.command_type,
       c.pull_request_id,
       coalesce(a.outcome, 'NO ANSWER YET') AS outcome, a.reason, c.command_id
  FROM commands c LEFT JOIN answers a USING (command_id)
 WHERE c.actor = $actor AND coalesce(c.issued_at, c.kafka_timestamp) >= $since
   AND coalesce(c.issued_at, c.kafka_timestamp) < $until
   AND c.day BETWEEN CAST($since AS DATE) - 1 AND CAST($until AS DATE) + 1
UNION ALL
SELECT coalesce(issued_at, kafka_timestamp), command_type, pull_request_id, 'REFUSED',
       concat_ws(' ', code_name, reason), command_id
  FROM refusals
 WHERE actor = $actor AND coalesce(issued_at, kafka_timestamp) >= $since
   AND coalesce(issued_at, kafka_timestamp) < $until
   AND day BETWEEN CAST($since AS DATE) - 1 AND CAST($until AS DATE) + 1
ORDER BY happened_at
"""

# Refused by the gateway (synchronously, the refusals table) and rejected by the processor
# (results), counted by reason; a result with several violations counts once per violation.
REFUSALS = """
SELECT refused_by, kind, reason, count(*) AS refusals,
       count(DISTINCT pull_request_id) AS pull_requests, min(happened_at) AS first_at,
       max(happened_at) AS last_at
FROM (
  SELECT 'gateway' AS refused_by, code_name AS kind, reason, pull_request_id,
         coalesce(refused_at, kafka_timestamp) AS happened_at
    FROM refusals
  UNION ALL
  SELECT 'processor', v.kind, v.reason, pull_request_id, coalesce(completed_at, kafka_timestamp)
    FROM results, unnest(violations) AS u(v)
   WHERE outcome = 'REJECTED' AND NOT duplicate
) WHERE happened_at >= $since AND happened_at < $until AND ($reason IS NULL OR reason = $reason)
GROUP BY ALL ORDER BY refusals DESC, refused_by, reason
"""

REFUSALS_OF_REASON = """
SELECT * FROM (
  SELECT coalesce(refused_at, kafka_timestamp) AS happened_at, 'gateway' AS refused_by,
         command_type, pull_request_id, coalesce(actor, caller) AS actor, code_name AS kind,
         reason, command_id
    FROM refusals
  UNION ALL
  SELECT coalesce(r.completed_at, r.kafka_timestamp), 'processor', r.command_type,
         r.pull_request_id, c.actor, v.kind, v.reason, r.command_id
    FROM results r LEFT JOIN commands c USING (command_id), unnest(r.violations) AS u(v)
   WHERE r.outcome = 'REJECTED' AND NOT r.duplicate
) WHERE happened_at >= $since AND happened_at < $until AND reason = $reason
ORDER BY happened_at
"""


@dataclass(frozen=True)
class AuditSettings:
    """Where ``prgate audit`` reads."""

    root: str = setting(
        "",
        "PRGATE_ARCHIVE_ROOT",
        "directory of the archive's Delta tables (default: cache/archive)",
    )


def _time(text: str) -> dt.datetime:
    """An ISO 8601 date or time; UTC when it names no zone."""
    value = dt.datetime.fromisoformat(text)
    return value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)


def _cell(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return value


def rows_of(con: Any, sql: str, params: dict[str, Any]) -> list[dict[str, Any]]:
    """Run ``sql`` and return its rows as dicts of JSON-able values."""
    cursor = con.execute(sql, params)
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, map(_cell, row), strict=True)) for row in cursor.fetchall()]


def render(rows: list[dict[str, Any]], out: TextIO) -> None:
    """An aligned text table (or a note that nothing matched)."""
    if not rows:
        print("(nothing found)", file=out)
        return
    names = list(rows[0])
    cells = [names] + [["" if r[n] is None else str(r[n]) for n in names] for r in rows]
    widths = [min(60, max(len(row[i]) for row in cells)) for i in range(len(names))]
    for row in cells:
        line = "  ".join(c[:w].ljust(w) for c, w in zip(row, widths, strict=True))
        print(line.rstrip(), file=out)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="prgate audit", description="Answer audit questions from the archive tables."
    )
    sub = parser.add_subparsers(dest="question", required=True, metavar="QUESTION")

    def question(name: str, help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text)
        add_arguments(p, AuditSettings)
        p.add_argument("--json", action="store_true", help="one JSON object per line")
        return p

    pr = question("pr", "history of a pull request: commands, who, outcome and why, events")
    pr.add_argument("pull_request_id")
    actor = question("actor", "commands an actor sent in a time range, with their outcome")
    actor.add_argument("actor")
    refusals = question("refusals", "refusals (gateway) and rejections (processor) by reason")
    refusals.add_argument("--reason", help="list the refusals of this reason one by one")
    for p in (actor, refusals):
        p.add_argument("--since", type=_time, default=dt.datetime(1970, 1, 1, tzinfo=dt.UTC))
        p.add_argument("--until", type=_time, default=dt.datetime(9999, 1, 1, tzinfo=dt.UTC))
    return parser


def answer(args: argparse.Namespace) -> list[dict[str, Any]]:
    """The rows answering the parsed question."""
    settings = load(AuditSettings, args)
    con = connect(Path(settings.root).expanduser() if settings.root else default_root())
    if args.question == "pr":
        return rows_of(con, HISTORY, {"id": args.pull_request_id})
    window = {"since": args.since, "until": args.until}
    if args.question == "actor":
        return rows_of(con, ACTOR, {"actor": args.actor, **window})
    if args.reason:
        return rows_of(con, REFUSALS_OF_REASON, {"reason": args.reason, **window})
    return rows_of(con, REFUSALS, {"reason": None, **window})


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``prgate audit``; 0, or 1 when there is no archive to read."""
    args = build_parser().parse_args(list(argv) if argv is not None else None)
    try:
        rows = answer(args)
    except NoArchive as exc:
        print(f"prgate audit: {exc}", file=sys.stderr)
        return 1
    if args.json:
        for row in rows:
            print(json.dumps(row, ensure_ascii=False, default=str))
    else:
        render(rows, sys.stdout)
    return 0
