"""Delivery to one receiver, off the tick: a bounded fair queue, a loop of its own, retries.

Shared by the webhooks (alerts/webhooks.py) and the notification channels
(alerts/channels.py): each receiver gets a Delivery, so one that hangs or fails
delays only its own messages, never the Sampler or the other receivers. Under
eventlet, the loop's thread is green. What one attempt does, and its deadline,
is the receiver's own (an HTTP POST, an Apprise call).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from server.loops import DONE, BackgroundLoop

QUEUE_SIZE = 100
HOST_SHARE = 25  # of a queue, the most one host's alerts may hold

Item = dict[str, Any]  # an alert, or what a receiver sends for one; it has host, rule, level


class DeliveryError(Exception):
    """One attempt failed; the text says why, with no secret in it (it reaches the log)."""


def urgent(alert: Item) -> bool:
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
        self._items: deque[Item | None] = deque()
        self._held: dict[str, int] = {}  # host -> alerts it has queued
        self._ready = threading.Condition()  # green under eventlet

    def put(self, alert: Item) -> bool:
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

    def get(self) -> Item | None:
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


# One attempt: returns once the receiver took the item, raises DeliveryError otherwise.
Attempt = Callable[[Item], None]


class Delivery:
    """One receiver: its queue, its loop, retries with backoff, and whether it is failing.

    A delivery that fails after every try calls `on_failure(item, error, tries, first)`
    (`first`: the first of a run of failures); the first that works after such a run
    calls `on_recovery(failed)`. The receiver decides what each says in the log.
    """

    def __init__(
        self,
        name: str,
        attempt: Attempt,
        logger: logging.Logger,
        retries: int,
        backoff: float = 1.0,
        pace: float = 0.0,
    ) -> None:
        self.name = name
        self._attempt = attempt
        self.retries = retries
        self.backoff = backoff
        self.pace = pace  # seconds between two attempts' starts, as the service asks
        self.queue = FairQueue()
        self.delivered = 0
        self.failed = 0
        self.dropped = 0
        self.failing_since: float | None = None  # time.time() of the run's first failure
        self.failed_in_a_row = 0
        self.error = ""  # why the last failed delivery failed
        self.on_failure: Callable[[Item, str, int, bool], None] = lambda *args: None
        self.on_recovery: Callable[[int], None] = lambda failed: None
        self.on_delivered: Callable[[Item], None] = lambda item: None  # the alert history's
        self._last_start = -float("inf")
        self.loop = BackgroundLoop(name, self._next, logger, error_wait=0)

    def put(self, item: Item) -> bool:
        """Queue `item`; never blocks. False (and counted) when the queue dropped one."""
        if self.queue.put(item):
            return True
        self.dropped += 1
        return False

    def _next(self) -> float | None:
        """Deliver the next item; a bug in one delivery raises here, is counted, and
        the loop logs it and goes on."""
        item = self.queue.get()
        if item is None:
            return DONE
        try:
            self._deliver(item)
        except Exception:
            self.failed += 1
            raise
        return None

    def _deliver(self, item: Item) -> None:
        error = ""
        tries = 0
        while True:
            # A stop ends the waits: what is left is not tried again, nor counted.
            if self.loop.stopping.wait(max(self._last_start + self.pace - time.monotonic(), 0)):
                return
            self._last_start = time.monotonic()
            tries += 1
            try:
                self._attempt(item)
            except DeliveryError as exc:
                error = str(exc)
            else:
                self.delivered += 1
                self.on_delivered(item)
                if self.failing_since is not None:
                    failed, self.failing_since, self.failed_in_a_row = self.failed_in_a_row, None, 0
                    self.on_recovery(failed)
                return
            if tries > self.retries:
                break
            if self.loop.stopping.wait(self.backoff * 2 ** (tries - 1)):
                return
        self.failed += 1
        self.failed_in_a_row += 1
        self.error = error
        first = self.failing_since is None
        if first:
            self.failing_since = time.time()
        self.on_failure(item, self.error, tries, first)
