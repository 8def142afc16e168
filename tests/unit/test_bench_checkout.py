"""``bench`` is not in the wheel; ``prgate bench`` still runs from a source checkout.

The subprocess tests start Python with ``-I`` (no current directory or ``PYTHONPATH`` on
``sys.path``), as the installed ``prgate`` script does, so ``bench`` can only come from the
checkout the command finds.
"""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

from setuptools import find_packages

from prgate.cli.bench import NOT_IN_A_CHECKOUT, checkout_root

ROOT = Path(__file__).resolve().parents[2]
# Fails first (exit 3) if bench is importable without help: then the test would prove nothing.
PRGATE_BENCH = (
    "import importlib.util, sys\n"
    "if importlib.util.find_spec('bench') is not None:\n"
    "    print('bench is importable without a checkout (stale install?)', file=sys.stderr)\n"
    "    sys.exit(3)\n"
    "from prgate.cli.main import main\n"
    "sys.exit(main(['bench', *sys.argv[1:]]))\n"
)


def prgate_bench(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-I", "-c", PRGATE_BENCH, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_wheel_holds_the_services_and_prgate_but_not_bench_or_tests() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    find = config["tool"]["setuptools"]["packages"]["find"]
    packages = set(
        find_packages(str(ROOT), include=find["include"], exclude=find.get("exclude", ()))
    )
    assert {"prgate", "prgate.cli", "prgate.kafka", "gateway", "processor"} <= packages
    assert not {p for p in packages if p.split(".")[0] in ("bench", "tests")}


def test_the_checkout_is_found_from_any_directory_inside_it(tmp_path: Path) -> None:
    (tmp_path / "bench").mkdir()
    (tmp_path / "bench" / "run.py").write_text("")
    (tmp_path / "pyproject.toml").write_text("")
    deep = tmp_path / "docs" / "notes"
    deep.mkdir(parents=True)
    assert checkout_root(deep) == tmp_path.resolve()
    assert checkout_root(tmp_path) == tmp_path.resolve()
    assert checkout_root(ROOT / "prgate" / "cli") == ROOT


def test_a_directory_that_is_not_a_checkout_is_not_taken_for_one(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text("")  # some other project: no bench/run.py
    assert checkout_root(tmp_path) is None


def test_prgate_bench_runs_from_a_subdirectory_of_the_checkout() -> None:
    done = prgate_bench(ROOT / "docs", "--help")
    assert done.returncode == 0, done.stderr
    assert "usage: prgate bench" in done.stdout and "--quick" in done.stdout


def test_prgate_bench_outside_a_checkout_says_so_in_one_line(tmp_path: Path) -> None:
    done = prgate_bench(tmp_path, "--help")
    assert done.returncode == 1, done.stderr
    assert done.stderr.splitlines() == [f"prgate: error: {NOT_IN_A_CHECKOUT}"]
    assert done.stdout == ""
