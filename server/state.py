"""What the app keeps for its lifetime: settings, host facts, the Sampler, alerts."""

from __future__ import annotations

import dataclasses

from server.alerts import AlertEngine
from server.config import Config
from server.data import StaticData
from server.guard import Gate
from server.store import HistoryStore
from server.webhooks import WebhookSender
from server.worker import Sampler


@dataclasses.dataclass
class DashboardState:
    config: Config
    static: StaticData
    sampler: Sampler
    alerts: AlertEngine
    webhooks: WebhookSender
    store: HistoryStore
    gate: Gate

    @property
    def clients(self) -> int:
        return self.gate.connected

    def start(self) -> None:
        self.webhooks.start()
        self.store.start()
        self.sampler.start()

    def stop(self) -> None:
        self.sampler.stop()
        self.store.stop()  # writes what is pending: nothing is lost on SIGTERM
        self.webhooks.stop()
