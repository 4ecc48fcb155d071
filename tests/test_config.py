"""Configuration: one YAML file, environment overrides, and errors that name the key."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tiffin_rt.config import ConfigError, load_settings

REPO = Path(__file__).resolve().parents[1]


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return path


def test_repository_config_is_valid_and_uses_the_embedded_database() -> None:
    settings = load_settings(REPO / "config.yaml", environ={})
    assert settings.database.dsn == ""
    assert settings.server.port == 8080
    assert settings.orders.table == "public.orders"


def test_environment_overrides_nested_keys(tmp_path: Path) -> None:
    path = write(tmp_path, f"auth: {{jwt_secret: {'s' * 32}}}\nserver: {{port: 8080}}\n")
    settings = load_settings(
        path,
        environ={
            "TIFFIN_RT__SERVER__PORT": "9090",
            "TIFFIN_RT__DATABASE__DSN": "postgresql://u@db/x",
            "TIFFIN_RT__SERVER__CORS_ORIGINS": "[https://a.example]",
        },
    )
    assert settings.server.port == 9090
    assert settings.database.dsn == "postgresql://u@db/x"
    assert settings.server.cors_origins == ["https://a.example"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("auth: {jwt_secret: s}\nserver: {prot: 1}\n", "server.prot: unknown key"),
        (
            "auth: {jwt_secret: s}\nserver: {port: abc}\n",
            "server.port: Input should be a valid integer",
        ),
        (
            "auth: {jwt_secret: s}\ndatabase: {dsn: 'mysql://x'}\n",
            "database.dsn: not a PostgreSQL URL",
        ),
        ("auth: {jwt_secret: s, jwt_algorithms: [none]}\n", "auth.jwt_algorithms: 'none' is never"),
        ("auth: {jwt_secret: ''}\n", "auth.jwt_secret: set a secret"),
        ("auth: {jwt_secret: s}\norders: {table: 'a b'}\n", "orders.table: not a table name"),
        ("server: [1, 2\n", "not valid YAML at line"),
        ("auth: {jwt_secret: short}\n", "auth.jwt_secret: at least 32 bytes for HS256"),
        (
            "auth: {jwt_public_key: k, jwt_algorithms: [RS256, HS256]}\n",
            "auth.jwt_algorithms: with jwt_public_key only",
        ),
        (
            f"auth: {{jwt_secret: {'s' * 32}}}\nserver: {{cors_origins: ['*']}}\n",
            "server.cors_origins: '*' is refused",
        ),
        ("auth: {jwt_secret: s}\nlimits: {connect_per_ip: lots}\n", "limits.connect_per_ip: not a"),
        (
            "auth: {jwt_secret: s}\ncluster: {broker: 'redis://[bad'}\n",
            "cluster.broker: not a valid redis:// URL: Invalid IPv6 URL",
        ),
        (
            "auth: {jwt_secret: s}\ncluster: {broker: 'redis://127.0.0.1:abc/0'}\n",
            "cluster.broker: not a valid redis:// URL: Port could not be cast",
        ),
        (
            "auth: {jwt_secret: s}\ncluster: {broker: 'amqp://u:secret@:99999/'}\n",
            "cluster.broker: not a valid amqp:// URL: Port out of range",
        ),
        (
            "auth: {jwt_secret: s}\ncluster: {broker: 'amqp:///'}\n",
            "cluster.broker: not a valid amqp:// URL: no host",
        ),
    ],
)
def test_errors_name_file_and_key(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_settings(path, environ={})
    assert str(info.value).startswith(str(path) + ": ")
    assert message in str(info.value)


def test_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_settings(tmp_path / "missing.yaml", environ={})


def test_cli_reports_one_line_and_exits_2(tmp_path: Path) -> None:
    path = write(tmp_path, "auth: {jwt_secret: s}\nserver: {port: nope}\n")
    result = subprocess.run(
        [sys.executable, "-m", "tiffin_rt", "check-config", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert "server.port" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_removed_key_is_ignored_with_one_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """database.listen_channel never did anything: an old file still loads, and says so."""
    path = write(
        tmp_path,
        f"auth: {{jwt_secret: {'s' * 32}}}\ndatabase: {{listen_channel: mine, pool_max: 3}}\n",
    )
    with caplog.at_level("WARNING", logger="tiffin_rt.config"):
        settings = load_settings(path, environ={})
    assert settings.database.pool_max == 3
    assert not hasattr(settings.database, "listen_channel")
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert warnings == [
        f"{path}: database.listen_channel is ignored: "
        "the listener's channel is fixed (tiffin_rt_events); remove it"
    ]


@pytest.mark.parametrize(
    ("variable", "text"),
    [
        ("TIFFIN_RT__PAYMENTS__WEBHOOK_SECRET", "abcdefghijklmnop #x"),  # YAML: a comment
        ("TIFFIN_RT__PAYMENTS__WEBHOOK_SECRET", "0123456789012345"),  # YAML: an integer
        ("TIFFIN_RT__PAYMENTS__WEBHOOK_SECRET", "'quoted-secret-value'"),  # YAML: unquoted
        ("TIFFIN_RT__AUTH__JWT_SECRET", "1" * 32),
        ("TIFFIN_RT__AUTH__JWT_SECRET", "s" * 32 + ": x"),  # YAML: a mapping
        ("TIFFIN_RT__METRICS__TOKEN", "1234567890123456789"),  # YAML: an integer
        ("TIFFIN_RT__DATABASE__DSN", "postgresql://u:p#1@db/x"),
    ],
)
def test_a_text_setting_from_the_environment_is_taken_as_written(
    tmp_path: Path, variable: str, text: str
) -> None:
    path = write(tmp_path, f"auth: {{jwt_secret: {'s' * 32}}}\n")
    settings = load_settings(path, environ={variable: text})
    section, key = variable.removeprefix("TIFFIN_RT__").lower().split("__")
    value = getattr(getattr(settings, section), key)
    assert (value.get_secret_value() if hasattr(value, "get_secret_value") else value) == text


@pytest.mark.parametrize(
    ("variable", "text", "message"),
    [
        ("TIFFIN_RT__SERVER__PORT", "abc", "server.port: Input should be a valid integer"),
        ("TIFFIN_RT__PAYMENTS__WEBHOOK_SECRET", "short", "payments.webhook_secret: at least 16"),
        ("TIFFIN_RT__SERVER__CORS_ORIGINS", "{a: 1}", "server.cors_origins"),
    ],
)
def test_an_invalid_value_from_the_environment_names_the_variable_not_the_file(
    tmp_path: Path, variable: str, text: str, message: str
) -> None:
    path = write(tmp_path, f"auth: {{jwt_secret: {'s' * 32}}}\n")
    with pytest.raises(ConfigError) as caught:
        load_settings(path, environ={variable: text})
    assert str(caught.value).startswith(f"environment {variable}: {message}")
    assert str(path) not in str(caught.value)
