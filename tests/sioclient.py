"""A real python-socketio client that records what it receives, in order."""

from __future__ import annotations

import threading
import time
from typing import Any

import socketio


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
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.received(name)
            if len(found) >= count:
                return found
            time.sleep(0.05)
        raise TimeoutError(f"{count} x {name!r} not received in {timeout} s: {self.names()}")

    def times(self, name: str) -> list[float]:
        with self._lock:
            return [at for event, _, at in self.events if event == name]

    def close(self) -> None:
        self.sio.disconnect()
