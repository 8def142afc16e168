"""prgate.settings: flag > environment > default, value parsing, redaction, the reference table."""

from __future__ import annotations

import argparse
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

from prgate.kafka.settings import DEFAULT_BOOTSTRAP, KafkaSettings
from prgate.observability.kafka_statistics import KAFKA_STATISTICS, STATISTICS_INTERVAL_MS
from prgate.observability.logs import KAFKA_CLIENT_LOG
from prgate.settings import (
    SettingsError,
    add_arguments,
    format_properties,
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
    with pytest.raises(SettingsError) as exited:
        load(Sample, None, environ=env)
    assert f"invalid setting {names}" in str(exited.value)


def test_parse_properties() -> None:
    assert parse_properties("a=1, b = 2\nc=x=y,,") == {"a": "1", "b": "2", "c": "x=y"}
    assert parse_properties("") == {}
    for bad in ("novalue", "=x"):
        with pytest.raises(ValueError, match="expected key=value"):
            parse_properties(bad)


def test_property_values_may_hold_commas() -> None:
    assert parse_properties("debug=eos,broker,acks=all") == {"debug": "eos,broker", "acks": "all"}
    assert parse_properties("debug=eos,broker,protocol") == {"debug": "eos,broker,protocol"}
    assert parse_properties("a=x\\,y=z,b=1") == {"a": "x,y=z", "b": "1"}
    assert parse_properties("# a comment\ndebug=eos,broker\nacks=all") == {
        "debug": "eos,broker",
        "acks": "all",
    }
    properties = {"debug": "eos,broker", "sasl.oauthbearer.config": "scope=a,principal=b"}
    assert parse_properties(format_properties(properties)) == properties
    loaded = load(KafkaSettings, None, environ={"PRGATE_KAFKA_PROPERTIES": "debug=eos,broker"})
    assert loaded.client_config()["debug"] == "eos,broker"


def test_kafka_properties_file_under_the_inline_properties(tmp_path: Path) -> None:
    properties = tmp_path / "client.properties"
    properties.write_text(
        "# as kafka-console-consumer --command-config reads it\n"
        "security.protocol=SASL_SSL\n"
        "sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required \\\n"
        '    username="ada" password="p";\n'
        "debug: eos,broker\n"
        "acks=1\n"
    )
    loaded = load(
        KafkaSettings,
        None,
        environ={
            "PRGATE_KAFKA_PROPERTIES_FILE": str(properties),
            "PRGATE_KAFKA_PROPERTIES": "acks=all",
        },
    )
    assert loaded.kafka_properties == {
        "security.protocol": "SASL_SSL",
        "sasl.jaas.config": "org.apache.kafka.common.security.plain.PlainLoginModule required "
        'username="ada" password="p";',
        "debug": "eos,broker",
        "acks": "all",
    }
    assert redacted(loaded)["kafka_properties"]["sasl.jaas.config"] == "***"  # holds a password
    missing = tmp_path / "missing.properties"
    with pytest.raises(SettingsError, match=f"cannot read --kafka-properties-file {missing}"):
        load(KafkaSettings, None, environ={"PRGATE_KAFKA_PROPERTIES_FILE": str(missing)})


def test_config_file_below_environment_and_flags(tmp_path: Path) -> None:
    config = tmp_path / "prgate.toml"
    config.write_text(
        'name = "from-file"\n'
        "count = 3\n"
        "ratio = 2\n"
        "enabled = true\n"
        'limit = "9"\n'
        'instance_id = "p-1"\n'  # the processor's: ignored here
        "[props]\n"
        'debug = "eos,broker"\n'
        "linger_ms = 5\n"
    )
    from_file = load(Sample, parse(Sample, "--config", str(config)), environ={})
    assert from_file == Sample(
        name="from-file",
        count=3,
        ratio=2.0,
        enabled=True,
        limit=9,
        props={"debug": "eos,broker", "linger_ms": "5"},
    )
    env = {"PRGATE_CONFIG_FILE": str(config), "PRGATE_T_NAME": "from-env", "PRGATE_T_COUNT": "4"}
    layered = load(Sample, parse(Sample, "--count", "5"), environ=env)
    assert (layered.name, layered.count, layered.ratio) == ("from-env", 5, 2.0)
    assert load(Sample, parse(Sample), environ={}) == Sample()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("count = 1.5\n", "invalid setting count in configuration file .*: expected int"),
        ('enabled = "maybe"\n', "invalid setting enabled in configuration file .*boolean"),
        ("props = 1\n", "invalid setting props in configuration file .*table"),
        ("count = \n", "configuration file .* is not valid TOML"),
    ],
)
def test_config_file_errors_name_the_file_and_key(tmp_path: Path, text: str, message: str) -> None:
    config = tmp_path / "bad.toml"
    config.write_text(text)
    with pytest.raises(SettingsError, match=message):
        load(Sample, None, environ={"PRGATE_CONFIG_FILE": str(config)})


def test_a_flag_may_differ_from_the_field_name() -> None:
    from prgate.cli.pr import ClientSettings

    args = parse(ClientSettings, "--tls-ca-file", "ca.pem")
    env = {"PRGATE_TLS_CERT_FILE": "server.pem", "PRGATE_CLIENT_TLS_KEY_FILE": "ada.key"}
    loaded = load(ClientSettings, args, environ=env)
    assert (loaded.client_tls_ca_file, loaded.client_tls_cert_file) == ("ca.pem", "")
    assert loaded.client_tls_key_file == "ada.key"
    assert "| `--tls-ca-file` | `PRGATE_CLIENT_TLS_CA_FILE` |" in reference_table(ClientSettings)


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
        # librdkafka's logs and statistics through Python (prgate/observability/logs.py, ...).
        "logger": KAFKA_CLIENT_LOG,
        "statistics.interval.ms": STATISTICS_INTERVAL_MS,
        "stats_cb": KAFKA_STATISTICS.record,
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


@pytest.mark.parametrize("entry", ["gateway.server", "processor.app", "archive.app"])
def test_every_service_prints_its_help(entry: str, capsys: pytest.CaptureFixture[str]) -> None:
    """`prgate gateway --help` printed a traceback: a help text with a % sign ("+-10%")."""
    import importlib

    with pytest.raises(SystemExit) as done:
        importlib.import_module(entry).main(["--help"])
    assert done.value.code == 0
    assert "--bootstrap-servers" in capsys.readouterr().out


def test_readme_configuration_file_example_loads(tmp_path: Path) -> None:
    """The README's TOML example, as written, configures a gateway and the Kafka clients."""
    from gateway.settings import GatewaySettings

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    example = readme.split("**Configuration file.**", 1)[1].split("```toml\n", 1)[1]
    config = tmp_path / "prgate.toml"
    config.write_text(example.split("```", 1)[0])
    env = {"PRGATE_CONFIG_FILE": str(config)}
    kafka = load(KafkaSettings, None, environ=env)
    gateway = load(GatewaySettings, None, environ=env)
    assert (kafka.bootstrap_servers, kafka.topic_prefix) == ("kafka-1:9092,kafka-2:9092", "prod.")
    assert kafka.kafka_properties == {"security.protocol": "SASL_SSL", "debug": "eos,broker"}
    assert (gateway.listen, gateway.required_approvals) == ("0.0.0.0:50051", 2)
    assert gateway.metrics_listen == "127.0.0.1:9464"


# -- attacks on the parsing (issue: configuration parsing review) ----------------------------

SECRET = "hunter2-very-secret"


def refused(tmp_path: Path, text: str | bytes, env: dict[str, str] | None = None) -> str:
    """The message of the SettingsError that loading Sample with this file raises."""
    config = tmp_path / "attack.toml"
    if isinstance(text, bytes):
        config.write_bytes(text)
    else:
        config.write_text(text)
    with pytest.raises(SettingsError) as error:
        load(Sample, None, environ={"PRGATE_CONFIG_FILE": str(config), **(env or {})})
    return str(error.value)


@pytest.mark.parametrize(
    "text",
    [
        # A secret setting given the wrong type: the value must not be echoed.
        "password = 9876543210123\n",
        f'password = ["{SECRET}"]\n',
        # Client properties hold passwords: neither a non-table nor a bad value is echoed.
        f'props = ["sasl.password={SECRET}"]\n',
        f'props = {{"sasl.password" = ["{SECRET}"]}}\n',
        f'props = "{SECRET}"\n',
        f'props = "sasl.username=ada,{SECRET}=,=x"\n',
    ],
)
def test_file_errors_never_print_a_secret_value(tmp_path: Path, text: str) -> None:
    message = refused(tmp_path, text)
    assert "invalid setting" in message
    assert SECRET not in message and "9876543210123" not in message, message
    assert "password" in message or "props" in message  # the setting is named


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"PRGATE_T_PROPS": SECRET}, "--props / PRGATE_T_PROPS"),
        ({"PRGATE_T_PROPS": f"a=b\n{SECRET}"}, "--props / PRGATE_T_PROPS"),
        ({"PRGATE_T_PROPS": f"=={SECRET}"}, "--props / PRGATE_T_PROPS"),
    ],
)
def test_environment_errors_never_print_a_secret_value(env: dict[str, str], named: str) -> None:
    with pytest.raises(SettingsError) as error:
        load(Sample, None, environ=env)
    message = str(error.value)
    assert named in message and SECRET not in message, message
    assert "line" in message  # where the bad piece is, instead of what it is


def test_a_property_flag_error_never_prints_the_value() -> None:
    with pytest.raises(SettingsError) as error:
        load(Sample, parse(Sample, "--props", SECRET), environ={})
    assert SECRET not in str(error.value)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        # Not UTF-8: tomllib's UnicodeDecodeError escaped as a traceback before.
        (b'name = "\xff\xfe"\n', "is not UTF-8 text"),
        (b"\xef\xbb\xbfname = 'bom'\n", "is not valid TOML"),
        ('name = "a"\nname = "b"\n', "is not valid TOML"),
        ("count = -3\n", "invalid setting count in configuration file .*must not be negative"),
        ("ratio = nan\n", "invalid setting ratio .*finite"),
        ("ratio = inf\n", "invalid setting ratio .*finite"),
        ('ratio = "-inf"\n', "invalid setting ratio .*finite"),
        ("count = true\n", "invalid setting count .*expected int"),
        ("enabled = 1\n", "invalid setting enabled .*expected bool"),
    ],
)
def test_bad_files_are_one_settings_error(tmp_path: Path, text: str | bytes, message: str) -> None:
    got = refused(tmp_path, text)
    assert re.search(message, got), got


def test_one_setting_spelled_twice_in_a_file_is_refused(tmp_path: Path) -> None:
    @dataclass(frozen=True)
    class Two:
        bootstrap_servers: str = setting("", "PRGATE_T_BOOT", "where")

    config = tmp_path / "two.toml"
    config.write_text('bootstrap-servers = "a:1"\nbootstrap_servers = "b:2"\n')
    # Which one won was an accident of the table's order.
    with pytest.raises(SettingsError, match="gives the setting bootstrap_servers twice"):
        load(Two, None, environ={"PRGATE_CONFIG_FILE": str(config)})


def test_a_huge_configuration_file_is_refused_unread(tmp_path: Path) -> None:
    from prgate.settings import MAX_CONFIG_BYTES

    config = tmp_path / "huge.toml"
    config.write_text("# padding\n" * (MAX_CONFIG_BYTES // 10 + 1))
    with pytest.raises(SettingsError, match=f"larger than {MAX_CONFIG_BYTES} bytes"):
        load(Sample, None, environ={"PRGATE_CONFIG_FILE": str(config)})


def test_a_missing_or_unreadable_file_is_one_settings_error(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match=r"cannot read configuration file .*No such file"):
        load(Sample, None, environ={"PRGATE_CONFIG_FILE": str(tmp_path / "absent.toml")})
    with pytest.raises(SettingsError, match="cannot read configuration file"):
        load(Sample, None, environ={"PRGATE_CONFIG_FILE": str(tmp_path)})  # a directory


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"PRGATE_T_COUNT": ""}, "--count / PRGATE_T_COUNT"),
        ({"PRGATE_T_COUNT": "-1"}, "must not be negative"),
        ({"PRGATE_T_RATIO": "nan"}, "finite"),
        ({"PRGATE_T_RATIO": "-0.5"}, "must not be negative"),
        ({"PRGATE_T_RATIO": "1e999"}, "finite"),
        ({"PRGATE_T_ENABLED": "2"}, "not a boolean"),
    ],
)
def test_bad_environment_values_name_the_setting(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        load(Sample, None, environ=env)


def test_empty_values_mean_the_documented_things() -> None:
    # "" is None for an optional setting, off for a switch, nothing for properties.
    loaded = load(
        Sample, None, environ={"PRGATE_T_LIMIT": "", "PRGATE_T_ENABLED": "", "PRGATE_T_PROPS": ""}
    )
    assert (loaded.limit, loaded.enabled, loaded.props) == (None, False, {})


def test_the_known_setting_names_are_every_settings_class_s() -> None:
    import dataclasses

    from archive.audit import AuditSettings
    from archive.settings import ArchiveSettings
    from gateway.settings import GatewaySettings
    from prgate.cli.pr import ClientSettings
    from prgate.cli.topics import TopicsCommandSettings
    from prgate.kafka.local import LocalKafkaSettings
    from prgate.setting_names import SETTING_NAMES
    from processor.settings import ProcessorSettings

    classes = (
        AuditSettings,
        ArchiveSettings,
        GatewaySettings,
        ClientSettings,
        TopicsCommandSettings,
        LocalKafkaSettings,
        KafkaSettings,
        ProcessorSettings,
    )
    names = {f.name for cls in classes for f in dataclasses.fields(cls)}
    assert not names - SETTING_NAMES, f"add to prgate/setting_names.py: {names - SETTING_NAMES}"
    assert not SETTING_NAMES - names, f"remove from it: {SETTING_NAMES - names}"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        # A typo was ignored without a word: the gateway ran on the default brokers.
        (
            'bootstrap_server = "kafka:9092"\n',
            "'bootstrap_server' .*did you mean bootstrap_servers",
        ),
        ('[gateway]\nlisten = "0.0.0.0:50051"\n', "'gateway' .*a table: settings are top-level"),
        ('nmae = "x"\n', "'nmae' is not a setting of any prgate command .*did you mean name"),
    ],
)
def test_a_key_that_is_no_setting_of_any_command_is_refused(
    tmp_path: Path, text: str, message: str
) -> None:
    assert re.search(message, refused(tmp_path, text)), refused(tmp_path, text)


def test_keys_of_other_commands_are_still_ignored(tmp_path: Path) -> None:
    config = tmp_path / "shared.toml"
    config.write_text('name = "mine"\ninstance_id = "p-7"\nlisten = "0.0.0.0:1"\ntarget = "gw:1"\n')
    loaded = load(Sample, None, environ={"PRGATE_CONFIG_FILE": str(config)})
    assert loaded.name == "mine"


def test_a_bootstrap_servers_property_conflicting_with_the_setting_is_refused(
    tmp_path: Path,
) -> None:
    """It silently won over KAFKA_BOOTSTRAP_SERVERS, which the logs and checks still named."""
    with pytest.raises(SettingsError, match=r"bootstrap\.servers conflicts with"):
        load(
            KafkaSettings,
            None,
            environ={
                "KAFKA_BOOTSTRAP_SERVERS": "a:9092",
                "PRGATE_KAFKA_PROPERTIES": "bootstrap.servers=b:9092",
            },
        )
    properties = tmp_path / "client.properties"
    properties.write_text("bootstrap.servers=b:9092\n")
    with pytest.raises(SettingsError, match=r"bootstrap\.servers conflicts with"):
        load(KafkaSettings, None, environ={"PRGATE_KAFKA_PROPERTIES_FILE": str(properties)})


def test_a_properties_file_that_is_not_text_names_the_setting(tmp_path: Path) -> None:
    properties = tmp_path / "client.properties"
    properties.write_bytes(b"sasl.password=\xff\xfe\n")
    with pytest.raises(SettingsError, match="cannot read --kafka-properties-file"):
        load(KafkaSettings, None, environ={"PRGATE_KAFKA_PROPERTIES_FILE": str(properties)})
