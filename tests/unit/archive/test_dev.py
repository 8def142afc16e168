"""`prgate dev` runs the archive beside the processor, into the archive's default directory."""

from __future__ import annotations

from archive.settings import default_root
from prgate.cli import dev
from prgate.kafka.settings import KafkaSettings


def test_dev_runs_the_archive_into_the_directory_prgate_audit_reads() -> None:
    assert "archive" in dev.CHILDREN
    assert dev.child_available("archive")
    assert default_root() == dev.DEV_ARCHIVE_ROOT
    hint = dev.usage_hint(KafkaSettings(), "127.0.0.1:1", ["processor", "archive"])
    assert str(dev.DEV_ARCHIVE_ROOT) in hint or "PRGATE_ARCHIVE_ROOT" in hint
    assert "prgate audit" in hint
    assert len(set(dev.METRICS_LISTEN.values())) == len(dev.CHILDREN)
