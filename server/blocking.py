"""Running blocking I/O (SQLite, fsync) off eventlet's hub.

Under eventlet, threading is monkey-patched: a Thread is a green thread and
a blocking call in it stalls every socket. Such calls go through eventlet's
pool of OS threads (tpool), which do only the call: no logging, no green
locks. Under `threading` they are plain calls.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

T = TypeVar("T")


def _eventlet_patched() -> bool:
    if "eventlet" not in sys.modules:
        return False
    from eventlet import patcher

    return bool(patcher.is_monkey_patched("thread"))


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


class Pending:
    """A blocking call started in a pool thread, to be waited for with a deadline.

    A call that misses its deadline goes on in its thread; `done` says when
    it has returned, so the caller can leave that resource alone until then.
    """

    def __init__(self, function: Callable[..., T], *args: Any) -> None:
        self._green: Any = None
        self._future: concurrent.futures.Future[Any] | None = None
        if _eventlet_patched():
            import eventlet
            from eventlet import tpool

            self._green = eventlet.spawn(tpool.execute, function, *args)
        else:
            self._future = _threads().submit(function, *args)

    @property
    def done(self) -> bool:
        if self._green is not None:
            return bool(self._green.dead)
        assert self._future is not None
        return self._future.done()

    def wait(self, timeout: float) -> bool:
        """True if the call returned (or raised) within `timeout` seconds."""
        if self._green is not None:
            import eventlet

            with eventlet.Timeout(timeout, False), contextlib.suppress(Exception):
                self._green.wait()  # raising is left to result()
        else:
            assert self._future is not None
            concurrent.futures.wait([self._future], timeout)
        return self.done

    def result(self) -> Any:
        """The call's value, or its exception raised here; only once done."""
        if self._green is not None:
            return self._green.wait()
        assert self._future is not None
        return self._future.result()


_pool: concurrent.futures.ThreadPoolExecutor | None = None


def _threads() -> concurrent.futures.ThreadPoolExecutor:
    global _pool
    if _pool is None:
        _pool = concurrent.futures.ThreadPoolExecutor(max_workers=8, thread_name_prefix="blocking")
    return _pool
