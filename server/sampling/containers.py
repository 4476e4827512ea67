"""The containers of this host (Docker or Podman): what runs, and what each one costs.

Two halves, so the tick never waits on the engine:
- the list (names, image, state, health, restarts, exit code, its first
  process) comes from the engine's API (server/sampling/engine.py), read again
  in a loop of its own when the events stream says something changed, and
  every REFRESH_EVERY seconds whatever it says;
- every number comes from the kernel in the tick: each running container's
  cgroup files and its network counters (server/sampling/cgroups.py).

Bounded: at most MAX_TRACKED containers are followed, and a sample lists at
most MAX_ITEMS of them (running, restarting or paused, and those that exited
with an error), busiest first; the counts cover every container.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import logging
import re
import threading
import time
from typing import Any

from server.loops import BackgroundLoop
from server.sampling import cgroups
from server.sampling.collector import Collector
from server.sampling.engine import Engine, EngineError
from server.sampling.openfiles import OpenFiles

log = logging.getLogger("dashboard.data")

MAX_TRACKED = 500  # containers followed on one host (the list call itself is bounded too)
MAX_ITEMS = 200  # containers in one sample
REFRESH_EVERY = 30.0  # seconds: the list is read again even if no event came
EVENTS_QUIET = 60.0  # seconds of a silent events stream before it is opened again
NAME_LENGTH = 128
DETAILS_EVERY = 5  # ticks between looks at a container's byte counters (its rates)
SLOW_EVERY = 30  # ticks between looks at its page cache, memory limit and pids
NUMBERS = ("cpu_percent", "memory_used", "memory_limit", "pids",
           "rx_bps", "tx_bps", "read_bps", "write_bps")  # fmt: skip
NO_NUMBERS: dict[str, Any] = dict.fromkeys(NUMBERS)  # never changed: copied into rows
PROJECT = "com.docker.compose.project"
SERVICE = "com.docker.compose.service"
SHOWN_STATES = ("running", "restarting", "paused")
_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_IN_BRACKETS = re.compile(r"\(([^)]*)\)")


def _clean(value: Any, length: int = NAME_LENGTH) -> str | None:
    """A name as the engine gave it, without what could forge a log line."""
    return _UNPRINTABLE.sub("?", value)[:length] if isinstance(value, str) and value else None


def _epoch(stamp: Any) -> float | None:
    """The engine's RFC 3339 time (nanoseconds, Z) as epoch seconds; None for its zero time."""
    if not isinstance(stamp, str) or stamp.startswith("0001-"):
        return None
    try:
        head, _, fraction = stamp.rstrip("Z").partition(".")
        whole = datetime.datetime.fromisoformat(head).replace(tzinfo=datetime.UTC)
    except ValueError:
        return None
    digits = "".join(c for c in fraction if c.isdigit())[:6]
    return round(whole.timestamp() + (int(digits) / 10 ** len(digits) if digits else 0), 3)


@dataclasses.dataclass
class Known:
    """What the engine said of one container, and its last counters."""

    facts: dict[str, Any]  # name, image, state, health, restarts, exit_code, started_at, ...
    pid: int
    paths: cgroups.Paths | None
    files: cgroups.TickFiles | None  # the tick's two files (paths' cpu and memory)
    signature: tuple[Any, ...]  # what shows a change (signature_of)
    cpu: tuple[float, int] | None = None  # (when, CPU ns) of the last tick
    charged: int | None = None  # memory bytes charged, page cache included, when last read
    details: tuple[float, cgroups.Details] | None = None  # (when, ...) of the last look
    rates: dict[str, int | None] = dataclasses.field(default_factory=dict)  # since the one before
    ticks: int = 0
    # Its row but for CPU and memory: built when its details change, copied each tick.
    base: dict[str, Any] | None = None


def _table(parent: dict[str, Any], key: str) -> dict[str, Any]:
    value = parent.get(key)
    return value if isinstance(value, dict) else {}


def signature_of(listed: dict[str, Any], events: int) -> tuple[Any, ...]:
    """What shows that a container changed: its state, the bracketed parts of its list
    line (health, an exit code: `Up 2 hours (unhealthy)`, `Exited (1) 3 seconds ago`)
    and the events seen for it. Not the whole line: its uptime moves every minute,
    and would have every container inspected again on each read of the list."""
    status = listed.get("Status")
    brackets = tuple(_IN_BRACKETS.findall(status)) if isinstance(status, str) else ()
    return (listed.get("State"), brackets, events)


def facts_of(listed: dict[str, Any], inspected: dict[str, Any]) -> dict[str, Any]:
    """The fields the dashboard shows, and only those: no environment, command line,
    mounts or labels but the two of Compose (they can hold secrets)."""
    state = _table(inspected, "State")
    labels = _table(listed, "Labels")
    names = listed.get("Names") if isinstance(listed.get("Names"), list) else []
    health = _table(state, "Health")
    restarts = inspected.get("RestartCount")
    exit_code = state.get("ExitCode")
    return {
        "name": _clean(str(names[0]).lstrip("/") if names else listed.get("Id", "")[:12]),
        "image": _clean(listed.get("Image"), 256),
        "state": _clean(state.get("Status") or listed.get("State"), 16),
        "health": _clean(health.get("Status"), 16),
        "restarts": restarts if isinstance(restarts, int) and restarts >= 0 else None,
        "exit_code": exit_code if isinstance(exit_code, int) else None,
        "started_at": _epoch(state.get("StartedAt")),
        "project": _clean(labels.get(PROJECT)),
        "service": _clean(labels.get(SERVICE)),
    }


class Containers(Collector):
    """{"containers": {running, unhealthy, stopped, items}}, or null while the engine
    cannot be asked."""

    name = "containers"

    def __init__(
        self,
        engine: Engine,
        cores: int,
        proc: str = "/proc",
        cgroup_root: str = "/sys/fs/cgroup",
    ) -> None:
        super().__init__()
        self.engine = engine
        self._cores = max(cores, 1)
        self._proc = proc
        self._cgroup_root = cgroup_root
        self._known: dict[str, Known] = {}
        # The tick's (CPU, and memory on the ticks a container runs), kept open while
        # they are read at least every DETAILS_EVERY ticks.
        self._files = OpenFiles(2 * MAX_ITEMS, idle=2 * DETAILS_EVERY, size=4096)
        # The byte counters' (network, block), read every DETAILS_EVERY ticks: kept
        # open too, from a smaller share of the open-file limit.
        self._detail_files = OpenFiles(2 * MAX_ITEMS, share=8, idle=2 * DETAILS_EVERY)
        self._lock = threading.Lock()
        self._changed = threading.Event()
        self._changed.set()  # the first list at once
        self._events: dict[str, int] = {}  # container id -> events seen (the watcher's)
        self.list_error: str | None = None
        self.listed = threading.Event()  # set after each list read (tests wait on it)
        self._lister = BackgroundLoop("containers", self._list_round, log)
        self._watcher = BackgroundLoop("container-events", self._watch_round, log, error_wait=5)

    # ---- the list, in loops of their own

    def begin(self) -> None:
        if not self._lister.running:  # the first tick starts them: nothing runs before
            self._lister.start()
            self._watcher.start()

    def stop(self) -> None:
        self._lister.stopping.set()
        self._watcher.stopping.set()
        self._changed.set()  # the lister waits on it
        with contextlib.suppress(OSError):
            self.engine.close_events()
        self._lister.stop(timeout=2)
        self._watcher.stop(timeout=2)
        self._files.close()
        self._detail_files.close()

    def _watch_round(self) -> float:
        """Each event of the engine's stream marks the list changed. An engine away is
        the lister's to say (the collector's null and its one log line)."""
        try:
            for event in self.engine.events(timeout=EVENTS_QUIET):
                self._count(event)
                self._changed.set()
                if self._watcher.stopping.is_set():
                    return 0
        except EngineError:
            return 5.0
        finally:
            self._changed.set()  # the stream ended or went quiet: what came between is read
        return 0

    def _count(self, event: dict[str, Any]) -> None:
        """One more event for the container it names: the next list inspects it again
        even where its line in the list reads the same. Podman's list says nothing of
        health (`Up About a minute` for a minute, where Docker's adds `(unhealthy)`), and
        a container Podman restarts at once reads `Up Less than a second` across its
        restarts (its restart count, PID and start time would go stale)."""
        action = event.get("Action")
        if isinstance(action, str) and action.startswith("exec"):
            return  # a healthcheck's exec (each check): health_status says what changed
        container_id = _table(event, "Actor").get("ID") or event.get("id")
        if isinstance(container_id, str):
            with self._lock:  # bounded: the list prunes it; a storm adds no new ids past this
                if container_id in self._events or len(self._events) < 4 * MAX_TRACKED:
                    self._events[container_id] = self._events.get(container_id, 0) + 1

    def _list_round(self) -> float:
        self._changed.wait(REFRESH_EVERY)
        if self._lister.stopping.is_set():
            return 0
        self._changed.clear()
        try:
            self.refresh()
        except EngineError as exc:
            self.list_error = str(exc)
            self._changed.set()
            return 5.0  # the engine is away: ask again in a while
        self.list_error = None
        self.listed.set()
        return 0.5  # a burst of events is one read

    def refresh(self) -> None:
        """Read the list; inspect each container that is new or changed."""
        listed = sorted(self.engine.containers(), key=lambda c: c.get("State") != "running")
        listed = listed[:MAX_TRACKED]
        with self._lock:
            before, events = dict(self._known), dict(self._events)
        known: dict[str, Known] = {}
        for item in listed:
            container_id = item.get("Id")
            if not isinstance(container_id, str):
                continue
            signature = signature_of(item, events.get(container_id, 0))
            old = before.get(container_id)
            if old is not None and old.signature == signature:
                known[container_id] = old
                continue
            try:
                inspected = self.engine.inspect(container_id)
            except EngineError:
                continue  # removed between the two calls
            pid = _table(inspected, "State").get("Pid")
            pid = pid if isinstance(pid, int) else 0
            paths = None
            if pid > 0:
                try:
                    paths = cgroups.find_paths(pid, self._proc, self._cgroup_root)
                except (OSError, ValueError):
                    paths = None  # it ended since
            files = None if paths is None else cgroups.tick_files(paths)
            entry = Known(facts_of(item, inspected), pid, paths, files, signature)
            if old is not None and old.pid == pid:  # the same process: its counters go on
                entry.cpu, entry.details, entry.rates = old.cpu, old.details, old.rates
                entry.charged = old.charged
                entry.ticks = old.ticks
            known[container_id] = entry
        with self._lock:
            self._known = known
            # Counts of containers no longer listed go; a new one is inspected anyway.
            self._events = {i: n for i, n in self._events.items() if i in known}

    # ---- the numbers, in the tick

    def collect(self) -> dict[str, Any]:
        if not self.listed.is_set() and self.list_error is None:
            return self.null()  # the first list is on its way: not a failure
        return super().collect()

    def read(self) -> dict[str, Any]:
        if self.list_error is not None:
            raise EngineError(self.list_error)
        with self._lock:
            entries = list(self._known.values())
        now = time.monotonic()
        items, running, unhealthy, stopped = [], 0, 0, 0
        for entry in entries:
            state = entry.facts["state"]
            running += state == "running"
            unhealthy += entry.facts["health"] == "unhealthy"
            stopped += state not in SHOWN_STATES
            if state in SHOWN_STATES or (entry.facts["exit_code"] or 0) != 0:
                items.append(self._row(entry, now))
        self._files.sweep()
        self._detail_files.sweep()
        items.sort(key=lambda c: (-(c["cpu_percent"] or 0), c["name"] or ""))
        return {
            "containers": {
                "running": running,
                "unhealthy": unhealthy,
                "stopped": stopped,
                "items": items[:MAX_ITEMS],
            }
        }

    def _row(self, entry: Known, now: float) -> dict[str, Any]:
        """Its facts and numbers. CPU every tick, memory on the ticks it ran (two small
        files, kept open); the network and disk rates every DETAILS_EVERY ticks, over
        that span (two more files); the page cache, limit and pids every SLOW_EVERY ticks
        (three more). The rest of the row is built when those change, and copied each
        tick: this runs for each container every second."""
        if entry.files is None or entry.facts["state"] != "running":
            entry.cpu = entry.details = entry.charged = None
            return {**entry.facts, **NO_NUMBERS}
        ticks = entry.ticks
        before = entry.cpu
        try:
            cpu_ns = cgroups.cpu_used(entry.files, self._files.raw)
            # Its first two ticks too: its rates are known from its second tick on.
            looks = ticks % DETAILS_EVERY == 0 or ticks == 1 or entry.details is None
            if looks:
                self._look(entry, now)
            # A container that used no CPU since the last tick has charged next to no
            # memory: what moves it meanwhile is the kernel's (reclaim, socket buffers
            # filled on receive). Its memory is read on the ticks it runs and every
            # DETAILS_EVERY ticks: most containers idle most seconds.
            if looks or entry.charged is None or before is None or cpu_ns != before[1]:
                entry.charged = cgroups.memory_charged(entry.files, self._files.raw)
        except (OSError, ValueError):
            return {**entry.facts, **NO_NUMBERS}  # it stopped between the list and this tick
        entry.ticks = ticks + 1
        base = entry.base
        if base is None:
            base = entry.base = {**entry.facts, **NO_NUMBERS}
            if entry.details is not None:
                more = entry.details[1]
                base.update(memory_limit=more.memory_limit, pids=more.pids, **entry.rates)
        row = base.copy()
        if cpu_ns is not None:
            if before is not None and now > before[0] and cpu_ns >= before[1]:
                share = (cpu_ns - before[1]) / 1e9 / (now - before[0]) / self._cores
                row["cpu_percent"] = round(min(max(100 * share, 0.0), 100.0), 1)  # percent()
            entry.cpu = (now, cpu_ns)
        if entry.charged is not None and entry.details is not None:
            row["memory_used"] = max(entry.charged - entry.details[1].cache, 0)
        return row

    def _look(self, entry: Known, now: float) -> None:
        assert entry.paths is not None
        slow = None
        if entry.details is not None and entry.ticks % SLOW_EVERY not in (0, 1):
            slow = entry.details[1]  # its first two ticks read them all
        more = cgroups.details(entry.paths, entry.pid, self._proc, slow, self._detail_files.raw)
        if entry.details is not None:
            then, before = entry.details
            elapsed = now - then
            entry.rates = {
                "rx_bps": _per_second(more.rx_bytes, before.rx_bytes, elapsed),
                "tx_bps": _per_second(more.tx_bytes, before.tx_bytes, elapsed),
                "read_bps": _per_second(more.read_bytes, before.read_bytes, elapsed),
                "write_bps": _per_second(more.write_bytes, before.write_bytes, elapsed),
            }
        entry.details = (now, more)
        entry.base = None  # its limit, pids and rates: the row is built again

    def null(self) -> dict[str, Any]:
        return {"containers": None}


def _per_second(after: int | None, before: int | None, elapsed: float) -> int | None:
    """A counter's rate over `elapsed` seconds; None where it was not read or went back."""
    if after is None or before is None or after < before or elapsed <= 0:
        return None
    return round((after - before) / elapsed)
