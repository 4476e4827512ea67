"""This host's log sources, each followed only while a page watches it.

Every call here stats and reads files, or asks the container engine: the hub
and the agent call them in a pool thread (run_blocking), never on the event
loop.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence

from server.firehose.follow import RateCap, Redactor, shape
from server.firehose.sources import FileSource, LogSource, Source, open_source

Line = dict[str, object]  # {"ts": epoch seconds, "text": str}
BACKLOG_LINES = 200


class LocalFeed:
    """The sources of this host, followed while watched; lines shaped and capped."""

    def __init__(
        self,
        sources: Sequence[LogSource],
        lines_per_second: int,
        redact: Redactor,
        clock: Callable[[], float] = time.monotonic,
        engine: str | None = None,
    ) -> None:
        self.sources = {s.name: s for s in sources}
        self.engine = engine  # the container engine's socket, for docker:/compose: sources
        self.lines_per_second = lines_per_second
        self._redact = redact
        self._clock = clock
        self._open: dict[str, Source] = {}
        self._caps: dict[str, RateCap] = {}
        self._said: dict[str, str | None] = {}  # the problem each source's page was told

    @property
    def names(self) -> list[str]:
        return list(self.sources)

    @property
    def watched(self) -> set[str]:
        return set(self._open)

    def watch(self, names: Iterable[str]) -> dict[str, list[Line]]:
        """Follow exactly `names` from now on; the backlog of each newly watched one."""
        wanted = {n for n in names if n in self.sources}
        for name in set(self._open) - wanted:
            self._open.pop(name).close()
            self._caps.pop(name, None)
            self._said.pop(name, None)
        backlogs: dict[str, list[Line]] = {}
        for name in wanted - set(self._open):
            source = open_source(self.sources[name], self.engine)
            self._open[name] = source
            self._caps[name] = RateCap(self.lines_per_second, self._clock)
            now = time.time()
            backlogs[name] = [self._line(raw, now) for raw in source.backlog(BACKLOG_LINES)]
        return backlogs

    def problems(self) -> dict[str, str | None]:
        """Why each watched source cannot be read now (None: it can)."""
        return {name: source.problem for name, source in self._open.items()}

    def poll(self) -> dict[str, list[Line]]:
        """New lines of each watched source, shaped, at most the cap a second."""
        out: dict[str, list[Line]] = {}
        now = time.time()
        for name, source in self._open.items():
            raw = source.poll()
            cap = self._caps[name]
            # Capped before shaping: a flood's dropped lines cost no decoding.
            kept = cap.admit(raw) if raw else cap.flush()
            texts = [k if isinstance(k, str) else shape(k, self._redact) for k in kept]
            # A source that cannot be read says so in its own stream, once, and when it can again.
            problem = source.problem
            if problem != self._said.get(name):
                texts.append(
                    f"… {name} is unreadable: {problem}" if problem else f"… {name} is readable"
                )
                self._said[name] = problem
            if texts:
                out[name] = [{"ts": now, "text": t} for t in texts]
        return out

    def step(self, wanted: Iterable[str]) -> dict[str, list[Line]]:
        """watch(wanted), then poll(): per source, its backlog if newly watched, then
        its new lines."""
        lines = self.watch(wanted)
        for name, new in self.poll().items():
            lines[name] = lines.get(name, []) + new
        return {name: kept for name, kept in lines.items() if kept}

    def file_tails(self, count: int) -> dict[str, list[str]]:
        """Each file source's last `count` lines, shaped as a page gets them, watched or
        not (blocking: in the pool). A journal or a container has none here: reading
        their past would block on a large journal, or stream."""
        tails: dict[str, list[str]] = {}
        for name, spec in self.sources.items():
            if spec.journald or spec.container:
                continue
            source = FileSource(spec)
            try:
                tails[name] = [shape(raw, self._redact) for raw in source.backlog(count)]
            finally:
                source.close()
        return tails

    def close(self) -> None:
        self.watch(())

    def _line(self, raw: bytes, now: float) -> Line:
        return {"ts": now, "text": shape(raw, self._redact)}
