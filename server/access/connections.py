"""Caps on Socket.IO connections: in all and per client address."""

from __future__ import annotations

import threading
import urllib.parse
from typing import Any

from flask_socketio import ConnectionRefusedError

from server.access.refused import log_refusal
from server.ratelimit import TokenBucket
from server.wire import json_bytes


class ConnectionCaps:
    """Counts admitted Socket.IO connections; refuses past the caps, saying why."""

    def __init__(self, max_total: int, max_per_ip: int) -> None:
        self.max_total = max_total
        self.max_per_ip = max_per_ip
        self._per_ip: dict[str, int] = {}
        self._total = 0
        self._lock = threading.Lock()

    def admit(self, address: str, authorized: bool) -> None:
        """Count a new connection, or raise ConnectionRefusedError saying why."""
        if not authorized:
            log_refusal(address, "Socket.IO connect without a valid session or credentials")
            raise ConnectionRefusedError("authentication required: log in first")
        with self._lock:
            if self._total >= self.max_total:
                reason = f"server full ({self.max_total} connections)"
            elif self._per_ip.get(address, 0) >= self.max_per_ip:
                reason = f"too many connections from this address ({self.max_per_ip})"
            else:
                self._total += 1
                self._per_ip[address] = self._per_ip.get(address, 0) + 1
                return
        log_refusal(address, reason)
        raise ConnectionRefusedError(reason)

    @property
    def connected(self) -> int:
        """Socket.IO connections admitted and not yet gone."""
        return self._total

    def release(self, address: str) -> None:
        with self._lock:
            count = self._per_ip.get(address, 0) - 1
            if count > 0:
                self._per_ip[address] = count
            else:
                self._per_ip.pop(address, None)
            self._total = max(self._total - 1, 0)


class HandshakeLimiter:
    """WSGI middleware: Engine.IO handshakes (a /socket.io/ request with no sid) capped
    per address and in all, before Engine.IO allocates a session for them.
    """

    def __init__(self, app: Any, per_address: TokenBucket, in_all: TokenBucket) -> None:
        self.app = app
        self.per_address = per_address
        self.in_all = in_all

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        path = environ.get("PATH_INFO", "")
        # A handshake is a request without a `sid` parameter (parsed, so that
        # "?xsid=1" cannot pass for a session's request).
        query = urllib.parse.parse_qs(environ.get("QUERY_STRING", ""))
        if path.startswith("/socket.io") and "sid" not in query:
            address = environ.get("REMOTE_ADDR") or "?"
            if not self.per_address.take(address):
                return _too_many(address, "Engine.IO handshakes from this address", start_response)
            if not self.in_all.take("*"):
                return _too_many(address, "Engine.IO handshakes in all", start_response)
        return self.app(environ, start_response)


def _too_many(address: str, what: str, start_response: Any) -> list[bytes]:
    log_refusal(address, f"too many {what}")
    body = json_bytes({"error": f"too many {what}; try again shortly"})
    start_response(
        "429 Too Many Requests",
        [
            ("Content-Type", "application/json"),
            ("Content-Length", str(len(body))),
            ("Retry-After", "5"),
        ],
    )
    return [body]
