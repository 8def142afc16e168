"""Typed settings objects built from flags and ``PRGATE_*`` environment variables.

Each process has one frozen dataclass of settings. A field declares its environment variable
and help text with :func:`setting`; :func:`add_arguments` turns the fields into command-line
flags and :func:`load` builds the object with the precedence flag > environment > default.
The configuration reference in the README is generated from the same fields.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import types
import typing
from collections.abc import Mapping
from typing import Any, TypeVar

T = TypeVar("T")

SECRET_MARKERS = ("password", "secret", "token", "key")


def setting(default: Any, env: str, help: str, *, secret: bool = False) -> Any:
    """Declare a settings field with its environment variable and help text."""
    if isinstance(default, dict):
        return dataclasses.field(
            default_factory=lambda: dict(default),
            metadata={"env": env, "help": help, "secret": secret},
        )
    return dataclasses.field(default=default, metadata={"env": env, "help": help, "secret": secret})


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _field_type(cls: type, f: dataclasses.Field[Any]) -> Any:
    hints = typing.get_type_hints(cls)
    return hints[f.name]


def _parse(kind: Any, raw: str) -> Any:
    origin = typing.get_origin(kind)
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in typing.get_args(kind) if a is not type(None)]
        return None if raw == "" else _parse(inner[0], raw)
    if kind is bool:
        lowered = raw.strip().lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off", ""):
            return False
        raise ValueError(f"not a boolean: {raw!r}")
    if kind is int:
        return int(raw)
    if kind is float:
        return float(raw)
    if origin is dict:
        return parse_properties(raw)
    return raw


def parse_properties(raw: str) -> dict[str, str]:
    """Parse ``k=v,k2=v2`` (or newline-separated) client properties."""
    result: dict[str, str] = {}
    for raw_item in raw.replace("\n", ",").split(","):
        item = raw_item.strip()
        if not item:
            continue
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"expected key=value, got {item!r}")
        result[key.strip()] = value.strip()
    return result


def add_arguments(parser: argparse.ArgumentParser, cls: type) -> None:
    """Add one flag per settings field (default None, so the environment can fill in)."""
    for f in dataclasses.fields(cls):
        kind = _field_type(cls, f)
        help_text = f"{f.metadata.get('help', '')} [env {f.metadata.get('env')}]"
        if typing.get_origin(kind) is dict:
            parser.add_argument(
                _flag(f.name), action="append", default=None, metavar="KEY=VALUE", help=help_text
            )
        else:
            parser.add_argument(_flag(f.name), default=None, metavar=f.name.upper(), help=help_text)


def load(
    cls: type[T], args: argparse.Namespace | None = None, environ: Mapping[str, str] | None = None
) -> T:
    """Build ``cls`` from parsed flags, then environment variables, then defaults."""
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        kind = _field_type(cls, f)
        flag_value = getattr(args, f.name, None) if args is not None else None
        env_name = f.metadata.get("env")
        try:
            if flag_value is not None:
                if typing.get_origin(kind) is dict:
                    values[f.name] = parse_properties(",".join(flag_value))
                else:
                    values[f.name] = _parse(kind, flag_value)
            elif env_name and env_name in env:
                values[f.name] = _parse(kind, env[env_name])
        except ValueError as exc:
            raise SystemExit(f"invalid setting {_flag(f.name)} / {env_name}: {exc}") from exc
    return cls(**values)


def redacted(obj: Any) -> dict[str, Any]:
    """The settings as a dict for logs, with secrets and secret-looking properties hidden."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if f.metadata.get("secret"):
            value = "***" if value else value
        elif isinstance(value, dict):
            value = {
                k: ("***" if any(m in k.lower() for m in SECRET_MARKERS) else v)
                for k, v in value.items()
            }
        out[f.name] = value
    return out


def reference_table(cls: type, skip: type | None = None) -> str:
    """A markdown table of every field (except ``skip``'s): flag, environment, default, meaning."""
    skipped = {f.name for f in dataclasses.fields(skip)} if skip is not None else set()
    rows = ["| flag | environment | default | meaning |", "|---|---|---|---|"]
    for f in dataclasses.fields(cls):
        if f.name in skipped:
            continue
        if f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        else:
            default = ""
        rows.append(
            f"| `{_flag(f.name)}` | `{f.metadata.get('env', '')}` | `{default!r}` "
            f"| {str(f.metadata.get('help', '')).replace('|', '/')} |"
        )
    return "\n".join(rows)
