"""Per-container series: each container's CPU and memory in 10 s and 1 min tiers,
beside its host's own (server/history/store.py runs these in its writer).

A sample's container table is of the moment: it is not kept in `raw`. Its rows
are summed in memory into buckets per tier, host and container name, and a
bucket is written once a later sample of its host has passed its end (on stop,
whatever is summed). Both tiers are summed from the samples, not folded from
each other: a fold of a minute would read every container of the host. A
bucket written twice (a replay after a restart) is merged, weighted by counts.

What a crash costs: the buckets in progress, at most a minute of these
averages; the host's samples are kept as before (acknowledged means kept).

Bounded: a sample lists at most MAX_ITEMS containers, so a host adds at most
that many rows a bucket; the rows age out with the tiers; while writes fail, at
most KEEP_BUCKETS buckets a host wait in memory; and each row counts, as
ROW_BYTES, in its host's share of history_max_mb.
"""

from __future__ import annotations

import math
import sqlite3
from collections.abc import Iterable, Mapping
from typing import Any

STEPS = (10, 60)
TABLES = {10: "containers_10s", 60: "containers_1m"}
ROW_BYTES = 64  # what a row takes on disk, about: key, count and four values
KEEP_BUCKETS = 32  # per host and tier, while the disk refuses writes
FIELDS = ("cpu_percent", "memory_used")

# Per bucket and name: [n, cpu sum, cpu count, cpu max, memory sum, memory count, memory max]
Sums = list[float]


def schema() -> str:
    return "".join(
        f"CREATE TABLE IF NOT EXISTS {table} (host TEXT NOT NULL, name TEXT NOT NULL, "
        "ts INTEGER NOT NULL, n INTEGER NOT NULL, cpu_avg REAL, cpu_max REAL, "
        "memory_avg INTEGER, memory_max INTEGER, PRIMARY KEY (host, name, ts)) WITHOUT ROWID;\n"
        for table in TABLES.values()
    )


def _merge_sql(table: str) -> str:
    """Insert a bucket, or merge it into the one already there (averages weighted
    by their counts; in an UPDATE every expression reads the row as it was)."""

    def average(column: str, digits: str) -> str:
        old, new = f"{column}_avg", f"excluded.{column}_avg"
        weight = f"(({old} IS NOT NULL) * n + ({new} IS NOT NULL) * excluded.n)"
        total = f"(coalesce({old} * n, 0) + coalesce({new} * excluded.n, 0))"
        return f"{old} = {digits.format(f'{total} / nullif({weight}, 0)')}"

    return (
        f"INSERT INTO {table} (host, name, ts, n, cpu_avg, cpu_max, memory_avg, memory_max) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (host, name, ts) DO UPDATE SET "
        + ", ".join(
            [
                average("cpu", "ROUND({}, 1)"),
                average("memory", "CAST(ROUND({}) AS INTEGER)"),
                "cpu_max = max(coalesce(cpu_max, excluded.cpu_max), "
                "coalesce(excluded.cpu_max, cpu_max))",
                "memory_max = max(coalesce(memory_max, excluded.memory_max), "
                "coalesce(excluded.memory_max, memory_max))",
                "n = n + excluded.n",
            ]
        )
    )


def read_sql(tier: int, step: int, limit: int) -> str:
    """One container's points `step` apart from a tier (a multiple of it): exact
    regrouping, as the host's tiers do."""
    bucket = f"CAST(ts / {step} AS INTEGER) * {step}"
    return (
        f"SELECT {bucket} AS t, sum(n), "
        "ROUND(sum(cpu_avg * n) / sum(CASE WHEN cpu_avg IS NOT NULL THEN n END), 1), "
        "max(cpu_max), "
        "CAST(ROUND(sum(memory_avg * n) / sum(CASE WHEN memory_avg IS NOT NULL THEN n END)) "
        "AS INTEGER), max(memory_max) "
        f"FROM {TABLES[tier]} WHERE host = ? AND name = ? AND ts >= ? AND ts <= ? "
        f"GROUP BY t ORDER BY t LIMIT {limit}"
    )


def as_columns(name: str, step: int, rows: Iterable[tuple[Any, ...]]) -> dict[str, Any]:
    """The answer of /api/.../containers/<name>/history: a column per value."""
    answer: dict[str, Any] = {"name": name, "step": step, "ts": [], "n": [],
                              "cpu_percent": [], "cpu_percent_max": [],
                              "memory_used": [], "memory_used_max": []}  # fmt: skip
    keys = ("ts", "n", "cpu_percent", "cpu_percent_max", "memory_used", "memory_used_max")
    for row in rows:
        for key, value in zip(keys, row, strict=True):
            answer[key].append(value)
    return answer


def _number(value: Any) -> float | None:
    """A value of the table, if it is a finite number (the hub checked an agent's)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


class ContainerSeries:
    """The buckets being summed, and their rows once written. add() runs in the tick;
    take() and the rest in the store's writer, one at a time."""

    def __init__(self) -> None:
        # (step, host, bucket start) -> name -> Sums
        self.buckets: dict[tuple[int, str, int], dict[str, Sums]] = {}
        self.latest: dict[str, float] = {}  # per host, the newest sample's time

    def add(self, host: str, ts: float, items: Iterable[Mapping[str, Any]]) -> None:
        self.latest[host] = max(self.latest.get(host, ts), ts)
        buckets = []
        for step in STEPS:
            key = (step, host, int(ts // step) * step)
            if key not in self.buckets:
                self.buckets[key] = {}
                self._keep_newest(step, host)
            buckets.append(self.buckets[key])
        for item in items:
            name = item.get("name")
            if not isinstance(name, str):
                continue
            values = ((1, _number(item.get("cpu_percent"))), (4, _number(item.get("memory_used"))))
            for bucket in buckets:  # each value read once, summed into both tiers
                sums = bucket.get(name)
                if sums is None:
                    sums = bucket[name] = [0, 0.0, 0, 0.0, 0.0, 0, 0.0]
                sums[0] += 1
                for at, value in values:
                    if value is not None:
                        sums[at] += value
                        sums[at + 1] += 1
                        if value > sums[at + 2]:
                            sums[at + 2] = value

    def _keep_newest(self, step: int, host: str) -> None:
        """At most KEEP_BUCKETS of a host's buckets of a tier (while writes fail, the
        oldest go first): looked at when one begins, not for every sample."""
        mine = sorted(k for k in self.buckets if k[0] == step and k[1] == host)
        for key in mine[:-KEEP_BUCKETS]:
            del self.buckets[key]

    def due(self, everything: bool = False) -> list[tuple[int, str, int]]:
        """Buckets that a later sample of their host has passed (or all of them)."""
        return [
            key for key in self.buckets
            if everything or key[2] + key[0] <= self.latest.get(key[1], 0)
        ]  # fmt: skip

    def write(self, db: sqlite3.Connection, keys: list[tuple[int, str, int]],
              refused: Mapping[str, str]) -> dict[str, int]:  # fmt: skip
        """Write (merge) these buckets; hosts past their share are left out. The rows
        each host adds, to count in its share (a merge counts as one: a little over)."""
        added: dict[str, int] = {}
        for step, host, start in keys:
            if host in refused:
                continue
            rows = [
                (host, name, start, int(s[0]),
                 round(s[1] / s[2], 1) if s[2] else None, s[3] if s[2] else None,
                 round(s[4] / s[5]) if s[5] else None, int(s[6]) if s[5] else None)
                for name, s in self.buckets[step, host, start].items()
            ]  # fmt: skip
            before = db.total_changes
            db.executemany(_merge_sql(TABLES[step]), rows)
            added[host] = added.get(host, 0) + db.total_changes - before
        return added

    def written(self, keys: list[tuple[int, str, int]]) -> None:
        """After the commit: these buckets are on disk (or were left out for good)."""
        for key in keys:
            self.buckets.pop(key, None)

    @staticmethod
    def count(db: sqlite3.Connection) -> dict[str, int]:
        """The rows each host keeps (at open)."""
        rows: dict[str, int] = {}
        for table in TABLES.values():
            for host, count in db.execute(f"SELECT host, count(*) FROM {table} GROUP BY host"):
                rows[host] = rows.get(host, 0) + int(count)
        return rows

    @staticmethod
    def retain(db: sqlite3.Connection, oldest: Mapping[int, float]) -> dict[str, int]:
        """Delete rows past each tier's retention; the rows each host lost."""
        lost: dict[str, int] = {}
        for step, table in TABLES.items():
            for (host,) in db.execute(
                f"DELETE FROM {table} WHERE ts < ? RETURNING host", (oldest[step],)
            ).fetchall():
                lost[host] = lost.get(host, 0) + 1
        return lost
