"""The ``prgate`` entry point's parsing: ``--version`` and a bad flag answered by the
subcommand it was given to (its usage, exit 2), as real subprocesses."""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def prgate(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "prgate.cli", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_version_prints_the_installed_distribution_s() -> None:
    done = prgate("--version")
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"prgate {importlib.metadata.version('prgate')}\n"


def test_a_bad_flag_prints_the_subcommand_s_usage() -> None:
    for args, usage in (
        (("pr", "get", "pr-1", "--bogus"), "usage: prgate pr get "),
        (("topics", "ensure", "--bogus", "x"), "usage: prgate topics ensure "),
        (("events", "tail", "--bogus"), "usage: prgate events tail "),
    ):
        done = prgate(*args)
        assert done.returncode == 2, done.stderr
        assert done.stderr.startswith(usage), done.stderr
        assert f"prgate {' '.join(args[:2])}: error: unrecognized arguments: --bogus" in (
            done.stderr
        )
        assert "Traceback" not in done.stderr
