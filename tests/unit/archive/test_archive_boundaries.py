"""The archive is a third service: it imports neither gateway nor processor, and nothing of
theirs (nor the shared prgate package) imports it; the CLI reaches it by name (DELEGATED)."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

from prgate.cli.main import DELEGATED

ROOT = Path(__file__).resolve().parents[3]


def imports_of(package: str) -> set[tuple[str, str]]:
    """(module path, imported dotted name) for every import under ``package``, at any depth
    (function bodies too); relative imports stay inside the package and are skipped."""
    found = set()
    for path in (ROOT / package).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
                names = [node.module]
            found |= {(str(path.relative_to(ROOT)), name) for name in names}
    return found


def test_the_archive_imports_no_other_service_nor_the_cli() -> None:
    forbidden = ("gateway", "processor", "bench", "tests", "prgate.cli")
    bad = {
        (where, name)
        for where, name in imports_of("archive")
        if any(name == f or name.startswith(f + ".") for f in forbidden)
    }
    assert bad == set()


def test_no_other_service_nor_prgate_imports_the_archive() -> None:
    for package in ("gateway", "processor", "prgate"):
        found = {w for w, name in imports_of(package) if name.split(".")[0] == "archive"}
        assert found == set(), package


def test_the_cli_reaches_the_archive_through_its_mains() -> None:
    assert DELEGATED["archive"][0] == "archive.app:main"
    assert DELEGATED["audit"][0] == "archive.audit:main"
    for name in ("archive", "audit"):
        module, _, function = DELEGATED[name][0].partition(":")
        assert callable(getattr(importlib.import_module(module), function))
