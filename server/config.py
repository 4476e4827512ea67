"""Settings: defaults < TOML file < DASHBOARD_* environment < command-line flags."""

from __future__ import annotations

import argparse
import dataclasses
import ipaddress
import os
import tomllib
import urllib.parse
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from server.alerts.routes import NotifySettings, NotifySettingsError, parse_notify
from server.alerts.settings import AlertSettings, AlertSettingsError, parse_settings
from server.alerts.windows import (
    Window,
    WindowSettingsError,
    parse_hours,
    parse_maintenance,
    parse_weekdays,
    server_zone,
)
from server.declare import Parser, boolean, choice, declared, integer, number, setting
from server.firehose.settings import (
    LogSource,
    container_engine,
    parse_log_sources,
    parse_patterns,
)

PACKAGE_DIR = Path(__file__).resolve().parent
ASYNC_MODES = ("eventlet", "threading")


class ConfigError(Exception):
    """A setting is wrong; the message names it and says what it accepts."""


def _number(low: float, high: float) -> Parser:
    return number(low, high, "a number of seconds")


def _engine_socket(raw: Any) -> str:
    text = _text(raw)
    if text not in ("auto", "off") and not text.startswith("/"):
        raise ValueError("auto, off, or the absolute path of a Docker or Podman socket")
    return text


def _host_root(raw: Any) -> str:
    text = _text(raw)
    if not text.startswith("/") or not os.path.isdir(text):
        raise ValueError("the absolute path of a directory: where the host's / is mounted")
    return "/" + os.path.normpath(text).lstrip("/")  # normpath keeps a leading "//"


def _text(raw: Any) -> str:
    if not isinstance(raw, str) or not raw.strip():
        raise ValueError("a non-empty string")
    return raw.strip()


def _names(raw: Any) -> tuple[str, ...]:
    """A TOML list of strings, or a comma-separated string (env, flags); never "*"."""
    items = raw.split(",") if isinstance(raw, str) else raw
    if not isinstance(items, list | tuple) or not all(isinstance(i, str) for i in items):
        raise ValueError("a list of names (in the environment: comma-separated)")
    names = tuple(i.strip() for i in items if i.strip())
    if "*" in names:
        # "*" would fail open: every Host (DNS rebinding) or every origin, with cookies.
        raise ValueError("a list of names, each spelled out: '*' is not accepted")
    return names


def _some_names(raw: Any) -> tuple[str, ...]:
    names = _names(raw)
    if not names:
        raise ValueError("a list of at least one name")
    return names


def _networks(raw: Any) -> tuple[str, ...]:
    """Addresses or networks (CIDR), checked now so a typo is not a silent no-match."""
    names = _names(raw)
    for name in names:
        try:
            ipaddress.ip_network(name, strict=False)
        except ValueError:
            raise ValueError(
                f"addresses or networks, like 127.0.0.1 or 10.0.0.0/8: {name!r} is not"
            ) from None
    return names


def _url(raw: Any) -> str:
    text = _text(raw)
    parsed = urllib.parse.urlsplit(text)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise ValueError("an http:// or https:// URL, like https://hub.example.net")
    return text.rstrip("/")


def _queue_url(raw: Any) -> str:
    text = _text(raw)
    parsed = urllib.parse.urlsplit(text)
    if parsed.scheme not in ("redis", "rediss") or not parsed.hostname:
        raise ValueError("a Redis URL, like redis://:PASSWORD@127.0.0.1:6379/0")
    if not parsed.password:
        # Every process of the machine can reach a loopback Redis: the queue
        # carries host metrics and decides which process is the core.
        raise ValueError("a Redis URL with a password (redis://:PASSWORD@host:port/db)")
    return text


def _token(raw: Any) -> str:
    text = _text(raw)
    if not 20 <= len(text) <= 200:
        raise ValueError("a token from `python -m server add-agent NAME` on the hub")
    return text


def _password_hash(raw: Any) -> str:
    from server.access.passwords import hash_problem

    if not isinstance(raw, str):
        raise ValueError("a hash from `python -m server hash-password`")
    problem = hash_problem(raw)
    if problem:
        raise ValueError(f"a hash from `python -m server hash-password` ({problem})")
    return raw


def _quiet_hours(raw: Any) -> str:
    start, end = parse_hours(raw)
    return f"{start // 60:02d}:{start % 60:02d}-{end // 60:02d}:{end % 60:02d}"


@dataclasses.dataclass(frozen=True)
class Config:
    host: str = setting("127.0.0.1", _text, "address to listen on")
    port: int = setting(5000, integer(1, 65535), "TCP port to listen on")
    interval: float = setting(1.0, _number(0.1, 3600), "seconds between samples")
    history_seconds: int = setting(
        900, integer(10, 86400), "seconds of samples kept in memory for new clients"
    )
    log_config: str = setting(
        str(PACKAGE_DIR / "logging.conf"), _text, "logging config file (the package's own)"
    )
    log_dir: str = setting("logs", _text, "directory of the rotated log files")
    async_mode: str = setting("eventlet", choice(*ASYNC_MODES), "eventlet or threading")
    top_processes: int = setting(5, integer(0, 100), "how many processes the top table lists")
    containers: str = setting(
        "auto",
        _engine_socket,
        "auto (Docker's or Podman's usual socket, if there), off, or an engine's socket path",
    )
    host_root: str = setting(
        "/",
        _host_root,
        "where the host's / is mounted when this runs in a container (/host): its"
        " filesystems and OS name are read there (docs/container.md)",
    )
    services: str = setting(
        "auto",
        choice("auto", "off"),
        "systemd's units through systemctl: auto (where systemd runs) or off",
    )
    smart: str = setting(
        "auto",
        choice("auto", "off"),
        "disk health through smartctl (smartmontools): auto (where it is installed and the"
        " process is root) or off",
    )
    smart_every: float = setting(
        300.0, _number(60, 86400), "seconds between two readings of the drives' S.M.A.R.T."
    )
    data_dir: str = setting("data", _text, "directory of the history database")
    history_path: str = setting(
        "", _text, "history database file (empty: DATA_DIR/history.sqlite3)"
    )
    retention_raw: int = setting(3600, integer(60, 7 * 86400), "seconds of 1 s samples on disk")
    retention_10s: int = setting(86400, integer(600, 31 * 86400), "seconds of 10 s points on disk")
    retention_1m: int = setting(
        7 * 86400, integer(3600, 366 * 86400), "seconds of 1 min points on disk"
    )
    history_max_mb: int = setting(
        256, integer(1, 1_000_000), "cap on the history database size in MiB"
    )
    history_sync: str = setting(
        "full",
        choice("full", "normal"),
        "durability of each commit: full (fsync: survives a power cut) or normal "
        "(survives the process's crash only)",
    )
    clock_offset_warn: float = setting(
        2.0, _number(0.1, 86400), "seconds an agent's clock may be off before its tile says so"
    )
    password_hash: str = setting(
        "", _password_hash, "require this password (a hash from `hash-password`)"
    )
    allow_anonymous: bool = setting(
        False, boolean, "true to serve a non-loopback address without a password"
    )
    allowed_hosts: tuple[str, ...] = setting(
        ("localhost", "127.0.0.1", "::1"), _some_names, "Host names served, comma-separated"
    )
    cors_origins: tuple[str, ...] = setting(
        (), _names, "other origins allowed to connect, comma-separated"
    )
    max_connections: int = setting(
        10_000, integer(1, 1_000_000), "cap on Socket.IO connections in all"
    )
    max_connections_per_ip: int = setting(
        50, integer(1, 1_000_000), "cap on Socket.IO connections per address"
    )
    proxy_hops: int = setting(
        0, integer(0, 5), "trusted reverse proxies in front (1 behind Nginx) for X-Forwarded-*"
    )
    trusted_proxies: tuple[str, ...] = setting(
        ("127.0.0.1", "::1"),
        _networks,
        "peers whose X-Forwarded-* is believed (addresses or networks), comma-separated",
    )
    session_idle_seconds: int = setting(
        8 * 3600, integer(60, 366 * 86400), "a login ends after this long unused"
    )
    session_lifetime_seconds: int = setting(
        7 * 86400, integer(60, 366 * 86400), "a login ends this long after it began"
    )
    hub_url: str = setting(
        "", _url, "as an agent: the hub's URL (normally its Nginx), https:// verified"
    )
    hub_token: str = setting("", _token, "as an agent: its token (python -m server add-agent)")
    hub_token_file: str = setting(
        "", _text, "as an agent: a file holding its token, readable by its owner only (0600)"
    )
    hub_ca_file: str = setting("", _text, "as an agent: a CA file to verify an https hub with")
    agent_wheel_dir: str = setting(
        "",
        _text,
        "a folder holding this version's wheel, served to new agents under /agent/"
        " (make agent-wheel; empty: DATA_DIR/agent)",
    )
    agent_buffer_seconds: int = setting(
        900, integer(10, 86400), "as an agent: seconds of samples kept while the hub is away"
    )
    role: str = setting(
        "all",
        choice("all", "core", "web"),
        "all (one process), core (sampler, agents, store) or web (pages) on message_queue",
    )
    message_queue: str = setting(
        "", _queue_url, "Redis URL shared by the core and the web processes (role core/web)"
    )
    fleet_view: str = setting(
        "auto",
        choice("auto", "fleet", "host"),
        "/ shows: auto (the fleet once >1 host), fleet, host",
    )
    private_files: bool = setting(
        True, boolean, "data and log files 0600, their directories 0700 (false: the umask's)"
    )
    firehose: bool = setting(
        True, boolean, "live log tails on the pages (false: the feature is off everywhere)"
    )
    log_sources: tuple[LogSource, ...] = setting(
        (),
        parse_log_sources,
        "named logs for the firehose: name = path, glob, journald[:unit,...],"
        " docker:NAME or compose:PROJECT; the app log is one"
        " (in the environment: name=spec;name=spec)",
    )
    firehose_lines_per_second: int = setting(
        200, integer(1, 100_000), "lines a second per log source; above, dropped with a marker"
    )
    firehose_redact: tuple[str, ...] = setting(
        (),
        parse_patterns,
        "regexes hidden in log lines before they leave the host, beside the default"
        " (values of password/token/secret/key keys)",
    )
    public_url: str = setting(
        "",
        _url,
        "this dashboard's address as people open it (https://dash.example.net): a"
        " notification links to the host's page at the alert's moment (empty: no link)",
    )
    notify_group_wait: float = setting(
        30.0,
        _number(0, 3600),
        "seconds a host's new alerts wait to go to a [notify.NAME] channel as one message"
        " (0: each at once)",
    )
    notify_quiet_hours: str = setting(
        "",
        _quiet_hours,
        "hours when only criticals go to the [notify.NAME] channels, in the server's time"
        ' zone, like "22:00-07:00" (empty: none)',
    )
    notify_quiet_weekdays: tuple[str, ...] = setting(
        (),
        parse_weekdays,
        "the days notify_quiet_hours begin on (mon ... sun), comma-separated (none: every day)",
    )
    # Only from the TOML file's [users] table: name = "password hash".
    users: Mapping[str, str] = dataclasses.field(default_factory=dict)
    # Only from the TOML file's [alerts] table: rules are too rich for flags.
    alerts: AlertSettings = dataclasses.field(default_factory=lambda: parse_settings(None))
    # Only from the file: [notify.NAME] channels, [[notify_route]] and notify_default
    # (server/alerts/routes.py).
    notify: NotifySettings = dataclasses.field(default_factory=NotifySettings)
    # Only from the file: [[maintenance]] windows (server/alerts/windows.py).
    maintenance: tuple[Window, ...] = ()

    @property
    def agent_wheels(self) -> str:
        return self.agent_wheel_dir or os.path.join(self.data_dir, "agent")

    @property
    def history_file(self) -> str:
        return self.history_path or os.path.join(self.data_dir, "history.sqlite3")


# Settings that come from every source (the tables come from the file only).
SETTINGS = list(declared(Config).values())
NOTIFY_TABLES = ("notify", "notify_route", "notify_default")
PARSERS: dict[str, Parser] = {f.name: f.metadata["parse"] for f in SETTINGS}


def shown_default(value: Any) -> str:
    """A default as a user would type it."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, tuple):
        return ",".join(value) or "(none)"
    if value == "":
        return "(empty)"
    if isinstance(value, str) and value.startswith(str(PACKAGE_DIR)):
        return "(in the package)"
    return str(value)


def settings_table() -> str:
    """The settings table of docs/settings.md, made from the declarations."""
    lines = ["| setting | default | what it is |", "| --- | --- | --- |"]
    for f in SETTINGS:
        lines.append(f"| `{f.name}` | `{shown_default(f.default)}` | {f.metadata['help']} |")
    return "\n".join(lines) + "\n"


def _help(name: str) -> str:
    field = next(f for f in SETTINGS if f.name == name)
    return f"{field.metadata['help']} (default {shown_default(field.default)})"


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
        parser.add_argument(flag, dest=name, metavar=name.upper(), help=_help(name))
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
        notify = [table.pop(key, None) for key in NOTIFY_TABLES]
        try:
            values["notify"] = parse_notify(*notify)
        except NotifySettingsError as exc:
            raise ConfigError(f"{exc} (in {config_path!r})") from None
        if "maintenance" in table:
            try:
                values["maintenance"] = parse_maintenance(table.pop("maintenance"),
                                                          server_zone()[0])  # fmt: skip
            except WindowSettingsError as exc:
                raise ConfigError(f"{exc} (in {config_path!r})") from None
        for name, value in table.items():
            if name not in PARSERS:
                raise ConfigError(
                    f"setting {name!r} in {config_path!r} is unknown; known settings: "
                    + ", ".join([*PARSERS, "alerts", "users", *NOTIFY_TABLES, "maintenance"])
                )
            raw[name] = (value, config_path)
    known_env = {"DASHBOARD_CONFIG", *("DASHBOARD_" + name.upper() for name in PARSERS)}
    for env_name in sorted(environ):
        # A misspelt variable must not be silently ignored: it may be the password.
        if env_name.startswith("DASHBOARD_") and env_name not in known_env:
            raise ConfigError(
                f"environment variable {env_name!r} is not a setting; known: "
                + ", ".join(sorted(known_env))
            )
    for name in PARSERS:
        env_name = "DASHBOARD_" + name.upper()
        if env_name in environ:
            raw[name] = (environ[env_name], env_name)
        if flags.get(name) is not None:
            raw[name] = (flags[name], "--" + name.replace("_", "-"))

    for name, (value, source) in raw.items():
        if isinstance(value, str) and not value.strip() and name != "cors_origins":
            # Empty is never "off": DASHBOARD_PASSWORD_HASH= must not turn the login off.
            raise ConfigError(
                f"setting {name!r} (from {source}) is empty; leave it out to get its default"
            )
        try:
            values[name] = PARSERS[name](value)
        except ValueError as exc:
            secret = name in ("password_hash", "hub_token", "message_queue")
            shown = "(hidden)" if secret else repr(value)
            raise ConfigError(
                f"setting {name!r} (from {source}) must be {exc}, got {shown}"
            ) from None
    config = Config(**values)
    if config.hub_token_file:
        if config.hub_token:
            raise ConfigError("setting 'hub_token_file': give an agent its token or the token's "
                              "file, not both")  # fmt: skip
        config = dataclasses.replace(config, hub_token=read_token_file(config.hub_token_file))
    if config.notify_quiet_weekdays and not config.notify_quiet_hours:
        raise ConfigError(
            "setting 'notify_quiet_weekdays' needs notify_quiet_hours: the hours on those days"
        )
    _check_exposure(config)
    try:  # a container's output needs an engine to read it from
        container_engine(config.log_sources, config.containers)
    except ValueError as exc:
        raise ConfigError(f"setting 'log_sources': {exc}") from None
    if (config.role == "all") != (not config.message_queue):
        raise ConfigError(
            "setting 'role'/'message_queue': role core and role web need a message_queue, "
            "and a message_queue needs role core or web"
        )
    return config


def read_token_file(path: str) -> str:
    """An agent's token from its file: kept from every other user (a unit's
    LoadCredential= copy is 0400 and the service's), as the token is the host."""
    try:
        mode = os.stat(path).st_mode
        text = Path(path).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        why = exc.strerror if isinstance(exc, OSError) else "not text"
        raise ConfigError(f"setting 'hub_token_file': cannot read {path!r}: {why}") from None
    if mode & 0o077:
        raise ConfigError(f"setting 'hub_token_file': {path!r} can be read by other users "
                          f"(mode {mode & 0o777:04o}); make it 0600")  # fmt: skip
    try:
        return _token(text)
    except ValueError as exc:
        raise ConfigError(f"setting 'hub_token_file': {path!r} must hold {exc}") from None


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
    """Safe by default: a dashboard other machines reach needs a password, or a choice.

    Other machines reach it through a non-loopback bind, or through a proxy
    in front (proxy_hops > 0), whose peer address is loopback.
    """
    if config.allow_anonymous or config.password_hash or config.users:
        return
    if not is_loopback(config.host):
        raise ConfigError(
            f"setting 'host': {config.host} is not a loopback address and no password is set; "
            "set password_hash (python -m server hash-password) or users, "
            "or allow_anonymous = true to serve it open on purpose"
        )
    if config.proxy_hops:
        raise ConfigError(
            "setting 'proxy_hops': behind a proxy the dashboard is served to other machines "
            "and no password is set; set password_hash or users, or allow_anonymous = true"
        )
