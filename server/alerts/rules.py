"""Alert rules: threshold rules with hysteresis and hold times, and an anomaly rule.

Evaluated on each sample inside the Sampler's tick: plain arithmetic, a few
microseconds per rule. Each state change becomes one alert event.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Collection, Container, Mapping
from typing import Any

from server.alerts.settings import (
    CONTAINER_RULES,
    DISK_HEALTH_RULES,
    NO_LEVEL,
    RESTART_WINDOW,
    SECTOR_WINDOW,
    TEMPERATURE_RULES,
    UNIT_RULES,
    WEAR_WARNING,
    AlertSettings,
    AnomalySettings,
)
from server.sampling.sensors import LOWEST, MAX_TEMPERATURES
from server.sampling.services import MAX_UNITS
from server.sampling.smart import MAX_DRIVES
from server.series import WATCHED, Levels, lookup

OK, WARNING, CRITICAL = "ok", "warning", "critical"
HOST_DOWN = "host_down"  # the fleet's alert for a host that stopped reporting
RANK = {OK: 0, WARNING: 1, CRITICAL: 2}

Sample = Mapping[str, Any]
Alert = dict[str, Any]


class ThresholdRule:
    """ok -> warning -> critical and back, with clear levels and hold times.

    A level fires once the value has stayed at or above it for for_seconds;
    it clears once the value has stayed below its clear level for
    clear_seconds. A value hovering at a threshold therefore cannot flap.
    """

    def __init__(self, name: str, metric: str, thresholds: Levels) -> None:
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

    def _settled(self, value: float) -> bool:
        """Ok, below both clear levels (so below both levels: settings keep a clear level
        at or below its level) as on the last sample: the full walk would change nothing
        (each time it keeps is kept; the times below count when a warning set above the
        critical level fires critical, and clears on the warning's time)."""
        return (
            self.level == OK
            and value < self.t.warning_clear and value < self.t.critical_clear
            and self._above_since[WARNING] is None and self._above_since[CRITICAL] is None
            and self._below_since[WARNING] is not None
            and self._below_since[CRITICAL] is not None
        )  # fmt: skip

    def evaluate(self, value: float | None, now: float) -> Alert | None:
        """Feed one value; return an alert if the level changed."""
        if value is None:
            return None  # unreadable: keep the state, judge nothing
        if self._settled(value):
            return None  # the common case, asked of every rule each second: nothing moves
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
    """The watched values of one sample (disks apart), by metric name."""
    values = {s.metric: s.value(sample, cores) for s in WATCHED.values() if not s.per_disk}
    if lookup(sample, ("swap", "total")) == 0:
        values["swap.percent"] = None  # no swap at all is nothing to judge, not 0 % used
    return values


MAX_DISK_RULES = 64  # mounts watched per host (a sample carries at most 64)
MAX_CONTAINER_RULES = 3 * 200  # three rules for each container a sample lists
MAX_UNIT_RULES = 2 * MAX_UNITS  # two rules for each systemd unit a sample lists
# A rule per item: a mount, a container, a sensor, a drive.
ITEM_RULES = frozenset(
    {"disk", *CONTAINER_RULES, *TEMPERATURE_RULES, *DISK_HEALTH_RULES, *UNIT_RULES}
)


def _rise(counts: dict[str, deque[tuple[float, int]]], name: str, count: int,
          now: float) -> float:  # fmt: skip
    """How much an item's count (a container's restarts, a unit's NRestarts) rose in the
    last RESTART_WINDOW. The count is kept when it changes, not each tick: the one in
    force when the window began is the first kept. A count that went down (a new
    container of the same name, a unit started by hand or reset) starts over."""
    seen = counts.setdefault(name, deque(maxlen=64))
    if not seen or seen[-1][1] != count:
        if seen and count < seen[-1][1]:
            seen.clear()
        seen.append((now, count))
    while len(seen) > 1 and seen[1][0] <= now - RESTART_WINDOW:
        seen.popleft()
    return float(count - seen[0][1])


class AlertEngine:
    """All the rules; evaluate(sample) returns the alerts that changed state."""

    SKIP_CALM = True  # a test judges every container each time, to compare

    def __init__(
        self,
        settings: AlertSettings,
        interval: float,
        cores: int,
        host: str | None = None,
    ) -> None:
        self.settings = settings
        # Rules limited to some hosts of the fleet are left out on the others.
        self._off = {r for r, hosts in settings.rule_hosts.items() if host not in hosts}
        self.cores = max(cores, 1)  # for load per core; an agent's is known from its static
        self._rules: dict[str, ThresholdRule] = {}
        self._anomalies: list[AnomalyRule] = []
        if settings.enabled:
            for name, thresholds in settings.rules.items():
                if name not in ITEM_RULES and name not in self._off:
                    self._rules[name] = ThresholdRule(name, WATCHED[name].metric, thresholds)
            if settings.anomaly is not None:
                self._anomalies = [
                    AnomalyRule(m, settings.anomaly, interval) for m in settings.anomaly.metrics
                ]
        self.active: dict[str, Alert] = {}
        self.recent: deque[Alert] = deque(maxlen=settings.recent)
        self.over_budget: str | None = None  # set when a sample asked more than the rules hold
        self._restarts: dict[str, deque[tuple[float, int]]] = {}  # container -> (ts, restarts)
        # Containers whose rules are all ok and settled at 0, by the facts they were judged
        # on: while a container's facts stay the same, judging it again changes nothing.
        self._calm: dict[str, tuple[Any, ...]] = {}
        self._unit_restarts: dict[str, deque[tuple[float, int]]] = {}  # unit -> its changes
        # drive -> its bad-sector counts, and when one last rose (None: not seen to rise)
        self._sectors: dict[str, tuple[tuple[Any, ...], float | None]] = {}
        # Per group of item kinds: the items listed when no rule of an unlisted item was
        # left; while the same items are listed, nothing can be gone.
        self._all_there: dict[tuple[str, ...], frozenset[str]] = {}

    def _item_rule(
        self, kind: str, item: str, present: Container[str], limit: int, what: str
    ) -> ThresholdRule | None:
        """The rule `kind` of one item (a mount, a container); None past `limit` rules of
        that kind (the host is over its budget).

        A rule is kept while its item is sampled or its alert is active, so names
        that come and go cannot grow the rules without bound.
        """
        name = f"{kind}:{item}"
        rule = self._rules.get(name)
        if rule is None:
            prefix = kind + ":"
            mine = [n for n in self._rules if n.startswith(prefix)]
            if len(mine) >= limit:
                for gone in mine:
                    if gone[len(prefix) :] not in present and gone not in self.active:
                        del self._rules[gone]
                if sum(n.startswith(prefix) for n in self._rules) >= limit:
                    self.over_budget = f"more than {limit} {what}: the rest not watched"
                    return None
            if kind == "disk":
                thresholds = self.settings.disk_overrides.get(item, self.settings.rules["disk"])
                metric = f"disk.percent:{item}"
            else:
                thresholds, metric = self.settings.rules[kind], f"{kind}:{item}"
            rule = self._rules[name] = ThresholdRule(name, metric, thresholds)
        return rule

    def _resolve_gone(
        self,
        kinds: Collection[str],
        listed: Collection[str],
        calm: float,
        now: float,
        kept: dict[str, Any] | None = None,
    ) -> list[Alert | None]:
        """The rules of `kinds` whose item is no longer listed, judged at `calm` so their
        alerts resolve; each dropped once ok (and what `kept` held of its item)."""
        group, names = tuple(kinds), frozenset(listed)
        if self._all_there.get(group) == names:
            return []  # rules are made for listed items only: none of these can be gone
        changes: list[Alert | None] = []
        left = False
        for rule_name, rule in list(self._rules.items()):
            kind, _, item = rule_name.partition(":")
            if kind in kinds and item not in listed:
                changes.append(rule.evaluate(calm, now))
                if rule.level == OK:
                    del self._rules[rule_name]
                    if kept is not None:
                        kept.pop(item, None)
                else:
                    left = True
        if left:
            self._all_there.pop(group, None)
        else:
            self._all_there[group] = names
        return changes

    def _container_values(self, container: Mapping[str, Any], now: float) -> dict[str, float]:
        """Each container rule's value for one listed container."""
        name = container["name"]
        failed = container.get("state") in ("exited", "dead") and container.get("exit_code")
        values = {
            "container_exited": 1.0 if failed else 0.0,
            "container_unhealthy": 1.0 if container.get("health") == "unhealthy" else 0.0,
        }
        restarts = container.get("restarts")
        if isinstance(restarts, int):
            values["container_restarts"] = _rise(self._restarts, name, restarts, now)
        return values

    def _containers(self, sample: Sample, now: float) -> list[Alert | None]:
        part = sample.get("containers")
        if not isinstance(part, Mapping):
            return []  # no engine, or it cannot be asked: judge nothing
        kinds = [k for k in CONTAINER_RULES if k not in self._off]
        listed = {c["name"]: c for c in part.get("items") or [] if isinstance(c, Mapping)}
        changes: list[Alert | None] = []
        rules, calm = self._rules, self._calm
        if calm.keys() - listed.keys():
            self._calm = calm = {n: f for n, f in calm.items() if n in listed}
        for name, container in listed.items():
            facts = (container.get("state"), container.get("exit_code"),
                     container.get("health"), container.get("restarts"))  # fmt: skip
            if self.SKIP_CALM and calm.get(name) == facts:
                continue  # its values are the same 0s, its rules settled: nothing can move
            values = self._container_values(container, now)
            settled = True
            for kind in kinds:
                # Found at once each second; made (within the budget) the first time.
                rule = rules.get(f"{kind}:{name}") or self._item_rule(
                    kind, name, listed, MAX_CONTAINER_RULES // 3, "containers"
                )
                if rule is not None and kind in values:
                    changes.append(rule.evaluate(values[kind], now))
                    settled = settled and values[kind] == 0.0 and rule._settled(0.0)
                elif kind in values:
                    settled = False  # over the budget: judged again when there is room
            if settled:  # a restart count at 0 rise has no earlier count left to age out
                calm[name] = facts
            else:
                calm.pop(name, None)
        # A container no longer listed (removed, or exited cleanly): its alerts resolve.
        return changes + self._resolve_gone(CONTAINER_RULES, listed, 0.0, now, self._restarts)

    def _units(self, sample: Sample, now: float) -> list[Alert | None]:
        part = sample.get("services")
        if not isinstance(part, Mapping):
            return []  # no systemd, or systemctl cannot be asked: judge nothing
        kinds = [k for k in UNIT_RULES if k not in self._off]
        listed = {u["name"]: u for u in part.get("units") or [] if isinstance(u, Mapping)}
        changes: list[Alert | None] = []
        for name, unit in listed.items():
            values = {"unit_failed": 1.0 if unit.get("state") == "failed" else 0.0}
            restarts = unit.get("restarts")
            if isinstance(restarts, int):
                values["unit_restarts"] = _rise(self._unit_restarts, name, restarts, now)
            for kind in kinds:
                rule = self._item_rule(kind, name, listed, MAX_UNIT_RULES // 2, "units")
                if rule is not None and kind in values:
                    changes.append(rule.evaluate(values[kind], now))
        # A unit no longer listed (fine again, reset, or gone): its alerts resolve.
        changes += self._resolve_gone(UNIT_RULES, listed, 0.0, now)
        for name in set(self._unit_restarts) - set(listed):
            del self._unit_restarts[name]
        return changes

    def _temperature_levels(self, high: Any, critical: Any) -> Levels | None:
        """A sensor's levels: its own, or the rule's where lower (or it has none), with
        the rule's gaps and hold times; None where it has neither (not judged)."""
        base = self.settings.rules["temperature"]
        own_high = high if isinstance(high, int | float) else NO_LEVEL
        own_critical = critical if isinstance(critical, int | float) else NO_LEVEL
        top = min(own_critical, base.critical)
        warning = min(own_high, base.warning, top)  # a chip's high above its critical: at it
        if warning >= NO_LEVEL:
            return None
        return Levels(
            warning,
            top,
            warning - (base.warning - base.warning_clear),
            top - (base.critical - base.critical_clear),
            base.for_seconds,
            base.clear_seconds,
        )

    def _temperatures(self, sample: Sample, now: float) -> list[Alert | None]:
        part = sample.get("sensors")
        if "temperature" in self._off or not isinstance(part, Mapping):
            return []  # no sensors, or they do not answer: judge nothing
        listed: dict[str, tuple[Any, Levels]] = {}
        for sensor in part.get("temperatures") or []:
            if isinstance(sensor, Mapping):
                levels = self._temperature_levels(sensor.get("high"), sensor.get("critical"))
                name = f"{sensor['sensor']}/{sensor['label']}"
                if levels is not None:
                    listed[name] = (sensor.get("current"), levels)
        changes: list[Alert | None] = []
        for name, (current, levels) in listed.items():
            rule = self._item_rule("temperature", name, listed, MAX_TEMPERATURES, "temperatures")
            if rule is not None:
                if rule.t != levels:  # its own levels, which rediscovery may change
                    rule.t = levels
                changes.append(rule.evaluate(current, now))
        # A sensor no longer listed (gone, or without a level now): its alert resolves.
        return changes + self._resolve_gone(("temperature",), listed, LOWEST, now)

    def _drive_value(self, drive: Mapping[str, Any], now: float) -> float | None:
        """The disk_health rule's value for one listed drive (server/alerts/settings.py);
        None where it has no figures this round (judge nothing: keep the state)."""
        if drive.get("supported") is not True:
            return None
        counts = tuple(drive.get(k) for k in ("reallocated", "uncorrectable", "media_errors"))
        before, rose_at = self._sectors.get(drive["device"], (counts, None))
        if any(isinstance(new, int) and isinstance(old, int) and new > old
               for new, old in zip(counts, before, strict=True)):  # fmt: skip
            rose_at = now
        kept = tuple(old if new is None else new for new, old in zip(counts, before, strict=True))
        self._sectors[drive["device"]] = (kept, rose_at)
        if drive.get("health") == "failed":
            return 2.0
        pending, wear = drive.get("pending"), drive.get("wear_percent")
        rose = rose_at is not None and now - rose_at < SECTOR_WINDOW
        worn = isinstance(wear, int | float) and wear >= WEAR_WARNING
        return 1.0 if rose or worn or (isinstance(pending, int) and pending > 0) else 0.0

    def _disk_health(self, sample: Sample, now: float) -> list[Alert | None]:
        part = sample.get("disk_health")
        if "disk_health" in self._off or not isinstance(part, list):
            return []  # no smartctl, or no reading yet: judge nothing
        listed = {d["device"]: d for d in part if isinstance(d, Mapping)}
        changes: list[Alert | None] = []
        for device, drive in listed.items():
            value = self._drive_value(drive, now)
            if value is None and f"disk_health:{device}" not in self._rules:
                continue  # never judged (no S.M.A.R.T.): no rule, no check on the tile
            rule = self._item_rule("disk_health", device, listed, MAX_DRIVES, "drives")
            if rule is not None:
                changes.append(rule.evaluate(value, now))
        # A drive no longer listed (removed): its alert resolves.
        changes += self._resolve_gone(("disk_health",), listed, 0.0, now)
        for device in set(self._sectors) - set(listed):
            del self._sectors[device]
        return changes

    def evaluate(self, sample: Sample, now: float | None = None) -> list[Alert]:
        """The changes this sample makes; hold times count on `now` (the hub's clock for
        an agent's sample), or on the sample's own time."""
        if not self.settings.enabled:
            return []
        now = float(sample.get("ts") or 0.0) if now is None else now
        values = _values(sample, self.cores)
        changes = []
        for rule in [r for r in self._rules.values() if ":" not in r.name]:
            changes.append(rule.evaluate(values[rule.metric], now))
        disks = [] if "disk" in self._off else sample.get("disks") or []
        present = {disk["mount"] for disk in disks}
        for disk in disks:
            disk_rule = self._item_rule("disk", disk["mount"], present, MAX_DISK_RULES, "mounts")
            if disk_rule is not None:
                changes.append(disk_rule.evaluate(disk.get("percent"), now))
        for anomaly in self._anomalies:
            changes.append(anomaly.evaluate(values[anomaly.metric], now))
        changes += self._containers(sample, now)
        changes += self._units(sample, now)
        changes += self._temperatures(sample, now)
        changes += self._disk_health(sample, now)
        alerts = [a for a in changes if a is not None]
        for alert in alerts:
            self.record(alert)
        return alerts

    def counts(self) -> list[int]:
        """How many checks are ok, warning and critical (the fleet tile's ring)."""
        levels = [r.level for r in self._rules.values()] + [a.level for a in self._anomalies]
        levels += [a["level"] for a in self.active.values() if a["rule"] == HOST_DOWN]
        return [levels.count(OK), levels.count(WARNING), levels.count(CRITICAL)]

    def worst(self) -> str:
        """The worst level among the active alerts on the host's metrics (down is a state)."""
        levels = [a["level"] for a in self.active.values() if a["rule"] != HOST_DOWN]
        return max(levels, key=RANK.__getitem__, default=OK)

    def record(self, alert: Alert) -> None:
        """Keep a change: active while not ok, and among the recent ones."""
        if alert["level"] == OK:
            self.active.pop(alert["rule"], None)
        else:
            self.active[alert["rule"]] = alert
        self.recent.appendleft(alert)

    def snapshot(self) -> dict[str, list[Alert]]:
        """Active alerts (worst first), then recent changes (newest first)."""
        active = sorted(self.active.values(), key=lambda a: (-RANK[a["level"]], -a["ts"]))
        return {"active": active, "recent": list(self.recent)}
