"""Per-host state at the hub: recent samples, alerts, and the state a tile shows.

States, worst first: `down` (its link closed and did not come back within
10 s, or it was stale for 30 s), `stale` (no sample for 3 intervals), `crit`,
`warn`, `ok` (from its active alerts). The hub's own machine is a host like
the others; its samples come from the in-process Sampler.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable, Collection
from typing import Any

from server import __version__
from server.alerts.notify import AlertNotifier
from server.alerts.rules import CRITICAL, HOST_DOWN, OK, AlertEngine
from server.fleet.clock import LinkClock, describe
from server.history.ring import HistoryRing
from server.worker import Sampler

Sample = dict[str, Any]

STATES = ("down", "stale", "crit", "warn", "ok")  # worst first
RANK = {state: rank for rank, state in enumerate(STATES)}
STALE_INTERVALS = 3
DOWN_AFTER_CLOSE = 10.0
DOWN_AFTER_STALE = 30.0
LEVEL_STATE = {CRITICAL: "crit", "warning": "warn", OK: "ok"}
TROUBLE_SHOWN = 60.0  # seconds a host's trouble stays on its tile after the last time
SPARK_STEP = 10.0  # seconds per point of a tile's CPU sparkline (15 min: 90 points)
UNIT_COUNTS = ("failed", "restarting", "activating", "ok")  # a tile's `services`


class Host:
    """One host of the fleet: an agent's, or the hub's own (backed by its Sampler)."""

    def __init__(
        self,
        host_id: str,
        notifier: AlertNotifier,
        interval: float,
        history_seconds: int,
        sampler: Sampler | None = None,
        clock: Callable[[], float] = time.monotonic,
        clock_warn: float = 2.0,
    ) -> None:
        self.id = host_id
        self.notifier = notifier
        self.interval = interval
        self.static: dict[str, Any] | None = None
        self.sampler = sampler  # the hub's own host only
        self._clock = clock
        self.clock = LinkClock()  # an agent's link's clock against the hub's (server/fleet/hub.py)
        self.clock_warn = clock_warn  # seconds off before the tile says so
        self.ring = HistoryRing(history_seconds, interval)
        self._latest: Sample | None = None
        self._last_sample_at: float | None = None
        self.connected = sampler is not None
        self.closed_at: float | None = None if sampler is not None else clock()
        self.state = "ok" if sampler is not None else "down"
        self._stale_since: float | None = None
        self._trouble: dict[str, tuple[str, float]] = {}  # kind -> (what, when): over budget
        notifier.trouble = self.note_trouble
        self.spark: deque[float | None] = deque(maxlen=90)
        self._spark_next = 0.0
        # Held while a sample is published and while a page is greeted, so a
        # page never gets a `metrics` older than its `history`.
        self.lock = threading.Lock()

    @property
    def alerts(self) -> AlertEngine:
        return self.notifier.engine

    @property
    def name(self) -> str:
        """The name on its tile: an agent's is the one it was added under."""
        return str((self.static or {}).get("hostname") or self.id) if self.sampler else self.id

    # ---- samples

    @property
    def latest(self) -> Sample | None:
        return self.sampler.latest if self.sampler else self._latest

    def last_sample_age(self) -> float | None:
        if self.sampler:
            return self.sampler.last_sample_age()
        return None if self._last_sample_at is None else self._clock() - self._last_sample_at

    def history(self, seconds: float | None = None) -> list[Sample]:
        if self.sampler:
            return self.sampler.history(seconds)
        return self.ring.rows(seconds)

    def columns(
        self, seconds: float | None = None, metrics: Collection[str] | None = None
    ) -> dict[str, Any]:
        if self.sampler:
            return self.sampler.columns(seconds, metrics)
        with self.lock:
            return self.ring.columns(seconds, metrics=metrics)

    def greet(self, send: Callable[[HistoryRing, Sample | None], None]) -> None:
        """Give `send` the ring and latest sample while none of this host's can be published."""
        if self.sampler:
            self.sampler.send_history(send)
            return
        with self.lock:
            send(self.ring, self._latest)

    def take(self, sample: Sample, publish: Callable[[Sample], None]) -> bool:
        """An agent's sample: live (published, True) or a replay kept in order (False)."""
        with self.lock:
            latest = self._latest
            if latest is not None and sample["ts"] <= latest["ts"]:
                self.ring.insert(sample)
                return False
            self._latest = sample
            self._last_sample_at = self._clock()
            self.ring.append(sample)
            publish(sample)
        return True

    def seen(self, sample: Sample) -> None:
        """After each live sample (either kind of host): the sparkline's point."""
        cpu = (sample.get("cpu") or {}).get("percent")
        ts = float(sample.get("ts") or 0)
        if ts >= self._spark_next:
            self.spark.append(cpu)
            self._spark_next = math.floor(ts / SPARK_STEP) * SPARK_STEP + SPARK_STEP

    def preload(self, samples: list[Sample]) -> None:
        """The stored recent history, after a hub restart."""
        with self.lock:
            for sample in samples:
                self.ring.append(sample)
                self.seen(sample)

    # ---- state

    def link(self, connected: bool) -> None:
        self.connected = connected
        self.closed_at = None if connected else self._clock()

    def judge(self) -> str:
        """This host's state now."""
        now = self._clock()
        age = self.last_sample_age()
        stale = age is None or age > STALE_INTERVALS * self.interval
        if stale:
            self._stale_since = self._stale_since or now
        else:
            self._stale_since = None
        closed = None if self.connected or self.closed_at is None else now - self.closed_at
        if closed is not None and closed >= DOWN_AFTER_CLOSE:
            return "down"
        if stale:
            assert self._stale_since is not None
            return "down" if now - self._stale_since >= DOWN_AFTER_STALE else "stale"
        return LEVEL_STATE.get(self.alerts.worst(), "ok")

    def down_alert(self, down: bool) -> dict[str, Any] | None:
        """The `host_down` alert that a change into or out of `down` raises or clears."""
        active = HOST_DOWN in self.alerts.active
        if down == active:
            return None
        age = self.last_sample_age()
        alert = {
            "rule": HOST_DOWN,
            "metric": "host.last_sample_age",
            "level": CRITICAL if down else OK,
            "previous": OK if down else CRITICAL,
            "value": None if age is None else round(age, 1),
            "threshold": DOWN_AFTER_CLOSE,
            "ts": round(time.time(), 3),
        }
        self.alerts.record(alert)
        return alert

    def tile(self) -> dict[str, Any]:
        """What the fleet page shows of this host (small: it goes out every second)."""
        sample = self.latest or {}
        disks = [d.get("percent") for d in sample.get("disks") or []]
        fullest = max((p for p in disks if p is not None), default=None)
        age = self.last_sample_age()
        tile: dict[str, Any] = {
            "id": self.id,
            "name": self.name,
            "state": self.state,
            "age": None if age is None else round(age, 1),
            "cpu": (sample.get("cpu") or {}).get("percent"),
            "mem": (sample.get("memory") or {}).get("percent"),
            "disk": fullest,
            "alerts": self.alerts.counts(),
        }
        containers = sample.get("containers")
        if isinstance(containers, dict):  # only where the host's containers are sampled
            tile["containers"] = [containers.get(k) for k in ("running", "unhealthy", "stopped")]
        services = sample.get("services")
        if isinstance(services, dict):  # only where the host's systemd units are read
            tile["services"] = [services.get(k) for k in UNIT_COUNTS]
        note = self.clock_note()
        if note:  # only then: a tile goes out every second (bytes per host count)
            tile["clock_note"] = note
        older = self.agent_note()
        if older:
            tile["agent_note"] = older
        troubles = self.troubles()
        if troubles:  # over a budget, or refused: why, on its tile
            tile["trouble"] = troubles
        return tile

    def note_trouble(self, kind: str, text: str) -> None:
        """This host went over a budget, or sent what was refused: said on its tile a minute."""
        self._trouble[kind] = (text[:200], self._clock())

    def troubles(self) -> list[str]:
        """What this host did wrong in the last minute, a line each."""
        now = self._clock()
        return [f"{kind}: {text}" for kind, (text, at) in list(self._trouble.items())
                if now - at < TROUBLE_SHOWN]  # fmt: skip

    @property
    def agent_version(self) -> str | None:
        """The version its agent said at connect (its static's), if it has said."""
        version = (self.static or {}).get("version")
        return version if isinstance(version, str) else None

    def agent_note(self) -> str | None:
        """ "agent 0.1.0, older than the hub (0.2.0)" where its agent is older, else None."""
        version = self.agent_version
        if version is None or not is_older(version, __version__):
            return None
        return f"agent {version}, older than the hub ({__version__})"

    def clock_note(self) -> str | None:
        """ "clock 10 min ahead" when its clock is off by more than clock_warn, else None."""
        offset = self.clock.offset
        return describe(offset) if offset is not None and abs(offset) > self.clock_warn else None


def release(version: str) -> tuple[int, ...] | None:
    """A version's release numbers (`0.2.0` of `0.2.0.dev3+g1a2b`); None for fewer than
    two (`0+unknown`: a checkout run without being installed)."""
    parts = []
    for part in version.split("+")[0].split("."):
        if not part.isdigit():
            break
        parts.append(int(part))
    return tuple(parts) if len(parts) >= 2 else None


def is_older(version: str, than: str) -> bool:
    """Whether `version`'s release is before `than`'s; False where either has none."""
    mine, theirs = release(version), release(than)
    return mine is not None and theirs is not None and mine < theirs


class Fleet:
    """Every host the hub knows, by id; judges their states (four times an interval)."""

    def __init__(
        self,
        local: Host,
        make_host: Callable[[str], Host],
        emit: Callable[[str, Any, str], None],
    ) -> None:
        self.local = local
        self._make_host = make_host
        self._emit = emit  # (event, data, room)
        self.hosts: dict[str, Host] = {local.id: local}
        self.viewers: set[str] = set()  # Socket.IO ids of the open fleet pages
        # A web process's copy of the core's tiles (role web); None: judged here.
        self.mirrored: dict[str, Any] | None = None
        # What the hub cannot do though it serves (its store cannot write): the pages' banner.
        self.degraded: Callable[[], list[str]] = list
        self._lock = threading.Lock()

    def get(self, host_id: str) -> Host | None:
        return self.hosts.get(host_id)

    def ensure(self, host_id: str) -> Host:
        with self._lock:
            host = self.hosts.get(host_id)
            if host is None:
                host = self.hosts[host_id] = self._make_host(host_id)
            return host

    def forget(self, host_id: str) -> None:
        """An agent removed from the hub: no tile, no alerts (not a `host_down`); its
        pages hear `host_state` `removed`, once. Its history stays until it ages out."""
        if host_id == self.local.id:
            return
        with self._lock:
            host = self.hosts.pop(host_id, None)
        if host is not None:
            change = {"host": host_id, "state": "removed", "previous": host.state,
                      "ts": time.time()}  # fmt: skip
            self._emit("host_state", change, "fleet")
            self._emit("host_state", change, f"host:{host_id}")

    def judge(self) -> None:
        """Each host's state; a change is a `host_state` event, down or back an alert."""
        for host in list(self.hosts.values()):
            state = host.judge()
            if state == host.state:
                continue
            previous, host.state = host.state, state
            change = {"host": host.id, "state": state, "previous": previous, "ts": time.time()}
            self._emit("host_state", change, "fleet")
            self._emit("host_state", change, f"host:{host.id}")
            alert = host.down_alert(state == "down")
            if alert is not None:
                host.notifier.tell(alert)

    def summary(self, sparks: bool = False) -> dict[str, Any]:
        """The `fleet` payload: every tile, worst first, and the count by state."""
        if self.mirrored is not None:
            payload = dict(self.mirrored)  # a web process: the core's tiles
        else:
            tiles = sorted(
                (h.tile() for h in list(self.hosts.values())),
                key=lambda t: (RANK[t["state"]], t["name"]),
            )
            counts = {state: 0 for state in STATES}
            for tile in tiles:
                counts[tile["state"]] += 1
            payload = {"hosts": tiles, "counts": counts, "degraded": self.degraded()}
        if sparks:
            payload["sparks"] = {h.id: list(h.spark) for h in list(self.hosts.values())}
            payload["spark_step"] = SPARK_STEP
        return payload

    # ---- a web process's view of the core's stream (role web)

    def mirror(self) -> dict[str, Any]:
        """What a web process needs that the stream does not carry: statics, alerts, tiles."""
        hosts = list(self.hosts.values())
        return {
            "local": self.local.id,
            "statics": {h.id: h.static for h in hosts if h.static},
            "alerts": {h.id: h.alerts.snapshot() for h in hosts},
            "fleet": self.summary(),
        }

    def apply_mirror(self, mirror: dict[str, Any]) -> None:
        for host_id, static in (mirror.get("statics") or {}).items():
            host = self.ensure(host_id)
            if host is not self.local or host.static is None:
                host.static = static
        for host_id, snapshot in (mirror.get("alerts") or {}).items():
            engine = self.ensure(host_id).alerts
            engine.active = {a["rule"]: a for a in snapshot.get("active", [])}
            engine.recent.clear()
            engine.recent.extend(snapshot.get("recent", []))
        if mirror.get("fleet"):
            self.mirrored = mirror["fleet"]

    def observe(self, event: str, data: Any) -> None:
        """An event the core published, seen on its way to this process's pages."""
        if not isinstance(data, dict):
            return
        if event == "metrics" and isinstance(data.get("host"), str):
            host = self.ensure(data["host"])
            host.link(True)
            if host.take(data, lambda sample: None):  # the manager sends it on
                host.seen(data)
        elif event == "fleet":
            self.mirrored = data
        elif event == "alert" and isinstance(data.get("host"), str):
            self.ensure(data["host"]).alerts.record(dict(data))
        elif event == "host_state" and data.get("host") in self.hosts:
            self.hosts[data["host"]].state = str(data.get("state"))
        elif event == "mirror":
            self.apply_mirror(data)
