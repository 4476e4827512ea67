"""Turns alert state changes into a broadcast, a log line and a message on each channel."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from server.alerts.rules import CRITICAL, HOST_DOWN, OK, AlertEngine

log = logging.getLogger("dashboard.alerts")

# Alert changes one host may send to the log and the webhooks a minute; the
# rest still reach its page and its state. A host_down always goes out.
CHANGES_PER_MINUTE = 30


class Channel(Protocol):
    """Where alerts reach people: the webhooks, and the routed channels
    (alerts/dispatch.py). send() never blocks: a channel queues and delivers in a
    loop of its own (alerts/delivery.py)."""

    def send(self, alert: dict[str, Any]) -> None: ...


class AlertNotifier:
    """Called with each sample inside the tick; costs only the rule arithmetic."""

    def __init__(
        self,
        engine: AlertEngine,
        broadcast: Callable[[str, Any], None],
        channels: Sequence[Channel],
        host: str,
    ) -> None:
        self.engine = engine
        self._broadcast = broadcast
        self._channels = list(channels)
        self.host = host
        # Said of a host over a budget (its tile shows it): (kind, what happened).
        self.trouble: Callable[[str, str], None] = lambda kind, text: None
        self._minute = (-1, 0)  # (minute, changes sent in it)
        self.held = 0  # changes kept from the log and webhooks, over the budget
        self._sent: set[str] = set()  # rules whose firing went out: their resolution will

    def __call__(self, sample: dict[str, Any], now: float | None = None) -> None:
        for alert in self.engine.evaluate(sample, now):
            self.tell(alert)
        if self.engine.over_budget:
            self.trouble("mounts", self.engine.over_budget)
            self.engine.over_budget = None

    def tell(self, alert: dict[str, Any]) -> None:
        """One change, to the pages, the channels and the log; it names its host."""
        alert["host"] = self.host
        self._broadcast("alert", alert)
        # The resolution of an alert that went out always goes out: an incident opened
        # in a pager is closed there. The rest count against the host's budget.
        resolves = alert["level"] == OK and alert["rule"] in self._sent
        if alert["rule"] != HOST_DOWN and not resolves and not self._within_budget():
            self.held += 1
            self.trouble(
                "alerts",
                f"more than {CHANGES_PER_MINUTE} alert changes a minute: "
                "the rest are not logged or sent",
            )
            return
        if alert["level"] == OK:
            self._sent.discard(alert["rule"])
        else:
            self._sent.add(alert["rule"])
        for channel in self._channels:
            channel.send(alert)
        # Ops read the rotated logs: every change is a WARNING or ERROR line.
        level = logging.ERROR if alert["level"] == CRITICAL else logging.WARNING
        verb = "resolved" if alert["level"] == OK else alert["level"].upper()
        log.log(
            level,
            "alert %s %s: %s = %s (threshold %s, was %s) on host %s",
            alert["rule"],
            verb,
            alert["metric"],
            alert["value"],
            alert["threshold"],
            alert["previous"],
            self.host,
        )

    def _within_budget(self) -> bool:
        minute = int(time.monotonic() // 60)
        count = self._minute[1] + 1 if self._minute[0] == minute else 1
        self._minute = (minute, count)
        return count <= CHANGES_PER_MINUTE
