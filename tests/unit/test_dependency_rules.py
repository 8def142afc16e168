"""Which package may import which: the layering of issue 11, checked on the source.

    prgate.domain    only prgate.v1 (and its protobuf runtime) and the stdlib the purity
                     test allows (tests/unit/domain/test_domain_purity.py)
    prgate.kafka     nothing of gateway, processor, archive or prgate.cli
    gateway          never processor or archive (and no bench, tests or prgate.cli)
    processor        never gateway or archive (and no bench, tests or prgate.cli)
    archive          never gateway or processor (and no bench, tests or prgate.cli)
    prgate (all)     never gateway, processor, archive, bench or tests; prgate.cli reaches the
                     services only through their ``main`` entry points, by name (``DELEGATED``)
    bench, tests     anything

:func:`violations` walks the AST of every module under ``prgate/``, ``gateway/``,
``processor/`` and ``archive/`` of a tree, so an import inside a function body counts as much
as one at the top, relative imports are resolved, and ``importlib.import_module("…")`` /
``__import__("…")`` with a literal name count as imports.
"""

from __future__ import annotations

import ast
import importlib
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from prgate.cli.main import DELEGATED
from tests.unit.domain.test_domain_purity import FORBIDDEN_MODULES

ROOT = Path(__file__).resolve().parents[2]
CHECKED = ("prgate", "gateway", "processor", "archive")  # bench and tests may import anything
SERVICES_LEAVE_OUT = ("bench", "tests", "prgate.cli")


def within(name: str, prefix: str) -> bool:
    """Whether the dotted ``name`` is ``prefix`` or inside it (``prgate.kafka.x`` in ``prgate``)."""
    return name == prefix or name.startswith(prefix + ".")


def domain_may_import(name: str) -> bool:
    top = name.partition(".")[0]
    if within(name, "prgate.domain") or within(name, "prgate.v1"):
        return True
    if within(name, "google.protobuf"):  # the runtime prgate.v1's messages are made of
        return True
    return top in sys.stdlib_module_names and top not in FORBIDDEN_MODULES


@dataclass(frozen=True)
class Rule:
    """Modules within ``scope`` must not import a name for which ``forbidden`` is true.

    The first rule whose scope holds a module decides, so list narrower scopes first.
    """

    scope: str
    forbidden: Callable[[str], bool]
    why: str


def never(*prefixes: str) -> Callable[[str], bool]:
    return lambda name: any(within(name, prefix) for prefix in prefixes)


RULES = (
    Rule(
        "prgate.domain",
        lambda name: not domain_may_import(name),
        "the domain imports only prgate.v1 and the pure stdlib",
    ),
    Rule(
        "prgate.kafka",
        never("gateway", "processor", "archive", "prgate.cli"),
        "Kafka plumbing sits below the services and the CLI",
    ),
    Rule(
        "prgate",
        never("gateway", "processor", "archive", "bench", "tests"),
        "shared code is under the services; the CLI runs them by name only (DELEGATED)",
    ),
    Rule(
        "gateway",
        never("processor", "archive", *SERVICES_LEAVE_OUT),
        "the services never import each other",
    ),
    Rule(
        "processor",
        never("gateway", "archive", *SERVICES_LEAVE_OUT),
        "the services never import each other",
    ),
    Rule(
        "archive",
        never("gateway", "processor", *SERVICES_LEAVE_OUT),
        "the services never import each other",
    ),
)


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_names(source: str, module: str, *, is_package: bool) -> Iterator[tuple[int, str]]:
    """(line, absolute dotted name) of everything ``source`` imports, at any depth.

    ``from a.b import c`` yields ``a.b.c`` (``c`` may be a submodule); relative imports are
    resolved against ``module``; a literal ``importlib.import_module("x")`` or
    ``__import__("x")`` yields ``x``.
    """
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, *([node.module] if node.module else [])])
            for alias in node.names:
                yield node.lineno, base if alias.name == "*" else f"{base}.{alias.name}"
        elif isinstance(node, ast.Call) and node.args:
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            target = node.args[0]
            literal = isinstance(target, ast.Constant) and isinstance(target.value, str)
            if name in ("import_module", "__import__") and literal:
                yield node.lineno, str(target.value)


def violations(root: Path) -> list[str]:
    """Every import under ``root``'s prgate/, gateway/, processor/ and archive/ that breaks a
    rule.

    Each as ``"path:line: module imports name (why)"``, path relative to ``root``.
    """
    found = []
    for package in CHECKED:
        for path in sorted((root / package).rglob("*.py")):
            module = module_name(path, root)
            is_package = path.name == "__init__.py"
            for line, name in imported_names(path.read_text(), module, is_package=is_package):
                for rule in RULES:
                    if within(module, rule.scope) and rule.forbidden(name):
                        where = path.relative_to(root)
                        found.append(f"{where}:{line}: {module} imports {name} ({rule.why})")
                        break
    return found


def test_the_tree_keeps_the_rules() -> None:
    assert violations(ROOT) == []


def test_the_walk_reads_every_checked_package() -> None:
    modules = {
        module_name(path, ROOT) for package in CHECKED for path in (ROOT / package).rglob("*.py")
    }
    for expected in ("prgate.domain.decide", "prgate.kafka.topics", "prgate.cli.main",
                     "gateway.server", "processor.app", "archive.app"):  # fmt: skip
        assert expected in modules


def test_the_cli_reaches_the_services_only_through_their_main() -> None:
    assert DELEGATED["gateway"][0] == "gateway.server:main"
    assert DELEGATED["processor"][0] == "processor.app:main"
    for target, _ in DELEGATED.values():
        module, _, function = target.partition(":")
        assert callable(getattr(importlib.import_module(module), function)), target


def write_tree(root: Path, files: dict[str, str]) -> None:
    for relative, source in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(source)


CLEAN = {
    "prgate/__init__.py": "",
    "prgate/domain/__init__.py": "from . import rules\n",
    "prgate/domain/rules.py": (
        "from dataclasses import dataclass\nfrom google.protobuf import timestamp_pb2\n"
        "from prgate.v1 import events_pb2\nfrom .policy import Policy\n"
    ),
    "prgate/kafka/topics.py": "from prgate.kafka.contract import Topics\nimport confluent_kafka\n",
    "prgate/cli/main.py": (
        "import importlib\nDELEGATED = {'gateway': 'gateway.server:main'}\n"
        "def run(name):\n    return importlib.import_module(DELEGATED[name].split(':')[0])\n"
    ),
    "gateway/server.py": "from prgate.kafka import topics\nfrom gateway import producer\n",
    "processor/app.py": "from prgate.domain import decide\nfrom . import loop\n",
    "archive/app.py": "from prgate.kafka import codec\nfrom archive import sink\n",
}


def test_a_tree_that_keeps_the_rules_has_no_violation(tmp_path: Path) -> None:
    write_tree(tmp_path, CLEAN)
    assert violations(tmp_path) == []


@pytest.mark.parametrize(
    ("path", "source", "imported"),
    [
        ("prgate/domain/rules.py", "from prgate.kafka import settings", "prgate.kafka.settings"),
        ("prgate/domain/rules.py", "import socket", "socket"),
        ("prgate/domain/rules.py", "from ..observability import metrics",
         "prgate.observability.metrics"),
        ("prgate/kafka/topics.py", "def f():\n    from gateway import server", "gateway.server"),
        ("prgate/kafka/topics.py", "from .. import cli", "prgate.cli"),
        ("prgate/kafka/topics.py", "import processor.loop", "processor.loop"),
        ("prgate/cli/main.py", "from processor.app import main", "processor.app.main"),
        ("prgate/cli/main.py", "import importlib\nimportlib.import_module('gateway.server')",
         "gateway.server"),
        ("prgate/observability/metrics.py", "import bench.run", "bench.run"),
        ("prgate/client/aio.py", "from tests.helpers import kafka", "tests.helpers.kafka"),
        ("gateway/server.py", "from processor.settings import ProcessorSettings",
         "processor.settings.ProcessorSettings"),
        ("gateway/server.py", "from prgate.cli import render", "prgate.cli.render"),
        ("processor/app.py", "class A:\n    def f(self):\n        import gateway",
         "gateway"),
        ("processor/app.py", "__import__('bench.baselines')", "bench.baselines"),
        ("processor/app.py", "from archive.decode import Consumed", "archive.decode.Consumed"),
        ("gateway/server.py", "import archive.sink", "archive.sink"),
        ("archive/app.py", "from gateway import refusal_log", "gateway.refusal_log"),
        ("archive/app.py", "from processor.settings import ProcessorSettings",
         "processor.settings.ProcessorSettings"),
        ("prgate/cli/main.py", "from archive.audit import main", "archive.audit.main"),
    ],
)  # fmt: skip
def test_a_broken_rule_is_reported_with_file_and_line(
    tmp_path: Path, path: str, source: str, imported: str
) -> None:
    write_tree(tmp_path, {**CLEAN, path: source + "\n"})
    (found,) = violations(tmp_path)
    line = source.count("\n") + 1
    assert found.startswith(f"{path}:{line}: "), found
    assert f" imports {imported} (" in found, found


def test_bench_and_tests_may_import_anything(tmp_path: Path) -> None:
    anything = "import gateway.server\nimport processor.app\nfrom prgate.cli import main\n"
    write_tree(tmp_path, {**CLEAN, "bench/run.py": anything, "tests/test_x.py": anything})
    assert violations(tmp_path) == []
