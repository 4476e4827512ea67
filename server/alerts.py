"""Alerts: threshold rules with hysteresis and hold times, and an anomaly rule.

Evaluated on each sample inside the Sampler's tick: plain arithmetic, a few
microseconds per rule. Each state change becomes one alert event.
"""

from __future__ import annotations

import dataclasses
import math
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from typing import Any

OK, WARNING, CRITICAL = "ok", "warning", "critical"
RANK = {OK: 0, WARNING: 1, CRITICAL: 2}

Sample = Mapping[str, Any]
Alert = dict[str, Any]


class AlertSettingsError(ValueError):
    """A bad alert setting; the message names it."""


# ---------------------------------------------------------------- settings


@dataclasses.dataclass(frozen=True)
class Thresholds:
    warning: float
    critical: float
    warning_clear: float
    critical_clear: float
    for_seconds: float  # how long a level must hold before it fires
    clear_seconds: float  # how long a clear must hold before it clears


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
    rules: Mapping[str, Thresholds] = dataclasses.field(default_factory=dict)
    disk_overrides: Mapping[str, Thresholds] = dataclasses.field(default_factory=dict)
    anomaly: AnomalySettings | None = dataclasses.field(default_factory=AnomalySettings)
    webhooks: tuple[str, ...] = ()
    webhook_timeout: float = 5.0
    webhook_retries: int = 3
    recent: int = 50  # resolved and past alerts kept for the panel


# Rule name -> (metric it watches, default thresholds).
DEFAULTS: dict[str, Thresholds] = {
    "cpu": Thresholds(75, 90, 70, 85, 30, 30),
    "memory": Thresholds(85, 95, 80, 90, 60, 60),
    "swap": Thresholds(80, 95, 75, 90, 60, 60),
    "load": Thresholds(1.5, 3.0, 1.2, 2.5, 120, 120),  # load average per core
    "disk": Thresholds(80, 90, 78, 88, 60, 60),
}
METRICS = {
    "cpu": "cpu.percent",
    "memory": "memory.percent",
    "swap": "swap.percent",
    "load": "load.per_core",
    "disk": "disk.percent",
}
_THRESHOLD_KEYS = {
    "warning",
    "critical",
    "warning_clear",
    "critical_clear",
    "for_seconds",
    "clear_seconds",
}
ANOMALY_METRICS = {"cpu.percent", "memory.percent", "swap.percent", "load.per_core"}


def _number(name: str, value: Any, low: float = 0.0, high: float = math.inf) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
        raise AlertSettingsError(f"setting 'alerts.{name}' must be a number, got {value!r}")
    if not low <= value <= high:
        raise AlertSettingsError(
            f"setting 'alerts.{name}' must be from {low:g} to {high:g}, got {value!r}"
        )
    return float(value)


def _thresholds(name: str, table: Any, base: Thresholds) -> Thresholds:
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
    result = Thresholds(**values)
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
    overrides: dict[str, Thresholds] = {}
    for name in DEFAULTS:
        if name not in table:
            continue
        section = dict(table.pop(name))
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


# ---------------------------------------------------------------- rules


class ThresholdRule:
    """ok -> warning -> critical and back, with clear levels and hold times.

    A level fires once the value has stayed at or above it for for_seconds;
    it clears once the value has stayed below its clear level for
    clear_seconds. A value hovering at a threshold therefore cannot flap.
    """

    def __init__(self, name: str, metric: str, thresholds: Thresholds) -> None:
        self.name = name
        self.metric = metric
        self.t = thresholds
        self.level = OK
        self._above_since: dict[str, float | None] = {WARNING: None, CRITICAL: None}
        self._below_since: dict[str, float | None] = {WARNING: None, CRITICAL: None}

    def _limit(self, level: str) -> float:
        return self.t.warning if level == WARNING else self.t.critical

    def _clear(self, level: str) -> float:
        return self.t.warning_clear if level == WARNING else self.t.critical_clear

    def evaluate(self, value: float | None, now: float) -> Alert | None:
        """Feed one value; return an alert if the level changed."""
        if value is None:
            return None  # unreadable: keep the state, judge nothing
        for level in (WARNING, CRITICAL):
            above = value >= self._limit(level)
            below = value < self._clear(level)
            self._above_since[level] = _since(self._above_since[level], now) if above else None
            self._below_since[level] = _since(self._below_since[level], now) if below else None

        new = self.level
        for level in (CRITICAL, WARNING):  # escalate to the highest level that held
            since = self._above_since[level]
            if RANK[level] > RANK[new] and since is not None and now - since >= self.t.for_seconds:
                new = level
                break
        if new == self.level:  # de-escalate past each level whose clear held
            for level in (CRITICAL, WARNING):
                since = self._below_since[level]
                if (
                    RANK[new] >= RANK[level]
                    and since is not None
                    and now - since >= self.t.clear_seconds
                ):
                    new = WARNING if level == CRITICAL else OK
        if new == self.level:
            return None
        previous, self.level = self.level, new
        rising = RANK[new] > RANK[previous]
        threshold = self._limit(new) if rising else self._clear(previous)
        return _alert(self.name, self.metric, new, previous, value, threshold, now)


class AnomalyRule:
    """Flags a metric that departs from its own recent normal.

    The normal is an exponentially weighted mean and deviation (half-life
    `half_life` seconds). A value further than k deviations (at least
    min_deviation) from the mean, on the same side for for_seconds, fires a
    warning; it clears when the value is back within the band for as long.
    The normal keeps learning, so a lasting change becomes the new normal and
    the alert clears by itself after a while.
    """

    def __init__(self, metric: str, settings: AnomalySettings, interval: float) -> None:
        self.name = f"anomaly:{metric}"
        self.metric = metric
        self.s = settings
        self.alpha = 1 - 0.5 ** (interval / settings.half_life)
        self.level = OK
        self.mean: float | None = None
        self.var = 0.0
        self.count = 0
        self._out_since: float | None = None
        self._out_side = 0
        self._in_since: float | None = None

    def band(self) -> tuple[float, float]:
        assert self.mean is not None
        width = self.s.k * max(math.sqrt(self.var), self.s.min_deviation)
        return self.mean - width, self.mean + width

    def evaluate(self, value: float | None, now: float) -> Alert | None:
        if value is None:
            return None
        alert = None
        if self.mean is not None and self.count >= self.s.warmup_samples:
            low, high = self.band()
            side = 1 if value > high else -1 if value < low else 0
            if side:
                if side != self._out_side:
                    self._out_since, self._out_side = now, side
                self._in_since = None
            else:
                self._out_since, self._out_side = None, 0
                self._in_since = _since(self._in_since, now)
            if (
                self.level == OK
                and self._out_since is not None
                and now - self._out_since >= self.s.for_seconds
            ):
                self.level = WARNING
                alert = _alert(
                    self.name, self.metric, WARNING, OK, value, high if side > 0 else low, now
                )
            elif (
                self.level == WARNING
                and self._in_since is not None
                and now - self._in_since >= self.s.for_seconds
            ):
                self.level = OK
                alert = _alert(
                    self.name,
                    self.metric,
                    OK,
                    WARNING,
                    value,
                    high if value >= self.mean else low,
                    now,
                )
        self._learn(value)
        return alert

    def _learn(self, value: float) -> None:
        self.count += 1
        if self.mean is None:
            self.mean = value
            return
        delta = value - self.mean
        self.mean += self.alpha * delta
        self.var = (1 - self.alpha) * (self.var + self.alpha * delta * delta)


def _since(started: float | None, now: float) -> float:
    return now if started is None else started


def _alert(
    rule: str, metric: str, level: str, previous: str, value: float, threshold: float, ts: float
) -> Alert:
    return {
        "rule": rule,
        "metric": metric,
        "level": level,
        "previous": previous,
        "value": round(value, 2),
        "threshold": round(threshold, 2),
        "ts": round(ts, 3),
    }


# ---------------------------------------------------------------- engine


def _values(sample: Sample, cores: int) -> dict[str, float | None]:
    """The watched values of one sample, by metric name."""

    def get(*path: str) -> Any:
        node: Any = sample
        for key in path:
            if not isinstance(node, Mapping):
                return None
            node = node.get(key)
        return node

    load = get("load")
    return {
        "cpu.percent": get("cpu", "percent"),
        "memory.percent": get("memory", "percent"),
        "swap.percent": None if get("swap", "total") == 0 else get("swap", "percent"),
        "load.per_core": load[0] / cores if load else None,
    }


class AlertEngine:
    """All the rules; evaluate(sample) returns the alerts that changed state."""

    def __init__(
        self,
        settings: AlertSettings,
        interval: float,
        cores: int,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.settings = settings
        self._cores = max(cores, 1)
        self._rules: dict[str, ThresholdRule] = {}
        self._anomalies: list[AnomalyRule] = []
        if settings.enabled:
            for name, thresholds in settings.rules.items():
                if name != "disk":
                    self._rules[name] = ThresholdRule(name, METRICS[name], thresholds)
            if settings.anomaly is not None:
                self._anomalies = [
                    AnomalyRule(m, settings.anomaly, interval) for m in settings.anomaly.metrics
                ]
        self.active: dict[str, Alert] = {}
        self.recent: deque[Alert] = deque(maxlen=settings.recent)

    def _disk_rule(self, mount: str) -> ThresholdRule:
        name = f"disk:{mount}"
        rule = self._rules.get(name)
        if rule is None:
            thresholds = self.settings.disk_overrides.get(mount, self.settings.rules["disk"])
            rule = self._rules[name] = ThresholdRule(name, f"disk.percent:{mount}", thresholds)
        return rule

    def evaluate(self, sample: Sample) -> list[Alert]:
        if not self.settings.enabled:
            return []
        now = float(sample.get("ts") or 0.0)
        values = _values(sample, self._cores)
        changes = []
        for rule in [r for r in self._rules.values() if not r.name.startswith("disk:")]:
            changes.append(rule.evaluate(values[rule.metric], now))
        for disk in sample.get("disks") or []:
            changes.append(self._disk_rule(disk["mount"]).evaluate(disk.get("percent"), now))
        for anomaly in self._anomalies:
            changes.append(anomaly.evaluate(values[anomaly.metric], now))
        alerts = [a for a in changes if a is not None]
        for alert in alerts:
            self._record(alert)
        return alerts

    def _record(self, alert: Alert) -> None:
        if alert["level"] == OK:
            self.active.pop(alert["rule"], None)
        else:
            self.active[alert["rule"]] = alert
        self.recent.appendleft(alert)

    def snapshot(self) -> dict[str, list[Alert]]:
        """Active alerts (worst first), then recent changes (newest first)."""
        active = sorted(self.active.values(), key=lambda a: (-RANK[a["level"]], -a["ts"]))
        return {"active": active, "recent": list(self.recent)}

    def rules(self) -> Iterable[ThresholdRule | AnomalyRule]:
        return [*self._rules.values(), *self._anomalies]
