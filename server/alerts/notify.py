"""Turns alert state changes into a broadcast, a log line and webhooks."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from server.alerts.rules import CRITICAL, OK, AlertEngine
from server.alerts.webhooks import WebhookSender

log = logging.getLogger("dashboard.alerts")


class AlertNotifier:
    """Called with each sample inside the tick; costs only the rule arithmetic."""

    def __init__(
        self,
        engine: AlertEngine,
        broadcast: Callable[[str, Any], None],
        webhooks: WebhookSender,
        host: str,
    ) -> None:
        self.engine = engine
        self._broadcast = broadcast
        self._webhooks = webhooks
        self.host = host

    def __call__(self, sample: dict[str, Any]) -> None:
        for alert in self.engine.evaluate(sample):
            self.tell(alert)

    def tell(self, alert: dict[str, Any]) -> None:
        """One change, to the pages, the webhooks and the log; it names its host."""
        alert["host"] = self.host
        self._broadcast("alert", alert)
        self._webhooks.send(alert)
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
