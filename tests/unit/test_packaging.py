"""pyproject.toml's lower bounds admit no grpcio or protobuf too old for the generated code.

The generated modules refuse to import under an older runtime (``*_pb2.py`` calls
``ValidateProtobufRuntimeVersion``, ``*_pb2_grpc.py`` compares ``GRPC_GENERATED_VERSION``), so a
``pip install prgate`` without the constraints file must never resolve below those versions.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]
GENERATED = ROOT / "prgate" / "v1"


def lower_bounds() -> dict[str, Version]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    bounds: dict[str, Version] = {}
    for line in project["dependencies"]:
        requirement = Requirement(line)
        for spec in requirement.specifier:
            if spec.operator == ">=":
                bounds[requirement.name] = Version(spec.version)
    return bounds


def protobuf_needed() -> Version:
    needed = set()
    for module in GENERATED.glob("*_pb2.py"):
        found = re.search(
            r"ValidateProtobufRuntimeVersion\(\s*_runtime_version\.Domain\.PUBLIC,\s*(\d+),\s*"
            r"(\d+),\s*(\d+),",
            module.read_text(),
        )
        assert found, f"{module.name} has no protobuf runtime version check"
        needed.add(Version(".".join(found.groups())))
    assert needed, "no generated *_pb2.py modules"
    return max(needed)


def grpcio_needed() -> Version:
    needed = set()
    for module in GENERATED.glob("*_pb2_grpc.py"):
        found = re.search(r"^GRPC_GENERATED_VERSION = '([\d.]+)'$", module.read_text(), re.M)
        assert found, f"{module.name} has no GRPC_GENERATED_VERSION"
        needed.add(Version(found.group(1)))
    assert needed, "no generated *_pb2_grpc.py modules"
    return max(needed)


def test_protobuf_lower_bound_admits_only_runtimes_the_generated_code_accepts() -> None:
    assert lower_bounds()["protobuf"] >= protobuf_needed()


def test_grpcio_lower_bounds_admit_only_runtimes_the_generated_code_accepts() -> None:
    bounds = lower_bounds()
    needed = grpcio_needed()
    for name in ("grpcio", "grpcio-status", "grpcio-health-checking", "grpcio-reflection"):
        assert bounds[name] >= needed, f"{name}>={bounds[name]} but the stubs need {needed}"
