"""Log sources: the `log_sources` setting, and following one source.

A source is a name and what it follows: an absolute file path, a glob of
them, `journald` (optionally `journald:unit,unit`), a container's output
(`docker:NAME`) or that of every container of a Compose project
(`compose:PROJECT`; server/firehose/containers.py). Only listed files and
containers are ever read: a page names a source, never a path or a container.
The app's own log is a source (`dashboard`) unless the setting names another
`dashboard`.
"""

from __future__ import annotations

import dataclasses
import fcntl
import glob
import os
import re
import shutil
import subprocess
import time
from collections.abc import Sequence
from typing import Any, Protocol

from server.firehose.follow import FileFollower, Lines, last_lines

NAME = re.compile(r"\A[A-Za-z0-9_.-]{1,32}\Z")  # \Z: "$" would let a newline end it
MAX_SOURCES = 32
MAX_FILES = 64  # files one glob may follow
GLOB_EVERY = 5.0  # seconds between looks for new files matching a glob
# Docker's rule for a container's name, and Compose's for a project's: checked at
# start, so a typo is not a source that waits forever.
CONTAINER = re.compile(r"\A[A-Za-z0-9][A-Za-z0-9_.-]{1,127}\Z")
PROJECT = re.compile(r"\A[a-z0-9][a-z0-9_-]{0,127}\Z")


@dataclasses.dataclass(frozen=True)
class LogSource:
    name: str
    spec: str  # a path, a glob, journald[:units], docker:NAME or compose:PROJECT

    @property
    def journald(self) -> bool:
        return self.spec == "journald" or self.spec.startswith("journald:")

    @property
    def container(self) -> bool:
        """Read from the container engine: docker:NAME or compose:PROJECT."""
        return self.spec.startswith(("docker:", "compose:"))


class Source(Protocol):
    """What the feed follows for one LogSource while it is watched."""

    @property
    def problem(self) -> str | None: ...  # why it cannot be read now (None: it can)

    def backlog(self, count: int) -> list[bytes]: ...
    def poll(self) -> list[bytes]: ...
    def close(self) -> None: ...


def parse_log_sources(raw: Any) -> tuple[LogSource, ...]:
    """A TOML table (name = "spec") or, in the environment, "name=spec;name=spec"."""
    accepts = (
        'named sources: a table of name = "/absolute/path", a glob, "journald[:unit,...]",'
        ' "docker:CONTAINER" or "compose:PROJECT" (in the environment: name=spec;name=spec)'
    )
    if isinstance(raw, str):
        pairs = [part.partition("=") for part in raw.split(";") if part.strip()]
        if any(not sep for _, sep, _ in pairs):
            raise ValueError(accepts)
        table: dict[str, Any] = {name.strip(): spec.strip() for name, _, spec in pairs}
    elif isinstance(raw, dict):
        table = raw
    else:
        raise ValueError(accepts)
    if len(table) > MAX_SOURCES:
        raise ValueError(f"at most {MAX_SOURCES} sources")
    sources = []
    for name, spec in table.items():
        if not NAME.match(name):
            raise ValueError(f"{accepts}; a name is 1-32 of A-Z a-z 0-9 _ . - (got {name!r})")
        if not isinstance(spec, str) or not spec.strip():
            raise ValueError(f"{accepts} (source {name!r} is empty)")
        spec = spec.strip()
        kind, _, target = spec.partition(":")
        if kind == "docker" and not CONTAINER.match(target):
            raise ValueError(f"{accepts} (source {name!r}: {target!r} is not a container name)")
        if kind == "compose" and not PROJECT.match(target):
            raise ValueError(f"{accepts} (source {name!r}: {target!r} is not a project name)")
        if not (kind in ("journald", "docker", "compose") or os.path.isabs(spec)):
            raise ValueError(f"{accepts} (source {name!r}: {spec!r} is not an absolute path)")
        sources.append(LogSource(name, spec))
    return tuple(sources)


def container_engine(sources: Sequence[LogSource], containers: str) -> str | None:
    """The engine socket the container sources are read from (None: there are none).
    ValueError if one is listed and the `containers` setting finds no engine: the
    process stops at start rather than follow what it never can."""
    listed = [s for s in sources if s.container]
    if not listed:
        return None
    from server.sampling.engine import find_socket  # loaded only where a source needs it

    found = find_socket(containers)
    if found is None:
        where = "is off" if containers == "off" else "finds no Docker or Podman socket"
        raise ValueError(
            f"source {listed[0].name!r} ({listed[0].spec}) reads a container's output,"
            f" but the containers setting {where}"
        )
    return found


def with_app_log(sources: Sequence[LogSource], log_dir: str) -> tuple[LogSource, ...]:
    """The configured sources, and the app's own log as `dashboard` unless one is named so."""
    if any(s.name == "dashboard" for s in sources):
        return tuple(sources)
    app_log = os.path.join(os.path.abspath(log_dir), "dashboard.log")
    return (LogSource("dashboard", app_log), *sources)


class FileSource:
    """A path or a glob: a follower for each matching file (new matches join)."""

    def __init__(self, source: LogSource) -> None:
        self.source = source
        self._globbed = glob.has_magic(source.spec)
        self._followers: dict[str, FileFollower] = {}
        self._looked = 0.0
        self._look(at_start=True)

    def _look(self, at_start: bool = False) -> None:
        self._looked = time.monotonic()
        paths = (
            sorted(glob.glob(self.source.spec))[:MAX_FILES] if self._globbed else [self.source.spec]
        )
        for path in paths:
            if path not in self._followers:
                # A file that joins a glob later is new: all of it is read.
                self._followers[path] = FileFollower(path, at_end=at_start)

    @property
    def problem(self) -> str | None:
        if not self._followers:
            return "no file matches"
        problems = [f.problem for f in self._followers.values()]
        return problems[0] if all(problems) else None

    def backlog(self, count: int) -> list[bytes]:
        lines: list[bytes] = []
        for path in self._followers:
            lines += last_lines(path, count)
        return lines[-count:]

    def poll(self) -> list[bytes]:
        if self._globbed and time.monotonic() - self._looked >= GLOB_EVERY:
            self._look()
        lines: list[bytes] = []
        for follower in self._followers.values():
            lines += follower.poll()
        return lines

    def close(self) -> None:
        for follower in self._followers.values():
            follower.close()


class JournalSource:
    """`journalctl -f` for the whole journal or some units, read without blocking."""

    def __init__(self, source: LogSource) -> None:
        self.source = source
        self.problem: str | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._lines = Lines()
        binary = shutil.which("journalctl")
        if binary is None:
            self.problem = "journalctl is not installed"
            return
        units = source.spec.partition(":")[2]
        command = [binary, "--follow", "--lines=0", "--output=cat", "--quiet"]
        command += [f"--unit={u.strip()}" for u in units.split(",") if u.strip()]
        try:
            self._proc = subprocess.Popen(
                command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL
            )
        except OSError as exc:
            self.problem = exc.strerror or str(exc)
            return
        assert self._proc.stdout is not None
        flags = fcntl.fcntl(self._proc.stdout, fcntl.F_GETFL)
        fcntl.fcntl(self._proc.stdout, fcntl.F_SETFL, flags | os.O_NONBLOCK)

    def backlog(self, count: int) -> list[bytes]:
        return []  # journalctl -n would block on a large journal; the page sees what comes

    def poll(self) -> list[bytes]:
        if self._proc is None or self._proc.stdout is None:
            return []
        try:
            data = self._proc.stdout.read(1024 * 1024) or b""
        except BlockingIOError:
            return []
        if self._proc.poll() is not None and not data:
            self.problem = f"journalctl ended ({self._proc.returncode})"
        return self._lines.feed(data)

    def close(self) -> None:
        if self._proc is not None:
            self._proc.kill()
            self._proc.wait()
            self._proc = None


def open_source(source: LogSource, engine: str | None = None) -> Source:
    """What follows `source`; a container source reads from the engine at `engine`."""
    if source.container:
        from server.firehose.containers import ContainerSource  # it imports this module

        return ContainerSource(source, engine)
    return JournalSource(source) if source.journald else FileSource(source)
