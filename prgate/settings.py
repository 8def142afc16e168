"""Typed settings objects built from flags, ``PRGATE_*`` environment variables and a TOML file.

Each process has one frozen dataclass of settings. A field declares its environment variable
and help text with :func:`setting`; :func:`add_arguments` turns the fields into command-line
flags (and adds ``--config FILE``) and :func:`load` builds the object with the precedence
flag > environment > configuration file > default. The configuration reference in the README
is generated from the same fields.

The configuration file (``--config FILE`` or ``PRGATE_CONFIG_FILE``) is TOML, read with
:mod:`tomllib`: one flat table whose keys are the settings' names (the flag without its
dashes: ``listen``, ``bootstrap_servers``), with TOML values (``partitions = 12``,
``tls = true``) or strings parsed as the environment's are; a dict setting
(``kafka_properties``) is a table of strings. Like the environment, one file can serve every
process: a key that is not a setting of this command is ignored. A value of the wrong type
stops the process with the file, the key and the reason.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import os
import tomllib
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

CONFIG_ENV = "PRGATE_CONFIG_FILE"


class SettingsError(ValueError):
    """A file a setting names cannot be read or parsed; the message names the setting."""


CONFIG_FLAG = "--config"

# A property whose name holds one of these is shown as *** (sasl.jaas.config holds a password).
SECRET_MARKERS = ("password", "secret", "token", "key", "jaas")


def setting(
    default: Any, env: str, help: str, *, secret: bool = False, flag: str | None = None
) -> Any:
    """Declare a settings field with its environment variable and help text; ``flag``
    replaces the flag derived from the field's name (``--tls-ca-file`` for
    ``client_tls_ca_file``, whose name stays unambiguous in the environment and the file)."""
    metadata = {"env": env, "help": help, "secret": secret, "flag": flag}
    if isinstance(default, dict):
        return dataclasses.field(default_factory=lambda: dict(default), metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def _flag(f: dataclasses.Field[Any]) -> str:
    return str(f.metadata.get("flag") or "--" + f.name.replace("_", "-"))


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


_COMMA = "\x00"  # stands for an escaped comma while a line is split


def parse_properties(raw: str) -> dict[str, str]:
    """Parse client properties: ``k=v`` items separated by commas or line breaks.

    A comma-separated piece without ``=`` continues the previous value, so values that are
    lists stay whole: ``debug=eos,broker,acks=all`` is ``{"debug": "eos,broker", "acks":
    "all"}``. ``\\,`` is a literal comma anywhere (for a value whose next piece holds ``=``).
    Blank pieces and lines starting with ``#`` are skipped. Raises ``ValueError`` on a first
    piece without ``=`` or an empty key.
    """
    result: dict[str, str] = {}
    for raw_line in raw.replace("\\,", _COMMA).splitlines():
        if raw_line.strip().startswith("#"):
            continue
        key: str | None = None
        for raw_item in raw_line.split(","):
            item = raw_item.strip()
            if not item:
                continue
            name, sep, value = item.partition("=")
            if not sep and key is not None:
                result[key] = f"{result[key]},{item}".replace(_COMMA, ",")
                continue
            if not sep or not name.strip():
                raise ValueError(f"expected key=value, got {item.replace(_COMMA, ',')!r}")
            key = name.strip()
            result[key] = value.strip().replace(_COMMA, ",")
    return result


def format_properties(properties: Mapping[str, str]) -> str:
    """``properties`` as one string :func:`parse_properties` reads back exactly (commas in
    values escaped), e.g. for a child process's ``PRGATE_KAFKA_PROPERTIES``."""
    return ",".join(f"{k}={v.replace(',', chr(92) + ',')}" for k, v in properties.items())


def add_arguments(parser: argparse.ArgumentParser, cls: type) -> None:
    """Add one flag per settings field (default None, so the environment can fill in), and
    ``--config FILE`` once per parser."""
    if CONFIG_FLAG not in parser._option_string_actions:
        parser.add_argument(
            CONFIG_FLAG,
            default=None,
            metavar="FILE",
            help=f"TOML file of settings (flags and environment win over it) [env {CONFIG_ENV}]",
        )
    for f in dataclasses.fields(cls):
        kind = _field_type(cls, f)
        help_text = f"{f.metadata.get('help', '')} [env {f.metadata.get('env')}]"
        help_text = help_text.replace("%", "%%")  # argparse %-formats help ("+-10%" broke it)
        if typing.get_origin(kind) is dict:
            parser.add_argument(
                _flag(f),
                dest=f.name,
                action="append",
                default=None,
                metavar="KEY=VALUE",
                help=help_text,
            )
        else:
            parser.add_argument(
                _flag(f),
                dest=f.name,
                default=None,
                metavar=_flag(f).lstrip("-").replace("-", "_").upper(),
                help=help_text,
            )


@functools.cache
def read_config_file(path: str) -> dict[str, Any]:
    """The TOML table of the configuration file at ``path``, keys with ``-`` read as ``_``.

    Raises ``SystemExit`` with the path and the reason when it cannot be read or parsed.
    """
    try:
        with Path(path).open("rb") as file:
            table = tomllib.load(file)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise SystemExit(f"invalid configuration file {path}: {exc}") from exc
    return {key.replace("-", "_"): value for key, value in table.items()}


def config_path(args: argparse.Namespace | None, environ: Mapping[str, str]) -> str | None:
    """The configuration file to read: ``--config``, else ``PRGATE_CONFIG_FILE``, else none."""
    flagged = getattr(args, "config", None) if args is not None else None
    return str(flagged) if flagged else (environ.get(CONFIG_ENV) or None)


def _from_file(kind: Any, value: Any) -> Any:
    """A TOML value as the field's type: strings are parsed as the environment's are."""
    if isinstance(value, str):
        return _parse(kind, value)
    origin = typing.get_origin(kind)
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in typing.get_args(kind) if a is not type(None)]
        return _from_file(inner[0], value)
    if origin is dict:
        if not isinstance(value, dict):
            raise ValueError(f'expected a table of key = "value", got {value!r}')
        return {str(k): v if isinstance(v, str) else _toml_scalar(v) for k, v in value.items()}
    if kind is bool and isinstance(value, bool):
        return value
    if kind is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if kind is float and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    expected = getattr(kind, "__name__", str(kind))
    raise ValueError(f"expected {expected}, got {type(value).__name__} {value!r}")


def _toml_scalar(value: Any) -> str:
    """A non-string property value as librdkafka wants it: ``true``, ``5``."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    raise ValueError(f"a property value must be a string, number or boolean, got {value!r}")


def load(
    cls: type[T], args: argparse.Namespace | None = None, environ: Mapping[str, str] | None = None
) -> T:
    """Build ``cls`` from parsed flags, then environment variables, then the configuration
    file (:func:`config_path`), then defaults. Raises ``SystemExit`` naming the flag, variable
    or file key of a value that does not parse; ``ValueError`` (:class:`SettingsError` for a
    file a setting names) when the settings class refuses the values."""
    env = os.environ if environ is None else environ
    path = config_path(args, env)
    from_file = read_config_file(path) if path else {}
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
            elif f.name in from_file:
                try:
                    values[f.name] = _from_file(kind, from_file[f.name])
                except ValueError as exc:
                    raise SystemExit(
                        f"invalid setting {f.name} in configuration file {path}: {exc}"
                    ) from exc
        except ValueError as exc:
            raise SystemExit(f"invalid setting {_flag(f)} / {env_name}: {exc}") from exc
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


def reference_table(cls: type, skip: type | tuple[type, ...] = ()) -> str:
    """A markdown table of every field (except those of ``skip``, a class or several): flag,
    environment, default, meaning."""
    skips = skip if isinstance(skip, tuple) else (skip,)
    skipped = {f.name for one in skips for f in dataclasses.fields(one)}
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
            f"| `{_flag(f)}` | `{f.metadata.get('env', '')}` | `{default!r}` "
            f"| {str(f.metadata.get('help', '')).replace('|', '/')} |"
        )
    return "\n".join(rows)
