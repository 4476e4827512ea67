"""Webhooks: POST each alert as JSON to the configured URLs, off the tick.

Each URL is a Delivery (alerts/delivery.py): a queue and a loop of its own, so a
receiver that hangs or fails delays only its own deliveries, never the Sampler or
the other receivers. This module is the POST itself, with its overall deadline.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import logging
import socket
import threading
import urllib.parse
from collections.abc import Sequence
from typing import Any

from server.alerts.delivery import Delivery, DeliveryError, FairQueue
from server.logs import LogThrottle, describe_error
from server.wire import json_bytes

__all__ = ["FairQueue", "WebhookSender"]

log = logging.getLogger("dashboard.webhooks")


class _Receiver:
    def __init__(self, url: str, timeout: float, retries: int, backoff: float) -> None:
        self.url = url
        self.timeout = timeout
        self.delivery = Delivery("webhook", self._attempt, log, retries, backoff)
        self.delivery.on_failure = self._failed

    def _attempt(self, payload: dict[str, Any]) -> None:
        try:
            status = self._post(json_bytes(payload))
        except (OSError, ValueError, http.client.HTTPException) as exc:
            raise DeliveryError(describe_error(exc)) from None
        if not 200 <= status < 300:
            # 3xx too: a redirect is not followed (it could point anywhere).
            raise DeliveryError(
                f"HTTP {status}" + (" (redirects are not followed)" if status < 400 else "")
            )

    def _failed(self, payload: dict[str, Any], error: str, tries: int, first: bool) -> None:
        log.warning(
            "webhook %s failed after %d attempts: %s (alert %s %s)",
            _redact(self.url),
            tries,
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
                receiver.delivery.loop.start()

    def send(self, alert: dict[str, Any]) -> None:
        """Queue `alert` for every receiver; never blocks."""
        for receiver in self._receivers:
            if not receiver.delivery.put(alert):
                self._lines.log(receiver.url, logging.WARNING,
                                "webhook %s is not keeping up: %d alerts dropped",
                                _redact(receiver.url), receiver.delivery.dropped)  # fmt: skip

    def stop(self, timeout: float = 2.0) -> None:
        for receiver in self._receivers:
            receiver.delivery.queue.close()
        for receiver in self._receivers:
            receiver.delivery.loop.stop(timeout)

    def stats(self) -> dict[str, int]:
        return {
            "delivered": sum(r.delivery.delivered for r in self._receivers),
            "failed": sum(r.delivery.failed for r in self._receivers),
            "dropped": sum(r.delivery.dropped for r in self._receivers),
        }
