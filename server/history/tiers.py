"""The store's tables: their schema and its migration, the SQL that folds raw
samples into the 10 s and 1 min tiers and reads them back, and a tier's rows
as points or columns (server/history/store.py runs them)."""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Mapping
from typing import Any

from server.history.columns import column_form, leaves
from server.series import STORED, place

log = logging.getLogger("dashboard.store")

Sample = dict[str, Any]

COLUMNS = [str(s.column) for s in STORED]
TIER_TABLES = {10: "points_10s", 60: "points_1m"}
TIER_FIELDS = ["ts", "n", *(f"{n}_{k}" for n in COLUMNS for k in ("avg", "min", "max"))]


def schema() -> str:
    columns = ", ".join(f"{s.column} REAL" for s in STORED)
    tiers = ""
    aggregates = ", ".join(f"{n}_avg REAL, {n}_min REAL, {n}_max REAL" for n in COLUMNS)
    for table in TIER_TABLES.values():
        tiers += (
            f"CREATE TABLE IF NOT EXISTS {table} (host TEXT NOT NULL, ts INTEGER, "
            f"n INTEGER, {aggregates}, PRIMARY KEY (host, ts)) WITHOUT ROWID;\n"
        )
    return (
        "CREATE TABLE IF NOT EXISTS raw (host TEXT NOT NULL, ts REAL, seq INTEGER, "
        f"sample TEXT NOT NULL, {columns}, PRIMARY KEY (host, ts)) WITHOUT ROWID;\n" + tiers
    )


def migrate(db: sqlite3.Connection, host: str) -> None:
    """A database from before the fleet (no host column): its rows become `host`'s, in place."""
    columns = [row[1] for row in db.execute("PRAGMA table_info(raw)")]
    if not columns or "host" in columns:
        return
    db.execute("BEGIN IMMEDIATE")
    for table in ("raw", *TIER_TABLES.values()):
        db.execute(f"ALTER TABLE {table} RENAME TO old_{table}")
    db.executescript(schema())  # executescript commits: start the transaction again
    db.execute("BEGIN IMMEDIATE")
    for table in ("raw", *TIER_TABLES.values()):
        names = ", ".join(r[1] for r in db.execute(f"PRAGMA table_info(old_{table})"))
        db.execute(
            f"INSERT INTO {table} (host, {names}) SELECT ?, {names} FROM old_{table}", (host,)
        )
        db.execute(f"DROP TABLE old_{table}")
    db.execute("COMMIT")
    log.info("history database migrated in place: its rows are host %s", host)


def fold_sql(step: int) -> str:
    table = TIER_TABLES[step]
    names = ", ".join(f"{n}_avg, {n}_min, {n}_max" for n in COLUMNS)
    values = ", ".join(
        f"{s.rounded_sql(f'avg({s.column})')}, min({s.column}), max({s.column})" for s in STORED
    )
    return (
        f"INSERT OR REPLACE INTO {table} (host, ts, n, {names}) "
        f"SELECT host, CAST(ts / {step} AS INTEGER) * {step} AS bucket, count(*), {values} "
        f"FROM raw WHERE host = ? AND ts >= ? AND ts < ? GROUP BY bucket"
    )


def tier_sql(tier: int, step: int) -> str:
    """Points `step` apart from a tier's rows: as they are, or regrouped (averages
    weighted by their counts, the least minimum, the greatest maximum: exact)."""
    if step == tier:
        return f"SELECT {', '.join(TIER_FIELDS)} FROM {TIER_TABLES[tier]}"
    fields = [f"CAST(ts / {step} AS INTEGER) * {step} AS ts", "sum(n) AS n"]
    for s in STORED:
        n = s.column
        average = f"sum({n}_avg * n) / sum(CASE WHEN {n}_avg IS NOT NULL THEN n END)"
        fields += [
            f"{s.rounded_sql(average)} AS {n}_avg",
            f"min({n}_min) AS {n}_min",
            f"max({n}_max) AS {n}_max",
        ]
    return f"SELECT {', '.join(fields)} FROM {TIER_TABLES[tier]}"


def tier_columns(rows: list[tuple[Any, ...]], step: int) -> dict[str, Any]:
    """The column form of downsampled points (rows of TIER_FIELDS), straight from the
    table: the same answer as to_columns() of their point()s, without 10,000 dicts."""
    if not rows:
        return column_form([], {}, step)
    by_name = dict(zip(TIER_FIELDS, zip(*rows, strict=True), strict=True))
    first = {name: values[0] for name, values in by_name.items()}
    columns: dict[str, list[Any]] = {
        key: [value] * len(rows) for key, value in leaves(point(first, step))
    }
    columns["n"] = list(by_name["n"])
    for series in STORED:
        assert series.path is not None
        key = ".".join(str(part) for part in series.path)
        columns[key] = list(by_name[f"{series.column}_avg"])
        columns[f"bands.{series.metric}.0"] = list(by_name[f"{series.column}_min"])
        columns[f"bands.{series.metric}.1"] = list(by_name[f"{series.column}_max"])
    return column_form([float(ts) for ts in by_name["ts"]], columns, step)


def point(row: Mapping[str, Any], step: int) -> Sample:
    """A downsampled point, shaped as a sample, with min/max in `bands`.

    What is not a stored series (totals, per-core, other disks) is null.
    """
    point: Sample = {
        "ts": float(row["ts"]),
        "seq": None,
        "step": step,
        "n": row["n"],
        "cpu": {"percent": None, "per_core": None},
        "memory": {"percent": None, "total": None, "used": None, "available": None},
        "swap": {"percent": None, "total": None, "used": None},
        "disks": [
            {
                "mount": "/",
                "device": None,
                "fstype": None,
                "percent": None,
                "total": None,
                "used": None,
                "free": None,
                "answering": None,
            }
        ],
        "disk_io": {"read_bps": None, "write_bps": None},
        "net": {"rx_bps": None, "tx_bps": None},
        "load": [None, None, None],
        "uptime": None,
    }
    for series in STORED:
        assert series.path is not None
        place(point, series.path, row[f"{series.column}_avg"])
    point["bands"] = {s.metric: [row[f"{s.column}_min"], row[f"{s.column}_max"]] for s in STORED}
    return point
