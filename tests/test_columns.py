"""History in columns: the same values as the rows, in a seventh of the bytes."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

from flask.testing import FlaskClient

from server.history.columns import ColumnRing, leaves, to_columns
from server.history.ring import HistoryRing
from server.history.store import HistoryStore
from server.series import CHARTED
from server.state import DashboardState
from testkit.synthetic import fill, synthetic_sample

T0 = 1_790_000_040.0


def row_of(answer: dict[str, Any], index: int) -> dict[str, Any]:
    """Sample `index` of a column answer, as its leaves."""
    values = dict(answer["constant"])
    values.update({key: column[index] for key, column in answer["series"].items()})
    return values


def assert_same_values(answer: dict[str, Any], samples: list[dict[str, Any]]) -> None:
    assert answer["format"] == "columns"
    assert answer["ts"] == [s["ts"] for s in samples]
    for index, sample in enumerate(samples):
        expected = dict(leaves(sample))
        got = {k: v for k, v in row_of(answer, index).items() if k in expected or v is not None}
        assert got == expected, index


def test_columns_carry_every_value_of_the_rows() -> None:
    rng = random.Random(5)
    samples = [synthetic_sample(T0 + i, i + 1, rng) for i in range(300)]
    answer = to_columns(samples)
    assert_same_values(answer, samples)
    # What does not change each second is sent once.
    assert answer["constant"]["disks./home.device"] == "/dev/sda2"
    assert answer["constant"]["memory.total"] == 8_000_000_000
    assert len(answer["series"]["cpu.percent"]) == 300
    assert "seq" not in answer["series"] and "seq" not in answer["constant"]
    rows = len(json.dumps(samples, separators=(",", ":")))
    columns = len(json.dumps(answer, separators=(",", ":")))
    assert columns < rows / 5, (columns, rows)


def test_a_disk_that_comes_and_goes_is_null_where_missing() -> None:
    rng = random.Random(6)
    samples = [synthetic_sample(T0 + i, i + 1, rng) for i in range(6)]
    for sample in samples[2:4]:
        sample["disks"] = sample["disks"][:1]  # /home unmounted for two ticks
    answer = to_columns(samples)
    assert (
        answer["series"]["disks./home.used"]
        == [48_000_000_000] * 2 + [None] * 2 + [48_000_000_000] * 2
    )
    assert_same_values(answer, samples)


def test_the_ring_keeps_its_columns_as_samples_arrive_and_fall_off() -> None:
    rng = random.Random(7)
    ring = ColumnRing(50)
    samples = [synthetic_sample(T0 + i, i + 1, rng) for i in range(130)]
    samples[10]["extra"] = {"gone": 1}  # a key that falls off with its sample
    for sample in samples:
        ring.append(sample)
    answer = ring.columns()
    assert answer == to_columns(samples[-50:])
    assert "extra.gone" not in answer["series"] and "extra.gone" not in answer["constant"]
    assert ring.columns(since=T0 + 119) == to_columns(samples[-10:])


def test_a_replay_into_the_ring_rebuilds_its_columns_in_time_order() -> None:
    rng = random.Random(8)
    samples = [synthetic_sample(T0 + i, i + 1, rng) for i in range(20)]
    ring = HistoryRing(history_seconds=15, interval=1)
    for sample in samples[:10] + samples[12:]:
        ring.append(sample)
    ring.insert(samples[11])
    ring.insert(samples[11])  # twice: kept once
    kept = [s for s in samples if s is not samples[10]][-15:]
    assert [s["ts"] for s in ring.rows()] == [s["ts"] for s in kept]
    assert ring.columns() == to_columns(kept)


def test_the_stores_tier_columns_equal_the_points(tmp_path: Path) -> None:
    clock = [T0]
    store = HistoryStore(str(tmp_path / "h.sqlite3"), clock=lambda: clock[0])
    store.open()
    try:
        fill(store, clock, 1800, T0, batch=300)
        for step in (1, 10, 60, 30, 600):  # raw, the tiers, and tiers regrouped
            points = store.points(T0, T0 + 1800, step)
            assert len(points) >= 1800 // step - 1, step
            assert store.columns(T0, T0 + 1800, step) == to_columns(points, step), step
        assert store.columns(T0 + 10_000, T0 + 20_000, 10) == to_columns([], 10)
    finally:
        store.stop()


def test_a_ring_gives_only_the_named_series_and_their_bands() -> None:
    """What a page draws (series.CHARTED), not every column: a host of 1,024 cores
    has 1,024 per-core columns the page render never copies."""
    ring = ColumnRing(10)
    for i in range(3):
        ring.append(
            {
                "ts": T0 + i,
                "cpu": {"percent": float(i), "per_core": [1.0] * 8},
                "memory": {"used": 10 * i},
                "swap": {"percent": 0.0},
                "bands": {"cpu.percent": [0.5, 1.5 + i], "memory.used": [9, 19]},
            }
        )
    kept = ring.columns(metrics={"cpu.percent", "swap.percent"})
    assert set(kept["series"]) == {"cpu.percent", "bands.cpu.percent.1"}
    assert kept["constant"] == {"swap.percent": 0.0, "bands.cpu.percent.0": 0.5}
    assert kept["ts"] == [T0, T0 + 1, T0 + 2]
    assert "memory.used" in ring.columns()["series"]  # all of them without a filter


def test_api_history_in_columns(client: FlaskClient, state: DashboardState) -> None:
    for _ in range(3):
        state.sampler.tick()
    rows = client.get("/api/history").get_json()["samples"]
    answer = client.get("/api/history?format=columns").get_json()
    assert answer["step"] == 1
    assert_same_values(answer, rows)
    assert client.get("/api/history?format=columns&seconds=86400").status_code == 200
    bad = client.get("/api/history?format=xml")
    assert bad.status_code == 400 and "format" in bad.get_json()["error"]


def test_the_page_carries_its_history_and_the_socket_sends_only_what_came_after(
    client: FlaskClient, state: DashboardState
) -> None:
    import html
    import re

    for _ in range(3):
        state.sampler.tick()
    page = client.get("/").get_data(as_text=True)
    found = re.search(r'<script type="application/json" id="history-data">(.*?)</script>', page)
    assert found
    embedded = json.loads(html.unescape(found.group(1)))
    assert embedded["format"] == "columns" and len(embedded["ts"]) == 3
    # Only what the charts draw: a third of the bytes of every series.
    kept = set(embedded["series"]) | set(embedded["constant"])
    assert kept <= CHARTED and "cpu.percent" in kept, kept
    rows = client.get("/api/history").get_json()["samples"]
    assert [row_of(embedded, i)["cpu.percent"] for i in range(3)] == [
        s["cpu"]["percent"] for s in rows
    ]
    state.sampler.tick()
    socketio = client.application.extensions["socketio"]
    page_socket = socketio.test_client(
        client.application, auth={"format": "columns", "since": embedded["ts"][-1]}
    )
    history = next(e for e in page_socket.get_received() if e["name"] == "history")["args"][0]
    assert history["since"] == embedded["ts"][-1]
    assert len(history["ts"]) == 1 and history["ts"][0] > embedded["ts"][-1]
    assert history["latest"]["seq"] == 4
    page_socket.disconnect()
    # A `since` that is not a number is the whole history.
    whole = socketio.test_client(client.application, auth={"format": "columns", "since": "x"})
    history = next(e for e in whole.get_received() if e["name"] == "history")["args"][0]
    assert len(history["ts"]) == 4 and "since" not in history
    whole.disconnect()
