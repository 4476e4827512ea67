"""server/history/store.py: tiers, exact downsampling, retention, size, faults."""

from __future__ import annotations

import json
import logging
import os
import random
import sqlite3
import time
from pathlib import Path

import pytest

from server.history.store import HistoryStore, Retention, Ticket
from testkit.synthetic import fill, synthetic_sample

T0 = 1_790_000_040.0  # a multiple of 60: buckets of 10 s and 1 min start on it


def make_store(tmp_path: Path, clock: list[float], **kwargs: object) -> HistoryStore:
    store = HistoryStore(str(tmp_path / "history.sqlite3"), clock=lambda: clock[0], **kwargs)  # type: ignore[arg-type]
    store.open()
    return store


def test_downsampled_average_min_max_are_exact(tmp_path: Path) -> None:
    clock = [T0]
    store = make_store(tmp_path, clock)
    rng = random.Random(3)
    for i in range(125):  # 2 full minutes and a bit: the last bucket is not over
        sample = synthetic_sample(T0 + i, i + 1, rng)
        sample["cpu"]["percent"] = float(i)
        sample["net"]["rx_bps"] = 1000 * (i % 10)
        store.add(sample)
    clock[0] = T0 + 125
    store.flush()
    tens = store.points(T0, T0 + 200, 10)
    assert [p["ts"] for p in tens] == [T0 + 10 * k for k in range(12)]  # 120-129 not over yet
    for k, point in enumerate(tens):
        values = list(range(10 * k, 10 * k + 10))
        assert point["n"] == 10 and point["step"] == 10
        assert point["cpu"]["percent"] == sum(values) / 10
        assert point["bands"]["cpu.percent"] == [values[0], values[-1]]
        assert point["net"]["rx_bps"] == 4500
        assert point["bands"]["net.rx_bps"] == [0, 9000]
    minutes = store.points(T0, T0 + 200, 60)
    assert [(p["ts"], p["n"]) for p in minutes] == [(T0, 60), (T0 + 60, 60)]
    assert minutes[1]["cpu"]["percent"] == sum(range(60, 120)) / 60
    assert minutes[1]["bands"]["cpu.percent"] == [60, 119]
    raw = store.points(T0, T0 + 200, 1)
    assert [s["seq"] for s in raw] == list(range(1, 126))
    store.stop()


def test_retention_deletes_old_rows(tmp_path: Path) -> None:
    clock = [T0]
    store = make_store(tmp_path, clock, retention=Retention(raw=600, tier_10s=1200, tier_1m=2400))
    fill(store, clock, 3000, T0, batch=100)
    db = sqlite3.connect(tmp_path / "history.sqlite3")
    oldest_raw = db.execute("SELECT min(ts) FROM raw").fetchone()[0]
    oldest_10 = db.execute("SELECT min(ts) FROM points_10s").fetchone()[0]
    oldest_1m = db.execute("SELECT min(ts) FROM points_1m").fetchone()[0]
    now = T0 + 3000
    # Retention runs at most once a minute: allow that much slack.
    assert now - 600 - 60 <= oldest_raw and now - 1200 - 60 <= oldest_10
    assert now - 2400 - 120 <= oldest_1m
    assert db.execute("SELECT count(*) FROM raw").fetchone()[0] <= 660
    db.close()
    store.stop()


def test_seven_days_stay_under_the_stated_size(tmp_path: Path) -> None:
    clock = [T0]
    store = make_store(tmp_path, clock)
    fill(store, clock, 7 * 86400, T0, batch=900)
    counts = {t: len(store.read(f"SELECT ts FROM {t}")) for t in ("raw", "points_10s", "points_1m")}
    store.stop()
    assert counts["raw"] <= 3600 + 60 + 900
    assert 8640 - 10 <= counts["points_10s"] <= 8640 + 12
    assert 10080 - 5 <= counts["points_1m"] <= 10080 + 2
    size = sum(os.path.getsize(p) for p in tmp_path.iterdir() if p.name.startswith("history"))
    assert size < 16 * 1024 * 1024, size  # the bound docs/history.md states


def test_corrupt_file_is_moved_aside(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "history.sqlite3"
    path.write_bytes(b"this is not a database" * 100)
    clock = [T0]
    with caplog.at_level(logging.WARNING, logger="dashboard.store"):
        store = make_store(tmp_path, clock)
    asides = [p for p in tmp_path.iterdir() if ".corrupt-" in p.name]
    assert len(asides) == 1 and asides[0].read_bytes().startswith(b"this is not")
    assert "moved it to" in caplog.text
    fill(store, clock, 30, T0)
    assert len(store.points(T0, T0 + 60, 1)) == 30  # the fresh one works
    store.stop()


def test_full_database_keeps_own_samples_refuses_tickets_and_recovers(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """At its cap (SQLite's own "disk is full"): one error line, the failure named,
    agents' tickets refused for a retry, this host's samples kept in memory (bounded)
    and written once retention has made room."""
    clock = [T0]
    store = make_store(
        tmp_path, clock, max_bytes=96 * 1024, keep_local=30, retention=Retention(raw=600)
    )
    with caplog.at_level(logging.WARNING, logger="dashboard.store"):
        fill(store, clock, 2000, T0, batch=50)
        assert store.failure is not None and "disk full" in store.failure
        assert store.written > 0 and store.pending == 30  # the newest 30 of our own, kept
        ticket = Ticket()
        # ~54 KB: more than the room left when a batch of 80 did not fit (~47 KB), whatever
        # the pages' layout, and within the agent's share of the cap (59 KB).
        agents = synthetic_sample(T0 + 3000, 1, random.Random())
        agents["disks"] = agents["disks"] * 210
        store.add(agents, host="agent", ticket=ticket)
        store.flush()
        assert ticket.done.is_set() and ticket.error and ticket.error.startswith("store: disk full")
        assert not ticket.permanent  # the agent keeps it and sends it again
        assert store.pending == 30  # the agent's sample is the agent's to keep
        errors = [r for r in caplog.records if "cannot write" in r.getMessage()]
        assert len(errors) == 1  # once, not once per batch
        kept = [s["ts"] for _h, s, _t in store._pending]
        assert kept == [T0 + i for i in range(1970, 2000)]
        # Retention (10 min later, raw kept 10 min) ages rows out: room again.
        clock[0] = T0 + 2000 + 600
        store.flush()
    assert store.failure is None and store.pending == 0
    assert "writes again" in caplog.text
    assert [p["ts"] for p in store.points(T0 + 1900, T0 + 2000, 1)] == kept  # on disk now
    store.add(synthetic_sample(T0 + 5000, 1, random.Random()))  # add() never raises
    store.stop()


def test_ticket_resolves_after_commit_and_replays_are_kept_once(tmp_path: Path) -> None:
    clock = [T0]
    store = make_store(tmp_path, clock)
    ticket = Ticket()
    rng = random.Random(5)
    samples = [synthetic_sample(T0 + i, i + 1, rng) for i in range(5)]
    for sample in samples:
        store.add(sample, host="agent-1", ticket=ticket)
    assert not ticket.done.is_set()  # nothing is acknowledged before its commit
    store.flush()
    assert ticket.wait(0) is None
    # A replay whose clock offset was measured anew: a few ms off, the same samples.
    replay = Ticket()
    for sample in samples:
        store.add({**sample, "ts": sample["ts"] + 0.004}, host="agent-1", ticket=replay)
    store.add(synthetic_sample(T0 + 5, 6, rng), host="agent-1", ticket=replay)
    store.flush()
    assert replay.wait(0) is None
    assert [p["ts"] for p in store.points(T0, T0 + 10, 1, host="agent-1")] == [
        T0 + i for i in range(6)
    ]
    store.stop()


def test_one_hosts_unstorable_sample_spoils_only_its_own_batch(tmp_path: Path) -> None:
    """An integer past 64 bits: that batch is refused for good; the others commit."""
    clock = [T0]
    store = make_store(tmp_path, clock)
    rng = random.Random(6)
    bad, good = Ticket(), Ticket()
    hostile = synthetic_sample(T0, 1, rng)
    hostile["memory"]["used"] = 2**70
    store.add(hostile, host="hostile", ticket=bad)
    store.add(synthetic_sample(T0, 1, rng), host="good", ticket=good)
    store.add(synthetic_sample(T0, 1, rng))  # the hub's own
    store.flush()
    assert bad.error and bad.error.startswith("shape") and bad.permanent
    assert good.wait(0) is None and store.failure is None
    assert len(store.points(T0, T0 + 1, 1, host="good")) == 1
    assert len(store.points(T0, T0 + 1, 1)) == 1
    assert store.points(T0, T0 + 1, 1, host="hostile") == []
    store.stop()


def test_writer_loop_survives_a_failing_flush(tmp_path: Path) -> None:
    clock = [T0]
    store = make_store(tmp_path, clock, batch_seconds=0.05)
    calls = []

    def broken(final: bool = False) -> None:
        calls.append(1)
        raise RuntimeError("a bug in one batch")

    original = store.flush
    store.flush = broken  # type: ignore[method-assign]
    store.start()
    deadline = time.monotonic() + 5
    while len(calls) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(calls) >= 3 and store.write_failures >= 3  # the loop went on
    store.flush = original  # type: ignore[method-assign]
    ticket = Ticket()
    store.add(synthetic_sample(T0, 1, random.Random()), host="a", ticket=ticket)
    assert ticket.wait(5) is None
    store.stop()


def test_readers_never_block_the_writer(tmp_path: Path) -> None:
    clock = [T0]
    store = make_store(tmp_path, clock)
    fill(store, clock, 100, T0)
    reader = sqlite3.connect(tmp_path / "history.sqlite3")
    reader.execute("BEGIN")
    assert reader.execute("SELECT count(*) FROM raw").fetchone()[0] == 100  # holds a snapshot
    started = time.monotonic()
    fill(store, clock, 100, T0 + 100)
    assert time.monotonic() - started < 2
    assert store.dropped == 0 and store.written == 200
    assert reader.execute("SELECT count(*) FROM raw").fetchone()[0] == 100  # its snapshot
    reader.execute("COMMIT")
    reader.close()
    store.stop()


def test_pick_step_takes_the_finest_tier_that_covers(tmp_path: Path) -> None:
    clock = [T0]
    store = make_store(tmp_path, clock)
    assert store.pick_step(T0 - 900) == 1
    assert store.pick_step(T0 - 3600) == 1
    assert store.pick_step(T0 - 3630) == 1  # a minute of slack for "the last hour"
    assert store.pick_step(T0 - 3661) == 10
    assert store.pick_step(T0 - 86400) == 10
    assert store.pick_step(T0 - 86461) == 60
    assert store.pick_step(T0 - 7 * 86400) == 60
    assert store.pick_step(T0 - 300, step=5) == 10
    # Coarser than a tier: a multiple of it, regrouped.
    assert store.pick_step(T0 - 300, step=30) == 30
    assert store.pick_step(T0 - 7 * 86400, step=500) == 540
    assert store.pick_step(T0 - 86400, step=600) == 600
    store.stop()


def test_recent_refills_in_order(tmp_path: Path) -> None:
    clock = [T0]
    store = make_store(tmp_path, clock)
    fill(store, clock, 1200, T0, batch=100)
    recent = store.recent(900)
    assert len(recent) == 899 or len(recent) == 900
    assert [s["seq"] for s in recent] == sorted(s["seq"] for s in recent)
    assert recent[-1]["seq"] == 1200
    store.stop()


def test_the_store_keeps_samples_as_in_history(tmp_path: Path) -> None:
    clock = [T0]
    store = make_store(tmp_path, clock)
    sample = synthetic_sample(T0, 1, random.Random(5))
    sample["processes"] = [{"pid": 1, "name": "init", "cpu_percent": 0.0, "memory_percent": 0.1}]
    sample["server"] = {"cpu_percent": 0.3, "rss": 1, "tick_ms": 1.0, "clients": 0}
    store.add(sample)
    store.flush()
    kept = store.points(T0 - 1, T0 + 1, 1)
    store.stop()
    assert len(kept) == 1 and "processes" not in kept[0] and "server" not in kept[0]
    assert kept[0]["cpu"] == sample["cpu"] and kept[0]["seq"] == 1


def test_a_database_from_before_the_fleet_migrates_in_place(tmp_path: Path) -> None:
    from server.history.tiers import COLUMNS

    path = tmp_path / "history.sqlite3"
    old = sqlite3.connect(path)
    aggregates = ", ".join(f"{n}_avg REAL, {n}_min REAL, {n}_max REAL" for n in COLUMNS)
    old.executescript(
        f"CREATE TABLE raw (ts REAL PRIMARY KEY, seq INTEGER, sample TEXT NOT NULL, "
        f"{', '.join(c + ' REAL' for c in COLUMNS)});"
        f"CREATE TABLE points_10s (ts INTEGER PRIMARY KEY, n INTEGER, {aggregates});"
        f"CREATE TABLE points_1m (ts INTEGER PRIMARY KEY, n INTEGER, {aggregates});"
    )
    rng = random.Random(1)
    for i in range(30):
        sample = synthetic_sample(T0 + i, i + 1, rng)
        old.execute(
            "INSERT INTO raw (ts, seq, sample, cpu_percent) VALUES (?, ?, ?, ?)",
            (sample["ts"], i + 1, json.dumps(sample), sample["cpu"]["percent"]),
        )
    old.commit()
    old.close()
    clock = [T0 + 40]
    store = HistoryStore(str(path), clock=lambda: clock[0], local_host="hub")
    store.open()
    kept = store.points(T0, T0 + 40, 1, host="hub")
    assert [p["seq"] for p in kept] == list(range(1, 31))
    assert store.points(T0, T0 + 40, 1, host="other") == []
    store.add(synthetic_sample(T0 + 31, 31, rng), host="agent-1")
    store.flush()
    assert len(store.points(T0, T0 + 40, 1, host="agent-1")) == 1
    store.stop()


def test_a_replay_is_kept_once_and_refolds_its_buckets(tmp_path: Path) -> None:
    clock = [T0 + 120]
    store = make_store(tmp_path, clock)
    rng = random.Random(2)
    samples = [synthetic_sample(T0 + i, i + 1, rng) for i in range(100)]
    for sample in samples[50:]:
        store.add(sample, host="b")
    store.flush()
    for sample in samples:  # the replay: the first half is new, the second a repeat
        store.add(sample, host="b")
    store.flush()
    raw = store.points(T0, T0 + 100, 1, host="b")
    assert [p["ts"] for p in raw] == [s["ts"] for s in samples]  # once each, in order
    tens = store.points(T0, T0 + 100, 10, host="b")
    assert [p["n"] for p in tens[:9]] == [10] * 9  # the replayed buckets are whole
    store.stop()


def test_a_step_coarser_than_the_tiers_regroups_them_exactly(tmp_path: Path) -> None:
    clock = [T0]
    store = make_store(tmp_path, clock)
    fill(store, clock, 1800, T0, batch=300)
    tens = store.points(T0, T0 + 1800, 10)
    thirties = store.points(T0, T0 + 1800, 30)
    assert [p["ts"] for p in thirties] == [T0 + 30 * k for k in range(len(thirties))]
    assert len(thirties) == -(-len(tens) // 3)  # the last bucket of 10 s is not over yet
    for k, point in enumerate(thirties):
        parts = tens[3 * k : 3 * k + 3]
        assert point["step"] == 30 and point["n"] == sum(p["n"] for p in parts)
        cpu = [p["bands"]["cpu.percent"] for p in parts]
        assert point["bands"]["cpu.percent"] == [min(c[0] for c in cpu), max(c[1] for c in cpu)]
        average = sum(p["cpu"]["percent"] * p["n"] for p in parts) / point["n"]
        assert abs(point["cpu"]["percent"] - average) <= 0.05 + 1e-9
    # In batches too (an answer streams them): the same points, each once.
    batches = list(store.iter_points(T0, T0 + 1800, 30, batch=7))
    assert [p for batch in batches for p in batch] == thirties and len(batches) > 2
    store.stop()


def test_an_agent_past_its_share_of_the_cap_is_refused_and_the_others_are_not(
    tmp_path: Path,
) -> None:
    """history_max_mb is shared: the agents' raw samples 60 % of it in equal shares.
    A host that sends fat samples fills its own share and is refused (for good, with
    the reason); another agent and the hub's own host go on."""
    clock = [T0]
    store = make_store(tmp_path, clock, max_bytes=4 * 2**20, local_host="hub")
    rng = random.Random(8)
    fat_tickets = []
    for i in range(400):
        clock[0] = T0 + i
        fat = synthetic_sample(T0 + i, i + 1, rng)
        fat["disks"] = [
            {**fat["disks"][0], "mount": f"/m{m}", "device": "d" * 200} for m in range(64)
        ]
        ticket, thin = Ticket(), Ticket()
        fat_tickets.append(ticket)
        store.add(fat, host="fat", ticket=ticket)
        store.add(synthetic_sample(T0 + i, i + 1, rng), host="thin", ticket=thin)
        store.add(synthetic_sample(T0 + i, i + 1, rng))
        store.flush()
        assert thin.wait(0) is None
    refused = [t.error for t in fat_tickets if t.error and t.permanent]
    assert refused and len(refused) == sum(1 for t in fat_tickets if t.error)
    assert all(e.startswith("budget: ") for e in refused)
    assert "share of history_max_mb is full" in refused[0]
    share = store.host_budget()
    assert share is not None and store.host_bytes["fat"] <= share
    assert len(store.points(T0, T0 + 400, 1, host="thin")) == 400
    assert len(store.points(T0, T0 + 400, 1)) == 400  # the hub's own: never held to it
    store.stop()


def test_replays_are_told_by_seq_so_samples_closer_than_a_second_all_stay(
    tmp_path: Path,
) -> None:
    """An agent sampling every 0.2 s: each sample kept; a resend (same seq, its time
    placed a little differently) neither stored twice nor counted twice in its bytes."""
    clock = [T0]
    store = make_store(tmp_path, clock)
    rng = random.Random(9)
    samples = [synthetic_sample(T0 + i * 0.2, i + 1, rng) for i in range(10)]
    for sample in samples:
        store.add(sample, host="fast", ticket=Ticket())
    store.flush()
    size = store.host_bytes["fast"]
    for sample in samples:
        store.add({**sample, "ts": sample["ts"] + 0.03}, host="fast", ticket=Ticket())
    store.flush()
    assert len(store.points(T0, T0 + 5, 1, host="fast")) == 10
    assert store.host_bytes["fast"] == size
    store.stop()


def test_a_corrupt_database_is_the_disks_trouble_not_the_datas() -> None:
    from server.history.store import disk_trouble

    assert disk_trouble(sqlite3.DatabaseError("database disk image is malformed"))
    assert disk_trouble(OverflowError("Python int too large to convert to SQLite INTEGER")) is None
    assert disk_trouble(sqlite3.IntegrityError("NOT NULL constraint failed")) is None
