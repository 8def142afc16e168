"""``prgate archive`` / ``python -m archive``: run an archive member, or maintain the tables.

    prgate archive [FLAGS]            consume and archive until SIGTERM/SIGINT
    prgate archive maintain [FLAGS]   compact closed days, vacuum, checkpoint; then exit
                                      (--today also compacts today; run it from ONE place)

Exit codes: 0 after a clean stop, 1 after a fatal error (a restart resumes from the tables),
2 when the configuration or the topics are wrong, 3 when another maintenance run holds the lock.
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import sys
import threading
from collections.abc import Sequence

from archive.maintain import MaintenanceBusy, maintain
from archive.observability import ArchiveMetrics
from archive.settings import ArchiveSettings
from prgate.kafka.topic_checks import TopicContractError
from prgate.kafka.topics import TopicAdminError, check_topics
from prgate.observability import logs, metrics
from prgate.settings import add_arguments, load, redacted
from prgate.signals import stop_on_signals

log = logging.getLogger(__name__)

EXIT_CONFIG = 2
EXIT_BUSY = 3


def build_parser(maintenance: bool) -> argparse.ArgumentParser:
    if maintenance:
        parser = argparse.ArgumentParser(
            prog="prgate archive maintain",
            description="Compact the archive tables' closed days, vacuum files older than the "
            "retention, write a checkpoint. Run it from one place only.",
        )
        parser.add_argument("--today", action="store_true", help="also compact today")
    else:
        parser = argparse.ArgumentParser(
            prog="prgate archive",
            description="Copy the commands, results, events and refusals topics into Delta "
            "tables, exactly once (`prgate archive maintain` for compaction and vacuum).",
        )
    add_arguments(parser, ArchiveSettings)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``prgate archive``; returns the exit code."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    maintenance = bool(arguments) and arguments[0] == "maintain"
    args = build_parser(maintenance).parse_args(arguments[1:] if maintenance else arguments)
    try:
        settings = load(ArchiveSettings, args)
    except ValueError as exc:
        print(f"prgate archive: invalid settings: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    logs.configure(settings.log_level)
    if maintenance:
        try:
            done = maintain(
                settings.root_path,
                retention_hours=settings.vacuum_retention_hours,
                include_today=args.today,
            )
        except MaintenanceBusy as exc:
            print(f"prgate archive maintain: {exc}", file=sys.stderr)
            return EXIT_BUSY
        for report in done:
            print(json.dumps(report))
        return 0
    log.info("settings", extra={"settings": redacted(settings)})
    try:
        check_topics(settings)
    except (TopicContractError, TopicAdminError) as exc:
        log.error("topics_refused", extra={"error": str(exc).replace("\n", " ")})
        print(f"prgate archive: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    from archive.service import Archiver  # deltalake and pyarrow load only for a real run

    stop = threading.Event()
    stop_on_signals(stop, log)
    observed = ArchiveMetrics()
    server = metrics.serve(settings.metrics_listen, observed.registry)
    try:
        archiver = Archiver(settings, stop=stop, metrics=observed)
        quiet_collector()
        return archiver.run()
    finally:
        metrics.close(server)


# Young objects a collection waits for (CPython's default: 700).
GC_YOUNG_THRESHOLD = 50_000


def quiet_collector() -> None:
    """Keep the cyclic garbage collector off the hot loop of this process.

    Every consumed record is a message object buffered until its commit, and the flush takes a
    header list and header pairs out of each: with the default thresholds a young collection
    runs every few hundred records, and the older generations, which hold every module loaded
    (pyarrow, pandas, deltalake), are scanned again and again. Records hold no reference cycles
    (reference counting frees them), so: everything loaded so far moves to the permanent
    generation, and a young collection waits for 50,000 new objects.
    """
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, middle, old)
