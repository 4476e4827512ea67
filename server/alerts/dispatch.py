"""The notification pipeline: an alert change, its routes, each chosen channel's queue.

One Channel of each host's AlertNotifier (alerts/notify.py), beside the webhooks.
send() routes a change (alerts/routes.py), words it (alerts/messages.py) and
queues it on each chosen channel's Delivery (alerts/delivery.py), whose loop
sends it (alerts/channels.py). send() runs in the tick: it only matches, words
and queues.

Later parts plug in here, between the routes and the queues: grouping and
inhibition, silences, maintenance windows and quiet hours, repeats and
escalation; the alert history beside each step; evidence through `evidence`.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from server.alerts.delivery import Delivery, Item
from server.alerts.messages import Message, Section, compose
from server.alerts.routes import NotifySettings
from server.alerts.rules import OK
from server.logs import LogThrottle

log = logging.getLogger("dashboard.notify")

MAX_FIRING = 10_000  # alerts remembered with the channels their firing went to


class Sender(Protocol):
    """What a channel is to the pipeline (AppriseChannel)."""

    @property
    def label(self) -> str: ...  # its name and scheme, for the log: never its URL

    pace: float  # seconds between two attempts' starts, as its service asks
    send_resolved: bool

    def deliver(self, message: Message) -> None: ...  # raises DeliveryError


@dataclasses.dataclass
class _Firing:
    since: float  # when the alert began firing
    channels: set[str]  # every channel told of it since: its resolution goes there


class Dispatcher:
    """Routes each alert change to its channels' queues; reports a failing channel once."""

    def __init__(self, settings: NotifySettings, senders: Mapping[str, Sender]) -> None:
        self.settings = settings
        self.senders = dict(senders)
        self.deliveries: dict[str, Delivery] = {}
        for name, sender in self.senders.items():
            delivery = Delivery(f"notify-{name}", _attempt_of(sender), log,
                                retries=settings.channels[name].retries,
                                pace=sender.pace)  # fmt: skip
            delivery.on_failure = _failure_line(sender)
            delivery.on_recovery = _recovery_line(sender)
            self.deliveries[name] = delivery
        # Evidence for the full message (top processes, log lines): a later part sets it.
        # Called in the tick, with the alert: it must only read what is at hand.
        self.evidence: Callable[[Mapping[str, Any]], Sequence[Section]] = lambda alert: ()
        self._firing: dict[tuple[str, str], _Firing] = {}  # (host, rule) -> where it went
        self._lock = threading.Lock()  # send() comes from the tick, the agents, the judge
        self._lines = LogThrottle(log)

    def send(self, alert: dict[str, Any]) -> None:
        """Route one change and queue it; never blocks."""
        key = (str(alert.get("host")), str(alert["rule"]))
        with self._lock:
            if alert["level"] == OK:  # it goes where its firing went, not by the routes
                firing = self._firing.pop(key, None)
                if firing is None:
                    return
                names = sorted(n for n in firing.channels if self.senders[n].send_resolved)
            else:
                names = self.settings.channels_for(alert)
                firing = self._firing.get(key)
                if firing is None:
                    if len(self._firing) >= MAX_FIRING:
                        del self._firing[next(iter(self._firing))]  # the oldest
                    firing = self._firing[key] = _Firing(float(alert["ts"]), set())
                firing.channels.update(names)
        if not names:
            return
        message = compose(alert, firing.since, self.evidence(alert))
        item: Item = {"host": key[0], "rule": key[1], "level": alert["level"], "message": message}
        for name in names:
            delivery = self.deliveries[name]
            if not delivery.put(item):
                self._lines.log(name, logging.WARNING,
                                "notify channel %s is not keeping up: %d messages dropped",
                                self.senders[name].label, delivery.dropped)  # fmt: skip

    def start(self) -> None:
        for delivery in self.deliveries.values():
            delivery.loop.start()

    def stop(self, timeout: float = 2.0) -> None:
        for delivery in self.deliveries.values():
            delivery.queue.close()
        for delivery in self.deliveries.values():
            delivery.loop.stop(timeout)

    def stats(self) -> dict[str, dict[str, int]]:
        """Each channel's deliveries by outcome, and `up`: 0 while it is failing."""
        return {
            name: {
                "delivered": d.delivered,
                "failed": d.failed,
                "dropped": d.dropped,
                "up": int(d.failing_since is None),
            }
            for name, d in self.deliveries.items()
        }

    def problems(self) -> list[str]:
        """A line for each failing channel (/healthz `degraded`, the pages' banner)."""
        return [
            f"notification channel {self.senders[name].label} failing since "
            f"{time.strftime('%H:%M:%S %Z', time.localtime(d.failing_since))}: {d.error}"
            for name, d in self.deliveries.items()
            if d.failing_since is not None
        ]


def _attempt_of(sender: Sender) -> Callable[[Item], None]:
    def attempt(item: Item) -> None:
        sender.deliver(item["message"])

    return attempt


def _failure_line(sender: Sender) -> Callable[[Item, str, int, bool], None]:
    """Said once when a channel starts failing, not at each message it fails."""

    def failed(item: Item, error: str, tries: int, first: bool) -> None:
        if first:
            log.warning("notify channel %s is failing: %s (attempts: %d; said once, until it "
                        "delivers again)", sender.label, error, tries)  # fmt: skip

    return failed


def _recovery_line(sender: Sender) -> Callable[[int], None]:
    def recovered(failed: int) -> None:
        log.warning("notify channel %s delivers again, after %d failed messages",
                    sender.label, failed)  # fmt: skip

    return recovered
