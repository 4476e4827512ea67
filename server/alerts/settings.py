"""Alert settings: the [alerts] table of the settings file, checked at start."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

from server.series import WATCHED, Levels


class AlertSettingsError(ValueError):
    """A bad alert setting; the message names it."""


@dataclasses.dataclass(frozen=True)
class AnomalySettings:
    metrics: tuple[str, ...] = ("cpu.percent",)
    k: float = 4.0  # how many deviations away counts as a departure
    half_life: float = 300.0  # seconds for the learned normal to move halfway
    for_seconds: float = 15.0
    min_deviation: float = 2.0  # a floor, so a flat series does not fire on a blip
    warmup_samples: int = 120


@dataclasses.dataclass(frozen=True)
class AlertSettings:
    enabled: bool = True
    rules: Mapping[str, Levels] = dataclasses.field(default_factory=dict)
    disk_overrides: Mapping[str, Levels] = dataclasses.field(default_factory=dict)
    anomaly: AnomalySettings | None = dataclasses.field(default_factory=AnomalySettings)
    webhooks: tuple[str, ...] = ()
    webhook_timeout: float = 5.0
    webhook_retries: int = 3
    recent: int = 50  # resolved and past alerts kept for the panel
    # Rule name -> the fleet's hosts it is limited to (absent: every host).
    rule_hosts: Mapping[str, tuple[str, ...]] = dataclasses.field(default_factory=dict)


# Rule name -> default levels, from the series declaration.
DEFAULTS: dict[str, Levels] = {
    rule: series.levels for rule, series in WATCHED.items() if series.levels is not None
}
_THRESHOLD_KEYS = {
    "warning",
    "critical",
    "warning_clear",
    "critical_clear",
    "for_seconds",
    "clear_seconds",
}
# The anomaly rule learns one number per host: not per disk.
ANOMALY_METRICS = {s.metric for s in WATCHED.values() if not s.per_disk}


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
    enabled = table.pop("enabled", True)
    if not isinstance(enabled, bool):
        raise AlertSettingsError("setting 'alerts.enabled' must be true or false")
    webhooks = table.pop("webhooks", [])
    if not isinstance(webhooks, list) or not all(
        isinstance(u, str) and u.startswith(("http://", "https://")) for u in webhooks
    ):
        raise AlertSettingsError("setting 'alerts.webhooks' must be a list of http(s) URLs")
    timeout = _number("webhook_timeout", table.pop("webhook_timeout", 5.0), 0.1, 60)
    retries = int(_number("webhook_retries", table.pop("webhook_retries", 3), 0, 10))
    if table:
        raise AlertSettingsError(
            f"setting 'alerts.{sorted(table)[0]}' is unknown; known: "
            + ", ".join(
                [*DEFAULTS, "anomaly", "enabled", "webhooks", "webhook_timeout", "webhook_retries"]
            )
        )
    return AlertSettings(
        rule_hosts=rule_hosts,
        enabled=enabled,
        rules=rules,
        disk_overrides=disk_overrides,
        anomaly=anomaly,
        webhooks=tuple(webhooks),
        webhook_timeout=timeout,
        webhook_retries=retries,
    )


def _anomaly(table: Any) -> AnomalySettings | None:
    if table is False:
        return None
    if not isinstance(table, Mapping):
        raise AlertSettingsError("setting 'alerts.anomaly' must be a table or false")
    base = AnomalySettings()
    metrics = table.get("metrics", list(base.metrics))
    if not isinstance(metrics, list) or not set(metrics) <= ANOMALY_METRICS:
        raise AlertSettingsError(
            "setting 'alerts.anomaly.metrics' must list some of "
            + ", ".join(sorted(ANOMALY_METRICS))
        )
    known = {"metrics", "k", "half_life", "for_seconds", "min_deviation", "warmup_samples"}
    if set(table) - known:
        raise AlertSettingsError(
            f"setting 'alerts.anomaly.{sorted(set(table) - known)[0]}' is unknown"
        )
    return AnomalySettings(
        metrics=tuple(metrics),
        k=_number("anomaly.k", table.get("k", base.k), 1, 20),
        half_life=_number("anomaly.half_life", table.get("half_life", base.half_life), 1, 86400),
        for_seconds=_number(
            "anomaly.for_seconds", table.get("for_seconds", base.for_seconds), 0, 86400
        ),
        min_deviation=_number(
            "anomaly.min_deviation", table.get("min_deviation", base.min_deviation), 0, 1e9
        ),
        warmup_samples=int(
            _number(
                "anomaly.warmup_samples",
                table.get("warmup_samples", base.warmup_samples),
                1,
                100000,
            )
        ),
    )


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
