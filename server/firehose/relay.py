"""The firehose at the hub: who watches which host's sources, and their lines.

A page subscribes to a host's sources by name (never a path). Each (host,
source) is a room, `firehose:<host>:<source>`. The hub's own sources are
followed in a pool thread four times a second while someone watches them;
an agent is told which of its sources are watched (`firehose_watch`) and
sends their lines, and nothing when none is. The hub keeps the last 200
lines of each watched source, for the next page that subscribes.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from server.blocking import run_blocking
from server.config import ConfigError
from server.firehose.feed import BACKLOG_LINES, Line, LocalFeed
from server.firehose.follow import RateCap, Redactor
from server.firehose.sources import container_engine, with_app_log
from server.loops import DONE, BackgroundLoop

log = logging.getLogger("dashboard.firehose")

POLL_SECONDS = 0.25
MAX_SUBSCRIPTIONS = 64  # (host, source) pairs one page may watch
MAX_AGENT_LINES = 2000  # lines in one batch from an agent
MAX_TEXT = 9 * 1024  # characters of a line from an agent (8 KiB and the cut marker)

Emit = Callable[..., None]  # socketio.emit(event, data, to=room)


def room(host: str, source: str) -> str:
    return f"firehose:{host}:{source}"


class Firehose:
    def __init__(
        self,
        local_id: str,
        feed: LocalFeed,
        emit: Emit,
        enter: Callable[[str, str], None],
        leave: Callable[[str, str], None],
        sources_of: Callable[[str], list[str] | None],
        tell_agent: Callable[[str, list[str]], None],
    ) -> None:
        self.local_id = local_id
        self.feed = feed
        self._emit = emit
        self._enter = enter  # (sid, room): join a page to a room
        self._leave = leave
        self._sources_of = sources_of  # a host's source names (None: no such host)
        self._tell_agent = tell_agent  # (host, watched names): to that agent
        self._lock = threading.Lock()
        self._pages: dict[str, set[tuple[str, str]]] = {}  # sid -> (host, source)
        self._backlog: dict[tuple[str, str], deque[Line]] = {}
        self._polling = False
        self._wanted: set[str] = set()  # the local sources pages watch
        self._agent_caps: dict[tuple[str, str], RateCap] = {}  # (host, source): lines a second

    def watched(self, host: str) -> set[str]:
        with self._lock:
            return {s for subs in self._pages.values() for h, s in subs if h == host}

    def subscribe(self, sid: str, user: str, host: str, names: Any) -> str | None:
        """Join a page to a host's sources (all if `names` is None); the problem, or None."""
        known = self._sources_of(host)
        if known is None:
            return "no such host in this fleet"
        if names is None:
            names = known
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            return "sources must be a list of source names"
        unknown = [n for n in names if n not in known]
        if unknown:
            return f"unknown source {unknown[0][:64]!r}: sources are named, not paths"
        with self._lock:
            subs = self._pages.setdefault(sid, set())
            if len(subs | {(host, n) for n in names}) > MAX_SUBSCRIPTIONS:
                return f"at most {MAX_SUBSCRIPTIONS} sources per page"
            new = [n for n in names if (host, n) not in subs]
            subs.update((host, n) for n in new)
        log.info("firehose: %s watches %s: %s", user, host, ", ".join(names) or "(none)")
        for name in new:
            self._enter(sid, room(host, name))
            with self._lock:
                kept = list(self._backlog.get((host, name), ()))
            if kept:
                self._emit("firehose", {"host": host, "source": name, "lines": kept}, to=sid)
        self._rewatch(host)
        return None

    def unsubscribe(self, sid: str, host: str | None = None) -> None:
        """A page stops watching a host (or, on disconnect, everything)."""
        with self._lock:
            subs = self._pages.get(sid, set())
            gone = {(h, s) for h, s in subs if host is None or h == host}
            subs -= gone
            if not subs:
                self._pages.pop(sid, None)
        for h, s in gone:
            self._leave(sid, room(h, s))
        for h in {h for h, _ in gone}:
            self._rewatch(h)

    def _rewatch(self, host: str) -> None:
        watched = self.watched(host)
        with self._lock:  # kept only while watched: a later page reads it fresh
            for key in [k for k in self._backlog if k[0] == host and k[1] not in watched]:
                del self._backlog[key]
        if host != self.local_id:
            self._tell_agent(host, sorted(watched))
            return
        with self._lock:
            self._wanted = watched
            start = not self._polling
            self._polling = True
        if start:  # a loop of its own each time: the last one may still be ending
            BackgroundLoop("firehose", self._poll, log, error_wait=POLL_SECONDS).start()

    def _poll(self) -> float:
        """The one thread that touches the local feed: what to follow, then what is new,
        in one pool call four times a second, until nothing is watched. A source that
        fails raises here; the loop logs it and goes on."""
        with self._lock:
            wanted = set(self._wanted)
        batches = run_blocking(self.feed.step, wanted)
        for name, lines in batches.items():
            self.relay(self.local_id, name, lines)
        with self._lock:
            if not wanted and not self._wanted:
                self._polling = False
                return DONE
        return POLL_SECONDS

    def relay(self, host: str, source: str, lines: list[Line]) -> None:
        self._keep(host, source, lines)
        self._emit("firehose", {"host": host, "source": source, "lines": lines},
                   to=room(host, source))  # fmt: skip

    def _keep(self, host: str, source: str, lines: list[Line]) -> None:
        with self._lock:
            kept = self._backlog.setdefault((host, source), deque(maxlen=BACKLOG_LINES))
            kept.extend(lines)

    def held_lines(self, host: str, count: int) -> dict[str, list[str]]:
        """The last `count` lines the hub holds of each of a host's sources (those
        pages watch or watched): a notification's evidence."""
        with self._lock:
            return {
                source: [str(line["text"]) for line in list(kept)[-count:]]
                for (of, source), kept in self._backlog.items()
                if of == host
            }

    def from_agent(self, host: str, batch: Any) -> str | None:
        """An agent's lines: checked, then relayed to the pages watching them."""
        if not isinstance(batch, dict) or not isinstance(batch.get("lines"), list):
            return "a firehose batch is {source, lines: [{ts, text}]}"
        source, lines = batch.get("source"), batch["lines"]
        if source not in self.watched(host):
            return None  # nobody watches it (any more): dropped, not an error
        if len(lines) > MAX_AGENT_LINES:
            return f"at most {MAX_AGENT_LINES} lines a batch"
        clean: list[Line] = []
        for line in lines:
            if not (isinstance(line, dict) and isinstance(line.get("text"), str)
                    and isinstance(line.get("ts"), int | float)):  # fmt: skip
                return "a line is {ts, text}"
            clean.append({"ts": float(line["ts"]), "text": line["text"][:MAX_TEXT]})
        # The same cap a second as this host's own sources: an agent cannot flood pages.
        cap = self._agent_caps.get((host, source))
        if cap is None:  # bounded: a host's sources are named in its static (32 at most)
            cap = self._agent_caps[host, source] = RateCap(self.feed.lines_per_second)
        kept = [line if isinstance(line, dict) else {"ts": time.time(), "text": line}
                for line in cap.admit(clean)]  # fmt: skip
        if kept:
            self.relay(host, str(source), kept)
        return "over the cap: lines dropped" if cap.dropped else None


def local_feed(config: Any) -> LocalFeed:
    """This host's feed, from the settings (the app log is a source). A container
    source with no engine to read it from stops the process here, at start."""
    sources = with_app_log(config.log_sources, config.log_dir)
    try:
        engine = container_engine(sources, config.containers)
    except ValueError as exc:
        raise ConfigError(f"setting 'log_sources': {exc}") from None
    return LocalFeed(sources, config.firehose_lines_per_second,
                     Redactor(config.firehose_redact), engine=engine)  # fmt: skip
