"""The console's settings file: typed values, flags on top, and every mistake one `file:line:column` line."""

from __future__ import annotations

from pathlib import Path

import pytest

from pilot.console.config import ConfigError, load_config


def write(tmp_path: Path, text: str | bytes) -> Path:
    path = tmp_path / "console.yaml"
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    return path


def test_a_file_sets_typed_values_and_flags_override_it(tmp_path):
    path = write(
        tmp_path,
        "broker: {host: mqtt.lan, port: 8883, shared_group: consoles}\n"
        "http: {port: 9000, trusted_proxies: [127.0.0.1]}\n"
        "retention: {raw_s: 3600, five_minute_s: 7776000}\n"
        "database: postgresql://c@db/pilot\n",
    )
    config = load_config(path, **{"broker.host": "override.lan", "http.port": None})
    assert (config.broker.host, config.broker.port, config.broker.shared_group) == ("override.lan", 8883, "consoles")
    assert (config.http.port, config.http.trusted_proxies) == (9000, ("127.0.0.1",))
    assert (config.retention.raw_s, config.retention.minute_s) == (3600.0, 30 * 86400.0)
    assert config.retention.five_minute_s == 90 * 86400.0  # 7,776,000 s
    assert config.database_url == "postgresql://c@db/pilot"


def test_without_a_database_the_history_is_sqlite_in_the_state_folder(tmp_path):
    config = load_config(None, state_dir=tmp_path)
    assert config.database_url == f"sqlite:///{tmp_path / 'console.db'}"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("broker:\n  hots: x\n", "console.yaml:2:3: unknown setting broker.hots (known: host, port,"),
        ("brokr: {}\n", "console.yaml:1:1: unknown setting brokr (known: broker, http,"),
        ("http:\n  port: '8470'\n", "console.yaml:2:3: http.port must be a whole number"),
        ("http:\n  port: true\n", "console.yaml:2:3: http.port must be a whole number"),
        ("auth:\n  anonymous_read: yes please\n", "console.yaml:2:3: auth.anonymous_read must be true or false"),
        ("retention: {raw_s: -1}\n", "console.yaml:1:13: retention.raw_s must be a positive number"),
        ("broker: [a]\n", "console.yaml:1:1: broker must be a mapping"),
        ('broker: {host: "a\\nb"}\n', "console.yaml:1:10: broker.host must be a non-empty line of text"),
        ("- 1\n", "console.yaml:1:1: expected a mapping of settings"),
        ("broker: {host: [\n", "console.yaml:2:1: not valid YAML"),
    ],
)
def test_mistakes_are_one_line_naming_where(tmp_path, text, message):
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, text))
    assert str(caught.value).startswith(str(tmp_path / message.split(":", 1)[0]) + ":" + message.split(":", 1)[1])


def test_non_utf8_and_oversized_files_are_refused_plainly(tmp_path):
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, b"broker: {host: \xff}\n"))
    assert str(caught.value) == f"{tmp_path / 'console.yaml'}: not UTF-8 (byte 15)"
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, "# " + "x" * 300_000))
    assert str(caught.value) == f"{tmp_path / 'console.yaml'}: larger than 256 KiB"


def test_a_missing_file_is_named(tmp_path):
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path / "absent.yaml")
    assert str(caught.value) == f"{tmp_path / 'absent.yaml'}: cannot read: No such file or directory"
