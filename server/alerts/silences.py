"""Acknowledgements and silences of alerts: made by a user, kept in data_dir, asked by the
dispatcher (alerts/dispatch.py) before each firing, repeat and escalation.

- An acknowledgement names one firing alert (host, rule): its repeats and escalation
  stop (Dispatcher.acknowledged); it says who and when; its resolution clears it.
- A silence matches alerts by host, rule and kind (each a list of names or globs, a
  rule also by its family: `container_exited` matches `container_exited:web-1`; an
  empty list matches any, one at least given), until its end: a firing it matches is
  recorded and not sent (a hold: Dispatcher.holds), and its repeats wait. It ends by
  itself, or is deleted.

Both are written to `alert_silences.json` in data_dir (0600, a temporary file and a
rename) at each change, and read at start; a silence that ended meanwhile is dropped.
A small JSON file rather than the history store: a few records written at a person's
pace, readable before the store opens, and no schema of the store's to migrate.

On a web process (role web) they are a view: a change made there is checked, then
`forward`ed to the core through the message queue (web/queue.py ActionQueue), which
`apply`s it; every process then `replace`s its view from the core's `silences` event.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from server.alerts.routes import names_alert
from server.alerts.rules import OK
from server.loops import BackgroundLoop
from server.private import write_private_json

log = logging.getLogger("dashboard.alerts")

FILE_NAME = "alert_silences.json"
MAX_SILENCES = 1_000  # active at once; the next is refused (400)
MAX_ACKNOWLEDGED = 10_000  # as many as the dispatcher remembers firing
MAX_REASON = 500  # characters
MAX_MATCHERS = 50  # names or globs in each of hosts, rules, kinds
MAX_NAME = 200  # characters of one name or glob
MAX_MINUTES = 366 * 24 * 60  # a year


class Refused(ValueError):
    """A request that cannot be taken; the message says why (a 400)."""


@dataclasses.dataclass
class Silence:
    id: str
    hosts: tuple[str, ...]
    rules: tuple[str, ...]
    kinds: tuple[str, ...]
    starts_at: float
    ends_at: float
    reason: str
    by: str

    def matches(self, alert: Mapping[str, Any]) -> bool:
        return names_alert(alert, self.hosts, self.rules, self.kinds)

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "hosts": list(self.hosts), "rules": list(self.rules),
                "kinds": list(self.kinds), "starts_at": self.starts_at,
                "ends_at": self.ends_at, "reason": self.reason, "by": self.by}  # fmt: skip


class Silences:
    """The acknowledgements and silences of one hub, kept in `data_dir`."""

    def __init__(self, data_dir: str | None, clock: Callable[[], float] = time.time) -> None:
        self.path = os.path.join(data_dir, FILE_NAME) if data_dir is not None else None
        self._clock = clock
        self._lock = threading.Lock()
        self._acks: dict[tuple[str, str], dict[str, Any]] = {}  # (host, rule) -> {by, at}
        self._silences: dict[str, Silence] = {}
        # Told of each change (the pages' `silences` event); called outside the lock.
        self.changed: Callable[[], None] = lambda: None
        # Each acknowledgement made ({host, rule, by, at}): the alert history's.
        self.acknowledged_by: Callable[[dict[str, Any]], None] = lambda entry: None
        # A web process's: where its changes go (the core), instead of being kept here.
        self.forward: Callable[[dict[str, Any]], None] | None = None
        self.loop: BackgroundLoop | None = None  # the core's: changes made on web processes
        self._load()

    # ---- the dispatcher's hooks

    def acknowledged(self, host: str, rule: str) -> bool:
        return (host, rule) in self._acks

    def hold(self, alert: Mapping[str, Any]) -> str | None:
        """Why a firing is held back (a silence matches it), or None."""
        now = self._clock()
        for silence in list(self._silences.values()):
            if silence.starts_at <= now < silence.ends_at and silence.matches(alert):
                return f"silenced by {silence.by} until {_utc(silence.ends_at)} ({silence.id})"
        return None

    def send(self, alert: Mapping[str, Any]) -> None:
        """Each alert change (a Channel of the notifiers): a resolution clears its
        acknowledgement, so that it is heard of if it fires again."""
        if alert.get("level") != OK:
            return
        key = (str(alert.get("host")), str(alert.get("rule")))
        if key not in self._acks:
            return
        with self._lock:
            self._acks.pop(key, None)
            self._save()
        log.info("acknowledgement of alert %s on host %s cleared: resolved", key[1], key[0])
        self.changed()

    # ---- what users do (REST)

    def acknowledge(self, host: str, rule: str, user: str) -> dict[str, Any]:
        entry = {"host": host, "rule": rule, "by": user, "at": round(self._clock(), 3)}
        if self.forward is not None:
            self.forward({"op": "ack", "host": host, "rule": rule, "by": user})
            return entry
        with self._lock:
            if (host, rule) not in self._acks and len(self._acks) >= MAX_ACKNOWLEDGED:
                raise Refused(f"at most {MAX_ACKNOWLEDGED} acknowledgements at once")
            self._acks[(host, rule)] = entry
            self._save()
        log.warning("alert %s on host %s acknowledged by %r", rule, host, user)
        self.acknowledged_by(entry)
        self.changed()
        return dict(entry)

    def add(
        self, request: Mapping[str, Any], user: str, silence_id: str | None = None
    ) -> dict[str, Any]:
        """A silence from a request's JSON: hosts, rules, kinds, minutes or ends_at, reason."""
        now = self._clock()
        hosts, rules, kinds = (_names(request, k) for k in ("hosts", "rules", "kinds"))
        ends_at = _end(request, now)
        reason = request.get("reason", "")
        if not isinstance(reason, str):
            raise Refused("reason must be a string")
        if len(reason) > MAX_REASON:
            raise Refused(f"reason must be at most {MAX_REASON} characters, got {len(reason)}")
        if not (hosts or rules or kinds):  # as Alertmanager: no silence of all by omission
            raise Refused('a silence needs hosts, rules or kinds ("hosts": ["*"]: every alert)')
        silence = Silence(silence_id or secrets.token_hex(6), hosts, rules, kinds,
                          round(now, 3), round(ends_at, 3), reason, user)  # fmt: skip
        if self.forward is not None:
            self.forward({"op": "silence", "id": silence.id, "request": dict(request),
                          "by": user})  # fmt: skip
            return silence.as_dict()
        with self._lock:
            self._drop_ended(now)
            if len(self._silences) >= MAX_SILENCES:
                raise Refused(f"at most {MAX_SILENCES} silences at once: delete one first")
            self._silences[silence.id] = silence
            self._save()
        log.warning("silence %s by %r until %s: hosts %s, rules %s, kinds %s; reason %r",
                    silence.id, user, _utc(silence.ends_at), list(hosts) or "any",
                    list(rules) or "any", list(kinds) or "any", reason)  # fmt: skip
        self.changed()
        return silence.as_dict()

    def delete(self, silence_id: str, user: str) -> bool:
        if self.forward is not None:
            known = silence_id in self._silences
            if known:
                self.forward({"op": "delete", "id": silence_id, "by": user})
            return known
        with self._lock:
            silence = self._silences.pop(silence_id, None)
            if silence is None:
                return False
            self._save()
        log.warning("silence %s deleted by %r before its end", silence_id, user)
        self.changed()
        return True

    # ---- between processes

    def apply(self, action: Mapping[str, Any]) -> None:
        """On the core: a change a web process forwarded (checked there already)."""
        op, user = action.get("op"), str(action.get("by"))[:200]
        try:
            if op == "ack":
                self.acknowledge(str(action["host"]), str(action["rule"]), user)
            elif op == "silence":
                self.add(action["request"], user, str(action["id"])[:64])
            elif op == "delete":
                self.delete(str(action["id"]), user)
        except (Refused, KeyError, TypeError, AttributeError) as exc:
            log.warning("a change from a web process could not be made: %s", exc)

    def replace(self, snapshot: Any) -> None:
        """On a web process: the core's whole state (its `silences` event, its snapshot)."""
        if not isinstance(snapshot, dict):
            return
        with self._lock:
            self._acks.clear()
            self._silences.clear()
            self._read(snapshot)

    # ---- what pages and REST show

    def active(self) -> list[dict[str, Any]]:
        """The silences that have not ended, the soonest to end first."""
        now = self._clock()
        with self._lock:
            self._drop_ended(now)
            silences = sorted(self._silences.values(), key=lambda s: s.ends_at)
        return [s.as_dict() for s in silences]

    def acknowledgements(self, host: str | None = None) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(a) for (h, _), a in self._acks.items() if host is None or h == host]

    def snapshot(self, host: str | None = None) -> dict[str, Any]:
        """The keys added to `alerts` and /api/alerts: `acknowledged`, `silences`."""
        return {"acknowledged": self.acknowledgements(host), "silences": self.active()}

    # ---- kept in data_dir

    def _drop_ended(self, now: float) -> None:
        ended = [i for i, s in self._silences.items() if s.ends_at <= now]
        for silence_id in ended:
            log.info("silence %s ended", silence_id)
            del self._silences[silence_id]
        if ended:
            self._save()

    def _save(self) -> None:
        """Under the lock: a few records, written at a person's pace."""
        if self.path is None:
            return
        data = {"acknowledged": list(self._acks.values()),
                "silences": [s.as_dict() for s in self._silences.values()]}  # fmt: skip
        try:
            write_private_json(self.path, data)
        except OSError as exc:
            log.error("could not keep acknowledgements and silences in %s: %s", self.path, exc)

    def _load(self) -> None:
        if self.path is None:
            return
        try:
            with open(self.path, encoding="utf-8") as handle:
                data = json.load(handle)
        except FileNotFoundError:
            return
        except (OSError, ValueError) as exc:
            log.error("could not read acknowledgements and silences from %s: %s", self.path, exc)
            return
        self._read(data)
        if self._acks or self._silences:
            log.info("%d acknowledgements and %d silences kept from before the start",
                     len(self._acks), len(self._silences))  # fmt: skip

    def _read(self, data: Mapping[str, Any]) -> None:
        now = self._clock()
        try:
            for entry in data.get("acknowledged", [])[:MAX_ACKNOWLEDGED]:
                key = (str(entry["host"]), str(entry["rule"]))
                self._acks[key] = {"host": key[0], "rule": key[1], "by": str(entry["by"]),
                                   "at": float(entry["at"])}  # fmt: skip
            for entry in data.get("silences", [])[:MAX_SILENCES]:
                hosts, rules, kinds = (tuple(str(n) for n in entry[k][:MAX_MATCHERS])
                                       for k in ("hosts", "rules", "kinds"))  # fmt: skip
                silence = Silence(str(entry["id"]), hosts, rules, kinds,
                                  float(entry["starts_at"]), float(entry["ends_at"]),
                                  str(entry["reason"])[:MAX_REASON], str(entry["by"]))  # fmt: skip
                if silence.ends_at > now:
                    self._silences[silence.id] = silence
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            log.error("part of %s could not be read (%s): the rest is kept", self.path, exc)


def _names(request: Mapping[str, Any], key: str) -> tuple[str, ...]:
    raw = request.get(key)
    if raw is None:
        return ()
    if isinstance(raw, str):
        raw = [raw]
    if not isinstance(raw, list) or len(raw) > MAX_MATCHERS:
        raise Refused(f"{key} must be a list of at most {MAX_MATCHERS} names or globs")
    for name in raw:
        if not isinstance(name, str) or not 0 < len(name) <= MAX_NAME:
            raise Refused(f"each of {key} must be a name or glob of 1-{MAX_NAME} characters")
    return tuple(raw)


def _end(request: Mapping[str, Any], now: float) -> float:
    """`ends_at` (epoch seconds) or `minutes` (fractions allowed: 0.1 is 6 s): one, not both."""
    minutes, ends_at = request.get("minutes"), request.get("ends_at")
    if (minutes is None) == (ends_at is None):
        raise Refused("a silence needs an end: give minutes or ends_at (epoch seconds), one")
    value = minutes if minutes is not None else ends_at
    if isinstance(value, bool) or not isinstance(value, int | float) or value != value:
        raise Refused("minutes and ends_at must be numbers")
    if minutes is not None:
        if not 0 < value <= MAX_MINUTES:
            raise Refused(f"minutes must be above 0 and at most {MAX_MINUTES}")
        return now + value * 60
    if not now < value <= now + MAX_MINUTES * 60:
        raise Refused("ends_at must be in the future, within a year")
    return float(value)


def _utc(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(ts))
