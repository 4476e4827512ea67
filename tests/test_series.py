"""server/series.py: every derived form of a series agrees with its declaration."""

from __future__ import annotations

import csv
import io
import random
import sqlite3
from pathlib import Path

from flask.testing import FlaskClient
from prometheus_client.parser import text_string_to_metric_families

from server.alerts.rules import AlertEngine
from server.alerts.settings import DEFAULTS, page_levels, parse_settings
from server.history.csv_export import history_csv_text
from server.history.store import HistoryStore
from server.series import BY_METRIC, CHARTED, CHARTS, PERCENT, RATE, SERIES, STORED, WATCHED, lookup
from server.state import DashboardState
from server.wire import compact_json
from testkit.synthetic import synthetic_sample

T0 = 1_790_000_040.0


def a_sample() -> dict[str, object]:
    sample = synthetic_sample(T0, 1, random.Random(5))
    sample["processes"] = []
    return sample


def test_every_series_reads_a_value_from_a_real_shaped_sample() -> None:
    sample = a_sample()
    for series in SERIES:
        value = series.value(sample, cores=4)
        assert isinstance(value, int | float), series.metric
    assert lookup(sample, ("disks", "/", "percent")) == STORED[4].value(sample)
    assert lookup(sample, ("load", 7)) is None and lookup(sample, ("nothing", "here")) is None


def test_store_columns_and_points_follow_the_declaration(tmp_path: Path) -> None:
    store = HistoryStore(str(tmp_path / "h.sqlite3"), clock=lambda: T0 + 100)
    store.open()
    samples = [synthetic_sample(T0 + i, i + 1, random.Random(i)) for i in range(20)]
    for sample in samples:
        store.add(sample)
    store.flush()
    db = sqlite3.connect(store.path)
    columns = [row[1] for row in db.execute("PRAGMA table_info(raw)")]
    assert columns == ["host", "ts", "seq", "sample", *[s.column for s in STORED]]
    tier = [row[1] for row in db.execute("PRAGMA table_info(points_10s)")]
    assert tier == [
        "host",
        "ts",
        "n",
        *[f"{s.column}_{k}" for s in STORED for k in ("avg", "min", "max")],
    ]
    db.close()
    points = store.points(T0, T0 + 20, 10)
    first = samples[:10]
    for series in STORED:
        values = [series.value(s) for s in first]
        # Rounded as the samples carry it (to half a unit of the last digit).
        average = sum(values) / len(values)
        assert abs(series.value(points[0]) - average) <= 0.5 * 10**-series.digits + 1e-9, series
        assert points[0]["bands"][series.metric] == [min(values), max(values)], series
    store.stop()


def test_csv_header_and_cells_follow_the_declaration() -> None:
    sample = a_sample()
    rows = list(csv.reader(io.StringIO(history_csv_text([sample], 1))))
    header = rows[0]
    expected = ["ts", "time_utc", "step", "n"]
    for series in STORED:
        expected += [str(series.column), f"{series.column}_min", f"{series.column}_max"]
    assert header == expected
    cells = dict(zip(header, rows[1], strict=True))
    for series in STORED:
        assert float(cells[str(series.column)]) == series.value(sample)


def test_metrics_families_follow_the_declaration(
    client: FlaskClient, state: DashboardState
) -> None:
    state.sampler.tick()
    latest = state.sampler.latest
    assert latest is not None
    text = client.get("/metrics").get_data(as_text=True)
    families = {f.name: f for f in text_string_to_metric_families(text)}
    for series in SERIES:
        if not series.prometheus:
            continue
        family = families[series.prometheus]
        assert family.documentation == series.description
        if series.per_disk:
            exported = {s.labels["mountpoint"]: s.value for s in family.samples}
            value = exported["/"]
        else:
            value = family.samples[0].value
        want = series.value(latest)
        if want is None:
            continue
        if series.unit == PERCENT:
            want = want / 100
        assert value == want, series.metric


def test_alert_defaults_and_page_levels_come_from_the_declaration(
    state: DashboardState,
) -> None:
    for rule, series in WATCHED.items():
        assert series.levels is not None and DEFAULTS[rule] == series.levels
        assert state.static.levels[rule] == {
            "warning": series.levels.warning,
            "critical": series.levels.critical,
        }
    # A rule's level changed in the settings changes the page's too.
    settings = parse_settings({"memory": {"warning": 60, "critical": 70}})
    assert page_levels(settings)["memory"] == {"warning": 60.0, "critical": 70.0}


def test_alert_rules_watch_the_declared_values() -> None:
    engine = AlertEngine(
        parse_settings({"cpu": {"warning": 10, "critical": 20, "for_seconds": 0}}),
        interval=1,
        cores=2,
    )
    sample = a_sample()
    sample["cpu"] = {"percent": 15.0, "per_core": [15.0, 15.0]}
    changes = engine.evaluate(sample)
    cpu = next(a for a in changes if a["rule"] == "cpu")
    assert cpu["metric"] == WATCHED["cpu"].metric and cpu["value"] == 15.0


def test_the_page_charts_declared_series_one_unit_a_chart(client: FlaskClient) -> None:
    for chart in CHARTS:
        units = {BY_METRIC[metric].unit for _, metric in chart.lines}
        # The page draws percent charts 0-100 and formats rates; nothing else.
        assert units == {chart.unit} and chart.unit in (PERCENT, RATE), chart
    assert {metric for c in CHARTS for _, metric in c.lines} == CHARTED
    page = client.get("/").get_data(as_text=True)
    for chart in CHARTS:
        lines = compact_json([list(line) for line in chart.lines])  # the one JSON writer
        assert f'id="chart-{chart.id}" data-lines=\'{lines}\' data-unit="{chart.unit}"' in page
