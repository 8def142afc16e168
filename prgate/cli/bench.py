"""``prgate bench``: the benchmark lives in a source checkout, not in the installed package.

``bench/`` is a directory of the repository (measurement code, baselines, results), not part
of the wheel. ``prgate bench`` runs ``bench.run:main`` when ``bench`` is importable (an
interpreter started inside the checkout, ``PYTHONPATH``); otherwise it looks for the checkout
from the current directory upwards and imports ``bench`` from there. Outside any checkout it
says so in one line.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

NOT_IN_A_CHECKOUT = (
    "`prgate bench` runs from a source checkout of prgate (bench/ is not installed): "
    "run it inside the checkout, or `python -m bench` there"
)


def checkout_root(start: Path) -> Path | None:
    """The nearest directory at or above ``start`` that is a prgate source checkout.

    A checkout has ``pyproject.toml`` and ``bench/run.py``. None when no ancestor has both.
    """
    for directory in (start.resolve(), *start.resolve().parents):
        if (directory / "pyproject.toml").is_file() and (directory / "bench" / "run.py").is_file():
            return directory
    return None


def make_importable(cwd: Path | None = None) -> str | None:
    """Make ``import bench`` work; None when it does, else the one line to show the user.

    When ``bench`` cannot be imported yet, the checkout around ``cwd`` (default: the current
    directory) is put first on ``sys.path``. The bench's child processes need nothing more:
    they run with the checkout as their working directory, and ``multiprocessing`` hands its
    workers this ``sys.path``.
    """
    if importlib.util.find_spec("bench") is not None:
        return None
    root = checkout_root(Path.cwd() if cwd is None else cwd)
    if root is None:
        return NOT_IN_A_CHECKOUT
    sys.path.insert(0, str(root))
    importlib.invalidate_caches()
    return None
