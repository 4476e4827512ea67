"""Caps on Socket.IO connections: in all and per client address."""

from __future__ import annotations

import threading

from flask_socketio import ConnectionRefusedError

from server.access.refused import log_refusal


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
