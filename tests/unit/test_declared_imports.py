"""Every third-party module the services import is a declared dependency of the package.

A module that is only present because another package pulled it in (numpy through pandas)
works in the development venv and fails where only the declared requirements are installed:
the container image leaves pandas and polars out, and `archive/bulk.py`'s `import numpy`
crashed `prgate archive` there. Modules under ``archive/`` may use the base dependencies and
the ``archive`` and ``tracing`` extras minus what the image leaves out; the other packages the
base dependencies and the ``tracing`` extra (imported lazily, only when tracing is on).
"""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("prgate", "gateway", "processor", "archive")
LOCAL = set(PACKAGES) | {"bench", "tests"}
NOT_SHIPPED = {"prgate/cli/bench.py"}  # runs the checkout's bench/, which has its own extra


def _normal(name: str) -> str:
    """A distribution name as PEP 503 compares them."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _names(requirements: list[str]) -> set[str]:
    return {_normal(re.split(r"[\s<>=!~;\[(]", r, maxsplit=1)[0]) for r in requirements}


def _image_leaves_out() -> set[str]:
    found = re.search(
        r'^ARG LEAVE_OUT="([^"]*)"', (ROOT / "deploy/Containerfile").read_text(), re.M
    )
    assert found, "deploy/Containerfile has no LEAVE_OUT argument"
    return {_normal(name) for name in found.group(1).split()}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    modules: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            modules.add(node.module.split(".")[0])
    return modules


def undeclared(package: str, allowed: set[str]) -> dict[str, set[str]]:
    """Third-party top-level modules imported under ``package`` whose distributions are not in
    ``allowed``, each with the files importing it."""
    distributions = packages_distributions()
    missing: dict[str, set[str]] = {}
    for path in sorted((ROOT / package).rglob("*.py")):
        relative = path.relative_to(ROOT).as_posix()
        if relative.startswith("prgate/v1/") or relative in NOT_SHIPPED:
            continue
        for module in _imports(path):
            if module in LOCAL or module in sys.stdlib_module_names or module == "__future__":
                continue
            owners = {_normal(name) for name in distributions.get(module, [])}
            assert owners, f"{relative} imports {module}, which no installed distribution provides"
            if not owners & allowed:
                missing.setdefault(module, set()).add(relative)
    return missing


def test_every_imported_module_is_declared_where_the_package_runs() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    base = _names(project["dependencies"])
    tracing = _names(extras["tracing"])
    archive = (base | tracing | _names(extras["archive"])) - _image_leaves_out()
    problems = {
        package: undeclared(package, archive if package == "archive" else base | tracing)
        for package in PACKAGES
    }
    assert not {p: m for p, m in problems.items() if m}, problems


def test_the_check_sees_an_undeclared_import() -> None:
    assert "numpy" in undeclared("archive", {"pyarrow", "confluent-kafka", "protobuf"})
