"""Webhooks: POST each alert as JSON to the configured URLs, off the tick.

One worker thread per URL with its own bounded queue, so a receiver that
hangs or fails delays only its own deliveries, never the Sampler or the
other receivers. Under eventlet, the threads and sockets are green.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import json
import logging
import queue
import socket
import threading
import time
import urllib.parse
from collections.abc import Sequence
from typing import Any

from server.data import describe_error

log = logging.getLogger("dashboard.webhooks")

QUEUE_SIZE = 100


class _Receiver:
    def __init__(self, url: str, timeout: float, retries: int, backoff: float) -> None:
        self.url = url
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.queue: queue.Queue[dict[str, Any] | None] = queue.Queue(QUEUE_SIZE)
        self.delivered = 0
        self.failed = 0
        self.dropped = 0
        self.thread = threading.Thread(target=self._run, name="webhook", daemon=True)

    def _run(self) -> None:
        while True:
            payload = self.queue.get()
            if payload is None:
                return
            self._deliver(payload)

    def _deliver(self, payload: dict[str, Any]) -> None:
        body = json.dumps(payload).encode()
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

    def start(self) -> None:
        if not self._started:
            self._started = True
            for receiver in self._receivers:
                receiver.thread.start()

    def send(self, alert: dict[str, Any]) -> None:
        """Queue `alert` for every receiver; never blocks."""
        for receiver in self._receivers:
            try:
                receiver.queue.put_nowait(alert)
            except queue.Full:
                receiver.dropped += 1
                if receiver.dropped == 1 or receiver.dropped % 100 == 0:
                    log.warning(
                        "webhook %s is not keeping up: %d alerts dropped",
                        _redact(receiver.url),
                        receiver.dropped,
                    )

    def stop(self, timeout: float = 2.0) -> None:
        for receiver in self._receivers:
            with contextlib.suppress(queue.Full):
                receiver.queue.put_nowait(None)
        for receiver in self._receivers:
            if receiver.thread.is_alive():
                receiver.thread.join(timeout)

    def stats(self) -> dict[str, int]:
        return {
            "delivered": sum(r.delivered for r in self._receivers),
            "failed": sum(r.failed for r in self._receivers),
            "dropped": sum(r.dropped for r in self._receivers),
        }
