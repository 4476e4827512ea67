"""Webhooks: POST each alert as JSON to the configured URLs, off the tick.

One worker thread per URL with its own bounded queue, so a receiver that
hangs or fails delays only its own deliveries, never the Sampler or the
other receivers. Under eventlet, the threads and sockets are green.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import logging
import socket
import threading
import time
import urllib.parse
from collections import deque
from collections.abc import Sequence
from typing import Any

from server.logs import LogThrottle, describe_error
from server.loops import DONE, BackgroundLoop
from server.wire import json_bytes

log = logging.getLogger("dashboard.webhooks")

QUEUE_SIZE = 100
HOST_SHARE = 25  # of a queue, the most one host's alerts may hold


def urgent(alert: dict[str, Any]) -> bool:
    """Never dropped behind another host's flood: a host going down, a critical."""
    return alert.get("rule") == "host_down" or alert.get("level") == "critical"


class FairQueue:
    """A receiver's queue, shared fairly among hosts.

    One host holds at most HOST_SHARE of its QUEUE_SIZE places, so one host's
    flood cannot crowd out another's alerts; an urgent alert goes in even
    then, taking the place of the newest non-urgent alert of the host that
    holds the most.
    """

    def __init__(self, size: int = QUEUE_SIZE, share: int = HOST_SHARE) -> None:
        self.size = size
        self.share = share
        self._items: deque[dict[str, Any] | None] = deque()
        self._held: dict[str, int] = {}  # host -> alerts it has queued
        self._ready = threading.Condition()  # green under eventlet

    def put(self, alert: dict[str, Any]) -> bool:
        """Queue `alert`; False if it was dropped (or an older one was, to make room)."""
        host = str(alert.get("host"))
        with self._ready:
            kept = True
            if not urgent(alert) and self._held.get(host, 0) >= self.share:
                return False
            if len(self._items) >= self.size:
                if not urgent(alert) or not self._evict():
                    return False
                kept = False  # room made by dropping another
            self._items.append(alert)
            self._held[host] = self._held.get(host, 0) + 1
            self._ready.notify()
            return kept

    def _evict(self) -> bool:
        """Drop the newest non-urgent alert of the host holding the most; False if none."""
        for host, _count in sorted(self._held.items(), key=lambda h: -h[1]):
            for i in range(len(self._items) - 1, -1, -1):
                item = self._items[i]
                if item is not None and str(item.get("host")) == host and not urgent(item):
                    del self._items[i]
                    self._forget(host)
                    return True
        return False

    def _forget(self, host: str) -> None:
        self._held[host] -= 1
        if not self._held[host]:
            del self._held[host]

    def get(self) -> dict[str, Any] | None:
        """The next alert, waiting for one; None: stop."""
        with self._ready:
            while not self._items:
                self._ready.wait()
            item = self._items.popleft()
            if item is not None:
                self._forget(str(item.get("host")))
            return item

    def close(self) -> None:
        with self._ready:
            self._items.append(None)
            self._ready.notify()


class _Receiver:
    def __init__(self, url: str, timeout: float, retries: int, backoff: float) -> None:
        self.url = url
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.queue = FairQueue()
        self.delivered = 0
        self.failed = 0
        self.dropped = 0
        self.loop = BackgroundLoop("webhook", self._next, log, error_wait=0)

    def _next(self) -> float | None:
        """Deliver the next alert; a bug in one delivery raises here, is counted, and
        the loop logs it and goes on."""
        payload = self.queue.get()
        if payload is None:
            return DONE
        try:
            self._deliver(payload)
        except Exception:
            self.failed += 1
            raise
        return None

    def _deliver(self, payload: dict[str, Any]) -> None:
        body = json_bytes(payload)
        error = ""
        for attempt in range(self.retries + 1):
            try:
                status = self._post(body)
                if 200 <= status < 300:
                    self.delivered += 1
                    return
                # 3xx too: a redirect is not followed (it could point anywhere).
                error = f"HTTP {status}" + (" (redirects are not followed)" if status < 400 else "")
            except (OSError, ValueError, http.client.HTTPException) as exc:
                error = describe_error(exc)
            if attempt < self.retries:
                time.sleep(self.backoff * 2**attempt)
        self.failed += 1
        log.warning(
            "webhook %s failed after %d attempts: %s (alert %s %s)",
            _redact(self.url),
            self.retries + 1,
            error,
            payload.get("rule"),
            payload.get("level"),
        )

    def _post(self, body: bytes) -> int:
        """POST once; the whole exchange ends within `timeout`, however the receiver drips."""
        url = urllib.parse.urlsplit(self.url)
        kind = http.client.HTTPSConnection if url.scheme == "https" else http.client.HTTPConnection
        connection = kind(url.hostname or "", url.port, timeout=self.timeout)
        headers = {"Content-Type": "application/json", "User-Agent": "host-dashboard-webhook"}
        if url.username is not None:  # https://user:pass@host/ : HTTP Basic, as users expect
            pair = (
                f"{urllib.parse.unquote(url.username)}:{urllib.parse.unquote(url.password or '')}"
            )
            headers["Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode()
        cut = threading.Event()
        deadline = threading.Timer(self.timeout, _cut, (connection, cut))
        deadline.start()
        try:
            path = (url.path or "/") + (f"?{url.query}" if url.query else "")
            connection.request("POST", path, body=body, headers=headers)
            response = connection.getresponse()
            response.read(1024)
        finally:
            deadline.cancel()
            connection.close()
        if cut.is_set():  # what was read before the cut may look whole: it is not
            raise TimeoutError(f"no whole answer within {self.timeout:g} s")
        return response.status


def _cut(connection: http.client.HTTPConnection, cut: threading.Event) -> None:
    """The overall deadline: shut the socket, so a read in progress ends at once."""
    cut.set()
    if connection.sock is not None:
        with contextlib.suppress(OSError):
            connection.sock.shutdown(socket.SHUT_RDWR)


def _redact(url: str) -> str:
    """The URL without credentials or query, which may carry a token."""
    parsed = urllib.parse.urlsplit(url)
    host = parsed.hostname or ""
    port = f":{parsed.port}" if parsed.port else ""
    return f"{parsed.scheme}://{host}{port}{parsed.path}"


class WebhookSender:
    def __init__(
        self, urls: Sequence[str], timeout: float = 5.0, retries: int = 3, backoff: float = 1.0
    ) -> None:
        self._receivers = [_Receiver(url, timeout, retries, backoff) for url in urls]
        self._started = False
        self._lines = LogThrottle(log)

    def start(self) -> None:
        if not self._started:
            self._started = True
            for receiver in self._receivers:
                receiver.loop.start()

    def send(self, alert: dict[str, Any]) -> None:
        """Queue `alert` for every receiver; never blocks."""
        for receiver in self._receivers:
            if not receiver.queue.put(alert):
                receiver.dropped += 1
                self._lines.log(receiver.url, logging.WARNING,
                                "webhook %s is not keeping up: %d alerts dropped",
                                _redact(receiver.url), receiver.dropped)  # fmt: skip

    def stop(self, timeout: float = 2.0) -> None:
        for receiver in self._receivers:
            receiver.queue.close()
        for receiver in self._receivers:
            receiver.loop.stop(timeout)

    def stats(self) -> dict[str, int]:
        return {
            "delivered": sum(r.delivered for r in self._receivers),
            "failed": sum(r.failed for r in self._receivers),
            "dropped": sum(r.dropped for r in self._receivers),
        }
