"""Alert settings: the [alerts] table of the settings file, checked at start."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

from server.declare import integer, number, parse_table, setting
from server.series import WATCHED, Levels


class AlertSettingsError(ValueError):
    """A bad alert setting; the message names it."""


# The anomaly rule learns one number per host: not per disk.
ANOMALY_METRICS = {s.metric for s in WATCHED.values() if not s.per_disk}


def _metrics(raw: Any) -> tuple[str, ...]:
    if not isinstance(raw, list) or not set(raw) <= ANOMALY_METRICS:
        raise ValueError("a list of some of " + ", ".join(sorted(ANOMALY_METRICS)))
    return tuple(raw)


def _urls(raw: Any) -> tuple[str, ...]:
    if not isinstance(raw, list) or not all(
        isinstance(u, str) and u.startswith(("http://", "https://")) for u in raw
    ):
        raise ValueError("a list of http(s) URLs")
    return tuple(raw)


def _switch(raw: Any) -> bool:
    if not isinstance(raw, bool):
        raise ValueError("true or false")
    return raw


@dataclasses.dataclass(frozen=True)
class AnomalySettings:
    """[alerts.anomaly]: a metric far from its learned normal, for a while."""

    metrics: tuple[str, ...] = setting(("cpu.percent",), _metrics, "the metrics it learns")
    k: float = setting(4.0, number(1, 20), "how many deviations away counts as a departure")
    half_life: float = setting(
        300.0, number(1, 86400), "seconds for the learned normal to move halfway"
    )
    for_seconds: float = setting(15.0, number(0, 86400), "seconds a departure lasts to fire")
    min_deviation: float = setting(
        2.0, number(0, 1e9), "a floor, so a flat series does not fire on a blip"
    )
    warmup_samples: int = setting(120, integer(1, 100000), "samples learned before it may fire")


@dataclasses.dataclass(frozen=True)
class AlertSettings:
    """The [alerts] table: a table per rule (below), [alerts.anomaly], and these."""

    enabled: bool = setting(True, _switch, "alerts on or off")
    rules: Mapping[str, Levels] = dataclasses.field(default_factory=dict)
    disk_overrides: Mapping[str, Levels] = dataclasses.field(default_factory=dict)
    anomaly: AnomalySettings | None = dataclasses.field(default_factory=AnomalySettings)
    webhooks: tuple[str, ...] = setting((), _urls, "URLs each alert is POSTed to")
    webhook_timeout: float = setting(5.0, number(0.1, 60), "seconds a webhook POST may take")
    webhook_retries: int = setting(3, integer(0, 10), "tries after a failed webhook POST")
    recent: int = 50  # resolved and past alerts kept for the panel
    # Rule name -> the fleet's hosts it is limited to (absent: every host).
    rule_hosts: Mapping[str, tuple[str, ...]] = dataclasses.field(default_factory=dict)


# Rule name -> default levels, from the series declaration.
# Rules judged on each container a sample lists (server/sampling/containers.py), a rule
# per container as a disk's: the value is 1 or 0, or restarts in RESTART_WINDOW.
CONTAINER_RULES: dict[str, Levels] = {
    # Exited with an exit code other than 0: critical at once, resolved once it runs
    # again or is removed.
    "container_exited": Levels(1, 1, 1, 1, 0, 0),
    # Its health check failing for 10 s.
    "container_unhealthy": Levels(1, 1, 1, 1, 10, 10),
    # Restarted 3 times (warning) or 5 times (critical) in RESTART_WINDOW.
    "container_restarts": Levels(3, 5, 3, 5, 0, 60),
}
RESTART_WINDOW = 600.0  # seconds

# Rules judged on each systemd unit a sample lists (server/sampling/services.py), a rule
# per unit as a container's: the value is 1 or 0, or restarts in RESTART_WINDOW.
UNIT_RULES: dict[str, Levels] = {
    # Failed (its process exited with an error, was killed, timed out, or systemd
    # gave up restarting it): critical at once, resolved once it runs again or is
    # reset (`systemctl reset-failed`).
    "unit_failed": Levels(1, 1, 1, 1, 0, 0),
    # Restarted by systemd (NRestarts) 3 times (warning) or 5 times (critical) in
    # RESTART_WINDOW: a restart loop, though the unit may look active between two.
    "unit_restarts": Levels(3, 5, 3, 5, 0, 60),
}

# The rule judged on each temperature a sample lists (server/sampling/sensors.py), a
# rule per sensor as a disk's. Its levels are the sensor's own, `high` and `critical`:
# the kernel knows where each part gets too hot, and no one number fits a CPU, a drive
# and a board. The rule's `warning` and `critical` are ceilings: a sensor warns at the
# lower of its own high level and `warning` (NO_LEVEL, the default: at its own alone;
# a sensor with no level of its own and none set is not judged). Each clear level is
# the rule's gap (5 °C by default) below its level.
NO_LEVEL = 1000.0  # °C: the top of what a sensor may read (sensors.HIGHEST)
TEMPERATURE_RULES: dict[str, Levels] = {
    "temperature": Levels(NO_LEVEL, NO_LEVEL, NO_LEVEL - 5, NO_LEVEL - 5, 30, 30),
}

# The rule judged on each drive a sample's `disk_health` lists (server/sampling/smart.py),
# a rule per drive as a disk's. Its value is how bad the drive's state is: 2 while
# smartctl's overall assessment is FAILED (critical); 1 while it has pending sectors,
# while its reallocated or uncorrectable sectors or media errors rose in the last
# SECTOR_WINDOW, or while its wear is WEAR_WARNING % or more (warning); else 0. Counts
# that only stay where they are (a few sectors reallocated years ago) do not warn.
DISK_HEALTH_RULES: dict[str, Levels] = {"disk_health": Levels(1, 2, 1, 2, 0, 0)}
SECTOR_WINDOW = 86400.0  # seconds a rise in a drive's bad sectors warns for
WEAR_WARNING = 90  # % of a drive's rated endurance used

DEFAULTS: dict[str, Levels] = {
    **{rule: series.levels for rule, series in WATCHED.items() if series.levels is not None},
    **CONTAINER_RULES,
    **UNIT_RULES,
    **TEMPERATURE_RULES,
    **DISK_HEALTH_RULES,
}
_THRESHOLD_KEYS = {
    "warning",
    "critical",
    "warning_clear",
    "critical_clear",
    "for_seconds",
    "clear_seconds",
}


def _number(name: str, value: Any, low: float = 0.0, high: float = math.inf) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
        raise AlertSettingsError(f"setting 'alerts.{name}' must be a number, got {value!r}")
    if not low <= value <= high:
        raise AlertSettingsError(
            f"setting 'alerts.{name}' must be from {low:g} to {high:g}, got {value!r}"
        )
    return float(value)


def _host_list(name: str, value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not value or not all(isinstance(h, str) for h in value):
        raise AlertSettingsError(f"setting 'alerts.{name}.hosts' must be a list of host names")
    return tuple(value)


def _thresholds(name: str, table: Any, base: Levels) -> Levels:
    if not isinstance(table, Mapping):
        raise AlertSettingsError(f"setting 'alerts.{name}' must be a table")
    unknown = set(table) - _THRESHOLD_KEYS
    if unknown:
        raise AlertSettingsError(
            f"setting 'alerts.{name}.{sorted(unknown)[0]}' is unknown; known: "
            + ", ".join(sorted(_THRESHOLD_KEYS))
        )
    values = dataclasses.asdict(base)
    # A level given without its clear level keeps the default gap below it.
    for level in ("warning", "critical"):
        if level in table and f"{level}_clear" not in table:
            gap = getattr(base, level) - getattr(base, f"{level}_clear")
            values[f"{level}_clear"] = max(_number(f"{name}.{level}", table[level]) - gap, 0.0)
    for key in _THRESHOLD_KEYS & set(table):
        values[key] = _number(f"{name}.{key}", table[key], 0, 86400 if "seconds" in key else 1e9)
    result = Levels(**values)
    if not result.warning <= result.critical:
        raise AlertSettingsError(f"setting 'alerts.{name}': warning must not exceed critical")
    if result.warning_clear > result.warning or result.critical_clear > result.critical:
        raise AlertSettingsError(
            f"setting 'alerts.{name}': a clear level must not be above its level"
        )
    return result


def parse_settings(table: Mapping[str, Any] | None) -> AlertSettings:
    """AlertSettings from the TOML [alerts] table; raise AlertSettingsError if bad."""
    table = dict(table or {})
    rules = dict(DEFAULTS)
    overrides: dict[str, Levels] = {}
    rule_hosts: dict[str, tuple[str, ...]] = {}
    for name in DEFAULTS:
        if name not in table:
            continue
        section = dict(table.pop(name))
        if "hosts" in section:
            rule_hosts[name] = _host_list(name, section.pop("hosts"))
        if name == "disk":
            # [alerts.disk."/var"] tables override the disk rule for one mount.
            for mount in [k for k, v in section.items() if isinstance(v, Mapping)]:
                if not mount.startswith("/"):
                    raise AlertSettingsError(
                        f"setting 'alerts.disk.{mount}': a mount starts with /"
                    )
                overrides[mount] = section.pop(mount)
        rules[name] = _thresholds(name, section, DEFAULTS[name])
    disk_overrides = {
        mount: _thresholds(f'disk."{mount}"', value, rules["disk"])
        for mount, value in overrides.items()
    }
    anomaly: AnomalySettings | None = AnomalySettings()
    if "anomaly" in table:
        anomaly = _anomaly(table.pop("anomaly"))
    values = parse_table(AlertSettings, table, "alerts", AlertSettingsError,
                         also_known=(*DEFAULTS, "anomaly"))  # fmt: skip
    return AlertSettings(rule_hosts=rule_hosts, rules=rules, disk_overrides=disk_overrides,
                         anomaly=anomaly, **values)  # fmt: skip


def _anomaly(table: Any) -> AnomalySettings | None:
    if table is False:
        return None
    if not isinstance(table, Mapping):
        raise AlertSettingsError("setting 'alerts.anomaly' must be a table or false")
    return AnomalySettings(**parse_table(AnomalySettings, table, "alerts.anomaly",
                                         AlertSettingsError))  # fmt: skip


def page_levels(settings: AlertSettings) -> dict[str, dict[str, float]]:
    """The warning and critical levels the page colours its cards with, per rule.

    Sent in `static`, so a card turns amber and red exactly where its alert fires.
    """
    levels = {
        rule: {"warning": t.warning, "critical": t.critical} for rule, t in settings.rules.items()
    }
    for mount, t in settings.disk_overrides.items():
        levels[f"disk:{mount}"] = {"warning": t.warning, "critical": t.critical}
    return levels
