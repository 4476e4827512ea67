"""Running blocking I/O (SQLite, fsync) off eventlet's hub.

Under eventlet, threading is monkey-patched: a Thread is a green thread and
a blocking call in it stalls every socket. Such calls go through eventlet's
pool of OS threads (tpool), which do only the call: no logging, no green
locks. Under `threading` they are plain calls.
"""

from __future__ import annotations

import contextlib
import sys
import threading
from collections.abc import Callable, Iterator
from types import ModuleType
from typing import Any, TypeVar

T = TypeVar("T")


def _eventlet_patched() -> bool:
    if "eventlet" not in sys.modules:
        return False
    from eventlet import patcher

    return bool(patcher.is_monkey_patched("thread"))


def os_threading() -> ModuleType:
    """The threading module of real OS threads, also under eventlet's monkey patch.

    For a thread that must block in a system call without holding the loop;
    it may touch nothing green (logging, eventlet locks, sockets).
    """
    if _eventlet_patched():
        from eventlet import patcher

        original: ModuleType = patcher.original("threading")
        return original
    return threading


def run_blocking(function: Callable[..., T], *args: Any) -> T:
    """Call `function` where blocking is harmless: a pool thread under eventlet."""
    if _eventlet_patched():
        from eventlet import tpool

        result: T = tpool.execute(function, *args)
        return result
    return function(*args)


class Busy(Exception):
    """No slot in a bounded pool within its deadline: answer 503, try later."""


class BoundedPool:
    """At most `size` blocking calls at once; a caller waits at most `deadline` for a slot.

    For what a client can trigger (password checks, big history queries): a
    flood queues here, bounded, instead of filling every pool thread.
    """

    def __init__(self, size: int, deadline: float) -> None:
        self.size = size
        self.deadline = deadline
        self._slots = threading.BoundedSemaphore(size)  # green under eventlet

    def run(self, function: Callable[..., T], *args: Any) -> T:
        if not self._slots.acquire(timeout=self.deadline):
            raise Busy(f"busy: {self.size} such calls already running")
        try:
            return run_blocking(function, *args)
        finally:
            self._slots.release()


class KeyedLock:
    """One holder per key at a time (e.g. one password check per client address)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._held: dict[str, list[Any]] = {}  # key -> [lock, users]

    @contextlib.contextmanager
    def hold(self, key: str, timeout: float) -> Iterator[None]:
        with self._lock:
            entry = self._held.setdefault(key, [threading.Lock(), 0])
            entry[1] += 1
        try:
            if not entry[0].acquire(timeout=timeout):
                raise Busy(f"busy: another call for {key!r} is running")
            try:
                yield
            finally:
                entry[0].release()
        finally:
            with self._lock:
                entry[1] -= 1
                if entry[1] == 0:
                    del self._held[key]


class Signal:
    """A one-shot event, as light as the async mode allows: eventlet's own Event under
    eventlet (a green threading.Event is a Condition, a lock and a timer per wait),
    threading's otherwise. Set and waited on from green threads (or real ones)."""

    def __init__(self) -> None:
        if _eventlet_patched():
            from eventlet.event import Event

            self._green: Any = Event()
            self._plain: threading.Event | None = None
        else:
            self._green = None
            self._plain = threading.Event()

    def set(self) -> None:
        if self._plain is not None:
            self._plain.set()
        elif not self._green.ready():
            self._green.send(True)

    def is_set(self) -> bool:
        return self._plain.is_set() if self._plain is not None else bool(self._green.ready())

    def wait(self, timeout: float) -> bool:
        """True once set; False when `timeout` passed first."""
        if self._plain is not None:
            return self._plain.wait(timeout)
        return bool(self._green.wait(timeout))
