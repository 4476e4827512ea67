"""The notification pipeline: an alert change, its routes, grouping and inhibition, each
chosen channel's queue, and the timers for repeats and escalations.

One Channel of each host's AlertNotifier (alerts/notify.py), beside the webhooks.
send() routes a change (alerts/routes.py), words it (alerts/messages.py) and
queues it on each chosen channel's Delivery (alerts/delivery.py), whose loop
sends it (alerts/channels.py). send() runs in the tick: it only matches, words
and queues, or leaves the change with its host's group.

Between the routes and the queues (docs/alerts.md, "Grouping, inhibition, repeat
and escalation"):
- grouping: a host's firings wait `notify_group_wait` seconds from the first, then
  go to each channel as one message that lists them (one alone reads as ever);
- inhibition: while a host's `host_down` fires, its other alerts are held back
  (recorded, not sent; nor repeated, nor escalated). When it resolves, those still
  firing are not sent as new: a later change of one is;
- repeat: a route's `repeat_minutes` sends an alert that went out again while it fires;
- escalation: a route's `escalate_after_minutes` sends a warning still firing (and
  not acknowledged: `acknowledged`, alerts/silences.py's) to its `escalate_to` channels.
The group windows and the timers run in one small loop of the dispatcher's own,
which sleeps until the next is due: never in the tick.

- holds (`holds`: silences, maintenance windows, quiet hours): a firing is held
  back while one says why, and goes out when it ends if it still fires; repeats
  and escalations wait meanwhile.
The alert history (history/alert_log.py) is told of each step through `noted`.
Evidence (alerts/evidence.py) comes through `evidence`.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from server.alerts.delivery import Delivery, Item
from server.alerts.messages import Message, Section, compose, compose_group
from server.alerts.routes import HOST_DOWN, NotifySettings, Route
from server.alerts.rules import OK, WARNING
from server.logs import LogThrottle
from server.loops import BackgroundLoop

log = logging.getLogger("dashboard.notify")

Evidence = Sequence[Section]
MAX_FIRING = 10_000  # alerts remembered with the channels their firing went to
MAX_GROUPS = 1_000  # hosts whose firings wait in a group; beyond, a firing goes at once
MAX_GROUPED = 100  # firings one group holds; beyond, the group goes at once
IDLE_WAIT = 60.0  # the timer loop's longest sleep with nothing due


class Sender(Protocol):
    """What a channel is to the pipeline (AppriseChannel)."""

    @property
    def label(self) -> str: ...  # its name and scheme, for the log: never its URL

    pace: float  # seconds between two attempts' starts, as its service asks
    send_resolved: bool

    def deliver(self, message: Message) -> None: ...  # raises DeliveryError


@dataclasses.dataclass
class _Timer:
    """A repeat (every > 0) or a one-shot escalation (every 0) of one firing."""

    channels: tuple[str, ...]
    due: float  # monotonic
    every: float = 0.0
    count: int = 0  # repeats sent


@dataclasses.dataclass
class _Firing:
    since: float  # when the alert began firing
    channels: set[str]  # every channel told of it since: its resolution goes there
    alert: dict[str, Any] = dataclasses.field(default_factory=dict)  # its latest change
    began: float = 0.0  # monotonic, when it began firing: escalations count from it
    routes: list[Route] = dataclasses.field(default_factory=list)
    names: list[str] = dataclasses.field(default_factory=list)  # its channels by the routes
    evidence: Sequence[Section] = ()
    timers: list[_Timer] = dataclasses.field(default_factory=list)
    pending: bool = False  # waiting in its host's group
    held: bool = False  # kept back by a hold (`holds`): it goes out when that ends


@dataclasses.dataclass
class _Group:
    due: float  # monotonic: when it goes
    keys: list[tuple[str, str]]  # the firings waiting, in the order they came


Out = list[tuple[list[str], Item]]  # messages to queue: the channels, the item


class Dispatcher:
    """Routes each alert change to its channels' queues; reports a failing channel once."""

    def __init__(
        self,
        settings: NotifySettings,
        senders: Mapping[str, Sender],
        group_wait: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.senders = dict(senders)
        self.group_wait = group_wait
        self._clock = clock
        self.deliveries: dict[str, Delivery] = {}
        for name, sender in self.senders.items():
            delivery = Delivery(f"notify-{name}", _attempt_of(sender), log,
                                retries=settings.channels[name].retries,
                                pace=sender.pace)  # fmt: skip
            delivery.on_failure = self._failed(name, _failure_line(sender))
            delivery.on_recovery = _recovery_line(sender)
            delivery.on_delivered = self._sent(name)
            self.deliveries[name] = delivery
        # Evidence for the full message (alerts/evidence.py: the item, top processes, log
        # lines, a link). Called with each change before the lock is taken.
        self.evidence: Callable[[Mapping[str, Any]], Evidence] = lambda alert: ()
        # Whether an alert was acknowledged (alerts/silences.py): no more repeats nor escalation.
        self.acknowledged: Callable[[str, str], bool] = lambda host, rule: False
        # Told of each step of an alert's notification (the alert history's): "held"
        # (kept from the channels, and why: "inhibited by host_down"), "grouped",
        # "repeated", "escalated" (under the dispatcher's lock), "sent" and "failed"
        # (from a channel's loop). (alert, event, detail); it only appends.
        self.noted: Callable[[Mapping[str, Any], str, str], None] = lambda a, e, d: None
        self.inhibited = 0  # firings held back by a host_down or any other hold (/metrics)
        # What else holds a firing back from the channels (a silence, a maintenance
        # window, quiet hours): each says why, or None. Asked in the tick for a new
        # firing, and by the timers before a repeat or an escalation (which then wait).
        self.holds: list[Callable[[Mapping[str, Any]], str | None]] = []
        self._firing: dict[tuple[str, str], _Firing] = {}  # (host, rule) -> where it went
        self._groups: dict[str, _Group] = {}  # host -> its firings waiting
        self._down: set[str] = set()  # hosts whose host_down fires
        self._lock = threading.Lock()  # send() comes from the tick, the agents, the judge
        self._wake = threading.Event()  # a new group or timer: the loop looks again
        self.timers = BackgroundLoop("notify-timers", self._round, log)
        self._lines = LogThrottle(log)

    # ---- a change, from the tick

    def send(self, alert: dict[str, Any]) -> None:
        """Route one change and queue it, or leave it with its host's group; never blocks."""
        key = (str(alert.get("host")), str(alert["rule"]))
        found = self.evidence(alert)  # before the lock: it may read the hub's log files
        with self._lock:
            if alert["level"] == OK:
                out = self._resolve(key, alert, found)
            else:
                out = self._fire(key, alert, found)
        self._queue(out)

    def _resolve(self, key: tuple[str, str], alert: dict[str, Any], found: Evidence) -> Out:
        host, rule = key
        firing = self._firing.pop(key, None)
        if rule == HOST_DOWN and host in self._down:
            self._back(host)
        if firing is None:
            return []
        if firing.pending:  # resolved within its group's window: it never went out
            self._ungroup(key)
        names = sorted(n for n in firing.channels if self.senders[n].send_resolved)
        if not names:
            return []
        return [(names, _item(alert, compose(alert, firing.since, found)))]

    def _fire(self, key: tuple[str, str], alert: dict[str, Any], found: Evidence) -> Out:
        host, rule = key
        now = self._clock()
        firing = self._firing.get(key)
        if firing is None:
            if len(self._firing) >= MAX_FIRING:
                oldest = next(iter(self._firing))
                if self._firing[oldest].pending:
                    self._ungroup(oldest)
                del self._firing[oldest]
            firing = self._firing[key] = _Firing(float(alert["ts"]), set(), began=now)
        firing.alert = alert
        firing.routes, firing.names = self.settings.routes_for(alert)
        firing.evidence = found
        firing.timers = []  # a change: its timers start again once it has gone out
        firing.held = False
        if rule == HOST_DOWN:
            out = self._inhibit(host)
            if firing.pending:
                self._ungroup(key)
            if self._held_by(alert) is not None:  # a planned reboot: its host_down too
                return out + self._hold_for_now(firing)
            return out + self._out(host, [key], now)  # the cause goes at once
        if host in self._down:
            self._hold(firing, "inhibited by host_down")
            return []
        if self._held_by(alert) is not None:
            return self._hold_for_now(firing)
        if firing.pending:  # a new level within the window: the group has its latest
            return []
        group = self._groups.get(host)
        if self.group_wait <= 0 or (group is None and len(self._groups) >= MAX_GROUPS):
            return self._out(host, [key], now)
        if group is None:
            group = self._groups[host] = _Group(now + self.group_wait, [])
            self._wake.set()
        group.keys.append(key)
        firing.pending = True
        if len(group.keys) >= MAX_GROUPED:
            return self._flush(host)
        return []

    def _inhibit(self, host: str) -> Out:
        """A host_down fires: the host's firings waiting in its group are held back."""
        self._down.add(host)
        group = self._groups.pop(host, None)
        for key in group.keys if group is not None else ():
            firing = self._firing.get(key)
            if firing is not None:
                firing.pending = False
                self._hold(firing, "inhibited by host_down")
        return []

    def _back(self, host: str) -> None:
        """A host_down resolves: its alerts still firing are not sent again; their
        repeats go on from now, an escalation held meanwhile at once."""
        self._down.discard(host)
        now = self._clock()
        for (of, _rule), firing in self._firing.items():
            if of == host:
                for timer in firing.timers:
                    timer.due = max(timer.due, now + timer.every) if timer.every else now
        self._wake.set()

    def _hold_for_now(self, firing: _Firing) -> Out:
        """Held by a silence, a window or quiet hours: it goes out once that ends, if it
        still fires then (the timers look: _due)."""
        why = self._held_by(firing.alert)
        assert why is not None
        firing.held = True
        self._hold(firing, why)
        self._wake.set()
        return []

    def _held_by(self, alert: Mapping[str, Any]) -> str | None:
        return next((why for hold in self.holds if (why := hold(alert)) is not None), None)

    def _hold(self, firing: _Firing, why: str) -> None:
        self.inhibited += 1
        alert = firing.alert
        log.info("notification of alert %s %s on host %s held back: %s", alert["rule"],
                 alert["level"], alert.get("host"), why)  # fmt: skip
        self.noted(alert, "held", why)

    def _ungroup(self, key: tuple[str, str]) -> None:
        group = self._groups.get(key[0])
        if group is not None and key in group.keys:
            group.keys.remove(key)
            if not group.keys:
                del self._groups[key[0]]
        firing = self._firing.get(key)
        if firing is not None:
            firing.pending = False

    def _flush(self, host: str) -> Out:
        group = self._groups.pop(host, None)
        if group is None:
            return []
        keys = [k for k in group.keys if k in self._firing]
        for key in keys:
            self._firing[key].pending = False
        return self._out(host, keys, self._clock())

    def _out(self, host: str, keys: list[tuple[str, str]], now: float) -> Out:
        """Send these firings of one host now: one message per channel, listing those
        the channel hears; then their repeats and escalations are armed."""
        by_channel: dict[str, list[_Firing]] = {}
        firings = [self._firing[k] for k in keys]
        for firing in firings:
            for name in firing.names:
                by_channel.setdefault(name, []).append(firing)
            firing.channels.update(firing.names)
            self._arm(firing, now)
        # Channels hearing the same firings share one message (one Item).
        shared: dict[tuple[int, ...], tuple[list[str], Item]] = {}
        for name, heard in by_channel.items():
            ids = tuple(id(f) for f in heard)
            if ids not in shared:
                message = compose_group([(f.alert, f.since, f.evidence) for f in heard])
                worst = next((f for f in heard if f.alert["level"] != WARNING), heard[0])
                shared[ids] = ([], _item(worst.alert, message, [f.alert for f in heard]))
            shared[ids][0].append(name)
        for names, item in shared.values():
            if len(item["alerts"]) > 1:
                for alert in item["alerts"]:
                    self.noted(alert, "grouped", f"one message of {len(item['alerts'])} "
                               f"to {', '.join(names)}")  # fmt: skip
        return list(shared.values())

    def _arm(self, firing: _Firing, now: float) -> None:
        timers = []
        for route in firing.routes:
            if route.repeat_minutes:
                every = route.repeat_minutes * 60
                timers.append(_Timer(route.channels, now + every, every))
            if route.escalate_to and firing.alert["level"] == WARNING:
                timers.append(
                    _Timer(
                        route.escalate_to,
                        max(firing.began + route.escalate_after_minutes * 60, now),
                    )
                )
        firing.timers = timers
        if timers:
            self._wake.set()

    # ---- the timers, in their loop

    def _round(self) -> float:
        self._wake.clear()  # a set() from now on ends the wait below
        with self._lock:
            out, due = self._due(self._clock())
        self._queue(out)
        self._wake.wait(max(min(due - self._clock(), IDLE_WAIT), 0))
        return 0.0

    def _due(self, now: float) -> tuple[Out, float]:
        """What is due at `now` (groups whose window ended, repeats, escalations) and
        when the next thing is."""
        out: Out = []
        for host in [h for h, g in self._groups.items() if g.due <= now]:
            out += self._flush(host)
        following = now + IDLE_WAIT
        for group in self._groups.values():
            following = min(following, group.due)
        # Firings a hold kept back and that still fire: out once it has ended (looked
        # at each round, at least every IDLE_WAIT seconds).
        for key, firing in self._firing.items():
            if firing.held and key[0] not in self._down and self._held_by(firing.alert) is None:
                firing.held = False
                out += self._out(key[0], [key], now)
        for key, firing in self._firing.items():
            for timer in list(firing.timers):
                if timer.due <= now:
                    out += self._fire_timer(key, firing, timer, now)
                if timer in firing.timers:
                    following = min(following, timer.due)
        return out, following

    def _fire_timer(self, key: tuple[str, str], firing: _Firing, timer: _Timer, now: float) -> Out:
        host, rule = key
        if self.acknowledged(host, rule):
            firing.timers.remove(timer)  # acknowledged: no more repeats, no escalation
            return []
        if self._held_by(firing.alert) is not None:
            timer.due = now + (timer.every or IDLE_WAIT)  # it waits for the hold to end
            return []
        if timer.every:  # the next; a late round does not send two in a row
            timer.due += timer.every
            if timer.due <= now:
                timer.due = now + timer.every
        elif host in self._down:
            timer.due = now + IDLE_WAIT  # until the host is back (_back: at once)
        else:
            firing.timers.remove(timer)
        if host in self._down and rule != HOST_DOWN:
            return []
        alert = firing.alert
        if timer.every:
            timer.count += 1
            names = [n for n in timer.channels if n in firing.channels]
            note = f"repeat {timer.count}, firing {_minutes(now - firing.began)}"
        else:
            if alert["level"] != WARNING:
                return []
            names = [n for n in timer.channels if n not in firing.names]
            note = f"escalated, firing {_minutes(now - firing.began)}"
            firing.channels.update(names)
        if not names:
            return []
        self.noted(alert, "repeated" if timer.every else "escalated",
                   f"{note} to {', '.join(names)}")  # fmt: skip
        return [(names, _item(alert, compose(alert, firing.since, firing.evidence, note)))]

    # ---- the alert history's steps of a delivery (from the channel's loop)

    def _sent(self, name: str) -> Callable[[Item], None]:
        def sent(item: Item) -> None:
            for alert in item["alerts"]:
                self.noted(alert, "sent", f"to {name}")

        return sent

    def _failed(
        self, name: str, say: Callable[[Item, str, int, bool], None]
    ) -> Callable[[Item, str, int, bool], None]:
        def failed(item: Item, error: str, tries: int, first: bool) -> None:
            say(item, error, tries, first)
            for alert in item["alerts"]:
                self.noted(alert, "failed", f"to {name} after {tries} tries: {error}")

        return failed

    # ---- the queues

    def _queue(self, out: Out) -> None:
        for names, item in out:
            for name in names:
                delivery = self.deliveries[name]
                if not delivery.put(item):
                    self._lines.log(name, logging.WARNING,
                                    "notify channel %s is not keeping up: %d messages dropped",
                                    self.senders[name].label, delivery.dropped)  # fmt: skip

    def start(self) -> None:
        for delivery in self.deliveries.values():
            delivery.loop.start()
        self.timers.start()

    def stop(self, timeout: float = 2.0) -> None:
        self.timers.stopping.set()
        self._wake.set()
        self.timers.stop(timeout)
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


def _item(
    alert: Mapping[str, Any], message: Message, alerts: Sequence[Mapping[str, Any]] = ()
) -> Item:
    """A message to queue; `alerts`: those it tells of (a group's), else `alert` alone."""
    return {"host": str(alert.get("host")), "rule": str(alert["rule"]),
            "level": alert["level"], "message": message,
            "alerts": list(alerts) or [alert]}  # fmt: skip


def _minutes(seconds: float) -> str:
    return f"{int(seconds // 60)} min" if seconds >= 120 else f"{seconds:.0f} s"


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
