"""prgate/domain stays pure: no I/O, network, concurrency, clock or randomness.

Walks the AST of every module under prgate/domain, so an import hidden in a function body
is caught too; a second test imports the package in a fresh interpreter and checks that neither
grpc nor confluent_kafka got loaded along the way.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import prgate.domain

DOMAIN = Path(prgate.domain.__file__).parent

FORBIDDEN_MODULES = frozenset(
    {
        "grpc",
        "grpc_status",
        "confluent_kafka",
        "socket",
        "ssl",
        "selectors",
        "asyncio",
        "threading",
        "multiprocessing",
        "concurrent",
        "subprocess",
        "os",
        "io",
        "pathlib",
        "shutil",
        "tempfile",
        "sqlite3",
        "logging",
        "signal",
        "time",
        "random",
        "secrets",
        "requests",
        "urllib",
        "urllib3",
        "http",
        "httpx",
        "importlib",
        "builtins",
    }
)
# Calls that read the clock or a random source, written as "<name>.<attribute>".
FORBIDDEN_CALLS = frozenset(
    {
        "datetime.now",
        "datetime.utcnow",
        "datetime.today",
        "date.today",
        "time.time",
        "time.time_ns",
        "time.monotonic",
        "time.perf_counter",
        "uuid.uuid1",
        "uuid.uuid4",
        "os.urandom",
    }
)
FORBIDDEN_NAMES = frozenset({"open", "__import__", "exec", "eval", "compile", "input", "print"})


def _dotted(node: ast.expr) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    return ""


def impurities(source: str, filename: str = "<source>") -> list[str]:
    """Every forbidden import or call in ``source``, as "line: what"."""
    found = []
    for node in ast.walk(ast.parse(source, filename)):
        modules: list[str] = []
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            modules = [node.module]
        for module in modules:
            if module.split(".")[0] in FORBIDDEN_MODULES:
                found.append(f"{node.lineno}: import {module}")
        if isinstance(node, ast.Call):
            name = _dotted(node.func)
            if name in FORBIDDEN_NAMES or any(
                name == call or name.endswith(f".{call}") for call in FORBIDDEN_CALLS
            ):
                found.append(f"{node.lineno}: call {name}")
    return found


def domain_modules() -> list[Path]:
    return sorted(DOMAIN.rglob("*.py"))


def test_the_walk_sees_every_domain_module():
    names = {path.name for path in domain_modules()}
    assert {"__init__.py", "apply.py", "decide.py", "evolve.py", "fields.py", "rules.py"} <= names


@pytest.mark.parametrize("path", domain_modules(), ids=lambda p: p.name)
def test_a_domain_module_does_no_io(path):
    assert impurities(path.read_text(), str(path)) == []


@pytest.mark.parametrize(
    "source",
    [
        "import grpc",
        "import confluent_kafka.admin",
        "from os import path",
        "import urllib.request",
        "from http import client",
        "def f():\n    import socket",
        "import time as t",
        "from datetime import datetime\nx = datetime.now()",
        "import datetime\nx = datetime.datetime.utcnow()",
        "import time\nx = time.time()",
        "import uuid\nx = uuid.uuid4()",
        "x = open('f')",
        "m = __import__('socket')",
    ],
)
def test_the_checker_catches_impurities(source):
    assert impurities(source) != []


def test_importing_the_domain_loads_neither_grpc_nor_kafka():
    probe = (
        "import sys, prgate.domain\n"
        "print(sorted(m for m in sys.modules "
        "if m.split('.')[0] in ('grpc', 'confluent_kafka', 'asyncio', 'requests')))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
        cwd=DOMAIN.parent.parent,
    )
    assert result.stdout.strip() == "[]"
