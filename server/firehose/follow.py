"""Following log files like `tail -F`, and shaping their lines for a page.

A FileFollower starts at the end of its file and survives rotation by
rename-and-create (the old file is read to its end, then the new one from
its start), copytruncate and truncation (read again from the start), and a
file that appears later. Every call is a few stats and reads of what is
new; the firehose runs them in a pool thread, never on the event loop.

Lines are cut at MAX_LINE bytes with a marker, decoded as UTF-8 with
invalid bytes replaced, and redacted before they leave the host.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterable, Sequence
from typing import Any, TypeVar

T = TypeVar("T")

MAX_LINE = 8 * 1024  # bytes of a line kept; the rest is cut, with a marker
READ_LIMIT = 1024 * 1024  # bytes read from one file per poll: a flood is read over polls
BACKLOG_BYTES = 256 * 1024  # read from a file's end for the lines a new page is shown
HEAD = 64  # first bytes remembered: a file truncated and refilled past our place shows

# Values of keys that look like secrets, in key=value and key: value forms.
DEFAULT_REDACT = (
    r"(?i)\b[\w.-]*(?:pass(?:word|wd)?|token|secret|api[_-]?key|key)[\w.-]*[\"']?\s*[=:]\s*"
    r"(?P<value>\"[^\"]*\"|'[^']*'|[^\s,;&]+)"
)
REDACTED = "[redacted]"


class Redactor:
    """Applies the redaction patterns: a pattern with a `value` group hides that
    group; one without hides its whole match."""

    def __init__(self, patterns: Sequence[str] = ()) -> None:
        self.patterns = [re.compile(p) for p in (DEFAULT_REDACT, *patterns)]

    def __call__(self, text: str) -> str:
        for pattern in self.patterns:
            text = pattern.sub(_hide, text)
        return text


def _hide(match: re.Match[str]) -> str:
    if "value" not in match.re.groupindex or match.start("value") < 0:
        return REDACTED
    start = match.start()
    whole = match.group(0)
    return whole[: match.start("value") - start] + REDACTED + whole[match.end("value") - start :]


def shape(raw: bytes, redact: Redactor) -> str:
    """A raw line (no newline) as a page gets it: cut, decoded, redacted."""
    cut = len(raw) - MAX_LINE
    if cut > 0:
        raw = raw[:MAX_LINE]
    text = raw.decode("utf-8", errors="replace").rstrip("\r")
    if cut > 0:
        text += f" … [{cut} more bytes cut]"
    return redact(text)


class Lines:
    """Bytes as they come, cut into complete lines; the piece after the last newline
    waits for its end, up to 2 x MAX_LINE (then it is passed on as it is)."""

    def __init__(self) -> None:
        self._partial = b""

    def reset(self) -> None:
        self._partial = b""

    def feed(self, data: bytes, flush: bool = False) -> list[bytes]:
        """The complete lines in what came so far (and, with `flush`, the rest)."""
        chunks = (self._partial + data).split(b"\n")
        self._partial = chunks.pop()
        if len(self._partial) > MAX_LINE * 2 or (flush and self._partial):
            # A line with no end in sight, or the end of a file: pass on what is kept.
            chunks.append(self._partial)
            self._partial = b""
        return chunks


class FileFollower:
    """One file, followed from its end; poll() gives the complete lines added since."""

    def __init__(self, path: str, at_end: bool = True) -> None:
        self.path = path
        self.problem: str | None = None  # why it cannot be read now, if it cannot
        self._file: Any = None
        self._identity: tuple[int, int] | None = None
        self._lines = Lines()
        self._open(at_end=at_end)

    def _open(self, at_end: bool) -> None:
        try:
            handle = open(self.path, "rb")  # noqa: SIM115 - kept open between polls
        except FileNotFoundError:
            self.problem = "no such file (yet)"
            return
        except OSError as exc:
            self.problem = exc.strerror or str(exc)
            return
        stat = os.fstat(handle.fileno())
        if at_end:
            handle.seek(0, os.SEEK_END)
        self._file, self._identity, self.problem = handle, (stat.st_dev, stat.st_ino), None
        self._head = os.pread(handle.fileno(), HEAD, 0)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def poll(self) -> list[bytes]:
        """Complete lines written since the last poll, oldest first."""
        if self._file is None:
            self._open(at_end=False)  # a file that appeared later: all of it is new
            if self._file is None:
                return []
        try:
            stat = os.stat(self.path)
        except FileNotFoundError:
            return self._read()  # renamed away, not yet re-created: keep the old one
        except OSError as exc:
            self.problem = exc.strerror or str(exc)
            return self._read()
        if (stat.st_dev, stat.st_ino) != self._identity:
            # Rotated by rename and create: the old file's last lines, then the new file.
            lines = self._read(flush=True)
            self.close()
            self._open(at_end=False)
            return lines + (self._read() if self._file is not None else [])
        if stat.st_size < self._file.tell() or self._rewritten():
            # Truncated (copytruncate, or `> file`): what is there now is new.
            self._file.seek(0)
            self._lines.reset()
        return self._read()

    def _rewritten(self) -> bool:
        """The file's first bytes changed: truncated and written past where we were."""
        head = os.pread(self._file.fileno(), HEAD, 0)
        if head[: len(self._head)] != self._head:
            self._head = head
            return True
        self._head = head
        return False

    def _read(self, flush: bool = False) -> list[bytes]:
        data: bytes = self._file.read(READ_LIMIT)
        if not data and not flush:
            return []
        return self._lines.feed(data, flush)


def last_lines(path: str, count: int) -> list[bytes]:
    """The last `count` complete lines of a file (from its last BACKLOG_BYTES)."""
    try:
        with open(path, "rb") as handle:
            size = handle.seek(0, os.SEEK_END)
            handle.seek(max(0, size - BACKLOG_BYTES))
            data = handle.read(BACKLOG_BYTES)
    except OSError:
        return []
    lines = data.split(b"\n")
    if size > BACKLOG_BYTES:
        lines = lines[1:]  # the first is probably a piece of a line
    if lines and lines[-1] == b"":
        lines.pop()
    else:
        lines = lines[:-1]  # the last is not complete yet: the follower will give it
    return lines[-count:]


class RateCap:
    """At most `per_second` lines a second; above it, lines are dropped and
    one marker a second says how many."""

    def __init__(self, per_second: int, clock: Any = time.monotonic) -> None:
        self.per_second = per_second
        self._clock = clock
        self._window = -1
        self._passed = 0
        self.dropped = 0  # in the current window, not yet reported

    def admit(self, lines: Iterable[T]) -> list[T | str]:
        """The lines that pass, after a marker (str) for those dropped in an earlier second."""
        window = int(self._clock())
        out: list[T | str] = []
        if window != self._window:
            if self.dropped:
                out.append(f"… {self.dropped} lines dropped (over {self.per_second} a second)")
            self._window, self._passed, self.dropped = window, 0, 0
        for line in lines:
            if self._passed < self.per_second:
                out.append(line)
                self._passed += 1
            else:
                self.dropped += 1
        return out

    def flush(self) -> list[Any]:
        """The marker of a past second's drops, if its second is over."""
        return self.admit(()) if self.dropped and int(self._clock()) != self._window else []
