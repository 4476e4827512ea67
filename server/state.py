"""What the app keeps for its lifetime, and the one accessor its handlers use."""

from __future__ import annotations

import dataclasses
import logging
import time

from flask import current_app
from prometheus_client import CollectorRegistry

from server.access import Access
from server.alerts.dispatch import Dispatcher
from server.alerts.rules import AlertEngine
from server.alerts.silences import Silences
from server.alerts.webhooks import WebhookSender
from server.config import Config
from server.data import StaticData
from server.firehose.relay import Firehose
from server.fleet.hosts import Fleet
from server.fleet.hub import AgentLink
from server.history.store import HistoryStore
from server.loops import BackgroundLoop
from server.web.queue import CoreLease
from server.worker import Sampler

log = logging.getLogger("dashboard.fleet")


@dataclasses.dataclass
class DashboardState:
    config: Config
    static: StaticData
    sampler: Sampler
    alerts: AlertEngine
    webhooks: WebhookSender
    store: HistoryStore
    access: Access
    fleet: Fleet
    link: AgentLink
    lease: CoreLease | None = None  # role core: the one-core lease on the message queue
    notifications: Dispatcher | None = None  # the [notify.NAME] channels; None without
    silences: Silences | None = None  # acknowledgements and silences (a view on role web)
    firehose: Firehose | None = None  # live log tails; None when off
    registry: CollectorRegistry = dataclasses.field(default_factory=CollectorRegistry)
    started_at: float = dataclasses.field(default_factory=time.monotonic)

    judged_at: float | None = None  # time.monotonic() of the fleet judge's last round

    def __post_init__(self) -> None:
        self._judge = BackgroundLoop("fleet-judge", self._judge_fleet, log)
        self._lease_keeper: BackgroundLoop | None = None
        if self.lease is not None:
            self._lease_keeper = BackgroundLoop("core-lease", self._renew_lease, log)

    @property
    def clients(self) -> int:
        return self.access.caps.connected

    def loops(self) -> dict[str, tuple[float | None, float]]:
        """Each background loop: when it last went round (time.monotonic()), and the
        longest it may take before it counts as stopped or fallen behind."""
        if self.config.role == "web":
            return {}
        interval = self.config.interval
        return {
            "history-writer": (self.store.loop.ran_at, 3 * self.store.batch_seconds + 10),
            "fleet-judge": (self.judged_at, max(10 * interval, 10)),
        }

    def problems(self) -> list[str]:
        """What the hub cannot do now though it serves: each a line an operator can act on
        (/healthz `degraded`, the pages' banner)."""
        found = []
        if self.store.failure is not None:
            found.append(f"history store cannot write: {self.store.failure}")
        if self.notifications is not None:
            found += self.notifications.problems()
        now = time.monotonic()
        for name, (at, allowed) in self.loops().items():
            since = now - (at if at is not None else self.started_at)
            if since > allowed:
                found.append(f"background loop {name} has not run for {since:.0f} s")
        return found

    def start(self) -> None:
        self.started_at = time.monotonic()
        if self.config.role == "web":
            return  # pages only: the core samples, stores and alerts
        if self.lease is not None:
            self.lease.acquire()  # raises LeaseTaken: one core at a time
            assert self._lease_keeper is not None
            self._lease_keeper.start()
        self.webhooks.start()
        if self.notifications is not None:
            self.notifications.start()
        if self.silences is not None and self.silences.loop is not None:
            self.silences.loop.start()
        self.store.start()
        self.sampler.start()
        self._judge.start()

    def _renew_lease(self) -> float:
        assert self.lease is not None
        self.lease.renew()
        return self.lease.ttl_ms / 3000  # a third of its time to live

    def _judge_fleet(self) -> None:
        """The hosts' states four times an interval once there are agents: a host
        goes stale within a quarter interval of its third missed sample, not a
        whole tick later. A fleet of one is judged right after each tick, in the
        same wake-up of the loop (an idle server's cost is mostly its wake-ups),
        or 1.5 intervals after the last tick when the sampler stalls."""
        interval = self.config.interval
        if len(self.fleet.hosts) > 1:
            self._judge.stopping.wait(interval / 4)
        else:
            self.sampler.ticked.wait(1.5 * interval)
            self.sampler.ticked.clear()
        if self._judge.stopping.is_set():
            return
        self.fleet.judge()  # one bad host must not end the judging: the loop goes on
        self.judged_at = time.monotonic()

    def stop(self) -> None:
        if self.config.role == "web":
            return
        self.sampler.stop()
        self.store.stop()  # writes what is pending: nothing is lost on SIGTERM
        self.webhooks.stop()
        if self.notifications is not None:
            self.notifications.stop()
        if self.silences is not None and self.silences.loop is not None:
            self.silences.loop.stop()
        self._judge.stopping.set()
        self.sampler.ticked.set()  # the judge waits on it
        self._judge.stop()
        if self._lease_keeper is not None:
            self._lease_keeper.stop()
        if self.lease is not None:
            self.lease.release()


def current_state() -> DashboardState:
    """The state of the app handling this request."""
    state: DashboardState = current_app.extensions["dashboard"]
    return state
