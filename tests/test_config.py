"""Settings: sources, priority, and one clear line for each bad value."""

from __future__ import annotations

from pathlib import Path

import pytest

from server.config import Config, ConfigError, load


def test_defaults_match_the_design() -> None:
    config = load([], environ={})
    assert (config.host, config.port, config.interval) == ("127.0.0.1", 5000, 1.0)
    assert config.history_seconds == 900
    assert config.async_mode == "eventlet"
    assert config.log_config.endswith("logging.conf")


def test_priority_file_then_env_then_flags(tmp_path: Path) -> None:
    toml = tmp_path / "dashboard.toml"
    toml.write_text(
        'port = 6000\ninterval = 2.5\nhost = "0.0.0.0"\nallow_anonymous = true\n'
        "history_seconds = 120\n"
    )
    env = {"DASHBOARD_CONFIG": str(toml), "DASHBOARD_PORT": "7000", "DASHBOARD_INTERVAL": "3"}
    config = load(["--port", "8000"], environ=env)
    assert config.port == 8000  # flag beats env and file
    assert config.interval == 3.0  # env beats file
    assert config.host == "0.0.0.0"  # from the file
    assert config.history_seconds == 120
    assert load(["--config", str(toml)], environ={}).port == 6000


@pytest.mark.parametrize(
    ("argv", "env", "name", "accepts"),
    [
        (["--port", "http"], {}, "port", "an integer from 1 to 65535"),
        (["--port", "70000"], {}, "port", "an integer from 1 to 65535"),
        (["--interval", "0"], {}, "interval", "a number of seconds"),
        (["--interval", "banana"], {}, "interval", "a number of seconds"),
        ([], {"DASHBOARD_INTERVAL": "nan"}, "interval", "a number of seconds"),
        ([], {"DASHBOARD_HISTORY_SECONDS": "-5"}, "history_seconds", "an integer"),
        (["--async-mode", "gevent"], {}, "async_mode", "one of eventlet, threading"),
        (["--allow-anonymous", "maybe"], {}, "allow_anonymous", "true or false"),
        (["--password-hash", "hunter2"], {}, "password_hash", "a hash from"),
        (["--max-connections-per-ip", "0"], {}, "max_connections_per_ip", "an integer"),
        (["--max-connections", "lots"], {}, "max_connections", "an integer"),
        (["--proxy-hops", "9"], {}, "proxy_hops", "an integer from 0 to 5"),
        (["--retention-raw", "5"], {}, "retention_raw", "an integer from 60"),
        (["--retention-10s", "x"], {}, "retention_10s", "an integer"),
        (["--retention-1m", "0"], {}, "retention_1m", "an integer"),
        (["--history-max-mb", "0"], {}, "history_max_mb", "an integer from 1"),
        (["--data-dir", " "], {}, "data_dir", "is empty"),
        (["--history-path", ""], {}, "history_path", "is empty"),
        (["--top-processes", "-1"], {}, "top_processes", "an integer from 0"),
        (["--host-root", "host"], {}, "host_root", "the absolute path of a directory"),
        ([], {"DASHBOARD_HOST_ROOT": "/no/such/dir"}, "host_root", "the absolute path of a"),
    ],
)
def test_bad_values_name_the_setting(
    argv: list[str], env: dict[str, str], name: str, accepts: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        load(argv, environ=env)
    message = str(caught.value)
    assert f"setting '{name}'" in message
    assert accepts in message
    assert "\n" not in message


def test_source_of_a_bad_value_is_named() -> None:
    with pytest.raises(ConfigError, match=r"from DASHBOARD_PORT"):
        load([], environ={"DASHBOARD_PORT": "x"})


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"setting 'config': file .* does not exist"):
        load(["--config", str(tmp_path / "absent.toml")], environ={})


def test_unknown_and_mistyped_keys_in_file(tmp_path: Path) -> None:
    toml = tmp_path / "bad.toml"
    toml.write_text("prot = 5000\n")
    with pytest.raises(ConfigError, match=r"setting 'prot' .* is unknown"):
        load(["--config", str(toml)], environ={})
    toml.write_text("port = true\n")
    with pytest.raises(ConfigError, match=r"setting 'port'"):
        load(["--config", str(toml)], environ={})
    toml.write_text("port = \n")
    with pytest.raises(ConfigError, match=r"not valid TOML"):
        load(["--config", str(toml)], environ={})


def test_config_is_frozen() -> None:
    with pytest.raises(AttributeError):
        Config().port = 1  # type: ignore[misc]


def test_a_bad_password_hash_is_not_echoed() -> None:
    with pytest.raises(ConfigError) as caught:
        load(["--password-hash", "my-real-password"], environ={})
    assert "my-real-password" not in str(caught.value)
    assert "(hidden)" in str(caught.value)


def test_list_settings_from_the_environment() -> None:
    config = load(
        [],
        environ={
            "DASHBOARD_ALLOWED_HOSTS": "dash.lan, .example.net",
            "DASHBOARD_CORS_ORIGINS": "http://wall.lan:8080",
        },
    )
    assert config.allowed_hosts == ("dash.lan", ".example.net")
    assert config.cors_origins == ("http://wall.lan:8080",)


def test_docs_settings_table_is_the_declarations() -> None:
    from server.config import settings_table
    from testkit.serverproc import ROOT

    page = (ROOT / "docs" / "settings.md").read_text()
    assert settings_table() in page, "docs/settings.md's table is stale: make settings-table"


GOOD_HASH = "scrypt:32768:8:1$abcdefgh$" + "ab" * 32


@pytest.mark.parametrize(
    ("argv", "env", "named"),
    [
        ([], {"DASHBOARD_PASSWORDHASH": GOOD_HASH}, "DASHBOARD_PASSWORDHASH"),
        ([], {"DASHBOARD_PASSWORD_HASH": ""}, "'password_hash'"),
        (["--proxy-hops", "1"], {}, "'proxy_hops'"),
        (["--password-hash", "scrypt:abc$x$y"], {}, "'password_hash'"),
        (["--password-hash", "scrypt:1024:8:1$salt$" + "ab" * 32], {}, "'password_hash'"),
        (["--password-hash", "pbkdf2:sha256:1000$salt$" + "ab" * 32], {}, "'password_hash'"),
        (["--cors-origins", "*"], {}, "'cors_origins'"),
        (["--allowed-hosts", "localhost,*"], {}, "'allowed_hosts'"),
        (["--trusted-proxies", "nginx"], {}, "'trusted_proxies'"),
    ],
)
def test_settings_that_would_fail_open_stop_the_start(
    argv: list[str], env: dict[str, str], named: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        load(argv, environ=env)
    assert named in str(caught.value) and "\n" not in str(caught.value)


def test_a_full_hash_and_a_proxy_with_a_login_are_accepted() -> None:
    config = load(["--proxy-hops", "1", "--password-hash", GOOD_HASH], environ={})
    assert config.proxy_hops == 1 and config.password_hash == GOOD_HASH
    assert load(["--proxy-hops", "1", "--allow-anonymous", "true"], environ={}).proxy_hops == 1


def test_an_agents_token_comes_from_a_file_only_its_owner_reads(tmp_path: Path) -> None:
    token = "t" * 43
    path = tmp_path / "token"
    path.write_text(token + "\n")
    path.chmod(0o600)
    config = load(["--hub-token-file", str(path)], environ={})
    assert config.hub_token == token
    path.chmod(0o400)  # as systemd's LoadCredential= copy
    assert load([], environ={"DASHBOARD_HUB_TOKEN_FILE": str(path)}).hub_token == token
    refusals = {
        "0644": "can be read by other users (mode 0644); make it 0600",
        "short": "must hold a token from `python -m server add-agent NAME` on the hub",
        "absent": "cannot read",
        "both": "give an agent its token or the token's file, not both",
    }
    for case, refusal in refusals.items():
        path.chmod(0o644 if case == "0644" else 0o600)
        path.write_text("short" if case == "short" else token)
        given = str(tmp_path / "none") if case == "absent" else str(path)
        env = {"DASHBOARD_HUB_TOKEN": token} if case == "both" else {}
        with pytest.raises(ConfigError) as caught:
            load(["--hub-token-file", given], environ=env)
        message = str(caught.value)
        assert message.startswith("setting 'hub_token_file': ") and refusal in message, message
        assert "\n" not in message and token not in message
