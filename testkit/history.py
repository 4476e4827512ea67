"""The history a server keeps, read as a test reads it: the database with its own
read-only SQLite connection, or the store's answer over HTTP."""

from __future__ import annotations

import itertools
import sqlite3
import time
from pathlib import Path
from typing import Any

import requests

from testkit.wait import wait_until


def stored_samples(data_dir: Path, host: str) -> list[tuple[float, int]]:
    """(ts, seq) of a host's raw samples on disk, by time."""
    db = sqlite3.connect(f"file:{data_dir / 'history.sqlite3'}?mode=ro", uri=True, timeout=10)
    try:
        rows = db.execute("SELECT ts, seq FROM raw WHERE host = ? ORDER BY ts", (host,)).fetchall()
    finally:
        db.close()
    return [(float(ts), int(seq)) for ts, seq in rows]


def numbering_problem(seqs: list[int]) -> str | None:
    """What is wrong with a host's stored sample numbers, in time order, or None: one by
    one from the first, no hole, no duplicate."""
    if not seqs:
        return "nothing stored"
    if seqs != list(range(seqs[0], seqs[0] + len(seqs))):
        missing = sorted(set(range(seqs[0], max(seqs) + 1)) - set(seqs))
        doubled = len(seqs) - len(set(seqs))
        return f"missing seqs {missing[:20]} ({len(missing)}), {doubled} duplicates"
    return None


def sequence_problem(rows: list[tuple[float, int]], interval: float = 1.0) -> str | None:
    """What is wrong with a host's stored samples, or None: seqs one by one from the
    first (no hole, no duplicate), times strictly in order about an interval apart."""
    problem = numbering_problem([seq for _ts, seq in rows])
    if problem is not None:
        return problem
    for (t0, s0), (t1, s1) in itertools.pairwise(rows):
        if not 0.5 * interval < t1 - t0 < 2.5 * interval:
            return f"seq {s0} at {t0} then seq {s1} at {t1}"
    return None


def samples_between(
    url: str, start: float, end: float, host: str | None = None, **request: Any
) -> list[dict[str, Any]]:
    """The samples `GET /api/history?start=&end=` answers (a host's with `host`): what the
    history store holds, not the ring in memory. `request`: headers=..., say."""
    path = f"/api/hosts/{host}/history" if host else "/api/history"
    params = {"start": start, "end": end}
    answer = requests.get(url + path, params=params, timeout=10, **request)
    answer.raise_for_status()
    samples: list[dict[str, Any]] = answer.json()["samples"]
    return samples


def wait_until_stored(url: str, count: int = 2, timeout: float = 15.0) -> None:
    """Until the store holds `count` samples of the last minute: it commits every 5 s."""
    wait_until(
        lambda: len(samples_between(url, time.time() - 60, time.time())) >= count,
        timeout=timeout,
        interval=0.5,
        what=f"{count} samples in the history store",
    )
