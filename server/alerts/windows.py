"""Maintenance windows and quiet hours: given an alert and the wall-clock time, why its
notification is held back from the channels, or None.

Pure logic, on the server's time zone (server_zone: TZ, else /etc/localtime). One
Holds is one of the dispatcher's `holds` (alerts/dispatch.py): a held firing is
recorded and not sent, and its repeats and escalations wait while the hold lasts.

- `[[maintenance]]`: the alerts of its hosts (ids or globs) during a one-off window
  (`from`, `to`) or a recurring one: a cron expression (croniter) with a duration in
  `minutes`, or `hours` on `weekdays` (the wall clock's);
- `notify_quiet_hours` (and `notify_quiet_weekdays`): every alert but a critical.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
import time
from collections.abc import Callable, Mapping
from datetime import date, datetime, timedelta, tzinfo
from fnmatch import fnmatchcase
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

log = logging.getLogger("dashboard.notify")

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")  # date.weekday()'s order
HOURS = re.compile(r"\A\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*\Z")
HOURS_WORDS = 'hours as "HH:MM-HH:MM" (like "22:00-07:00"; 24:00 as an end)'
FULL_NAMES = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
WEEKDAY_WORDS = "a list of " + ", ".join(WEEKDAYS)
MAX_WINDOWS = 100  # each is asked in the tick for a new firing: a cron one, ~0.4 ms
KEYS = ("hosts", "reason", "from", "to", "cron", "minutes", "weekdays", "hours")
MAX_MINUTES = 366 * 24 * 60


class WindowSettingsError(ValueError):
    """A bad [[maintenance]] entry; the message names the setting."""


# ---------------------------------------------------------------- the time zone


def server_zone(environ: Mapping[str, str] | None = None) -> tuple[tzinfo, str]:
    """The server's time zone and its name: TZ where zoneinfo knows it, else the one
    /etc/localtime links to; at worst the local offset of now (a POSIX TZ string)."""
    environ = os.environ if environ is None else environ
    name = environ.get("TZ", "").lstrip(":")
    if not name:
        target = os.path.realpath("/etc/localtime")
        name = target.split("/zoneinfo/", 1)[1] if "/zoneinfo/" in target else ""
    if name:
        try:
            return ZoneInfo(name), name
        except (ZoneInfoNotFoundError, ValueError, OSError):
            pass
    local = datetime.now().astimezone().tzinfo
    assert local is not None
    return local, str(local)


# ---------------------------------------------------------------- parsing


def parse_hours(raw: Any) -> tuple[int, int]:
    """Hours like "22:00-07:00" as minutes of the day (start, end); an end before its start is
    the next day's. Raises ValueError saying what it accepts."""
    match = HOURS.match(raw) if isinstance(raw, str) else None
    if match is None:
        raise ValueError(HOURS_WORDS)
    h1, m1, h2, m2 = (int(g) for g in match.groups())
    start, end = h1 * 60 + m1, h2 * 60 + m2
    if h1 > 23 or m1 > 59 or m2 > 59 or end > 1440 or start == end:
        raise ValueError(HOURS_WORDS + ", two different times")
    return start, end


def parse_weekdays(raw: Any) -> tuple[str, ...]:
    """A list of weekday names (mon ... sun), or a comma-separated string."""
    items = raw.split(",") if isinstance(raw, str) else raw
    if not isinstance(items, list | tuple) or not all(isinstance(i, str) for i in items):
        raise ValueError(WEEKDAY_WORDS)
    names = []
    for item in (i.strip().lower() for i in items if i.strip()):
        name = item[:3]
        if name not in WEEKDAYS or item not in (name, FULL_NAMES[WEEKDAYS.index(name)]):
            raise ValueError(f"{WEEKDAY_WORDS}: {item!r} is not one")
        names.append(name)
    if not names:
        raise ValueError(WEEKDAY_WORDS + ", at least one")
    return tuple(names)


def day_numbers(names: tuple[str, ...]) -> frozenset[int]:
    return frozenset(WEEKDAYS.index(n) for n in names)


def parse_maintenance(raw: Any, zone: tzinfo) -> tuple[Window, ...]:
    """The file's `[[maintenance]]` array of tables (None where it has none); a date
    and time without an offset is the server's (`zone`). Raises WindowSettingsError
    naming the bad setting."""
    if raw is None:
        return ()
    if not isinstance(raw, list) or not all(isinstance(t, Mapping) for t in raw):
        raise WindowSettingsError("setting 'maintenance' must be tables: [[maintenance]]")
    if len(raw) > MAX_WINDOWS:
        raise WindowSettingsError(f"setting 'maintenance' has more than {MAX_WINDOWS} windows")
    return tuple(_window(f"maintenance[{i}]", table, zone) for i, table in enumerate(raw, 1))


def _window(prefix: str, table: Mapping[str, Any], zone: tzinfo) -> Window:
    def bad(key: str, accepts: str) -> WindowSettingsError:
        return WindowSettingsError(f"setting '{prefix}.{key}' must be {accepts}")

    for key in table:
        if key not in KEYS:
            raise WindowSettingsError(
                f"setting '{prefix}.{key}' is unknown; known: " + ", ".join(KEYS)
            )
    hosts = table.get("hosts")
    if hosts is None:
        raise WindowSettingsError(f"setting '{prefix}.hosts' is missing (\"*\" for every host)")
    if not isinstance(hosts, list) or not hosts or not all(isinstance(h, str) and h
                                                           for h in hosts):  # fmt: skip
        raise bad("hosts", "a list of host ids or globs (db-1, web-*)")
    reason = table.get("reason", "")
    if not isinstance(reason, str) or len(reason) > 200:
        raise bad("reason", "a string of 200 characters at most")
    window = Window(tuple(hosts), reason.strip())
    kinds = [k for k in (("from", "to"), ("cron", "minutes"), ("hours", "weekdays"))
             if any(key in table for key in k)]  # fmt: skip
    if len(kinds) != 1:
        raise WindowSettingsError(
            f"setting '{prefix}' needs one of: from and to (a one-off window), cron and "
            "minutes, or hours (and weekdays)"
        )
    if "from" in table or "to" in table:
        for key in ("from", "to"):
            if key not in table:
                raise WindowSettingsError(f"setting '{prefix}.{key}' is missing: a window "
                                          "needs a start and an end")  # fmt: skip
        start = _moment(table["from"], zone, bad("from", _MOMENT_WORDS))
        end = _moment(table["to"], zone, bad("to", _MOMENT_WORDS))
        if end <= start:
            raise WindowSettingsError(
                f"setting '{prefix}.to' ({end.isoformat()}) must come after "
                f"'{prefix}.from' ({start.isoformat()})"
            )
        return dataclasses.replace(window, start=start, end=end)
    if "cron" in table or "minutes" in table:
        if "minutes" not in table:
            raise WindowSettingsError(f"setting '{prefix}.minutes' is missing: a cron window "
                                      "needs its length, in minutes")  # fmt: skip
        if "cron" not in table:
            raise WindowSettingsError(f"setting '{prefix}.cron' is missing")
        cron = table["cron"]
        if not isinstance(cron, str) or not _cron_parses(cron):
            raise WindowSettingsError(
                f"setting '{prefix}.cron' must be a cron expression (minute hour day month "
                f'weekday, like "0 1 * * *"), got {cron!r}'
            )
        minutes = table["minutes"]
        if isinstance(minutes, bool) or not isinstance(minutes, int | float) \
                or not 0 < minutes <= MAX_MINUTES:  # fmt: skip
            raise bad("minutes", f"a number of minutes above 0, up to {MAX_MINUTES}")
        return dataclasses.replace(window, cron=cron.strip(), minutes=float(minutes))
    if "hours" not in table:
        raise WindowSettingsError(f"setting '{prefix}.hours' is missing: weekdays need hours")
    try:
        start_m, end_m = parse_hours(table["hours"])
    except ValueError as exc:
        raise bad("hours", str(exc)) from None
    days: frozenset[int] = frozenset()
    if "weekdays" in table:
        try:
            days = day_numbers(parse_weekdays(table["weekdays"]))
        except ValueError as exc:
            raise bad("weekdays", str(exc)) from None
    return dataclasses.replace(window, hours=Hours(start_m, end_m, days))


_MOMENT_WORDS = "a date and time (TOML's 2026-12-24T01:00:00, or RFC 3339 with an offset)"


def _moment(raw: Any, zone: tzinfo, error: WindowSettingsError) -> datetime:
    if isinstance(raw, str):
        try:
            raw = datetime.fromisoformat(raw.strip())
        except ValueError:
            raise error from None
    if not isinstance(raw, datetime):  # a date alone, a time alone, a number
        raise error
    return raw if raw.tzinfo is not None else raw.replace(tzinfo=zone)


def _cron_parses(expression: str) -> bool:
    from croniter import croniter  # only where a cron window is declared

    if not croniter.is_valid(expression.strip()):
        return False
    try:  # valid, yet never (30 February)
        croniter(expression.strip(), datetime.now()).get_prev(datetime)
    except ValueError:
        return False
    return True


# ---------------------------------------------------------------- the windows


@dataclasses.dataclass(frozen=True)
class Hours:
    """From `start` to `end` (minutes of the day, on the wall clock) on `weekdays`
    (0 is Monday; none: every day). An end at or before the start is the next day's:
    the window belongs to the day it starts."""

    start: int
    end: int
    weekdays: frozenset[int] = frozenset()

    def end_of(self, now: datetime) -> datetime | None:
        """The end of the window that covers `now` (aware, in its zone), or None."""
        second = now.hour * 3600 + now.minute * 60 + now.second
        today = now.date()
        if self.start < self.end:
            day = today if self.start * 60 <= second < self.end * 60 else None
        elif second >= self.start * 60:
            day = today
        elif second < self.end * 60:
            day = today - timedelta(days=1)
        else:
            day = None
        if day is None or (self.weekdays and day.weekday() not in self.weekdays):
            return None
        ends = day + timedelta(days=1) if self.end <= self.start else day
        return _wall(ends, self.end, now.tzinfo)


def _wall(day: date, minute: int, zone: tzinfo | None) -> datetime:
    # Wall-clock arithmetic (an aware datetime plus a timedelta keeps its wall time):
    # "until 03:00" stays 03:00 on the day the clocks change.
    return datetime(day.year, day.month, day.day, tzinfo=zone) + timedelta(minutes=minute)


@dataclasses.dataclass(frozen=True)
class Window:
    """One [[maintenance]] entry: its hosts, its reason and when it is."""

    hosts: tuple[str, ...]
    reason: str = ""
    start: datetime | None = None  # a one-off window: [start, end)
    end: datetime | None = None
    cron: str = ""  # recurring: from each time the expression gives, `minutes` long
    minutes: float = 0.0
    hours: Hours | None = None  # recurring: the wall clock's hours on some weekdays

    def matches(self, host: str) -> bool:
        return any(fnmatchcase(host, pattern) for pattern in self.hosts)

    def end_of(self, now: datetime) -> datetime | None:
        """The end of this window's occurrence that covers `now` (aware), or None."""
        if self.start is not None and self.end is not None:
            return self.end if self.start <= now < self.end else None
        if self.cron:
            from croniter import croniter

            # The latest start at or before now; `minutes` is elapsed time, so across a
            # change of the clocks it ends at another wall-clock hour (docs/alerts.md).
            try:
                began = croniter(self.cron, now + timedelta(microseconds=1)).get_prev(datetime)
            except ValueError:  # checked at start; a hold must never break the tick
                return None
            ends = began.astimezone(_UTC) + timedelta(minutes=self.minutes)
            return ends if now.astimezone(_UTC) < ends else None
        if self.hours is not None:
            return self.hours.end_of(now)
        return None


_UTC = ZoneInfo("UTC")


class Holds:
    """One of the dispatcher's holds: the maintenance windows of an alert's host, and
    quiet hours (all but critical)."""

    def __init__(
        self,
        windows: tuple[Window, ...],
        quiet: Hours | None,
        zone: tzinfo,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.windows = windows
        self.quiet = quiet
        self.zone = zone
        self._clock = clock

    def __call__(self, alert: Mapping[str, Any]) -> str | None:
        now = datetime.fromtimestamp(self._clock(), self.zone)
        host = str(alert.get("host"))
        for window in self.windows:
            if window.matches(host):
                ends = window.end_of(now)
                if ends is not None:
                    what = f"maintenance: {window.reason}" if window.reason else "maintenance"
                    return f"{what} until {_until(ends, now, self.zone)}"
        if self.quiet is not None and alert.get("level") != "critical":
            ends = self.quiet.end_of(now)
            if ends is not None:
                return f"quiet hours until {_until(ends, now, self.zone)}"
        return None


def _until(ends: datetime, now: datetime, zone: tzinfo) -> str:
    """03:00 CET within a day, else with its date."""
    local = ends.astimezone(zone)
    shape = "%H:%M %Z" if ends - now < timedelta(days=1) else "%Y-%m-%d %H:%M %Z"
    return local.strftime(shape)


def holds_of(
    windows: tuple[Window, ...],
    quiet_hours: str,
    quiet_weekdays: tuple[str, ...],
    environ: Mapping[str, str] | None = None,
) -> Holds | None:
    """The hold the settings declare, or None; the zone they are read in is logged."""
    if not windows and not quiet_hours:
        return None
    zone, name = server_zone(environ)
    quiet = None
    if quiet_hours:
        quiet = Hours(*parse_hours(quiet_hours), day_numbers(quiet_weekdays))
    now = datetime.now(zone)
    log.info("maintenance windows (%d) and quiet hours (%s) are in the server's time zone, "
             "%s (%s now; set TZ to change it)", len(windows), quiet_hours or "none", name,
             now.strftime("%Z, UTC%z"))  # fmt: skip
    return Holds(windows, quiet, zone)
