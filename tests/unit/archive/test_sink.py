"""The exactly-once sink, schema evolution, maintenance and reading, on local Delta tables."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import polars as pl
import pyarrow as pa
import pytest
from deltalake import DeltaTable
from helpers.ids import bound_id

from archive.decode import Consumed, TableCodec, table_codecs, to_arrow
from archive.maintain import MaintenanceBusy, maintain, maintenance_lock
from archive.query import connect
from archive.schema import COMMANDS, TableSpec
from archive.sink import DeltaSink, app_id
from prgate.kafka import codec
from prgate.kafka.contract import Topics
from prgate.v1 import commands_pb2

TOPICS = Topics("s.")
TABLE = table_codecs(TOPICS)[TOPICS.commands]
DAY_MS = 86_400_000
OLD_DAY_MS = 1_700_000_000_000  # 2023-11-14


def approve(n: int) -> codec.Record:
    pr = f"pr-{(n // 10) % 3}"
    envelope = commands_pb2.CommandEnvelope(
        command_id=bound_id(f"c-{n}", pr), pull_request_id=pr,
        approve_pull_request=commands_pb2.ApprovePullRequest(pull_request_id=pr, reviewer="bob"),
    )  # fmt: skip
    return codec.command_record(TOPICS.commands, envelope, reply_to="r")


def records(partition: int, offsets: range, when_ms: int = OLD_DAY_MS) -> list[Consumed]:
    out = []
    for offset in offsets:
        r = approve(offset * 10 + partition)
        out.append(Consumed(r.topic, partition, offset, when_ms + offset, r.key, r.value,
                            r.headers))  # fmt: skip
    return out


def rows(recs: list[Consumed], table: TableCodec = TABLE) -> pa.Table:
    return to_arrow(table, recs, archived_at_us=0)


def offsets_in(path: Path) -> list[tuple[int, int]]:
    table = DeltaTable(str(path)).to_pyarrow_table(columns=["kafka_partition", "kafka_offset"])
    return sorted(zip(*(table.column(i).to_pylist() for i in range(2)), strict=True))


def test_rows_and_offsets_land_in_one_commit_and_a_new_sink_resumes_there(tmp_path: Path) -> None:
    sink = DeltaSink(tmp_path / "commands", COMMANDS, TOPICS.commands)
    assert sink.assign([0, 1]) == {0: None, 1: None}

    result = sink.flush(rows(records(0, range(3)) + records(1, range(2))), {0: 3, 1: 2})

    assert (result.rows, result.lost) == (5, {})
    again = DeltaSink(tmp_path / "commands", COMMANDS, TOPICS.commands)
    assert again.assign([0, 1, 2]) == {0: 3, 1: 2, 2: None}
    history = DeltaTable(str(tmp_path / "commands")).history(1)[0]
    assert history["operation"] == "WRITE"
    assert offsets_in(tmp_path / "commands") == [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1)]


def test_a_writer_behind_the_table_loses_that_partition_and_keeps_the_others(
    tmp_path: Path,
) -> None:
    path = tmp_path / "commands"
    zombie = DeltaSink(path, COMMANDS, TOPICS.commands)
    zombie.assign([0, 1])
    owner = DeltaSink(path, COMMANDS, TOPICS.commands)
    owner.assign([0])
    owner.flush(rows(records(0, range(4))), {0: 4})

    result = zombie.flush(rows(records(0, range(4)) + records(1, range(2))), {0: 4, 1: 2})

    assert result.lost == {0: 4}
    assert result.rows == 2
    assert offsets_in(path) == [(0, o) for o in range(4)] + [(1, 0), (1, 1)]
    table = DeltaTable(str(path))
    assert table.transaction_version(app_id(TOPICS.commands, 0)) == 4
    assert table.transaction_version(app_id(TOPICS.commands, 1)) == 2


def test_a_newer_column_merges_and_an_older_writer_still_writes(tmp_path: Path) -> None:
    path = tmp_path / "commands"
    old = DeltaSink(path, COMMANDS, TOPICS.commands)
    old.assign([0, 1])
    old.flush(rows(records(0, range(2))), {0: 2})
    # A later archive version knows a new command field and adds it as a column.
    extra = pa.field("labels", pa.list_(pa.string()))
    newer_spec = TableSpec("commands", COMMANDS.schema.append(extra))
    newer = TableCodec(
        newer_spec, lambda k, v, h: {**TABLE.columns(k, v, h), "labels": ["x"]}, TABLE.message_type
    )
    new = DeltaSink(path, newer_spec, TOPICS.commands)
    new.assign([1])
    new.flush(rows(records(1, range(2)), newer), {1: 2})
    old.flush(rows(records(0, range(2, 3))), {0: 3})  # the old writer, beside the new one

    by_offset = {
        (r["kafka_partition"], r["kafka_offset"]): r["labels"]
        for r in pl.read_delta(str(path)).select("kafka_partition", "kafka_offset", "labels")
        .to_dicts()
    }  # fmt: skip
    assert by_offset == {(0, 0): None, (0, 1): None, (1, 0): ["x"], (1, 1): ["x"], (0, 2): None}
    con = connect(tmp_path)
    assert con.sql("select count(labels) from commands").fetchone() == (2,)


def test_maintenance_compacts_closed_days_keeps_rows_and_offsets(tmp_path: Path) -> None:
    path = tmp_path / "commands"
    sink = DeltaSink(path, COMMANDS, TOPICS.commands)
    sink.assign([0])
    for start in range(0, 40, 4):
        sink.flush(rows(records(0, range(start, start + 4))), {0: start + 4})
    before = len(DeltaTable(str(path)).file_uris())

    (report,) = maintain(tmp_path, retention_hours=0)

    table = DeltaTable(str(path))
    assert before == 10 and len(table.file_uris()) == 1
    assert report["files_removed"] == 10 and report["files_vacuumed"] == 10
    assert offsets_in(path) == [(0, o) for o in range(40)]
    assert table.transaction_version(app_id(TOPICS.commands, 0)) == 40


def test_a_second_maintenance_run_gives_up_while_one_holds_the_lock(tmp_path: Path) -> None:
    with maintenance_lock(tmp_path), pytest.raises(MaintenanceBusy):
        maintain(tmp_path, retention_hours=0)


def test_concurrent_maintenance_processes_never_duplicate_rows(tmp_path: Path) -> None:
    """Two unguarded compactions of one table duplicate rows in deltalake 1.6; with the lock,
    two runs started together leave every row exactly once."""
    path = tmp_path / "commands"
    sink = DeltaSink(path, COMMANDS, TOPICS.commands)
    sink.assign([0])
    for start in range(0, 60, 2):
        sink.flush(rows(records(0, range(start, start + 2))), {0: start + 2})
    argv = [sys.executable, "-m", "archive", "maintain", "--root", str(tmp_path),
            "--vacuum-retention-hours", "0"]  # fmt: skip
    runs = [subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            for _ in range(3)]  # fmt: skip
    codes = sorted(run.wait(120) for run in runs)

    assert codes[0] == 0 and set(codes) <= {0, 3}, codes
    assert offsets_in(path) == [(0, o) for o in range(60)]


def test_duckdb_and_polars_and_pandas_read_the_same_rows(tmp_path: Path) -> None:
    sink = DeltaSink(tmp_path / "commands", COMMANDS, TOPICS.commands)
    sink.assign([0])
    sink.flush(rows(records(0, range(5)) + records(0, range(5, 6), OLD_DAY_MS + DAY_MS)), {0: 6})

    con = connect(tmp_path)
    by_day = con.sql("select day, count(*) from commands group by day order by day").fetchall()
    assert [n for _, n in by_day] == [5, 1]
    assert pl.read_delta(str(tmp_path / "commands")).height == 6
    frame = DeltaTable(str(tmp_path / "commands")).to_pandas(
        columns=["command_id"], filters=[("pull_request_id", "=", "pr-0")]
    )
    assert sorted(frame["command_id"]) == sorted(bound_id(n, "pr-0") for n in ("c-0", "c-30"))
    assert con.sql("select count(*) from events").fetchone() == (0,)  # no table: empty view


def test_settings_keep_the_root_default_under_the_cache() -> None:
    from archive.settings import ArchiveSettings

    settings = ArchiveSettings()
    assert settings.root_path.parts[-2:] == ("prgate", "archive")
    assert dataclasses.replace(settings, root="/x").root_path == Path("/x")
    with pytest.raises(ValueError, match="flush_max_records"):
        ArchiveSettings(flush_max_records=0)
