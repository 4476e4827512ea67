"""server/alerts/: hysteresis, hold times, per-mount overrides, the anomaly rule."""

from __future__ import annotations

import random
import time
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from server.alerts.rules import CRITICAL, OK, WARNING, AlertEngine, AnomalyRule, ThresholdRule
from server.alerts.settings import AlertSettingsError, AnomalySettings, parse_settings
from server.series import Levels as Thresholds

CPU = Thresholds(
    warning=75, critical=90, warning_clear=70, critical_clear=85, for_seconds=30, clear_seconds=30
)


def feed(
    rule: ThresholdRule | AnomalyRule, values: list[float], start: float = 0.0, step: float = 1.0
) -> list[dict[str, Any]]:
    alerts = []
    for i, value in enumerate(values):
        alert = rule.evaluate(value, start + i * step)
        if alert:
            alerts.append(alert)
    return alerts


def test_no_flapping_on_a_value_oscillating_around_the_threshold() -> None:
    rule = ThresholdRule("cpu", "cpu.percent", CPU)
    # 74/76 every second for ten minutes: never 30 s on end above 75.
    assert feed(rule, [74.0, 76.0] * 300) == []
    assert rule.level == OK


def test_oscillation_after_firing_does_not_flap() -> None:
    rule = ThresholdRule("cpu", "cpu.percent", Thresholds(75, 90, 70, 85, 0, 0))
    alerts = feed(rule, [76.0, 74.0, 76.0, 73.0, 75.5, 71.0] * 50)
    assert [a["level"] for a in alerts] == [WARNING]  # fired once, never cleared above 70
    assert alerts[0]["threshold"] == 75


def test_durations_are_respected() -> None:
    rule = ThresholdRule("cpu", "cpu.percent", CPU)
    alerts = feed(rule, [80.0] * 29)
    assert alerts == [] and rule.level == OK  # 28 s above: not yet
    alert = rule.evaluate(80.0, 30.0)  # 30 s on end
    assert alert is not None and alert["level"] == WARNING and alert["previous"] == OK
    # Clearing takes 30 s below the clear level too.
    assert feed(rule, [60.0] * 30, start=31) == []
    cleared = rule.evaluate(60.0, 61.0)
    assert cleared is not None and cleared["level"] == OK and cleared["threshold"] == 70


def test_clear_levels_are_respected() -> None:
    rule = ThresholdRule("cpu", "cpu.percent", Thresholds(75, 90, 70, 85, 0, 0))
    assert [a["level"] for a in feed(rule, [95.0])] == [CRITICAL]
    assert feed(rule, [87.0, 89.0, 86.0]) == []  # below 90 but not below 85
    down = feed(rule, [80.0], start=10)
    assert [(a["previous"], a["level"], a["threshold"]) for a in down] == [(CRITICAL, WARNING, 85)]
    assert feed(rule, [72.0, 74.0], start=11) == []  # below 75 but not below 70
    assert [a["level"] for a in feed(rule, [69.0], start=13)] == [OK]


def test_a_fall_below_both_clear_levels_goes_straight_to_ok() -> None:
    rule = ThresholdRule("cpu", "cpu.percent", Thresholds(75, 90, 70, 85, 0, 5))
    feed(rule, [95.0])
    alerts = feed(rule, [10.0] * 7, start=1)
    assert [(a["previous"], a["level"]) for a in alerts] == [(CRITICAL, OK)]


def test_escalation_goes_to_the_highest_level_that_held() -> None:
    rule = ThresholdRule("cpu", "cpu.percent", Thresholds(75, 90, 70, 85, 10, 10))
    alerts = feed(rule, [95.0] * 12)
    assert [a["level"] for a in alerts] == [CRITICAL]
    assert alerts[0]["ts"] == 10.0


def test_null_values_keep_the_state() -> None:
    rule = ThresholdRule("cpu", "cpu.percent", Thresholds(75, 90, 70, 85, 0, 0))
    feed(rule, [80.0])
    assert rule.evaluate(None, 5.0) is None and rule.level == WARNING


def sample(
    ts: float, cpu: float = 5.0, disks: dict[str, float] | None = None, load: float = 0.1
) -> dict[str, Any]:
    return {
        "ts": ts,
        "cpu": {"percent": cpu},
        "memory": {"percent": 10.0},
        "swap": {"percent": 0.0, "total": 0},
        "load": [load, load, load],
        "disks": [{"mount": m, "percent": p} for m, p in (disks or {"/": 10.0}).items()],
    }


def test_per_mount_overrides() -> None:
    settings = parse_settings(
        {
            "disk": {
                "warning": 80,
                "critical": 90,
                "for_seconds": 0,
                "clear_seconds": 0,
                "/backup": {"warning": 97, "critical": 99},
            },
        }
    )
    engine = AlertEngine(settings, interval=1.0, cores=2)
    alerts = engine.evaluate(sample(1.0, disks={"/": 85.0, "/backup": 95.0}))
    assert [(a["rule"], a["level"]) for a in alerts] == [("disk:/", WARNING)]
    alerts = engine.evaluate(sample(2.0, disks={"/": 85.0, "/backup": 98.0}))
    assert [(a["rule"], a["level"], a["threshold"]) for a in alerts] == [
        ("disk:/backup", WARNING, 97.0)
    ]
    assert set(engine.active) == {"disk:/", "disk:/backup"}
    assert settings.disk_overrides["/backup"].for_seconds == 0  # inherited from [alerts.disk]


def test_load_is_judged_per_core() -> None:
    settings = parse_settings({"load": {"warning": 1.0, "critical": 2.0, "for_seconds": 0}})
    engine = AlertEngine(settings, interval=1.0, cores=4)
    assert engine.evaluate(sample(1.0, load=3.0)) == []  # 0.75 per core
    alerts = engine.evaluate(sample(2.0, load=5.0))  # 1.25 per core
    assert [(a["rule"], a["metric"], a["value"]) for a in alerts] == [
        ("load", "load.per_core", 1.25)
    ]


def test_engine_snapshot_lists_active_then_recent() -> None:
    settings = parse_settings(
        {
            "cpu": {"warning": 50, "critical": 80, "for_seconds": 0, "clear_seconds": 0},
            "anomaly": False,
        }
    )
    engine = AlertEngine(settings, interval=1.0, cores=1)
    engine.evaluate(sample(1.0, cpu=60))
    engine.evaluate(sample(2.0, cpu=90))
    snapshot = engine.snapshot()
    assert [(a["rule"], a["level"]) for a in snapshot["active"]] == [("cpu", CRITICAL)]
    assert [a["level"] for a in snapshot["recent"]] == [CRITICAL, WARNING]  # newest first
    engine.evaluate(sample(3.0, cpu=1))
    assert engine.snapshot()["active"] == []
    alert = engine.snapshot()["recent"][0]
    assert set(alert) >= {"rule", "metric", "level", "value", "threshold", "ts"}


def test_evaluation_costs_microseconds() -> None:
    engine = AlertEngine(parse_settings({}), interval=1.0, cores=2)
    samples = [
        sample(float(i), cpu=random.uniform(0, 100), disks={"/": 50.0, "/var": 60.0, "/home": 70.0})
        for i in range(2000)
    ]
    started = time.perf_counter()
    for s in samples:
        engine.evaluate(s)
    per_sample = (time.perf_counter() - started) / len(samples)
    # A loose bound, far from flaky: about 10 rules in well under a millisecond.
    assert per_sample < 0.001, per_sample


# ---------------------------------------------------------------- anomaly

ANOMALY = AnomalySettings(
    metrics=("cpu.percent",),
    k=4.0,
    half_life=300,
    for_seconds=15,
    min_deviation=2.0,
    warmup_samples=120,
)


def test_anomaly_fires_on_a_step_and_clears_as_the_new_normal_sets_in() -> None:
    rng = random.Random(1)
    rule = AnomalyRule("cpu.percent", ANOMALY, interval=1.0)
    idle = [max(0.0, rng.gauss(5, 1)) for _ in range(600)]
    assert feed(rule, idle) == []
    busy = [rng.gauss(60, 2) for _ in range(1800)]
    alerts = feed(rule, busy, start=600)
    assert alerts[0]["level"] == WARNING and alerts[0]["rule"] == "anomaly:cpu.percent"
    assert 600 + 15 <= alerts[0]["ts"] <= 600 + 20  # after the hold time, not before
    assert alerts[0]["value"] > alerts[0]["threshold"] > 5
    assert alerts[-1]["level"] == OK  # 60 % became the normal within half an hour


def test_anomaly_quiet_on_steady_noise() -> None:
    rng = random.Random(7)
    rule = AnomalyRule("cpu.percent", ANOMALY, interval=1.0)
    # A day of an idle server's noise, with short spikes (a cron job, a login).
    values = []
    for _ in range(86_400):
        v = max(0.0, rng.gauss(5, 1.5))
        if rng.random() < 0.01:
            v = rng.uniform(30, 100)
        values.append(v)
    assert feed(rule, values) == []


def test_anomaly_needs_a_warm_up() -> None:
    rule = AnomalyRule("cpu.percent", ANOMALY, interval=1.0)
    assert feed(rule, [5.0] * 60 + [90.0] * 50) == []


# ---------------------------------------------------------------- settings


@pytest.mark.parametrize(
    ("table", "names"),
    [
        ({"cpu": {"warning": "high"}}, "alerts.cpu.warning"),
        ({"cpu": {"warning": 95, "critical": 90}}, "alerts.cpu"),
        ({"cpu": {"warming": 95}}, "alerts.cpu.warming"),
        ({"disk": {"var": {"warning": 1}}}, "alerts.disk.var"),
        ({"webhooks": ["ftp://x"]}, "alerts.webhooks"),
        ({"cpus": {}}, "alerts.cpus"),
        ({"anomaly": {"metrics": ["bogus"]}}, "alerts.anomaly.metrics"),
        ({"cpu": {"for_seconds": -1}}, "alerts.cpu.for_seconds"),
    ],
)
def test_bad_alert_settings_name_themselves(table: dict[str, Any], names: str) -> None:
    with pytest.raises(AlertSettingsError, match=rf"setting '{names}"):
        parse_settings(table)


def test_defaults() -> None:
    settings = parse_settings(None)
    assert (settings.rules["cpu"].warning, settings.rules["cpu"].critical) == (75, 90)
    assert settings.rules["cpu"].for_seconds == 30
    assert (settings.rules["disk"].warning, settings.rules["disk"].critical) == (80, 90)
    assert settings.anomaly is not None and settings.webhooks == ()


def test_a_rule_limited_to_some_hosts_is_left_out_elsewhere() -> None:
    settings = parse_settings(
        {"cpu": {"warning": 10, "critical": 20, "for_seconds": 0, "hosts": ["db-1"]}}
    )
    busy = {"ts": 1.0, "cpu": {"percent": 50.0}, "disks": []}
    on_db = AlertEngine(settings, interval=1, cores=1, host="db-1").evaluate(busy)
    on_web = AlertEngine(settings, interval=1, cores=1, host="web-1").evaluate(busy)
    assert [a["rule"] for a in on_db] == ["cpu"]
    assert [a["rule"] for a in on_web] == []
    with pytest.raises(AlertSettingsError, match=r"alerts\.cpu\.hosts"):
        parse_settings({"cpu": {"hosts": "db-1"}})


@st.composite
def levels_and_values(draw: st.DrawFn) -> tuple[Thresholds, list[float | None]]:
    """Levels as settings allow them (a clear level at or below its level; a
    temperature's may put warning above critical), and values at, around and between
    them, with gaps (None)."""
    warning, critical = draw(st.integers(1, 99)), draw(st.integers(1, 99))
    warning_clear = warning - draw(st.integers(0, warning))  # a gap: the shrink goes to none
    critical_clear = critical - draw(st.integers(0, critical))
    levels = (warning, critical, warning_clear, critical_clear)
    near = sorted({max(0, min(100, v + d)) for v in (0, *levels, 100) for d in (-1, 0, 1)})
    values = draw(st.lists(st.sampled_from([None, *map(float, near)]), max_size=80))
    holds = draw(st.tuples(st.integers(0, 4), st.integers(0, 4)))
    return Thresholds(*levels, *holds), values


@given(case=levels_and_values())
@example(case=(Thresholds(50, 90, 40, 85, 0, 2), [60.0, 10.0, 10.0, 10.0]))  # fired, then low
# A warning above critical: critical fires below the warning's clear, and clears on the
# time below that clear kept from before (the shortcut must keep those times too).
@example(case=(Thresholds(98, 3, 53, 2, 0, 2), [1.0, None, 4.0, 1.0]))
@settings(max_examples=1000, deadline=None)
def test_the_settled_shortcut_changes_nothing(case: tuple[Thresholds, list[float | None]]) -> None:
    """A rule that skips its walk while ok and below every level answers, sample by
    sample, as one that always walks."""
    thresholds, values = case
    quick = ThresholdRule("cpu", "cpu.percent", thresholds)
    walking = ThresholdRule("cpu", "cpu.percent", thresholds)
    walking._settled = lambda value: False  # type: ignore[method-assign]
    for second, value in enumerate(values):
        assert quick.evaluate(value, second) == walking.evaluate(value, second)
        assert quick.level == walking.level


def test_a_container_gone_resolves_its_alerts_after_ticks_of_the_same_list() -> None:
    """While the same containers are listed the walk for gone ones is skipped; one
    removed resolves its alerts at once, and one still alerting when it goes (its
    clear time not yet held) resolves once that time has passed."""
    settings = parse_settings(
        {"container_unhealthy": {"clear_seconds": 5, "for_seconds": 0}, "anomaly": False}
    )
    engine = AlertEngine(settings, interval=1.0, cores=1)

    def containers(ts: float, *items: dict[str, Any]) -> list[tuple[str, str]]:
        part = {"running": len(items), "unhealthy": 0, "stopped": 0, "items": list(items)}
        changed = engine.evaluate({**sample(ts), "containers": part})
        return [(a["rule"], a["level"]) for a in changed]

    web = {"name": "web", "state": "running", "health": "unhealthy", "restarts": 0}
    job = {"name": "job", "state": "exited", "exit_code": 3, "restarts": 0}
    db = {"name": "db", "state": "running", "health": "healthy", "restarts": 0}
    assert sorted(containers(1.0, web, job, db)) == [
        ("container_exited:job", CRITICAL),
        ("container_unhealthy:web", CRITICAL),
    ]
    for ts in range(2, 12):
        assert containers(float(ts), web, job, db) == []
    assert containers(12.0, web, db) == [("container_exited:job", OK)]  # removed: at once
    assert containers(13.0, db) == []  # web's clear time (5 s) starts now
    assert containers(17.0, db) == []
    assert containers(18.0, db) == [("container_unhealthy:web", OK)]
    assert containers(19.0, db) == []
    assert not [n for n in engine._rules if n.endswith((":web", ":job"))]


CONTAINER = st.fixed_dictionaries(
    {
        "name": st.sampled_from(["web", "db", "job"]),
        "state": st.sampled_from(["running", "exited", "restarting"]),
        "exit_code": st.sampled_from([0, 1, None]),
        "health": st.sampled_from([None, "healthy", "unhealthy"]),
        "restarts": st.sampled_from([0, 1, 2, 5, 9, None]),
    }
)
TICKS = st.lists(
    st.tuples(st.sampled_from([1.0, 1.0, 7.0, 301.0]), st.lists(CONTAINER, max_size=3)),
    max_size=40,
)


@given(ticks=TICKS)
@settings(max_examples=300, deadline=None)
def test_skipping_calm_containers_changes_nothing(
    ticks: list[tuple[float, list[dict[str, Any]]]],
) -> None:
    """An engine that skips a container whose facts stayed the same while its rules are
    settled at 0 answers, tick by tick, as one that judges every container every time
    (hold times of 10 s and 60 s, restarts rising and ageing out of their window)."""
    settings = parse_settings({"anomaly": False})
    quick = AlertEngine(settings, interval=1.0, cores=1)
    judging = AlertEngine(settings, interval=1.0, cores=1)
    judging.SKIP_CALM = False
    ts = 1000.0
    for step, items in ticks:
        ts += step
        named = {c["name"]: c for c in items}  # one row a name, as a sample has
        part = {"running": 0, "unhealthy": 0, "stopped": 0, "items": list(named.values())}
        changed = [quick.evaluate({**sample(ts + 0.5 * i), "containers": part})
                   for i in range(2)]  # fmt: skip
        wanted = [judging.evaluate({**sample(ts + 0.5 * i), "containers": part})
                  for i in range(2)]  # fmt: skip
        assert [[(a["rule"], a["level"]) for a in c] for c in changed] == [
            [(a["rule"], a["level"]) for a in w] for w in wanted
        ]
        assert quick.active.keys() == judging.active.keys()
