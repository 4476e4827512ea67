"""History across restarts, through the real server: SIGTERM, SIGKILL, refill, REST, CSV."""

from __future__ import annotations

import csv
import io
import itertools
import signal
import sqlite3
import time
from pathlib import Path

import pytest
import requests

from testkit.history import wait_until_stored
from testkit.serverproc import ServerProcess
from testkit.sioclient import RecordingClient

pytestmark = pytest.mark.e2e


def stored_seqs(server: ServerProcess) -> set[int]:
    db = sqlite3.connect(server.data_dir / "history.sqlite3")
    try:
        return {row[0] for row in db.execute("SELECT seq FROM raw")}
    finally:
        db.close()


def watch(server: ServerProcess, seconds: float) -> list[int]:
    client = RecordingClient()
    client.connect(server.url)
    try:
        time.sleep(seconds)
        return [m["seq"] for m in client.received("metrics")]
    finally:
        client.sio.disconnect()


@pytest.mark.parametrize("mode", ["eventlet", "threading"])
def test_sigterm_loses_no_sample(tmp_path: Path, mode: str) -> None:
    server = ServerProcess(tmp_path / "logs", "--async-mode", mode).start()
    seen = watch(server, 3.5)
    assert server.stop(signal.SIGTERM) == 0
    stored = stored_seqs(server)
    assert set(seen) <= stored
    assert stored == set(range(1, max(stored) + 1))  # every tick, none missing


def test_sigkill_loses_at_most_the_last_batch(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path / "logs", "--async-mode", "eventlet").start()
    seen = watch(server, 7.5)  # a batch (5 s) is on disk, and some of the next
    server.stop(signal.SIGKILL)
    stored = stored_seqs(server)
    lost = [seq for seq in seen if seq not in stored]
    # The writer commits every 5 s: at most that much (and the tick in flight) is lost.
    assert len(lost) <= 6, lost
    assert lost == seen[len(seen) - len(lost) :]  # only the newest
    assert len(stored) >= len(seen) - 6


def test_restart_refills_history_with_a_gap(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path / "logs", "--async-mode", "eventlet").start()
    before = watch(server, 3)
    server.stop()
    time.sleep(3)  # downtime
    server.start()
    client = RecordingClient()
    client.connect(server.url)
    try:
        client.wait_for("metrics", count=1)
    finally:
        client.close()
        server.stop()
    history = client.received("history")[0]["samples"]
    seqs = [s["seq"] for s in history]
    assert set(before) <= set(seqs)  # what was seen before the restart is there
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    assert client.received("metrics")[0]["seq"] > max(before)  # seq goes on
    gaps = [b["ts"] - a["ts"] for a, b in itertools.pairwise(history)]
    assert max(gaps) > 3  # the downtime is a gap in the timestamps, not filled in


def test_corrupt_database_is_moved_aside_and_the_server_starts(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "history.sqlite3").write_bytes(b"\x00garbage" * 1000)
    server = ServerProcess(tmp_path / "logs", "--async-mode", "threading").start()
    try:
        assert requests.get(server.url + "/healthz", timeout=5).json()["status"] == "ok"
    finally:
        server.stop()
    assert any(".corrupt-" in p.name for p in data.iterdir())
    assert "moved it to" in (tmp_path / "logs" / "dashboard.log").read_text()


def test_history_ranges_and_csv(tmp_path: Path) -> None:
    server = ServerProcess(
        tmp_path / "logs", "--async-mode", "threading", "--history-seconds", "10"
    ).start()
    try:
        wait_until_stored(server.url)  # a batch on disk
        now = time.time()
        ranged = requests.get(
            server.url + "/api/history", params={"start": now - 60, "end": now}, timeout=5
        ).json()
        assert ranged["step"] == 1 and len(ranged["samples"]) >= 2
        # Longer than the ring (10 s): from the store's raw tier.
        longer = requests.get(server.url + "/api/history?seconds=600", timeout=5).json()
        assert longer["step"] == 1 and longer["samples"]
        day = requests.get(server.url + "/api/history?seconds=86400", timeout=5).json()
        assert day["step"] == 10
        week = requests.get(server.url + "/api/history?seconds=604800", timeout=5).json()
        assert week["step"] == 60
        coarse = requests.get(
            server.url + "/api/history",
            params={"start": now - 60, "end": now, "step": 60},
            timeout=5,
        )
        assert coarse.json()["step"] == 60
        # A step with `seconds` (as the page asks): coarser tiers regrouped, in columns.
        regrouped = requests.get(
            server.url + "/api/history?seconds=604800&step=600&format=columns", timeout=5
        ).json()
        assert regrouped["format"] == "columns" and regrouped["step"] == 600
        assert len(regrouped["ts"]) <= 2  # no 10 s bucket is over yet: none, or one

        params = {"start": now - 60, "end": now}
        json_samples = requests.get(server.url + "/api/history", params=params, timeout=5).json()[
            "samples"
        ]
        text = requests.get(server.url + "/api/history.csv", params=params, timeout=5)
        assert text.headers["Content-Type"].startswith("text/csv")
        rows = list(csv.DictReader(io.StringIO(text.text)))
        assert [float(r["ts"]) for r in rows] == [s["ts"] for s in json_samples]
        for row, sample in zip(rows, json_samples, strict=True):
            assert float(row["cpu_percent"]) == sample["cpu"]["percent"]
            assert int(row["memory_used"]) == sample["memory"]["used"]
            assert row["cpu_percent_min"] == row["cpu_percent"] == row["cpu_percent_max"]
            assert row["time_utc"].endswith("Z")

        bads: list[dict[str, str | float]] = [
            {"start": "yesterday"},
            {"start": now, "end": now - 10},
            {"seconds": 60, "start": now - 10},
            {"end": now},
            {"start": now - 60, "step": "fine"},
            {"start": "nan"},
        ]
        for bad in bads:
            for path in ("/api/history", "/api/history.csv"):
                response = requests.get(server.url + path, params=bad, timeout=5)
                assert response.status_code == 400, (path, bad)
                assert response.json()["error"]
        assert requests.get(server.url + "/healthz", timeout=5).status_code == 200
    finally:
        server.stop()
