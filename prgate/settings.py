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
process: a key that is not a setting of this command is ignored, but a key that is no setting
of any prgate command (:data:`prgate.setting_names.SETTING_NAMES`: a typo, a section) is
refused. A value of the wrong type stops the process with the file, the key and the reason.

Every refused value raises :class:`SettingsError` (a ``ValueError``): each process turns it
into one line naming the setting and exit code 2. The message never holds the value of a
secret setting or of a client property (``sasl.password=…``): it says what was expected and
what kind of value was found. A configuration file must be UTF-8 TOML of at most
:data:`MAX_CONFIG_BYTES`, and may not give one setting twice (``listen`` and ``listen`` are
refused by TOML; ``bootstrap-servers`` and ``bootstrap_servers`` by this module).
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import functools
import math
import os
import tomllib
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

# Re-exported: the settings' users import the properties' functions from here.
from prgate.properties import format_properties as format_properties  # noqa: PLC0414
from prgate.properties import parse_properties as parse_properties  # noqa: PLC0414
from prgate.setting_names import SETTING_NAMES

T = TypeVar("T")
N = TypeVar("N", int, float)

CONFIG_ENV = "PRGATE_CONFIG_FILE"


class SettingsError(ValueError):
    """A setting refused: a value that does not parse, a configuration file or a file a
    setting names that cannot be read or parsed. The message names the setting (flag,
    variable or file key) and never holds a secret's value."""


# A configuration file is a page of settings; anything larger is a mistake (a wrong path).
MAX_CONFIG_BYTES = 1024 * 1024


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
        return _counted(int(raw))
    if kind is float:
        return _counted(float(raw))
    if origin is dict:
        return parse_properties(raw)
    return raw


def _counted(value: N) -> N:
    """``value`` when it is a finite number >= 0: every numeric setting is a count, a size, a
    port or a duration (0 means "none" or "off" where a setting allows it)."""
    if not math.isfinite(value):
        raise ValueError(f"expected a finite number, got {value}")
    if value < 0:
        raise ValueError(f"must not be negative, got {value}")
    return value


def _kind_of(value: Any) -> str:
    """What a value is, without the value: for messages about secrets."""
    if isinstance(value, str):
        return f"a string of {len(value)} characters"
    return {
        bool: "a boolean",
        int: "an integer",
        float: "a number",
        list: "an array",
        dict: "a table",
    }.get(type(value), type(value).__name__)


def count_flag(kind: type[N]) -> typing.Callable[[str], N]:
    """An argparse ``type`` for a command's own numeric flag (``--max``, ``--timeout``,
    ``--start-offset``): a finite number >= 0, else argparse's usage error (exit 2) naming
    the flag; a negative one used to end a run at once or be sent to the gateway."""

    def parse(raw: str) -> N:
        try:
            value = kind(raw)
        except ValueError:
            raise argparse.ArgumentTypeError(f"invalid {kind.__name__} value: {raw!r}") from None
        try:
            return _counted(value)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return parse


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

    Raises :class:`SettingsError` with the path and the reason when it cannot be read, is
    larger than :data:`MAX_CONFIG_BYTES`, is not UTF-8 or not TOML, or gives one setting
    under two spellings (``bootstrap-servers`` and ``bootstrap_servers``).
    """
    where = f"configuration file {path}"
    try:
        with Path(path).open("rb") as file:
            data = file.read(MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        raise SettingsError(f"cannot read {where}: {exc.strerror or exc}") from None
    if len(data) > MAX_CONFIG_BYTES:
        raise SettingsError(
            f"{where} is larger than {MAX_CONFIG_BYTES} bytes: is it the right file?"
        )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SettingsError(
            f"{where} is not UTF-8 text (byte {exc.start} is not): TOML files are UTF-8"
        ) from None
    try:
        table = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        # tomllib's messages give the position and the kind of mistake, never the value.
        raise SettingsError(f"{where} is not valid TOML: {exc}") from None
    settings: dict[str, Any] = {}
    spelled: dict[str, str] = {}
    for key, value in table.items():
        name = key.replace("-", "_")
        if name in spelled:
            raise SettingsError(
                f"{where} gives the setting {name} twice, as {spelled[name]!r} and {key!r}:"
                " keep one"
            )
        spelled[name] = key
        settings[name] = value
    return settings


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
            # Not echoed: the value may hold a password (["sasl.password=…"]).
            raise ValueError(f'expected a table of key = "value", got {_kind_of(value)}')
        return {
            str(k): v if isinstance(v, str) else _toml_scalar(str(k), v) for k, v in value.items()
        }
    if kind is bool and isinstance(value, bool):
        return value
    if kind is int and isinstance(value, int) and not isinstance(value, bool):
        return _counted(value)
    if kind is float and isinstance(value, int | float) and not isinstance(value, bool):
        return _counted(float(value))
    expected = getattr(kind, "__name__", str(kind))
    raise ValueError(f"expected {expected}, got {type(value).__name__} {value!r}")


def _toml_scalar(key: str, value: Any) -> str:
    """A non-string property value as librdkafka wants it: ``true``, ``5``; ValueError
    naming ``key`` (not the value, which may be a password) for anything else."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    raise ValueError(
        f"property {key}: a value must be a string, number or boolean, got {_kind_of(value)}"
    )


def _problem(exc: ValueError, f: dataclasses.Field[Any], kind: Any, value: Any) -> str:
    """Why ``value`` was refused for ``f``: the parser's reason, or for a secret setting
    only the type expected and the kind of value found (never the value)."""
    if not f.metadata.get("secret"):
        return str(exc)
    expected = getattr(kind, "__name__", str(kind))
    return f"expected {expected}, got {_kind_of(value)} (the value is a secret: not shown)"


def load(
    cls: type[T], args: argparse.Namespace | None = None, environ: Mapping[str, str] | None = None
) -> T:
    """Build ``cls`` from parsed flags, then environment variables, then the configuration
    file (:func:`config_path`), then defaults. Raises :class:`SettingsError` naming the flag,
    variable or file key of a value that does not parse (never showing a secret's value) or
    when the configuration file cannot be used; ``ValueError`` (:class:`SettingsError` for a
    file a setting names) when the settings class refuses the values."""
    env = os.environ if environ is None else environ
    path = config_path(args, env)
    from_file = read_config_file(path) if path else {}
    _check_known(from_file, cls, path)
    values: dict[str, Any] = {}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        kind = _field_type(cls, f)
        flag_value = getattr(args, f.name, None) if args is not None else None
        env_name = f.metadata.get("env")
        if flag_value is not None:
            source, raw = "flag", flag_value
        elif env_name and env_name in env:
            source, raw = "environment", env[env_name]
        elif f.name in from_file:
            source, raw = "file", from_file[f.name]
        else:
            continue
        try:
            if source == "file":
                values[f.name] = _from_file(kind, raw)
            elif source == "flag" and typing.get_origin(kind) is dict:
                values[f.name] = parse_properties(",".join(raw))
            else:
                values[f.name] = _parse(kind, raw)
        except ValueError as exc:
            where = (
                f"{f.name} in configuration file {path}"
                if source == "file"
                else f"{_flag(f)} / {env_name}"
            )
            raise SettingsError(f"invalid setting {where}: {_problem(exc, f, kind, raw)}") from None
    return cls(**values)


def _check_known(from_file: Mapping[str, Any], cls: type, path: str | None) -> None:
    """SettingsError for a file key that is no setting of any prgate command (nor of
    ``cls``): a typo or a section, which would otherwise be ignored without a word."""
    known = SETTING_NAMES | {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(from_file) - known)
    if not unknown:
        return
    close = difflib.get_close_matches(unknown[0], sorted(known), n=1)
    hint = f" (did you mean {close[0]}?)" if close else ""
    table = (
        " (a table: settings are top-level keys)" if isinstance(from_file[unknown[0]], dict) else ""
    )
    raise SettingsError(
        f"configuration file {path}: {unknown[0]!r} is not a setting of any prgate command"
        f"{hint}{table}; keys are the settings' names, as in the README's configuration"
        " reference"
    )


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
