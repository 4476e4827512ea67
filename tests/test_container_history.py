"""Per-container history (server/history/entities.py, through the store): each
container's CPU and memory in 10 s and 1 min tiers, exact, merged on replay,
aged out, counted in its host's share, and bounded while writes fail."""

from __future__ import annotations

import random
import sqlite3
from pathlib import Path
from typing import Any

from server.history.entities import KEEP_BUCKETS, ROW_BYTES
from server.history.store import HistoryStore, Retention
from testkit.synthetic import synthetic_sample

T0 = 1_790_000_040.0  # a multiple of 60


def make_store(tmp_path: Path, clock: list[float], **kwargs: Any) -> HistoryStore:
    store = HistoryStore(str(tmp_path / "history.sqlite3"), clock=lambda: clock[0], **kwargs)
    store.open()
    return store


def with_containers(ts: float, seq: int, items: list[dict[str, Any]]) -> dict[str, Any]:
    sample = synthetic_sample(ts, seq, random.Random(seq))
    sample["containers"] = {"running": len(items), "unhealthy": 0, "stopped": 0, "items": items}
    return sample


def item(name: str, cpu: float | None, memory: int | None) -> dict[str, Any]:
    return {"name": name, "state": "running", "cpu_percent": cpu, "memory_used": memory}


def rows(tmp_path: Path, table: str) -> list[tuple[Any, ...]]:
    db = sqlite3.connect(tmp_path / "history.sqlite3")
    try:
        return db.execute(
            f"SELECT host, name, ts, n, cpu_avg, cpu_max, memory_avg, memory_max FROM {table} "
            "ORDER BY host, name, ts"
        ).fetchall()
    finally:
        db.close()


def test_each_containers_cpu_and_memory_are_kept_exactly_in_both_tiers(tmp_path: Path) -> None:
    clock = [T0]
    store = make_store(tmp_path, clock)
    for i in range(125):  # two whole minutes and a bit: the last buckets are not over
        items = [item("web", float(i % 10), 1000 * i), item("db", None if i % 2 else 2.0, None)]
        store.add(with_containers(T0 + i, i + 1, items))
    clock[0] = T0 + 125
    store.flush()
    tens = [r for r in rows(tmp_path, "containers_10s") if r[1] == "web"]
    assert [r[2] for r in tens] == [T0 + 10 * k for k in range(12)]  # 120-129 still summing
    for k, (_host, _name, _ts, n, cpu, cpu_max, memory, memory_max) in enumerate(tens):
        assert (n, cpu, cpu_max) == (10, 4.5, 9.0)
        assert memory == round(sum(1000 * i for i in range(10 * k, 10 * k + 10)) / 10)
        assert memory_max == 1000 * (10 * k + 9)
    db_rows = [r for r in rows(tmp_path, "containers_10s") if r[1] == "db"]
    assert all(r[3:] == (10, 2.0, 2.0, None, None) for r in db_rows)  # nulls are not zeros
    minutes = [r for r in rows(tmp_path, "containers_1m") if r[1] == "web"]
    assert [(r[2], r[3], r[4]) for r in minutes] == [(T0, 60, 4.5), (T0 + 60, 60, 4.5)]
    assert minutes[1][6] == round(sum(1000 * i for i in range(60, 120)) / 60)
    # Read back as the page asks: 10 s points, or regrouped exactly.
    answer = store.container_columns("local", "web", T0, T0 + 200)
    assert answer is not None and answer["step"] == 10 and len(answer["ts"]) == 12
    assert answer["cpu_percent"][0] == 4.5 and answer["memory_used_max"][-1] == 119_000
    halves = store.container_columns("local", "web", T0, T0 + 200, step=30)
    assert halves is not None and halves["step"] == 30 and halves["n"] == [30, 30, 30, 30]
    store.stop()  # the buckets in progress are written on stop
    assert [r[2] for r in rows(tmp_path, "containers_10s") if r[1] == "web"][-1] == T0 + 120


def test_a_bucket_written_twice_is_merged_by_its_counts(tmp_path: Path) -> None:
    """A hub stopped mid-bucket writes what it summed; what comes after merges into it."""
    clock = [T0]
    store = make_store(tmp_path, clock)
    for i in range(4):
        store.add(with_containers(T0 + i, i + 1, [item("web", 10.0, 100)]))
    store.stop()
    store = make_store(tmp_path, clock)
    for i in range(4, 10):
        store.add(with_containers(T0 + i, i + 1, [item("web", 20.0, 400)]))
    store.add(with_containers(T0 + 10, 11, [item("web", 0.0, 0)]))
    store.flush()
    [(_h, _n, ts, n, cpu, cpu_max, memory, memory_max)] = rows(tmp_path, "containers_10s")[:1]
    assert (ts, n, cpu, cpu_max, memory, memory_max) == (T0, 10, 16.0, 20.0, 280, 400)
    store.stop()


def test_container_rows_age_out_and_count_in_their_hosts_share(tmp_path: Path) -> None:
    clock = [T0]
    store = make_store(tmp_path, clock, retention=Retention(raw=600, tier_10s=600, tier_1m=3600))
    names = [item(f"c{k}", 1.0, 1) for k in range(5)]
    for i in range(121):
        store.add(with_containers(T0 + i, i + 1, names), host="agent")
    clock[0] = T0 + 121
    store.flush()
    written = len(rows(tmp_path, "containers_10s")) + len(rows(tmp_path, "containers_1m"))
    assert written == 5 * 12 + 5 * 2
    raw_bytes = sum(len(s) for (s,) in sqlite3.connect(tmp_path / "history.sqlite3").execute(
        "SELECT sample FROM raw WHERE host = 'agent'"))  # fmt: skip
    assert store.host_bytes["agent"] == raw_bytes + written * ROW_BYTES
    store.stop()  # and the buckets in progress: 5 rows in each tier more
    store = make_store(tmp_path, clock, retention=Retention(raw=600, tier_10s=600, tier_1m=3600))
    assert store.host_bytes["agent"] == raw_bytes + (written + 10) * ROW_BYTES  # counted at open
    clock[0] = T0 + 800  # past the 10 s tier's retention, not the minute's
    store.add(with_containers(T0 + 800, 800, []), host="agent")
    store.flush()
    assert rows(tmp_path, "containers_10s") == []
    assert len(rows(tmp_path, "containers_1m")) == 15
    assert store.host_bytes["agent"] == 15 * ROW_BYTES + sum(
        len(s) for (s,) in sqlite3.connect(tmp_path / "history.sqlite3").execute(
            "SELECT sample FROM raw WHERE host = 'agent'"))  # fmt: skip
    store.stop()


def test_an_agent_past_its_share_writes_no_container_rows(tmp_path: Path) -> None:
    clock = [T0]
    store = make_store(tmp_path, clock, max_bytes=1 << 20)
    store.host_bytes["greedy"] = 10 << 20  # far past its share of 1 MiB
    for i in range(11):
        store.add(with_containers(T0 + i, i + 1, [item("x", 1.0, 1)]), host="greedy")
        store.add(with_containers(T0 + i, i + 1, [item("y", 1.0, 1)]), host="fair")
    clock[0] = T0 + 11
    store.flush()
    assert {r[0] for r in rows(tmp_path, "containers_10s")} == {"fair"}
    store.stop()


def test_while_writes_fail_the_buckets_waiting_stay_bounded(tmp_path: Path) -> None:
    """Churn: a new name every second for an hour, and the disk refusing every write."""
    clock = [T0]
    store = make_store(tmp_path, clock)
    assert store._db is not None
    store._db.execute("PRAGMA busy_timeout = 20")  # each failed try, quick
    locker = sqlite3.connect(tmp_path / "history.sqlite3", timeout=0.1)
    locker.execute("BEGIN EXCLUSIVE")
    try:
        for i in range(3600):
            store.add(with_containers(T0 + i, i + 1, [item(f"churn-{i}", 1.0, 1)]))
            if i % 300 == 0:
                store.flush()
        store.flush()
        assert store.failure is not None
        series = store.containers
        assert len(series.buckets) <= 2 * KEEP_BUCKETS
        assert sum(len(names) for names in series.buckets.values()) <= 2 * KEEP_BUCKETS * 60
    finally:
        locker.rollback()
        locker.close()
    store.flush()
    assert not store.containers.due()  # what was kept is written once it can be
    store.stop()
