"""Several processes on one message queue (Redis): one core, any number of web processes.

Flask-SocketIO's own mechanism carries every emit: the core publishes each
event once, and every web process hands it to its own sockets. On top of it,
three small things of our own, all in Redis:

- the core's lease (`dashboard:core`): one core at a time, renewed every
  interval; a second core refuses to start and names the holder;
- the mirror (`dashboard:mirror`): each host's `static` and alerts, and the
  fleet's tiles, written by the core every few seconds, so that a web process
  that starts (or restarts) greets its pages with the same facts as the core;
- the web process's view of the stream: it keeps each host's ring and latest
  sample from the `metrics` it relays, so `history` is as fresh as the core's.
  Older history comes from the store, which web processes read and never write;
- acknowledgements and silences (alerts/silences.py): one made on a web process
  goes to the core on a list (`dashboard:alert-actions`, where it waits while the
  core is away); the core's `silences` event gives every process the result, and
  its snapshot (`dashboard:silences`) a web process that starts.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import threading
from collections.abc import Callable
from typing import Any

import redis
import socketio

from server.wire import compact_json

log = logging.getLogger("dashboard.queue")

LEASE_KEY = "dashboard:core"
MIRROR_KEY = "dashboard:mirror"
MIRROR_TTL = 30  # seconds: a mirror older than this is of a core long gone
ACTIONS_KEY = "dashboard:alert-actions"
SILENCES_KEY = "dashboard:silences"
MAX_ACTIONS = 1_000  # waiting for the core; beyond, the oldest go

# A renewal only if the lease is still ours: never extend another core's.
_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""


def connect(url: str) -> redis.Redis:
    # Short timeouts: a Redis that is down or hung must not hold up the
    # caller for long; the callers retry on their own schedule.
    return redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=2)


class LeaseTaken(Exception):
    """Another core holds the lease; the message names it."""


class CoreLease:
    """The one-core rule: SET NX with a TTL of three intervals, renewed every interval."""

    def __init__(self, url: str, interval: float) -> None:
        self.client = connect(url)
        self.holder = f"{socket.gethostname()}:{os.getpid()}"
        self.ttl_ms = int(max(3 * interval, 3.0) * 1000)
        self._renew = self.client.register_script(_RENEW)
        self.held = False

    def acquire(self) -> None:
        """Take the lease or raise LeaseTaken; a Redis that can't be reached is an error too."""
        if self.client.set(LEASE_KEY, self.holder, nx=True, px=self.ttl_ms):
            self.held = True
            return
        holder = self.client.get(LEASE_KEY)
        name = (
            holder.decode() if isinstance(holder, bytes) else str(holder or "a core that just went")
        )
        raise LeaseTaken(f"another core holds the lease: {name}")

    def renew(self) -> bool:
        """Keep the lease; after a Redis outage, take it again if it lapsed.

        Trouble is logged when it starts, not at every renewal.
        """
        try:
            held = bool(self._renew(keys=[LEASE_KEY], args=[self.holder, self.ttl_ms]))
            if not held:
                held = bool(self.client.set(LEASE_KEY, self.holder, nx=True, px=self.ttl_ms))
            if not held and self.held:
                log.error("the core lease is held by %s: another core runs beside this one",
                          self.client.get(LEASE_KEY))  # fmt: skip
        except redis.RedisError as exc:
            if self.held:
                log.warning("message queue unreachable (%s); sampling and storing go on", exc)
            held = False
        if held and not self.held:
            log.info("core lease held again")
        self.held = held
        return held

    def release(self) -> None:
        try:
            if self.client.get(LEASE_KEY) == self.holder.encode():
                self.client.delete(LEASE_KEY)
        except redis.RedisError:
            pass

    def mirror(self, state: dict[str, Any]) -> None:
        with contextlib.suppress(redis.RedisError):  # renew() says when Redis is away
            self.client.set(MIRROR_KEY, compact_json(state), ex=MIRROR_TTL)


def _dead_here(holder: str) -> bool:
    """Is `holder` (host:pid) a process of this machine that no longer runs?"""
    host, _, pid = holder.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def read_mirror(url: str) -> dict[str, Any] | None:
    try:
        raw = connect(url).get(MIRROR_KEY)
    except redis.RedisError as exc:
        log.warning("message queue unreachable (%s); the store serves history", exc)
        return None
    return json.loads(raw) if raw else None


def core_alive(url: str) -> bool | None:
    """Is a core's lease held? None if Redis can't be asked."""
    try:
        return bool(connect(url).exists(LEASE_KEY))
    except redis.RedisError:
        return None


class ActionQueue:
    """Changes made on web processes, on their way to the core (which runs the
    dispatcher), and the core's snapshot of what they made."""

    def __init__(self, url: str) -> None:
        self.client = connect(url)

    def push(self, action: dict[str, Any]) -> None:
        """A web process's change; raises redis.RedisError when Redis cannot take it."""
        pipe = self.client.pipeline()
        pipe.rpush(ACTIONS_KEY, compact_json(action))
        pipe.ltrim(ACTIONS_KEY, -MAX_ACTIONS, -1)
        pipe.execute()

    def take(self, wait: float) -> dict[str, Any] | None:
        """The core's: the next change, waiting up to `wait` seconds (under the socket's
        timeout); raises redis.RedisError while Redis is away."""
        found = self.client.blpop([ACTIONS_KEY], timeout=wait)
        if not found:
            return None
        action = json.loads(found[1])
        return action if isinstance(action, dict) else None

    def publish(self, snapshot: dict[str, Any]) -> None:
        with contextlib.suppress(redis.RedisError):  # the lease says when Redis is away
            self.client.set(SILENCES_KEY, compact_json(snapshot))

    def read(self) -> dict[str, Any] | None:
        try:
            raw = self.client.get(SILENCES_KEY)
        except redis.RedisError as exc:
            log.warning("message queue unreachable (%s): no acknowledgements nor silences yet",
                        exc)  # fmt: skip
            return None
        return json.loads(raw) if raw else None


class ObservingManager(socketio.RedisManager):  # type: ignore[misc]
    """A web process's manager: relays every published emit to its sockets, as usual,
    and first shows it to its `observer`, so the process keeps its own view of the stream."""

    def __init__(self, url: str) -> None:
        super().__init__(url, channel="dashboard")
        self.observer: Callable[[str, Any], None] | None = None  # set before initialize()
        self.observers: dict[str, Callable[[Any], None]] = {}  # more, by event name
        self._observe_lock = threading.Lock()

    def _handle_emit(self, message: dict[str, Any]) -> None:
        data = message.get("data")
        observer = self.observer
        if (observer is not None and isinstance(data, list) and len(data) == 1
                and message.get("namespace") == "/"):  # fmt: skip
            try:
                with self._observe_lock:
                    observer(str(message.get("event")), data[0])
                    also = self.observers.get(str(message.get("event")))
                    if also is not None:
                        also(data[0])
            except Exception:  # a bad message must not silence the listener
                log.exception("could not keep a %r event", message.get("event"))
        super()._handle_emit(message)


def core_manager(url: str) -> socketio.RedisManager:
    """The core's manager: publishes; its own listener serves the agents' namespace."""
    return socketio.RedisManager(url, channel="dashboard")
