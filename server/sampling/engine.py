"""The container engine's API (Docker's, and Podman's compatible one) over its unix socket.

Read-only on purpose: the socket is root-equivalent, and this module only
ever sends GET (the list, one container's state, the events stream). It asks
for nothing that can hold a secret beyond what the list carries, and keeps
only the few fields the dashboard shows (server/sampling/containers.py).

No client library: three GET calls over a unix socket are a few lines of
http.client, where docker-py would bring requests, urllib3 and
websocket-client into every agent (about 10 MB of RSS) for the same calls.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import urllib.parse
from collections.abc import Iterator
from typing import Any

MAX_BODY = 8 * 1024 * 1024  # the list of 500 containers is ~1 MB; anything past this is refused
MAX_EVENT = 64 * 1024  # one line of the events stream
EVENTS_FILTER = '{"type":["container"]}'  # the containers' events only
# Where a runtime listens when `containers = auto`: Docker's, then rootful Podman's.
USUAL_SOCKETS = ("/var/run/docker.sock", "/run/docker.sock", "/run/podman/podman.sock")


class EngineError(OSError):
    """The engine did not answer, or not as expected: the collector's reading fails."""


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self.socket_path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
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
    """GET calls to the engine at `socket_path`, each within `timeout` seconds."""

    def __init__(self, socket_path: str, timeout: float = 5.0) -> None:
        self.socket_path = socket_path
        self.timeout = timeout
        self._stream: _UnixConnection | None = None  # the events stream, while open

    def get(self, path: str) -> Any:
        connection = _UnixConnection(self.socket_path, self.timeout)
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

    def containers(self) -> list[dict[str, Any]]:
        """Every container, running or not (the list call: no stats, no secrets read)."""
        listed = self.get("/containers/json?all=1")
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
