"""History on disk: SQLite (WAL) with three tiers, written in batches off the tick.

Every row has its host: the hub keeps its agents' history beside its own.

- raw:   every sample (as in `history`), kept `retention_raw` seconds (1 h);
- 10 s:  average, min and max of each series, kept `retention_10s` (24 h);
- 1 min: the same per minute, kept `retention_1m` (7 days).

The tick only appends to a list. A writer loop commits the list every
`batch_seconds` in one transaction, then folds the completed 10 s and 1 min
buckets from the raw rows (so their average, min and max are exact); retention
is a transaction of its own, so a full database can still age rows out.
SQLite runs off eventlet's hub (server/blocking.py). Readers use their own
connections: WAL lets them read while the writer writes.

Acknowledged means kept: an agent's batch comes with a `Ticket`, resolved
only once the transaction that holds it has committed (or has failed). While
tickets wait, the writer commits after `ack_window` instead of `batch_seconds`
(group commit: one transaction for every agent that sent in that window).

When the disk cannot take a write (full, I/O error, read-only, locked), the
store says so (`failure`), refuses tickets (the agents keep their samples and
send them again), keeps this host's own samples in memory (as many as its
ring holds) and writes them when a later try succeeds.

Each container's CPU and memory go into tiers of their own (entities.py),
summed from the samples' container tables as they are written.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any

from server.blocking import Signal, run_blocking
from server.history import alert_log
from server.history.columns import to_columns
from server.history.entities import ROW_BYTES, ContainerSeries, as_columns, read_sql
from server.history.entities import schema as container_schema
from server.history.ring import history_view
from server.history.tiers import (
    COLUMNS,
    TIER_TABLES,
    fold_sql,
    migrate,
    point,
    schema,
    tier_columns,
    tier_sql,
)
from server.logs import LogThrottle
from server.loops import BackgroundLoop
from server.series import STORED
from server.wire import compact_json

log = logging.getLogger("dashboard.store")

Sample = dict[str, Any]

# A column answer is built whole; past this many points, ask for a larger step.
MAX_COLUMN_POINTS = 50_000
LOG_EVERY = 60.0  # seconds between repeated warnings of the same trouble
# SQLite's primary result codes that mean "the disk, not the data": the write
# is tried again later, and the batch is kept (own samples) or refused (agents).
DISK_TROUBLE = {
    5: "database is locked",  # SQLITE_BUSY
    6: "database is locked",  # SQLITE_LOCKED
    8: "read-only",  # SQLITE_READONLY
    10: "I/O error",  # SQLITE_IOERR
    13: "disk full",  # SQLITE_FULL
    14: "cannot open the database file",  # SQLITE_CANTOPEN
    15: "database is locked",  # SQLITE_PROTOCOL
}
SYNCHRONOUS = ("normal", "full")
# The same host's sample with the same seq this close in time is the same sample: an
# agent's replay after a hub restart, its clock offset measured anew (seq alone is not
# enough: an agent that restarts counts from 1 again).
REPLAY_SLACK = 5.0
# Of history_max_mb, what the agents' raw samples may hold together, in equal
# shares: the rest is the hub's own host's and the downsampled tiers'.
AGENTS_SHARE = 0.6
# Container rows are many (a row a container a bucket): they age out less often.
CONTAINERS_RETAIN_EVERY = 600.0
# Samples whose container tables wait for the writer: ten minutes of 16 hosts.
MAX_CONTAINER_TABLES = 10_000


class Ticket:
    """An agent's batch waiting for the commit that holds it; the writer resolves it."""

    def __init__(self) -> None:
        self.done = Signal()  # one per batch: a light one (server/blocking.py)
        self.error: str | None = None
        self.permanent = False  # the data, not the disk: sending it again will not help

    def resolve(self, error: str | None = None, permanent: bool = False) -> None:
        self.error, self.permanent = error, permanent
        self.done.set()

    def wait(self, timeout: float) -> str | None:
        """None once committed; else why not (a failure, or the deadline)."""
        if not self.done.wait(timeout):
            return "busy: the store did not commit in time"
        return self.error


# Errors that come of the values written, not of the database: one batch's, alone.
DATA_ERRORS = (sqlite3.IntegrityError, sqlite3.DataError, sqlite3.InterfaceError,
               OverflowError, TypeError, ValueError)  # fmt: skip


def disk_trouble(exc: BaseException) -> str | None:
    """What is wrong with the disk or the database, if that is why `exc` happened (it is
    tried again later); None when the values written were the trouble."""
    if isinstance(exc, DATA_ERRORS):
        return None
    if isinstance(exc, sqlite3.Error):
        code = getattr(exc, "sqlite_errorcode", None)
        if code is not None and code & 0xFF in DISK_TROUBLE:
            return f"{DISK_TROUBLE[code & 0xFF]} ({exc})"
        return str(exc)  # corrupt, or SQLite's own wording of a disk or lock error
    if isinstance(exc, OSError):
        return str(exc)
    return None


@dataclasses.dataclass(frozen=True)
class Retention:
    raw: int = 3600
    tier_10s: int = 86400
    tier_1m: int = 7 * 86400

    def for_step(self, step: int) -> int:
        return {1: self.raw, 10: self.tier_10s, 60: self.tier_1m}[step]


class HistoryStore:
    def __init__(
        self,
        path: str,
        retention: Retention | None = None,
        # Each commit is a pool call, a transaction and WAL writes: every 5 s
        # it is a twentieth of an idle server's CPU, every 2 s an eighth.
        batch_seconds: float = 5.0,
        max_bytes: int | None = None,
        clock: Callable[[], float] = time.time,
        local_host: str = "local",
        # Durability of a commit: "normal" (WAL) survives the process's crash,
        # "full" (an fsync per commit) also a power cut.
        synchronous: str = "full",
        ack_window: float = 0.25,
        keep_local: int = 900,
    ) -> None:
        self.path = path
        self.local_host = local_host  # the host of rows from before the fleet, and the default
        self.retention = retention or Retention()
        self.batch_seconds = batch_seconds
        self.max_bytes = max_bytes
        self._clock = clock
        if synchronous not in SYNCHRONOUS:
            raise ValueError(f"synchronous must be one of {SYNCHRONOUS}")
        self.synchronous = synchronous
        self.ack_window = ack_window
        self.keep_local = keep_local
        self._folded: dict[tuple[str, int], float] = {}
        self._sized: dict[str, int] = {}  # bytes of raw samples a transaction adds (removes)
        self._refused: dict[str, str] = {}  # hosts a transaction left out, and why
        self.host_bytes: dict[str, int] = {}  # bytes of raw samples each host keeps
        self._pending: deque[tuple[str, Sample, Ticket | None]] = deque()
        # Container tables, summed by the writer (never in the tick: the pool thread
        # that writes them reads the buckets).
        self._tables: deque[tuple[str, float, list[Any]]] = deque(maxlen=MAX_CONTAINER_TABLES)
        self.containers = ContainerSeries()
        self.alert_log = alert_log.AlertLog()  # the alerts' history, written beside
        self._containers_retained = 0.0
        self._hurry = threading.Event()  # a ticket waits: commit within ack_window
        self._db: sqlite3.Connection | None = None
        self._fold_from: dict[tuple[str, int], float] = {}  # (host, step) -> first unfolded
        self._last_retention = 0.0
        self._warnings = LogThrottle(log, LOG_EVERY)
        self.loop = BackgroundLoop("history-writer", self._round, log, error_wait=0)
        self.written = 0
        self.dropped = 0
        self.failure: str | None = None  # why writes fail now; None while they work
        self.failing_since: float | None = None
        self.write_failures = 0

    # ---- opening, with a corrupt file moved aside

    def open(self) -> None:
        directory = os.path.dirname(os.path.abspath(self.path))
        os.makedirs(directory, exist_ok=True)
        try:
            self._db = self._connect_checked()
        except sqlite3.DatabaseError as exc:
            aside = self._move_aside()
            log.warning(
                "history database %s is unusable (%s); moved it to %s and started a fresh one",
                self.path,
                exc,
                aside,
            )
            self._db = self._connect_checked()
        self.host_bytes = {
            host: int(size or 0)
            for host, size in self._db.execute(
                "SELECT host, sum(length(sample)) FROM raw GROUP BY host"
            )
        }
        hosts = list(self.host_bytes)
        for host in hosts:
            for step, table in TIER_TABLES.items():
                last = self._db.execute(
                    f"SELECT max(ts) FROM {table} WHERE host = ?", (host,)
                ).fetchone()[0]
                if last is not None:
                    self._fold_from[host, step] = last + step
                else:
                    first = self._db.execute(
                        "SELECT min(ts) FROM raw WHERE host = ?", (host,)
                    ).fetchone()[0]
                    self._fold_from[host, step] = math.floor(first / step) * step
        for host, rows in self.containers.count(self._db).items():
            self.host_bytes[host] = self.host_bytes.get(host, 0) + rows * ROW_BYTES

    def _connect_checked(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute(f"PRAGMA synchronous={self.synchronous.upper()}")
            if self.max_bytes:
                page_size = db.execute("PRAGMA page_size").fetchone()[0]
                db.execute(f"PRAGMA max_page_count={max(self.max_bytes // page_size, 16)}")
            result = db.execute("PRAGMA quick_check").fetchone()[0]
            if result != "ok":
                raise sqlite3.DatabaseError(f"integrity check: {result}")
            migrate(db, self.local_host)
            db.executescript(schema() + container_schema() + alert_log.schema())
        except sqlite3.DatabaseError:
            db.close()
            raise
        return db

    def _move_aside(self) -> str:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        aside = f"{self.path}.corrupt-{stamp}"
        for suffix in ("", "-wal", "-shm"):
            if os.path.exists(self.path + suffix):
                os.replace(self.path + suffix, aside + suffix)
        return aside

    # ---- writing

    def add(self, sample: Sample, host: str | None = None, ticket: Ticket | None = None) -> None:
        """Called in the tick: only an append (a deque append is thread-safe).

        What is kept is the sample as in `history`: not the process table or
        the server's own cost, which are of the moment. A sample already kept
        for its host with the same seq within REPLAY_SLACK of its time (an
        agent's replay) is left as it was. With a ticket, the writer commits soon and resolves it.
        """
        host = host or self.local_host
        self._pending.append((host, history_view(sample), ticket))
        table = sample.get("containers")
        if isinstance(table, dict) and isinstance(table.get("items"), list):
            self._tables.append((host, sample["ts"], table["items"]))
        if ticket is not None:
            self._hurry.set()

    @property
    def pending(self) -> int:
        return len(self._pending)

    def start(self) -> None:
        self.loop.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Write what is pending, then close."""
        self.loop.stopping.set()
        self._hurry.set()
        self.loop.stop(timeout)
        self.flush(final=True)
        if self._db is not None:
            self._db.close()
            self._db = None

    def _round(self) -> None:
        """Every batch_seconds, or ack_window after a ticket came. A bug (not the disk)
        that raises is counted here; the loop logs it and goes on."""
        stopping = self.loop.stopping
        if self._hurry.wait(self.batch_seconds) and not stopping.is_set():
            stopping.wait(self.ack_window)  # the other agents' batches of this moment
        self._hurry.clear()
        try:
            self.flush()
        except Exception:
            self.write_failures += 1
            raise

    def flush(self, final: bool = False) -> None:
        """Write what is pending in one transaction; say why not, and keep what must be kept.
        Then the container buckets that are over (`final`: all of them)."""
        batch = [self._pending.popleft() for _ in range(len(self._pending))]
        if self._db is None:
            for _host, _sample, ticket in batch:
                if ticket is not None:
                    ticket.resolve("the store is closed")
            return
        self._write_samples(batch)
        self._write_containers(final)
        self._write_alert_events()

    def _write_samples(self, batch: list[tuple[str, Sample, Ticket | None]]) -> None:
        now = self._clock()
        # Retention in its own transaction: a database at its cap frees rows before the insert.
        due = now - self._last_retention >= 60
        if due and run_blocking(self._guarded, self._retain, now) is None:
            self._last_retention = now
        error = run_blocking(self._guarded, self._write, [(h, s) for h, s, _t in batch])
        if error is None:
            self._settle(batch)
        elif disk_trouble(error) is not None:
            self._disk_failed(batch, str(disk_trouble(error)))
        else:  # the data: write each host's part alone, so one bad sample spoils only its own
            self._write_apart(batch, error)

    def _write_containers(self, everything: bool) -> None:
        """The container buckets that are over, in a transaction of their own (about one
        every 10 s); kept for the next try while the disk refuses them."""
        while self._tables:
            self.containers.add(*self._tables.popleft())
        due = self.containers.due(everything)
        if not due:
            return
        error = run_blocking(self._guarded, self._write_container_rows, due)
        trouble = None if error is None else disk_trouble(error)
        if error is not None and trouble is None:
            self._warn("containers", f"container history refused by the store: {error!r}")
        if trouble is None:
            self.containers.written(due)

    def _write_alert_events(self) -> None:
        """The alerts' events, in a transaction of their own; kept for the next try
        while the disk refuses them."""
        rows = self.alert_log.take()
        if not rows:
            return
        error = run_blocking(self._guarded, alert_log.write, rows)
        if error is not None and disk_trouble(error) is not None:
            self.alert_log.give_back(rows)
        elif error is not None:
            self._warn("alert_events", f"alert history refused by the store: {error!r}")

    def alert_events(
        self, host: str, start: float, end: float, rule: str = "", event: str = ""
    ) -> list[dict[str, Any]]:
        """A host's alert events in [start, end], newest first (at most 5,000)."""
        sql, args = alert_log.query(host, start, end, rule, event)
        return alert_log.as_dicts(self.read(sql, *args))

    def _write_container_rows(self, db: sqlite3.Connection, due: list[Any]) -> None:
        budget = self.host_budget()
        over = {
            host: "over its share" for _step, host, _start in due
            if budget is not None and host != self.local_host
            and self.host_bytes.get(host, 0) > budget
        }  # fmt: skip
        for host, rows in self.containers.write(db, due, over).items():
            self._sized[host] = self._sized.get(host, 0) + rows * ROW_BYTES

    def _settle(self, batch: list[tuple[str, Sample, Ticket | None]]) -> None:
        """After a commit: the hosts it left out (over their share of the cap) are told
        so, for good; the rest are committed."""
        refused = self._refused
        for host, _sample, ticket in batch:
            if host in refused:
                self.dropped += 1
                if ticket is not None:
                    ticket.resolve(f"budget: {refused[host]}", permanent=True)
        self._committed([item for item in batch if item[0] not in refused])

    def _committed(self, batch: list[tuple[str, Sample, Ticket | None]]) -> None:
        self.written += len(batch)
        for _host, _sample, ticket in batch:
            if ticket is not None and not ticket.done.is_set():
                ticket.resolve()
        if self.failure is not None:
            lasted = time.monotonic() - (self.failing_since or time.monotonic())
            self._warn(
                "disk ok",
                f"history store writes again after {lasted:.0f} s ({self.failure}); "
                "what was kept in memory is written",
            )
            self.failure = self.failing_since = None

    def _disk_failed(self, batch: list[tuple[str, Sample, Ticket | None]], reason: str) -> None:
        """Agents' samples go back to them (their tickets fail); our own wait in memory."""
        self.write_failures += 1
        if self.failure is None:
            self.failing_since = time.monotonic()
            self._warn(
                "disk",
                f"history store cannot write: {reason}; pages go on from memory, agents keep "
                f"their samples, and this host's are kept in memory (at most {self.keep_local})",
            )
        self.failure = reason
        own = [(h, s, t) for h, s, t in batch if t is None]
        for _host, _sample, ticket in batch:
            if ticket is not None:
                ticket.resolve(f"store: {reason}")
        kept = own[-self.keep_local :]
        self.dropped += len(own) - len(kept)
        self._pending.extendleft(reversed(kept))
        while len(self._pending) > self.keep_local and self._pending[0][2] is None:
            self._pending.popleft()
            self.dropped += 1

    def _write_apart(
        self, batch: list[tuple[str, Sample, Ticket | None]], error: BaseException
    ) -> None:
        groups: dict[tuple[str, int], list[tuple[str, Sample, Ticket | None]]] = {}
        for item in batch:
            groups.setdefault((item[0], id(item[2])), []).append(item)
        for group in groups.values():
            failed = run_blocking(self._guarded, self._write, [(h, s) for h, s, _t in group])
            if failed is None:
                self._settle(group)
                continue
            trouble = disk_trouble(failed)
            if trouble is not None:  # the disk went meanwhile: kept or sent again, not lost
                self._disk_failed(group, trouble)
                continue
            self.dropped += len(group)
            self._warn(f"data {group[0][0]}", f"history of {group[0][0]!r}: {len(group)} "
                       f"samples refused by the store: {failed!r}")  # fmt: skip
            for _host, _sample, ticket in group:
                if ticket is not None:
                    ticket.resolve(f"shape: the store refused it ({failed})", permanent=True)
        del error

    def _warn(self, key: str, message: str) -> None:
        self._warnings.log(key, logging.WARNING, "%s (repeats at most every %.0f s)", message,
                           LOG_EVERY)  # fmt: skip

    def _guarded(self, write: Callable[..., None], *args: Any) -> BaseException | None:
        """`write` in one transaction, rolled back on any error. In a pool thread."""
        db = self._db
        assert db is not None
        try:
            db.execute("BEGIN IMMEDIATE")
            self._folded, self._sized, self._refused = {}, {}, {}
            write(db, *args)
            db.execute("COMMIT")
            self._fold_from.update(self._folded)
            for host, size in self._sized.items():
                self.host_bytes[host] = max(self.host_bytes.get(host, 0) + size, 0)
        except Exception as exc:
            try:
                if db.in_transaction:
                    db.execute("ROLLBACK")
            except sqlite3.Error:
                pass  # the rollback's own failure: the next BEGIN starts over
            return exc
        return None

    def _retain(self, db: sqlite3.Connection, now: float) -> None:
        for host, size in db.execute(
            "SELECT host, sum(length(sample)) FROM raw WHERE ts < ? GROUP BY host",
            (now - self.retention.raw,),
        ):
            self._sized[host] = -int(size or 0)
        db.execute("DELETE FROM raw WHERE ts < ?", (now - self.retention.raw,))
        for step, table in TIER_TABLES.items():
            db.execute(f"DELETE FROM {table} WHERE ts < ?", (now - self.retention.for_step(step),))
        alert_log.retain(db, now - self.retention.for_step(60))
        if now - self._containers_retained >= CONTAINERS_RETAIN_EVERY:
            oldest = {step: now - self.retention.for_step(step) for step in TIER_TABLES}
            for host, rows in self.containers.retain(db, oldest).items():
                self._sized[host] = self._sized.get(host, 0) - rows * ROW_BYTES
            self._containers_retained = now

    def host_budget(self) -> int | None:
        """Bytes of raw samples one agent's host may keep: an equal share of the agents'
        part of the cap (this host's own samples are never held to it)."""
        if not self.max_bytes:
            return None
        agents = len([h for h, b in self.host_bytes.items() if h != self.local_host and b]) or 1
        return int(self.max_bytes * AGENTS_SHARE / agents)

    def _write(self, db: sqlite3.Connection, batch: list[tuple[str, Sample]]) -> None:
        """The batch and the completed buckets it makes; an agent's host past its share
        of the cap is left out (in _refused)."""
        encoded = [(host, s, compact_json(s)) for host, s in batch]
        budget = self.host_budget()
        if budget is not None:
            adding: dict[str, int] = {}
            for host, _s, text in encoded:
                adding[host] = adding.get(host, 0) + len(text)
            for host, size in adding.items():
                if host != self.local_host and self.host_bytes.get(host, 0) + size > budget:
                    mib = self.host_bytes.get(host, 0) / 2**20
                    self._refused[host] = (
                        f"its share of history_max_mb is full ({mib:.1f} of "
                        f"{budget / 2**20:.1f} MiB); older samples must age out first"
                    )
            encoded = [row for row in encoded if row[0] not in self._refused]
            batch = [(host, s) for host, s, _text in encoded]
        # A kept sample of the host with the same seq, a few seconds off, is this one.
        # One row at a time, to count the bytes of the rows that went in (a resend or
        # a replay adds none).
        insert = (
            f"INSERT OR IGNORE INTO raw (host, ts, seq, sample, {', '.join(COLUMNS)}) "
            f"SELECT ?, ?, ?, ?{', ?' * len(COLUMNS)} WHERE NOT EXISTS "
            "(SELECT 1 FROM raw WHERE host = ? AND ts > ? AND ts < ? AND seq = ?)"
        )
        for host, s, text in encoded:
            row = (host, s["ts"], s.get("seq"), text, *(series.value(s) for series in STORED),
                   host, s["ts"] - REPLAY_SLACK, s["ts"] + REPLAY_SLACK, s.get("seq"))  # fmt: skip
            if db.execute(insert, row).rowcount == 1:
                self._sized[host] = self._sized.get(host, 0) + len(text)
        spans: dict[str, tuple[float, float]] = {}
        for host, s in batch:
            low, high = spans.get(host, (s["ts"], s["ts"]))
            spans[host] = (min(low, s["ts"]), max(high, s["ts"]))
        folded: dict[tuple[str, int], float] = {}
        for host, (earliest, latest) in spans.items():
            for step in TIER_TABLES:
                # Fold only buckets that are over (the current one still
                # grows), from the first unfolded one or the earliest a
                # replay touched: a fold recomputes its buckets from raw.
                start = min(
                    self._fold_from.get((host, step), math.inf),
                    math.floor(earliest / step) * step,
                )
                until = math.floor(latest / step) * step
                if until > start:
                    db.execute(fold_sql(step), (host, start, until))
                    folded[host, step] = until
        self._folded = folded  # moved on only with the commit: a rolled-back fold is done again

    # ---- reading (own connection per read: never blocks the writer)

    def _read(self, query: str, args: tuple[Any, ...], plain: bool = False) -> list[Any]:
        """Rows as sqlite3.Row, or as plain tuples (a third of the time for 10,000 rows)."""
        db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, check_same_thread=False)
        try:
            if not plain:
                db.row_factory = sqlite3.Row
            return db.execute(query, args).fetchall()
        finally:
            db.close()

    def read(self, query: str, *args: Any) -> list[sqlite3.Row]:
        try:
            return run_blocking(self._read, query, args)
        except sqlite3.Error as exc:
            self._warn("read", f"history store read failed: {exc}")
            return []

    def recent(self, seconds: float, host: str | None = None) -> list[Sample]:
        """Raw samples of the last `seconds`, oldest first: to refill the ring."""
        rows = self.read(
            "SELECT sample FROM raw WHERE host = ? AND ts > ? ORDER BY ts",
            host or self.local_host,
            self._clock() - seconds,
        )
        return [json.loads(row["sample"]) for row in rows]

    def pick_step(self, start: float, step: float | None = None) -> int:
        """The step of an answer from `start`: the finest tier that still holds data
        from then, at least `step` apart. A step coarser than the tiers (a 7-day
        chart 1,000 points wide: 600 s) is a multiple of one, regrouped from it."""
        holding = self._holding(start) or [60]
        wanted = max(step or 1, 1)
        if wanted == 1:
            return holding[0]
        # Regrouped from the coarsest tier that is fine enough: fewest rows to read.
        tiers = [t for t in holding if t > 1] or [60]
        tier = max((t for t in tiers if t <= wanted), default=tiers[0])
        return tier if wanted <= tier else math.ceil(wanted / tier) * tier

    def _holding(self, start: float) -> list[int]:
        """The tiers (1 for raw) that still hold data from `start`, finest first."""
        age = self._clock() - start
        # A minute of slack: "the last 24 h" asked a moment later is still 24 h.
        return [t for t in (1, *TIER_TABLES) if age <= self.retention.for_step(t) + 60]

    def _query(self, start: float, step: int, limit: int) -> tuple[str, float]:
        """The SELECT of points `step` apart from `start` (columns `ts, sample`, or
        TIER_FIELDS), taking host, lowest ts and end; and that lowest ts."""
        tier = step
        if step == 1:
            select, low = "SELECT ts, sample FROM raw", start
        else:
            # The coarsest tier that divides the step and holds data from `start`.
            holding = self._holding(start)
            tier = max(
                (t for t in TIER_TABLES if step % t == 0 and t in holding),
                default=10 if step % 60 else 60,
            )
            select, low = tier_sql(tier, step), math.floor(start / step) * step
        where = "WHERE host = ? AND ts >= ? AND ts <= ?"
        if step == tier:  # raw samples, or a tier's rows as they are
            return f"{select} {where} ORDER BY ts LIMIT {limit}", low
        bucket = f"CAST(ts / {step} AS INTEGER)"
        return f"{select} {where} GROUP BY {bucket} ORDER BY {bucket} LIMIT {limit}", low

    def iter_points(
        self, start: float, end: float, step: int, batch: int = 2000, host: str | None = None
    ) -> Iterator[list[Sample]]:
        """points() in batches, each read (and decoded) off the hub: memory stays bounded."""
        query, low = self._query(start, step, batch)
        while True:
            rows = run_blocking(self._decoded, query, (host or self.local_host, low, end), step)
            if not rows:
                return
            yield rows
            if len(rows) < batch:
                return
            # Past the last point: a raw sample's time, or a whole bucket.
            low = math.nextafter(rows[-1]["ts"], math.inf) if step == 1 else rows[-1]["ts"] + step

    def _decoded(self, query: str, args: tuple[Any, ...], step: int) -> list[Sample]:
        try:
            rows = self._read(query, args)
        except sqlite3.Error as exc:
            self._warn("read", f"history store read failed: {exc}")
            return []
        if step == 1:
            return [json.loads(row["sample"]) for row in rows]
        return [point(row, step) for row in rows]

    def columns(
        self, start: float, end: float, step: int, host: str | None = None
    ) -> dict[str, Any] | None:
        """A range in the column form (server/history/columns.py), read and built in a pool
        thread; None if it has more than MAX_COLUMN_POINTS points."""
        return run_blocking(self._columns, start, end, step, host or self.local_host)

    def _columns(self, start: float, end: float, step: int, host: str) -> dict[str, Any] | None:
        query, low = self._query(start, step, MAX_COLUMN_POINTS + 1)
        try:
            rows = self._read(query, (host, low, end), plain=True)
        except sqlite3.Error as exc:
            self._warn("read", f"history store read failed: {exc}")
            rows = []
        if len(rows) > MAX_COLUMN_POINTS:
            return None
        if step == 1:
            return to_columns([json.loads(sample) for _ts, sample in rows], step)
        return tier_columns(rows, step)

    def container_columns(
        self, host: str, name: str, start: float, end: float, step: float | None = None
    ) -> dict[str, Any] | None:
        """One container's CPU and memory from `start`: 10 s points while that tier
        holds them, else 1 min (`step`: at least this far apart). None past
        MAX_COLUMN_POINTS points."""
        tier = 10 if self._clock() - start <= self.retention.tier_10s + 60 else 60
        step = math.ceil(max(step or tier, tier) / tier) * tier
        query = read_sql(tier, step, MAX_COLUMN_POINTS + 1)
        try:
            rows = run_blocking(self._read, query, (host, name, start, end), True)
        except sqlite3.Error as exc:
            self._warn("read", f"history store read failed: {exc}")
            rows = []
        return None if len(rows) > MAX_COLUMN_POINTS else as_columns(name, step, rows)

    def points(self, start: float, end: float, step: int, host: str | None = None) -> list[Sample]:
        """All points of a range at once (tests, the bench); answers stream iter_points()."""
        return [p for batch in self.iter_points(start, end, step, host=host) for p in batch]
