"""The container engine's API (Docker's, and Podman's compatible one) over its unix socket.

Read-only on purpose: the socket is root-equivalent, and this module only
ever sends GET (the list, one container's state, the events stream, one
container's log stream for the firehose: server/firehose/containers.py). It asks
for nothing that can hold a secret beyond what the list carries, and keeps
only the few fields the dashboard shows (server/sampling/containers.py).

No client library: three GET calls over a unix socket are a few lines of
http.client, where docker-py would bring requests, urllib3 and
websocket-client into every agent (about 10 MB of RSS) for the same calls.
"""

from __future__ import annotations

import http.client
import importlib
import json
import os
import select
import socket
import sys
import time
import urllib.parse
from collections.abc import Iterator
from types import ModuleType
from typing import Any

MAX_BODY = 8 * 1024 * 1024  # the list of 500 containers is ~1 MB; anything past this is refused
MAX_EVENT = 64 * 1024  # one line of the events stream
EVENTS_FILTER = '{"type":["container"]}'  # the containers' events only
MAX_HEAD = 16 * 1024  # a log stream's status line and headers
MAX_ERROR = 4 * 1024  # an error answer's body: its message is the reason shown
# Where a runtime listens when `containers = auto`: Docker's, then rootful Podman's.
USUAL_SOCKETS = ("/var/run/docker.sock", "/run/docker.sock", "/run/podman/podman.sock")


class EngineError(OSError):
    """The engine did not answer, or not as expected: the collector's reading fails."""


def unpatched(name: str) -> ModuleType:
    """The stdlib module `name` as the OS has it, also under eventlet's monkey patch:
    for calls made in a pool thread (the firehose's), which may touch nothing green."""
    if "eventlet" in sys.modules:
        from eventlet import patcher

        if patcher.is_monkey_patched(name):
            original: ModuleType = patcher.original(name)
            return original
    return importlib.import_module(name)


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float, sockets: ModuleType = socket) -> None:
        super().__init__("localhost", timeout=timeout)
        self.socket_path = path
        self.sockets = sockets  # the socket module: green in the loop, plain in a pool thread

    def connect(self) -> None:
        sock = self.sockets.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self.socket_path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


def find_socket(setting: str) -> str | None:
    """The socket the `containers` setting names: a path, `auto` (the first usual
    socket that exists) or `off` (None)."""
    if setting == "off":
        return None
    if setting != "auto":
        return setting
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    candidates = [*USUAL_SOCKETS, *([f"{runtime}/podman/podman.sock"] if runtime else [])]
    return next((path for path in candidates if os.path.exists(path)), None)


class Engine:
    """GET calls to the engine at `socket_path`, each within `timeout` seconds; with
    `plain`, over the OS's sockets even under eventlet (for a caller in a pool thread)."""

    def __init__(self, socket_path: str, timeout: float = 5.0, plain: bool = False) -> None:
        self.socket_path = socket_path
        self.timeout = timeout
        self._sockets = unpatched("socket") if plain else socket
        self._stream: _UnixConnection | None = None  # the events stream, while open

    def get(self, path: str) -> Any:
        connection = _UnixConnection(self.socket_path, self.timeout, self._sockets)
        try:
            connection.request("GET", path, headers={"Host": "engine"})
            response = connection.getresponse()
            body = response.read(MAX_BODY + 1)
        except (OSError, http.client.HTTPException) as exc:
            raise EngineError(f"{self.socket_path}: {exc}") from None
        finally:
            connection.close()
        if response.status != 200:
            raise EngineError(f"{self.socket_path}: GET {path} answered {response.status}")
        if len(body) > MAX_BODY:
            raise EngineError(f"{self.socket_path}: GET {path} answered more than {MAX_BODY} B")
        try:
            return json.loads(body)
        except ValueError:
            raise EngineError(f"{self.socket_path}: GET {path} answered no JSON") from None

    def containers(self, filters: dict[str, list[str]] | None = None) -> list[dict[str, Any]]:
        """Every container, running or not (the list call: no stats, no secrets read);
        with `filters`, those the engine's filters match (name=, label=...)."""
        query = "&filters=" + urllib.parse.quote(json.dumps(filters)) if filters else ""
        listed = self.get(f"/containers/json?all=1{query}")
        if not isinstance(listed, list):
            raise EngineError(f"{self.socket_path}: the container list is not a list")
        return [c for c in listed if isinstance(c, dict)]

    def inspect(self, container_id: str) -> dict[str, Any]:
        found = self.get(f"/containers/{urllib.parse.quote(container_id, safe='')}/json")
        if not isinstance(found, dict):
            raise EngineError(f"{self.socket_path}: a container's state is not an object")
        return found

    def events(self, timeout: float) -> Iterator[dict[str, Any]]:
        """The containers' events as they come (start, die, health_status, ...), until the
        engine closes the stream or says nothing for `timeout` seconds (then it ends)."""
        filters = urllib.parse.quote(EVENTS_FILTER)
        connection = self._stream = _UnixConnection(self.socket_path, timeout)
        try:
            connection.request("GET", f"/events?filters={filters}", headers={"Host": "engine"})
            response = connection.getresponse()
            if response.status != 200:
                raise EngineError(f"{self.socket_path}: GET /events answered {response.status}")
            while True:
                line = response.readline(MAX_EVENT + 1)
                if not line:
                    return
                if len(line) > MAX_EVENT or not line.strip():
                    continue
                try:
                    event = json.loads(line)
                except ValueError:
                    continue
                if isinstance(event, dict):
                    yield event
        except TimeoutError:
            return  # quiet for a while: the caller asks again
        except (OSError, http.client.HTTPException) as exc:
            raise EngineError(f"{self.socket_path}: events: {exc}") from None
        finally:
            connection.close()
            self._stream = None

    def close_events(self) -> None:
        """End an events stream that is waiting (at stop)."""
        stream = self._stream
        if stream is not None and stream.sock is not None:
            stream.sock.shutdown(socket.SHUT_RDWR)

    def logs(self, container_id: str, tail: int, since: str | None = None) -> LogStream:
        """One container's output, followed: its last `tail` lines (only those from
        `since`, a Unix time "seconds.nanoseconds", if given), then what it writes,
        stdout and stderr, multiplexed unless it has a TTY. The stream ends when the
        container stops.

        Asked as HTTP/1.0: the body then comes as it is (HTTP/1.1 would chunk it) and
        ends when the engine closes the connection. Connecting and the answer's head
        each have `timeout`; the body is read without blocking (LogStream.read)."""
        query = f"follow=1&stdout=1&stderr=1&timestamps=0&tail={int(tail)}"
        if since:
            query += "&since=" + urllib.parse.quote(since, safe="")
        path = f"/containers/{urllib.parse.quote(container_id, safe='')}/logs?{query}"
        deadline = time.monotonic() + self.timeout
        sock: socket.socket = self._sockets.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(self.timeout)
            sock.connect(self.socket_path)
            sock.sendall(f"GET {path} HTTP/1.0\r\nHost: engine\r\n\r\n".encode())
            status, headers, rest = _read_head(sock, deadline)
            if status != 200:
                reason = _error_message(sock, rest, deadline)
                raise EngineError(f"{self.socket_path}: GET logs answered {status}{reason}")
            if "chunked" in headers.get("transfer-encoding", "").lower():
                raise EngineError(f"{self.socket_path}: GET logs answered chunked to HTTP/1.0")
            sock.setblocking(False)
        except EngineError:
            sock.close()
            raise
        except (OSError, ValueError) as exc:
            sock.close()
            raise EngineError(f"{self.socket_path}: logs: {exc}") from None
        return LogStream(sock, rest)

    def readable(self, streams: list[LogStream], timeout: float) -> list[LogStream]:
        """The streams that have bytes to read (or have ended) within `timeout` seconds.
        It blocks: for a pool thread (eventlet's select has no poll). poll(), not
        select(): a server with many pages has descriptors past 1024."""
        poller = unpatched("select").poll()
        for stream in streams:
            poller.register(stream.fileno(), select.POLLIN | select.POLLPRI)
        ready = {fd for fd, _ in poller.poll(max(0, int(timeout * 1000)))}
        return [stream for stream in streams if stream.fileno() in ready]


class LogStream:
    """A container's log stream, open: its bytes as they come, read without blocking."""

    def __init__(self, sock: socket.socket, first: bytes) -> None:
        self._sock = sock
        self._first = first  # body bytes that came with the head
        self.ended = False  # the engine closed it (the container stopped), or it broke

    def fileno(self) -> int:
        return self._sock.fileno()

    def read(self, limit: int) -> bytes:
        """What has come since the last read, at most about `limit` bytes (b"": nothing)."""
        chunks, size = [self._first], len(self._first)
        self._first = b""
        while size < limit and not self.ended:
            try:
                data = self._sock.recv(min(64 * 1024, limit - size))
            except BlockingIOError:
                break
            except OSError:  # reset: as good as closed
                data = b""
            if not data:
                self.ended = True
                break
            chunks.append(data)
            size += len(data)
        return b"".join(chunks)

    def close(self) -> None:
        self.ended = True
        self._sock.close()


def _read_head(sock: socket.socket, deadline: float) -> tuple[int, dict[str, str], bytes]:
    """The status and headers of an answer (within `deadline`), and the body bytes
    that came with them."""
    data = b""
    while b"\r\n\r\n" not in data:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("no answer in time")
        if len(data) > MAX_HEAD:
            raise EngineError(f"an answer's head is over {MAX_HEAD} B")
        sock.settimeout(left)
        chunk = sock.recv(4096)
        if not chunk:
            raise EngineError("the engine closed the connection before answering")
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    parts = status_line.split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
        raise EngineError(f"not an HTTP answer: {status_line[:80]!r}")
    headers = {}
    for line in lines:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    return int(parts[1]), headers, rest


def _error_message(sock: socket.socket, body: bytes, deadline: float) -> str:
    """The engine's reason in an error answer ({"message": ...}), read within `deadline`:
    ": No such container: web", or "" if there is none."""
    try:
        while len(body) <= MAX_ERROR and time.monotonic() < deadline:
            sock.settimeout(max(0.01, deadline - time.monotonic()))
            chunk = sock.recv(MAX_ERROR)
            if not chunk:
                break
            body += chunk
        message = json.loads(body[:MAX_ERROR]).get("message")
    except (OSError, ValueError, AttributeError):
        return ""
    if not isinstance(message, str):
        return ""
    return ": " + "".join(c if c.isprintable() else "?" for c in message[:200])
