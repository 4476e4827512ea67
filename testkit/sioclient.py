"""A real python-socketio client that records what it receives, in order."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import requests
import socketio
import websocket

from testkit.wait import wait_until


class RecordingClient:
    def __init__(self, **client_kwargs: Any) -> None:
        self.events: list[tuple[str, Any, float]] = []
        self._lock = threading.Lock()
        self.sio = socketio.Client(
            reconnection_delay=0.2, reconnection_delay_max=1, **client_kwargs
        )
        for name in ("static", "history", "metrics"):
            self.sio.on(name, self._recorder(name))

    def _recorder(self, name: str) -> Any:
        def record(data: Any) -> None:
            with self._lock:
                self.events.append((name, data, time.monotonic()))

        return record

    def connect(self, url: str, transports: tuple[str, ...] = ("websocket",), **kw: Any) -> None:
        self.sio.connect(url, transports=list(transports), wait_timeout=10, **kw)

    def received(self, name: str) -> list[Any]:
        with self._lock:
            return [data for event, data, _ in self.events if event == name]

    def names(self) -> list[str]:
        with self._lock:
            return [event for event, _, _ in self.events]

    def wait_for(self, name: str, count: int = 1, timeout: float = 10.0) -> list[Any]:
        return wait_until(
            lambda: (found := self.received(name)) and len(found) >= count and found,
            timeout=timeout,
            what=f"{count} x {name!r} received",
        )

    def times(self, name: str) -> list[float]:
        with self._lock:
            return [at for event, _, at in self.events if event == name]

    def close(self) -> None:
        self.sio.disconnect()


def open_socket(
    url: str, timeout: float = 10, auth: dict[str, Any] | None = None, **options: Any
) -> websocket.WebSocket:
    """A raw Engine.IO v4 WebSocket, past the open packet and joined to namespace "/".

    `auth` is the connect packet's payload; `options` go to
    websocket.create_connection (header=..., origin=...); the origin defaults
    to the server's own.
    """
    options.setdefault("origin", url)
    ws = websocket.create_connection(
        url.replace("http", "ws", 1) + "/socket.io/?EIO=4&transport=websocket",
        timeout=timeout,
        **options,
    )
    ws.recv()  # the open packet
    ws.send("40" + (json.dumps(auth) if auth else ""))
    return ws


def assert_foreign_origin_refused(url: str) -> requests.Response:
    """A foreign Origin gets 400 over WebSocket and over polling; returns the polling answer."""
    import pytest

    with pytest.raises(websocket.WebSocketBadStatusException) as refused:
        websocket.create_connection(
            url.replace("http", "ws", 1) + "/socket.io/?EIO=4&transport=websocket",
            origin="http://evil.example",
            timeout=5,
        )
    assert refused.value.status_code == 400
    polling = requests.get(
        url + "/socket.io/?EIO=4&transport=polling",
        timeout=5,
        headers={"Origin": "http://evil.example"},
    )
    assert polling.status_code == 400
    return polling
