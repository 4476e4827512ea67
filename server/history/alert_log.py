"""The alerts' history: every change of an alert and of its notification, per host,
kept as long as the 1 min tier (docs/alerts.md, "History").

Events: `fired` and `cleared` (the rule's level changed), `grouped` (sent in one
message with others), `held` (inhibited by host_down, silenced, in maintenance or
quiet hours: the detail says which), `escalated`, `repeated`, `acknowledged`,
`sent` and `failed` (to a channel, named in the detail).

Recorded from the tick, the agents and the channels' threads by one deque append
(bounded: a writer that falls behind drops the oldest, and counts them); the store's
writer writes them in a transaction of their own. Read with a connection of its own.
"""

from __future__ import annotations

import csv
import io
import threading
import time
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

EVENTS = ("fired", "cleared", "grouped", "held", "escalated", "repeated", "acknowledged",
          "sent", "failed")  # fmt: skip
MAX_WAITING = 10_000  # events waiting for the writer
MAX_ANSWER = 5_000  # events in one answer: the newest first
MAX_DETAIL = 500  # characters of an event's detail
COLUMNS = ("ts", "host", "rule", "event", "level", "value", "detail")


def schema() -> str:
    return (
        "CREATE TABLE IF NOT EXISTS alert_events (ts REAL NOT NULL, host TEXT NOT NULL, "
        "rule TEXT NOT NULL, event TEXT NOT NULL, level TEXT, value REAL, detail TEXT);\n"
        "CREATE INDEX IF NOT EXISTS alert_events_host_ts ON alert_events (host, ts);\n"
    )


class AlertLog:
    """The events waiting for the store's writer."""

    def __init__(self) -> None:
        self._waiting: deque[tuple[Any, ...]] = deque(maxlen=MAX_WAITING)
        self._lock = threading.Lock()  # a full deque drops its oldest: counted under it
        self.dropped = 0

    def note(self, alert: Mapping[str, Any], event: str, detail: str = "") -> None:
        """One event of an alert (its host, rule, level and value), now."""
        value = alert.get("value")
        row = (
            time.time(),
            str(alert.get("host", "")),
            str(alert.get("rule", "")),
            event,
            alert.get("level"),
            value if isinstance(value, int | float) and not isinstance(value, bool) else None,
            detail[:MAX_DETAIL],
        )
        with self._lock:
            if len(self._waiting) == MAX_WAITING:
                self.dropped += 1
            self._waiting.append(row)

    def take(self) -> list[tuple[Any, ...]]:
        with self._lock:
            taken = list(self._waiting)
            self._waiting.clear()
        return taken

    def give_back(self, rows: list[tuple[Any, ...]]) -> None:
        """Rows the disk refused: tried again with the next write (the oldest may go)."""
        with self._lock:
            kept = rows + list(self._waiting)
            self.dropped += max(len(kept) - MAX_WAITING, 0)
            self._waiting = deque(kept[-MAX_WAITING:], maxlen=MAX_WAITING)


class HistoryChannel:
    """A channel of every host's notifier: each change of an alert's level."""

    def __init__(self, log: AlertLog) -> None:
        self.log = log

    def send(self, alert: dict[str, Any]) -> None:
        event = "cleared" if alert.get("level") == "ok" else "fired"
        self.log.note(alert, event, f"{alert.get('previous')} -> {alert.get('level')}: "
                      f"{alert.get('metric')} = {alert.get('value')} "
                      f"(threshold {alert.get('threshold')})")  # fmt: skip

    def acknowledged(self, entry: Mapping[str, Any]) -> None:
        self.log.note({"host": entry["host"], "rule": entry["rule"]}, "acknowledged",
                      f"by {entry['by']}")  # fmt: skip


def write(db: Any, rows: list[tuple[Any, ...]]) -> None:
    """In the store's transaction (HistoryStore._guarded)."""
    db.executemany(
        "INSERT INTO alert_events (ts, host, rule, event, level, value, detail) "
        "VALUES (?, ?, ?, ?, ?, ?, ?)",
        rows,
    )


def retain(db: Any, oldest: float) -> None:
    db.execute("DELETE FROM alert_events WHERE ts < ?", (oldest,))


def query(
    host: str, start: float, end: float, rule: str = "", event: str = ""
) -> tuple[str, tuple[Any, ...]]:
    """The SQL and arguments of a host's events in [start, end], newest first; `rule`:
    a rule or its family (`container_exited` for `container_exited:web-1`)."""
    sql = f"SELECT {', '.join(COLUMNS)} FROM alert_events WHERE host = ? AND ts >= ? AND ts <= ?"
    args: list[Any] = [host, start, end]
    if rule:
        sql += " AND (rule = ? OR rule LIKE ? ESCAPE '\\')"
        args += [rule, rule.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + ":%"]
    if event:
        sql += " AND event = ?"
        args.append(event)
    return sql + f" ORDER BY ts DESC LIMIT {MAX_ANSWER}", tuple(args)


def as_dicts(rows: Iterable[Sequence[Any]]) -> list[dict[str, Any]]:
    return [dict(zip(COLUMNS, row, strict=True)) for row in rows]


def as_csv(events: Iterable[Mapping[str, Any]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["ts", "time_utc", *COLUMNS[1:]])
    for e in events:
        when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(e["ts"]))
        writer.writerow([e["ts"], when, *(_cell(e[c]) for c in COLUMNS[1:])])
    return out.getvalue()


def _cell(value: Any) -> Any:
    """A spreadsheet runs a cell that starts with = + - @ as a formula: a container's
    name comes from an agent, so such text is quoted."""
    if value is None:
        return ""
    if isinstance(value, str) and value.startswith(("=", "+", "-", "@", "\t", "\r")):
        return "'" + value
    return value
