"""Routes: which channels hear an alert. The settings file's `[notify.NAME]` channels,
`[[notify_route]]` routes and `notify_default`, checked at start, and the matching.

As Alertmanager's routes: in their order, the first route that matches an alert
decides its channels, unless it says `continue = true`, when the routes after it
are tried too. An alert no route matches goes to `notify_default` (every channel
when it is left out, as every webhook gets every alert). Resolutions are not
routed: each goes where its firing went (alerts/dispatch.py), so an incident
opened in a pager is closed there; a channel with `send_resolved = false` does
not get them, as Alertmanager's receivers.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sequence
from fnmatch import fnmatchcase
from typing import Any

from server.alerts.settings import (
    CONTAINER_RULES,
    DISK_HEALTH_RULES,
    TEMPERATURE_RULES,
    UNIT_RULES,
)
from server.declare import choice, integer, number, parse_table, setting


class NotifySettingsError(ValueError):
    """A bad channel or route setting; the message names it (never a URL)."""


SEVERITIES = ("warning", "critical")
SEVERITY_WORDS = "a list of warning, critical (a resolution goes where its firing went)"
# What an alert is about, for routes: its rule's family.
KINDS = ("host_down", "threshold", "anomaly", "container", "unit", "temperature", "disk_health")
# alerts/rules.py's HOST_DOWN: rules imports the collectors, which import the config.
HOST_DOWN = "host_down"
NAME = re.compile(r"\A[A-Za-z0-9_-]{1,64}\Z")  # a channel's name: a log word, a label
MESSAGES = ("auto", "short", "full")


def kind_of(rule: str) -> str:
    """The family of a rule name: `container_exited:web-1` is a container's."""
    base = rule.partition(":")[0]
    if base in (HOST_DOWN, "anomaly", *TEMPERATURE_RULES, *DISK_HEALTH_RULES):
        return base
    if base in CONTAINER_RULES:
        return "container"
    if base in UNIT_RULES:
        return "unit"
    return "threshold"  # cpu, memory, swap, load, disk


def names_alert(
    alert: Mapping[str, Any], hosts: Sequence[str], rules: Sequence[str], kinds: Sequence[str]
) -> bool:
    """Whether each list given names the alert (a list left empty names any): its host
    and rule by name or glob, a rule also by its family (`container_exited` names
    `container_exited:web-1`), its kind (kind_of). A route's and a silence's matching."""
    host, rule = str(alert.get("host")), str(alert.get("rule"))
    family = rule.partition(":")[0]
    return (
        (not hosts or any(fnmatchcase(host, p) for p in hosts))
        and (not rules or any(fnmatchcase(rule, p) or fnmatchcase(family, p) for p in rules))
        and (not kinds or kind_of(rule) in kinds)
    )


def _url(raw: Any) -> str:
    # Only its shape here: Apprise reads it at start (alerts/channels.py), after
    # eventlet has patched the sockets Apprise's libraries use.
    if not isinstance(raw, str) or "://" not in raw:
        raise ValueError("an Apprise URL (mailto://, ntfy://, json://, slack://, ...)")
    return raw.strip()


def _switch(raw: Any) -> bool:
    if not isinstance(raw, bool):
        raise ValueError("true or false")
    return raw


def _words(accepts: str, allowed: tuple[str, ...] | None = None) -> Any:
    def parse(raw: Any) -> tuple[str, ...]:
        if not isinstance(raw, list) or not all(isinstance(w, str) and w for w in raw):
            raise ValueError(accepts)
        if allowed is not None and not set(raw) <= set(allowed):
            raise ValueError(accepts)
        return tuple(raw)

    return parse


@dataclasses.dataclass(frozen=True)
class ChannelSettings:
    """[notify.NAME]: one channel, an Apprise URL."""

    url: str = setting("", _url, "its Apprise URL; it holds secrets and is never logged")
    timeout: float = setting(10.0, number(0.5, 120), "seconds one attempt may take")
    retries: int = setting(3, integer(0, 10), "tries after a failed attempt (1 s, 2 s, 4 s apart)")
    message: str = setting(
        "auto", choice(*MESSAGES), "short (chat), full (email), or auto: full for email services"
    )
    send_resolved: bool = setting(True, _switch, "also tell it when its alerts resolve")


@dataclasses.dataclass(frozen=True)
class Route:
    """[[notify_route]]: the alerts it matches (every key it gives), and where they go.

    A key left out matches everything; a list matches when any of its entries does.
    """

    channels: tuple[str, ...] = setting((), _words("a list of channel names"), "where to")
    severity: tuple[str, ...] = setting((), _words(SEVERITY_WORDS, SEVERITIES), "its levels")
    hosts: tuple[str, ...] = setting((), _words("a list of host ids or globs"), "db-1, web-*")
    rules: tuple[str, ...] = setting(
        (), _words("a list of rule names or globs"), "cpu, disk (every mount), disk:/var"
    )
    kinds: tuple[str, ...] = setting(
        (), _words("a list of " + ", ".join(KINDS), KINDS), "what an alert is about"
    )
    repeat_minutes: float = setting(
        0.0,
        number(0, 10080, "minutes (0.5 is 30 s)"),
        "send a firing alert again this often while it lasts; 0: never",
    )
    escalate_after_minutes: float = setting(
        0.0,
        number(0, 10080, "minutes (0.5 is 30 s)"),
        "a warning still firing (unacknowledged) this long also goes to escalate_to",
    )
    escalate_to: tuple[str, ...] = setting(
        (), _words("a list of channel names"), "the channels a warning escalates to"
    )
    go_on: bool = False  # `continue = true`: the routes after it are tried too

    def matches(self, alert: Mapping[str, Any]) -> bool:
        return (not self.severity or alert.get("level") in self.severity) and names_alert(
            alert, self.hosts, self.rules, self.kinds
        )


@dataclasses.dataclass(frozen=True)
class NotifySettings:
    """The channels by name, the routes in order, and the default route."""

    channels: Mapping[str, ChannelSettings] = dataclasses.field(default_factory=dict)
    routes: tuple[Route, ...] = ()
    default: tuple[str, ...] | None = None  # None: every channel

    def channels_for(self, alert: Mapping[str, Any]) -> list[str]:
        """The channels a firing (or escalating) alert goes to, by the routes."""
        return self.routes_for(alert)[1]

    def routes_for(self, alert: Mapping[str, Any]) -> tuple[list[Route], list[str]]:
        """The routes a firing alert matches (none: the default route, which neither
        repeats nor escalates) and the channels they send it to."""
        chosen: list[str] = []
        matched: list[Route] = []
        for route in self.routes:
            if route.matches(alert):
                matched.append(route)
                chosen += [c for c in route.channels if c not in chosen]
                if not route.go_on:
                    break
        if matched:
            return matched, chosen
        return [], list(self.channels if self.default is None else self.default)


def parse_notify(channels: Any, routes: Any, default: Any) -> NotifySettings:
    """NotifySettings from the file's `notify` table, `notify_route` array of tables and
    `notify_default` list (each None where the file has none); raise
    NotifySettingsError naming the bad setting."""
    found = _channels(channels)
    return NotifySettings(
        channels=found,
        routes=tuple(_route(i, table, found) for i, table in enumerate(_tables(routes), 1)),
        default=None if default is None else _known("notify_default", default, found),
    )


def _channels(table: Any) -> dict[str, ChannelSettings]:
    if table is None:
        return {}
    if not isinstance(table, Mapping):
        raise NotifySettingsError("setting 'notify' must be tables: [notify.NAME] url = \"...\"")
    found = {}
    for name, value in table.items():
        prefix = f"notify.{name}"
        if not NAME.match(name):
            raise NotifySettingsError(
                f"setting '{prefix}': a channel's name is letters, digits, _ and - (64 at most)"
            )
        if not isinstance(value, Mapping):
            raise NotifySettingsError(f"setting '{prefix}' must be a table with url = \"...\"")
        if "url" not in value:
            raise NotifySettingsError(f"setting '{prefix}.url' is missing")
        try:
            found[name] = ChannelSettings(**parse_table(ChannelSettings, value, prefix,
                                                        NotifySettingsError))  # fmt: skip
        except NotifySettingsError as exc:
            if f"'{prefix}.url'" in str(exc):  # never echo a URL: it may hold a password
                raise NotifySettingsError(
                    f"setting '{prefix}.url' must be an Apprise URL (mailto://, ntfy://, "
                    "json://, slack://, ...)"
                ) from None
            raise
    return found


def _tables(raw: Any) -> list[Mapping[str, Any]]:
    if raw is None:
        return []
    if not isinstance(raw, list) or not all(isinstance(t, Mapping) for t in raw):
        raise NotifySettingsError("setting 'notify_route' must be tables: [[notify_route]]")
    return raw


def _route(index: int, table: Mapping[str, Any], channels: Mapping[str, Any]) -> Route:
    prefix = f"notify_route[{index}]"
    values = dict(table)
    go_on = values.pop("continue", False)
    if not isinstance(go_on, bool):
        raise NotifySettingsError(f"setting '{prefix}.continue' must be true or false")
    if "channels" not in values:
        raise NotifySettingsError(f"setting '{prefix}.channels' is missing")
    parsed = parse_table(Route, values, prefix, NotifySettingsError, also_known=("continue",))
    _known(f"{prefix}.channels", list(parsed["channels"]), channels)
    _known(f"{prefix}.escalate_to", list(parsed.get("escalate_to", ())), channels)
    if bool(parsed.get("escalate_to")) != bool(parsed.get("escalate_after_minutes")):
        raise NotifySettingsError(
            f"setting '{prefix}.escalate_to' and '{prefix}.escalate_after_minutes' go "
            "together: give both (minutes above 0) or neither"
        )
    return Route(go_on=go_on, **parsed)


def _known(name: str, raw: Any, channels: Mapping[str, Any]) -> tuple[str, ...]:
    if not isinstance(raw, list) or not all(isinstance(c, str) for c in raw):
        raise NotifySettingsError(f"setting '{name}' must be a list of channel names")
    for channel in raw:
        if channel not in channels:
            known = ", ".join(channels) or "none declared"
            raise NotifySettingsError(
                f"setting '{name}' names channel {channel!r}, which no [notify.NAME] declares;"
                f" known: {known}"
            )
    return tuple(raw)
