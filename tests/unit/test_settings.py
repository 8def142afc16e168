"""prgate.settings: flag > environment > default, value parsing, redaction, the reference table."""

from __future__ import annotations

import argparse
from dataclasses import dataclass

import pytest

from prgate.kafka_settings import DEFAULT_BOOTSTRAP, KafkaSettings
from prgate.settings import (
    add_arguments,
    load,
    parse_properties,
    redacted,
    reference_table,
    setting,
)


@dataclass(frozen=True)
class Sample:
    name: str = setting("default-name", "PRGATE_T_NAME", "a name")
    count: int = setting(1, "PRGATE_T_COUNT", "a count")
    ratio: float = setting(0.5, "PRGATE_T_RATIO", "a ratio")
    enabled: bool = setting(False, "PRGATE_T_ENABLED", "a switch")
    limit: int | None = setting(None, "PRGATE_T_LIMIT", "optional limit")
    password: str = setting("", "PRGATE_T_PASSWORD", "a secret", secret=True)
    props: dict[str, str] = setting({}, "PRGATE_T_PROPS", "client properties")


def parse(cls: type, *argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser, cls)
    return parser.parse_args(list(argv))


def test_defaults_without_flags_or_environment() -> None:
    assert load(Sample, parse(Sample), environ={}) == Sample()
    kafka = load(KafkaSettings, parse(KafkaSettings), environ={})
    assert kafka.bootstrap_servers == DEFAULT_BOOTSTRAP == "127.0.0.1:9092"
    assert (kafka.topic_prefix, kafka.partitions, kafka.kafka_properties) == ("prgate.", 6, {})


def test_environment_overrides_default_and_flag_overrides_environment() -> None:
    env = {"KAFKA_BOOTSTRAP_SERVERS": "env-host:9092", "PRGATE_PARTITIONS": "12"}

    from_env = load(KafkaSettings, parse(KafkaSettings), environ=env)
    assert (from_env.bootstrap_servers, from_env.partitions) == ("env-host:9092", 12)

    args = parse(KafkaSettings, "--bootstrap-servers", "flag-host:1", "--partitions", "4")
    from_flag = load(KafkaSettings, args, environ=env)
    assert (from_flag.bootstrap_servers, from_flag.partitions) == ("flag-host:1", 4)
    assert from_flag.topic_prefix == "prgate."  # untouched fields keep the default


def test_load_without_parsed_flags_reads_only_the_environment() -> None:
    loaded = load(Sample, None, environ={"PRGATE_T_NAME": "x", "PRGATE_T_COUNT": "7"})
    assert (loaded.name, loaded.count) == ("x", 7)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("1", True), ("true", True), ("YES", True), ("on", True), ("0", False), ("off", False)],
)
def test_booleans(raw: str, expected: bool) -> None:
    assert load(Sample, None, environ={"PRGATE_T_ENABLED": raw}).enabled is expected


def test_numbers_and_optional_values() -> None:
    loaded = load(Sample, parse(Sample, "--ratio", "0.25", "--limit", "10"), environ={})
    assert (loaded.ratio, loaded.limit) == (0.25, 10)
    assert load(Sample, None, environ={"PRGATE_T_LIMIT": ""}).limit is None


@pytest.mark.parametrize(
    ("env", "names"),
    [
        ({"PRGATE_T_COUNT": "many"}, "--count / PRGATE_T_COUNT"),
        ({"PRGATE_T_ENABLED": "maybe"}, "--enabled / PRGATE_T_ENABLED"),
        ({"PRGATE_T_PROPS": "novalue"}, "--props / PRGATE_T_PROPS"),
    ],
)
def test_invalid_values_name_the_flag_and_variable(env: dict[str, str], names: str) -> None:
    with pytest.raises(SystemExit) as exited:
        load(Sample, None, environ=env)
    assert f"invalid setting {names}" in str(exited.value)


def test_parse_properties() -> None:
    assert parse_properties("a=1, b = 2\nc=x=y,,") == {"a": "1", "b": "2", "c": "x=y"}
    assert parse_properties("") == {}
    for bad in ("novalue", "=x"):
        with pytest.raises(ValueError, match="expected key=value"):
            parse_properties(bad)


def test_repeated_property_flags_merge_and_replace_the_environment() -> None:
    args = parse(
        KafkaSettings,
        "--kafka-properties",
        "security.protocol=SASL_SSL",
        "--kafka-properties",
        "sasl.mechanism=PLAIN,client.id=x",
    )
    loaded = load(KafkaSettings, args, environ={"PRGATE_KAFKA_PROPERTIES": "linger.ms=5"})
    assert loaded.kafka_properties == {
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": "PLAIN",
        "client.id": "x",
    }


def test_client_config_layers_bootstrap_properties_and_overrides() -> None:
    kafka = KafkaSettings(
        bootstrap_servers="b:1", kafka_properties={"acks": "1", "client.id": "from-props"}
    )
    assert kafka.client_config(acks="all") == {
        "bootstrap.servers": "b:1",
        "socket.nagle.disable": True,
        "acks": "all",
        "client.id": "from-props",
    }
    assert kafka.topics.commands == "prgate.commands"


def test_redaction_hides_secrets_and_secret_looking_properties() -> None:
    sample = Sample(
        password="hunter2",
        props={"sasl.password": "p", "ssl.key.location": "/k", "Api.Token": "t", "acks": "all"},
    )
    shown = redacted(sample)
    assert shown["password"] == "***"
    assert shown["props"] == {
        "sasl.password": "***",
        "ssl.key.location": "***",
        "Api.Token": "***",
        "acks": "all",
    }
    assert shown["name"] == "default-name"
    assert "hunter2" not in repr(shown)
    assert redacted(Sample())["password"] == ""  # an empty secret stays visibly empty


def test_reference_table_lists_every_flag_and_variable() -> None:
    table = reference_table(KafkaSettings)
    assert table.splitlines()[0] == "| flag | environment | default | meaning |"
    for flag, env in (
        ("--bootstrap-servers", "KAFKA_BOOTSTRAP_SERVERS"),
        ("--topic-prefix", "PRGATE_TOPIC_PREFIX"),
        ("--partitions", "PRGATE_PARTITIONS"),
        ("--kafka-properties", "PRGATE_KAFKA_PROPERTIES"),
    ):
        assert f"| `{flag}` | `{env}` |" in table
