"""Logging: load logging.conf once, and keep client noise from flooding the logs."""

from __future__ import annotations

import configparser
import logging
import os
import time
from collections.abc import Callable, Hashable
from typing import Any, NamedTuple

from server.config import Config, ConfigError

# Loggers that report per-client trouble (bad packets, dropped sockets): a
# misbehaving client must not write a traceback per packet.
NOISY_LOGGERS = (
    "engineio.server",
    "socketio.server",
    "eventlet.wsgi.server",
    "werkzeug",
    "server.app",  # Flask's app.logger: unexpected errors, one traceback a window
    "dashboard.metrics",  # a host /metrics cannot read: once a scrape otherwise
    "dashboard.webhooks",  # a receiver that fails: once an alert otherwise
)


def describe_error(exc: BaseException) -> str:
    """An exception as a log line says it: its type, and its text if it has one."""
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class Throttle:
    """At most `burst` events per key each `period` seconds; the rest are counted.

    The one way this project keeps a repeating line from flooding the logs:
    every rate-limited log line goes through one (RateLimitFilter, LogThrottle).
    """

    def __init__(
        self,
        period: float = 60.0,
        burst: int = 1,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = 10_000,
    ) -> None:
        self.period = period
        self.burst = burst
        self._clock = clock
        self._max_keys = max_keys  # keys from clients: bounded, forgotten all at once
        self._windows: dict[Hashable, list[float]] = {}  # key -> [start, passed, held]

    def allow(self, key: Hashable) -> Turn | None:
        """None: hold this one back (counted). Otherwise its turn: how many were held
        back in the window before, and whether it is its window's first."""
        now = self._clock()
        window = self._windows.get(key)
        held_before = 0
        if window is None or now - window[0] >= self.period:
            held_before = int(window[2]) if window else 0
            if window is None and len(self._windows) >= self._max_keys:
                self._windows.clear()
            window = self._windows[key] = [now, 0, 0]
        if window[1] >= self.burst:
            window[2] += 1
            return None
        window[1] += 1
        return Turn(held_before, first=window[1] == 1)


class Turn(NamedTuple):
    held: int  # events of this key held back in its window before this one
    first: bool  # the first of its window


class LogThrottle:
    """Log lines of `logger`, each key at most once a `period`; the next line that
    passes says how many were not shown."""

    def __init__(self, logger: logging.Logger, period: float = 60.0, **throttle: Any) -> None:
        self.logger = logger
        self.throttle = Throttle(period, **throttle)

    def log(
        self, key: Hashable, level: int, line: str, *args: object, exc_info: bool = False
    ) -> bool:
        """True if the line was written."""
        turn = self.throttle.allow(key)
        if turn is None:
            return False
        if turn.held:
            line = f"{line} ({turn.held} more like it not shown)"
        self.logger.log(level, line, *args, exc_info=exc_info)
        return True


class RateLimitFilter(logging.Filter):
    """Lets through `burst` records per logger and level each `period` seconds.

    The first record of a window says how many were dropped in the one before;
    tracebacks past the first of a window are dropped too.
    """

    def __init__(
        self, burst: int = 5, period: float = 60.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        super().__init__()
        self.throttle = Throttle(period, burst, clock)

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        turn = self.throttle.allow((record.name, record.levelno))
        if turn is None:
            return False
        if turn.held:
            record.msg = f"{record.msg} ({turn.held} similar messages dropped before this)"
        if not turn.first:
            record.exc_info = None
            record.exc_text = None
        return True


# C0 and C1 controls, and every other Unicode line break (str.splitlines() breaks
# at U+0085, U+2028, U+2029, ...): a reader that splits there would see a new line.
_LINE_BREAKS = [0x1C, 0x1D, 0x1E, 0x85, 0x2028, 0x2029]
_CONTROL = {c: f"\\x{c:02x}" for c in [*range(32), *range(127, 160)] if c != 9} | {
    c: f"\\u{c:04x}" for c in _LINE_BREAKS if c > 0xFF
}


class EscapeFilter(logging.Filter):
    """Control characters and line breaks in a message (a newline, an ANSI escape,
    U+0085, U+2028) as \\xNN or \\uNNNN.

    Client-supplied strings reach some lines raw (eventlet's access line has
    the request line as sent): none of them may forge a line or a colour.
    Tracebacks are left as they are: they come from the code, not a client.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        escaped = message.translate(_CONTROL)
        if escaped != message:
            record.msg, record.args = escaped, None
        return True


def _escape_every_handler() -> None:
    escape = EscapeFilter()
    loggers = [logging.getLogger(), *logging.Logger.manager.loggerDict.values()]
    for logger in loggers:
        for handler in getattr(logger, "handlers", []):
            if not any(isinstance(f, EscapeFilter) for f in handler.filters):
                handler.addFilter(escape)


def setup_logging(config: Config) -> None:
    """Load the logging config with log_dir substituted; keep existing loggers."""
    try:
        os.makedirs(config.log_dir, exist_ok=True)
    except OSError as exc:
        raise ConfigError(
            f"setting 'log_dir': cannot create {config.log_dir!r}: {exc.strerror}"
        ) from None
    if not os.access(config.log_dir, os.W_OK):
        raise ConfigError(f"setting 'log_dir': {config.log_dir!r} is not writable")
    if not os.path.isfile(config.log_config):
        raise ConfigError(f"setting 'log_config': file {config.log_config!r} does not exist")
    log_dir = os.path.abspath(config.log_dir).replace("%", "%%")
    import logging.config  # the server's and the agent's start only

    try:
        logging.config.fileConfig(
            config.log_config, defaults={"log_dir": log_dir}, disable_existing_loggers=False
        )
    except (configparser.Error, KeyError, ValueError, OSError) as exc:
        raise ConfigError(
            f"setting 'log_config': {config.log_config!r} is not usable: {exc}"
        ) from None
    limiter = RateLimitFilter()
    for name in NOISY_LOGGERS:
        logging.getLogger(name).addFilter(limiter)
    _escape_every_handler()
