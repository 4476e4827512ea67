"""Settings: defaults < TOML file < DASHBOARD_* environment < command-line flags."""

from __future__ import annotations

import argparse
import dataclasses
import ipaddress
import os
import tomllib
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from server.alerts import AlertSettings, AlertSettingsError, parse_settings

PROJECT_ROOT = Path(__file__).resolve().parent.parent
ASYNC_MODES = ("eventlet", "threading")


class ConfigError(Exception):
    """A setting is wrong; the message names it and says what it accepts."""


@dataclasses.dataclass(frozen=True)
class Config:
    host: str = "127.0.0.1"
    port: int = 5000
    interval: float = 1.0
    history_seconds: int = 900
    log_config: str = str(PROJECT_ROOT / "logging.conf")
    log_dir: str = "logs"
    async_mode: str = "eventlet"
    top_processes: int = 5
    data_dir: str = "data"
    history_path: str = ""  # empty: history.sqlite3 in data_dir
    retention_raw: int = 3600
    retention_10s: int = 86400
    retention_1m: int = 7 * 86400
    history_max_mb: int = 256
    password_hash: str = ""
    allow_anonymous: bool = False
    allowed_hosts: tuple[str, ...] = ("localhost", "127.0.0.1", "::1")
    cors_origins: tuple[str, ...] = ()
    max_connections: int = 10_000
    max_connections_per_ip: int = 50
    proxy_hops: int = 0
    # Only from the TOML file's [users] table: name = "password hash".
    users: Mapping[str, str] = dataclasses.field(default_factory=dict)
    # Only from the TOML file's [alerts] table: rules are too rich for flags.
    alerts: AlertSettings = dataclasses.field(default_factory=lambda: parse_settings(None))

    @property
    def history_file(self) -> str:
        return self.history_path or os.path.join(self.data_dir, "history.sqlite3")


# Each setting's parser takes a raw value (a string from env/flags, or a TOML
# value) and returns the typed value, or raises ValueError with what it accepts.
Parser = Callable[[Any], Any]


def _integer(low: int, high: int) -> Parser:
    def parse(raw: Any) -> int:
        accepts = f"an integer from {low} to {high}"
        if isinstance(raw, bool):
            raise ValueError(accepts)
        try:
            value = int(raw) if isinstance(raw, int) else int(str(raw).strip(), 10)
        except ValueError:
            raise ValueError(accepts) from None
        if not low <= value <= high:
            raise ValueError(accepts)
        return value

    return parse


def _number(low: float, high: float) -> Parser:
    def parse(raw: Any) -> float:
        accepts = f"a number of seconds from {low:g} to {high:g}"
        if isinstance(raw, bool):
            raise ValueError(accepts)
        try:
            value = float(raw)
        except (TypeError, ValueError):
            raise ValueError(accepts) from None
        if not low <= value <= high:  # also rejects nan
            raise ValueError(accepts)
        return value

    return parse


def _text(raw: Any) -> str:
    if not isinstance(raw, str) or not raw.strip():
        raise ValueError("a non-empty string")
    return raw.strip()


def _boolean(raw: Any) -> bool:
    if isinstance(raw, bool):
        return raw
    text = str(raw).strip().lower()
    if text in ("true", "yes", "1", "on"):
        return True
    if text in ("false", "no", "0", "off"):
        return False
    raise ValueError("true or false")


def _names(raw: Any) -> tuple[str, ...]:
    """A TOML list of strings, or a comma-separated string (env, flags)."""
    items = raw.split(",") if isinstance(raw, str) else raw
    if not isinstance(items, list | tuple) or not all(isinstance(i, str) for i in items):
        raise ValueError("a list of names (in the environment: comma-separated)")
    return tuple(i.strip() for i in items if i.strip())


def _password_hash(raw: Any) -> str:
    if not isinstance(raw, str) or (raw and not raw.startswith(("scrypt:", "pbkdf2:"))):
        raise ValueError("a hash from `python -m server hash-password` (scrypt:... or pbkdf2:...)")
    return raw


def _choice(*choices: str) -> Parser:
    def parse(raw: Any) -> str:
        if raw not in choices:
            raise ValueError("one of " + ", ".join(choices))
        return str(raw)

    return parse


PARSERS: dict[str, Parser] = {
    "host": _text,
    "port": _integer(1, 65535),
    "interval": _number(0.1, 3600),
    "history_seconds": _integer(10, 86400),
    "log_config": _text,
    "log_dir": _text,
    "async_mode": _choice(*ASYNC_MODES),
    "top_processes": _integer(0, 100),
    "data_dir": _text,
    "history_path": _text,
    "retention_raw": _integer(60, 7 * 86400),
    "retention_10s": _integer(600, 31 * 86400),
    "retention_1m": _integer(3600, 366 * 86400),
    "history_max_mb": _integer(1, 1_000_000),
    "password_hash": _password_hash,
    "allow_anonymous": _boolean,
    "allowed_hosts": _names,
    "cors_origins": _names,
    "max_connections": _integer(1, 1_000_000),
    "max_connections_per_ip": _integer(1, 1_000_000),
    "proxy_hops": _integer(0, 5),
}

HELP = {
    "host": "address to listen on (default 127.0.0.1)",
    "port": "TCP port to listen on (default 5000)",
    "interval": "seconds between samples (default 1.0)",
    "history_seconds": "seconds of samples kept for new clients (default 900)",
    "log_config": "logging config file (default: logging.conf of the project)",
    "log_dir": "directory of the rotated log files (default ./logs)",
    "async_mode": "eventlet (default) or threading",
    "top_processes": "how many processes the top table lists (default 5)",
    "data_dir": "directory of the history database (default ./data)",
    "history_path": "history database file (default DATA_DIR/history.sqlite3)",
    "retention_raw": "seconds of 1 s samples kept on disk (default 3600)",
    "retention_10s": "seconds of 10 s points kept on disk (default 86400)",
    "retention_1m": "seconds of 1 min points kept on disk (default 604800)",
    "history_max_mb": "cap on the history database size in MiB (default 256)",
    "password_hash": "require this password (a hash from `hash-password`)",
    "allow_anonymous": "true to serve a non-loopback address without a password",
    "allowed_hosts": "Host names served, comma-separated (default localhost,127.0.0.1,::1)",
    "cors_origins": "other origins allowed to connect, comma-separated (default none)",
    "max_connections": "cap on Socket.IO connections in all (default 10000)",
    "max_connections_per_ip": "cap on Socket.IO connections per address (default 50)",
    "proxy_hops": "trusted reverse proxies in front (1 behind Nginx) for X-Forwarded-*",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m server",
        description="Live host dashboard: samples this machine and pushes it "
        "to every browser over Socket.IO.",
        epilog="Every setting can also come from a TOML file (--config or "
        "DASHBOARD_CONFIG) or from DASHBOARD_<NAME> in the environment; "
        "flags win over the environment, which wins over the file.",
    )
    parser.add_argument("--config", metavar="FILE", help="TOML settings file")
    for name in PARSERS:
        flag = "--" + name.replace("_", "-")
        parser.add_argument(flag, dest=name, metavar=name.upper(), help=HELP[name])
    return parser


def _read_toml(path: str) -> dict[str, Any]:
    try:
        with open(path, "rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(f"setting 'config': file {path!r} does not exist") from None
    except OSError as exc:
        raise ConfigError(f"setting 'config': cannot read {path!r}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"setting 'config': {path!r} is not valid TOML: {exc}") from None


def load(
    argv: Sequence[str] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Config:
    """Build the Config from every source; raise ConfigError on a bad value."""
    environ = os.environ if environ is None else environ
    flags = vars(build_parser().parse_args(argv))

    raw: dict[str, tuple[Any, str]] = {}
    values: dict[str, Any] = {}
    config_path = flags.pop("config") or environ.get("DASHBOARD_CONFIG")
    if config_path:
        table = _read_toml(config_path)
        if "alerts" in table:
            try:
                values["alerts"] = parse_settings(table.pop("alerts"))
            except AlertSettingsError as exc:
                raise ConfigError(f"{exc} (in {config_path!r})") from None
        if "users" in table:
            values["users"] = _users(table.pop("users"), config_path)
        for name, value in table.items():
            if name not in PARSERS:
                raise ConfigError(
                    f"setting {name!r} in {config_path!r} is unknown; known settings: "
                    + ", ".join([*PARSERS, "alerts", "users"])
                )
            raw[name] = (value, config_path)
    for name in PARSERS:
        env_name = "DASHBOARD_" + name.upper()
        if env_name in environ:
            raw[name] = (environ[env_name], env_name)
        if flags.get(name) is not None:
            raw[name] = (flags[name], "--" + name.replace("_", "-"))

    for name, (value, source) in raw.items():
        try:
            values[name] = PARSERS[name](value)
        except ValueError as exc:
            shown = "(hidden)" if name == "password_hash" else repr(value)
            raise ConfigError(
                f"setting {name!r} (from {source}) must be {exc}, got {shown}"
            ) from None
    config = Config(**values)
    _check_exposure(config)
    return config


def _users(table: Any, path: str) -> dict[str, str]:
    if not isinstance(table, dict) or not table:
        raise ConfigError(f"setting 'users' in {path!r} must be a table of name = \"hash\"")
    for name, value in table.items():
        try:
            _password_hash(value)
        except ValueError as exc:
            raise ConfigError(f"setting 'users.{name}' in {path!r} must be {exc}") from None
        if not value:
            raise ConfigError(f"setting 'users.{name}' in {path!r} is empty")
    return dict(table)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _check_exposure(config: Config) -> None:
    """Safe by default: a LAN-facing address needs a password, or a deliberate choice."""
    if is_loopback(config.host) or config.allow_anonymous:
        return
    if not (config.password_hash or config.users):
        raise ConfigError(
            f"setting 'host': {config.host} is not a loopback address and no password is set; "
            "set password_hash (python -m server hash-password) or users, "
            "or allow_anonymous = true to serve it open on purpose"
        )
