"""A container's output as a log source: `docker:NAME`, or `compose:PROJECT` for
every container of a Compose project (each line after its container's name).

Read through the engine's logs call (server/sampling/engine.py, GET only): one
stream per container, opened when the source is watched, read without
blocking in the feed's pool thread, closed when nobody watches. A container
that does not exist yet, or is stopped, is waited for: the engine is asked
again every second while nothing streams (every 5 s while something does, so a
project's new containers join), and a new run of a container (a restart) is a
new stream, from where the last run ended. The source's `problem` says what it
waits for, and the feed says it once in the stream.

Without a TTY the engine multiplexes stdout and stderr in frames (an 8-byte
header: the stream, three zeros, the payload's size as a big-endian uint32);
with one it sends the bytes as they are. Demux takes both, in pieces of any
size, and keeps at most MAX_LINE bytes of a line whatever size a frame claims.
"""

from __future__ import annotations

import calendar
import dataclasses
import re
import time
from typing import Any

from server.firehose.follow import MAX_LINE, READ_LIMIT
from server.firehose.sources import LogSource
from server.sampling.engine import Engine, EngineError, LogStream

LOOK_EVERY = 1.0  # seconds between asking the engine while no container streams
RELOOK_EVERY = 5.0  # ... while one does (a project's new containers), or after an error
ENGINE_TIMEOUT = 2.0  # seconds for each engine call (connect, the answer's head)
MAX_CONTAINERS = 32  # containers one source follows
RUN_TAIL = 200  # lines of a new run read from its start (the backlog a page gets)
BACKLOG_WAIT = 0.25  # seconds a new page's watch waits at most for containers' last lines
QUIET = 0.02  # ... and, once lines come, for the next ones
NO_END = READ_LIMIT  # bytes of a line with no newline after which it is passed on anyway
CUT_ROOM = 48  # bytes kept free for the cut marker: " … [N more bytes cut]"
PROJECT_LABEL = "com.docker.compose.project"
HEADER = 8
STDERR = 2
STAMP = re.compile(  # RFC 3339, as the engine writes a time
    r"\A(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(?:\.(\d{1,9}))?(Z|[+-]\d\d:\d\d)\Z"
)


class _Line:
    """One stream's bytes cut into lines. A line keeps its first bytes and says how many
    more it had: memory stays bounded, whatever size a frame claims."""

    def __init__(self, prefix: bytes) -> None:
        self._prefix = prefix
        self._room = MAX_LINE - len(prefix)
        self._kept = bytearray()
        self._more = 0  # bytes of the current line past what is kept

    def feed(self, data: bytes) -> list[bytes]:
        *ends, rest = data.split(b"\n")
        out = []
        for piece in ends:
            self._add(piece)
            out.append(self._take())
        self._add(rest)
        if len(self._kept) + self._more >= NO_END:  # no end in sight: passed on as it is
            out.append(self._take())
        return out

    def flush(self) -> list[bytes]:
        return [self._take()] if self._kept or self._more else []

    def _add(self, piece: bytes) -> None:
        space = max(0, self._room - len(self._kept))
        self._kept += piece[:space]
        self._more += max(0, len(piece) - space)

    def _take(self) -> bytes:
        kept, more = bytes(self._kept), self._more
        self._kept.clear()
        self._more = 0
        if not more:
            return self._prefix + kept
        # Cut below MAX_LINE so the marker fits: shape() then has nothing to cut again.
        keep = self._room - CUT_ROOM
        cut = len(kept) + more - keep
        return self._prefix + kept[:keep] + f" … [{cut} more bytes cut]".encode()


class Demux:
    """The engine's log stream as complete lines, stdout's and stderr's each their own
    (a partial line of one is not mixed with the other's), in the order they came."""

    def __init__(self, multiplexed: bool, prefix: bytes = b"") -> None:
        self.multiplexed = multiplexed
        self._lines = {1: _Line(prefix), STDERR: _Line(prefix)}
        self._header = b""  # the part of a frame's header read so far
        self._left = 0  # payload bytes of the current frame still to come
        self._stream = 1

    def feed(self, data: bytes) -> list[bytes]:
        if not self.multiplexed:
            return self._lines[1].feed(data)
        out: list[bytes] = []
        at = 0
        while at < len(data):
            if self._left:
                take = min(self._left, len(data) - at)
                out += self._lines[self._stream].feed(data[at : at + take])
                self._left -= take
                at += take
                continue
            need = HEADER - len(self._header)
            self._header += data[at : at + need]
            at += need
            if len(self._header) < HEADER:
                break  # the rest of the header comes with the next read
            header, self._header = self._header, b""
            if header[0] > STDERR or header[1:4] != b"\0\0\0":
                # Not a frame: the stream is raw after all (a TTY the inspect did not
                # say). What came is text, and so is the rest.
                self.multiplexed = False
                return out + self._lines[1].feed(header + data[at:])
            self._stream = STDERR if header[0] == STDERR else 1  # 0 (stdin) shows as stdout
            self._left = int.from_bytes(header[4:], "big")
        return out

    def flush(self) -> list[bytes]:
        """The lines not ended yet (the stream ended)."""
        return self._lines[1].flush() + self._lines[STDERR].flush()


def unix_time(stamp: str) -> str | None:
    """The engine's RFC 3339 time (a run's FinishedAt) as the "seconds.nanoseconds" its
    `since` takes; None for the zero time of a container never started."""
    match = STAMP.match(stamp)
    if not match:
        return None
    year, month, day, hour, minute, second = (int(g) for g in match.groups()[:6])
    seconds = calendar.timegm((year, month, day, hour, minute, second, 0, 0, 0))
    zone = match[8]
    if zone != "Z":
        sign = 1 if zone[0] == "+" else -1
        seconds -= sign * (int(zone[1:3]) * 3600 + int(zone[4:6]) * 60)
    if seconds <= 0:
        return None
    return f"{seconds}.{(match[7] or '').ljust(9, '0')}"


@dataclasses.dataclass
class _Stream:
    stream: LogStream
    demux: Demux
    last_data: float  # wall time of the last bytes: where a broken stream picks up


class ContainerSource:
    """docker:NAME or compose:PROJECT: each matching container's output, followed."""

    def __init__(self, source: LogSource, engine_socket: str | None) -> None:
        self.source = source
        kind, _, self.target = source.spec.partition(":")
        self.project = kind == "compose"
        self.problem: str | None = None
        # Plain sockets: the feed runs in a pool thread, which may touch nothing green.
        self._engine = Engine(engine_socket, ENGINE_TIMEOUT, plain=True) if engine_socket else None
        self._streams: dict[str, _Stream] = {}  # container id -> its open stream
        self._runs: dict[str, str] = {}  # container id -> StartedAt of the run read
        self._resume_at: dict[str, float] = {}  # container id -> its ended stream's last bytes
        self._next_look = 0.0  # monotonic time of the next look at the engine
        self._looked = False
        if self._engine is None:
            self.problem = "no container engine (the containers setting)"

    def backlog(self, count: int) -> list[bytes]:
        """The containers' last `count` lines, as a new page's watch starts: their
        streams open from there, and what comes within BACKLOG_WAIT is the backlog
        (the rest comes with the next polls, never twice)."""
        self._look(tail=count)
        lines: list[bytes] = []
        deadline = time.monotonic() + BACKLOG_WAIT
        pending = list(self._streams)  # read first: the first bytes may have come with the head
        while True:
            for cid in pending:
                lines += self._read(cid)
            left = deadline - time.monotonic()
            if not self._streams or left <= 0:
                break
            wait = min(left, QUIET) if lines else left
            assert self._engine is not None  # streams come from it
            ready = self._engine.readable([s.stream for s in self._streams.values()], wait)
            if not ready:
                break
            pending = [cid for cid, s in self._streams.items() if s.stream in ready]
        return lines[-count:]

    def poll(self) -> list[bytes]:
        lines: list[bytes] = []
        for cid in list(self._streams):
            lines += self._read(cid)
        if time.monotonic() >= self._next_look:
            self._look(tail=0)  # the first look only: later ones read a run from its start
        return lines

    def close(self) -> None:
        for open_stream in self._streams.values():
            open_stream.stream.close()
        self._streams.clear()

    def _read(self, cid: str) -> list[bytes]:
        followed = self._streams[cid]
        data = followed.stream.read(READ_LIMIT)
        lines = followed.demux.feed(data) if data else []
        if data:
            followed.last_data = time.time()
        if followed.stream.ended:  # stopped (or the engine went): look again at once
            lines += followed.demux.flush()
            followed.stream.close()
            del self._streams[cid]
            self._resume_at[cid] = followed.last_data
            self._next_look = 0.0
        return lines

    def _look(self, tail: int) -> None:
        """Ask the engine for the matching containers; follow those not followed yet."""
        first, self._looked = not self._looked, True
        if self._engine is None:
            self._next_look = float("inf")
            return
        if self.project:
            filters = {"label": [f"{PROJECT_LABEL}={self.target}"]}
        else:
            filters = {"name": [self.target]}
        try:
            listed = self._engine.containers(filters)
        except EngineError as exc:
            self.problem = None if self._streams else self._why(exc)
            self._next_look = time.monotonic() + RELOOK_EVERY
            return
        # Running ones first, if a project has more than are followed.
        matching = sorted((c for c in listed if self._matches(c)), key=_running_then_name)
        matching = matching[:MAX_CONTAINERS]
        if tail and matching:  # a new page's backlog, shared among a project's containers
            tail = max(1, tail // len(matching))
        errors: list[str] = []
        every = LOOK_EVERY
        deadline = time.monotonic() + ENGINE_TIMEOUT
        for container in matching:
            if time.monotonic() > deadline:
                break  # a slow engine holds the feed's thread: the rest at the next look
            try:
                self._follow(container, tail, first)
            except EngineError as exc:  # this one (gone meanwhile, a driver that can't be read)
                errors.append(self._why(exc))
                every = RELOOK_EVERY
        ids = {c.get("Id") for c in matching}
        self._runs = {cid: run for cid, run in self._runs.items() if cid in ids}
        self._resume_at = {cid: at for cid, at in self._resume_at.items() if cid in ids}
        self.problem = None if self._streams else self._waiting(matching, errors)
        self._next_look = time.monotonic() + (RELOOK_EVERY if self._streams else every)

    def _why(self, exc: EngineError) -> str:
        """An engine error as a page reads it: the socket's path is not the page's business."""
        assert self._engine is not None
        return str(exc).replace(self._engine.socket_path, "the engine")

    def _matches(self, container: dict[str, Any]) -> bool:
        # The engine's name filter is a pattern ("web" matches "web-2"): the name is checked.
        if self.project:
            labels = container.get("Labels") or {}
            return isinstance(labels, dict) and labels.get(PROJECT_LABEL) == self.target
        return _name(container) == self.target

    def _follow(self, container: dict[str, Any], tail: int, first: bool) -> None:
        cid = container.get("Id")
        if not isinstance(cid, str) or cid in self._streams:
            return
        if cid in self._runs and container.get("State") != "running":
            return  # its last run was read to its end: wait for the next
        assert self._engine is not None
        # The run's start and whether it has a TTY; nothing else of it is kept.
        found = self._engine.inspect(cid)
        state, config = found.get("State"), found.get("Config")
        state = state if isinstance(state, dict) else {}
        run = str(state.get("StartedAt") or "")
        since = None
        if cid in self._runs:
            tail = RUN_TAIL
            if self._runs[cid] == run:
                if not state.get("Running"):
                    return
                # The stream broke while the run goes on: from where it was.
                since = f"{self._resume_at.get(cid, time.time()):.6f}"
            else:
                # A new run (a restart): what came after the last one ended. Not from its
                # StartedAt: the engine sets that after the process may have written.
                since = unix_time(str(state.get("FinishedAt") or ""))
        elif not first:
            tail = RUN_TAIL  # a new container: all of it is new
        stream = self._engine.logs(cid, tail, since)
        prefix = f"{_name(container)} | ".encode() if self.project else b""
        multiplexed = not (isinstance(config, dict) and config.get("Tty"))
        self._streams[cid] = _Stream(stream, Demux(multiplexed, prefix), time.time())
        self._runs[cid] = run

    def _waiting(self, matching: list[dict[str, Any]], errors: list[str]) -> str:
        """What the source waits for, in words."""
        if errors:
            return errors[0]
        if self.project:
            if not matching:
                return f"no container of project {self.target} (yet)"
            return f"no container of project {self.target} is running"
        if not matching:
            return f"no container named {self.target} (yet)"
        return f"container {self.target} is not running"


def _running_then_name(container: dict[str, Any]) -> tuple[bool, str]:
    return container.get("State") != "running", _name(container)


def _name(container: dict[str, Any]) -> str:
    names = container.get("Names")
    name = names[0] if isinstance(names, list) and names and isinstance(names[0], str) else ""
    return name.lstrip("/")
