"""A reading made in an OS thread of its own, for collectors whose reads can block.

Some readings wait on hardware: an ACPI thermal zone or a laptop's fan asks
the embedded controller (tens of milliseconds), an NVMe temperature is an
admin command to the drive, an NVML call waits on the GPU's driver and can
hang while a GPU is in trouble. None of that may run on the loop. So the
tick kicks a thread at its start (kick()) and takes the newest reading that
thread has finished (latest()), without waiting: a value is at most a tick
old. Kicks that come while a reading runs are one kick, so a slow or hung
reading holds one thread, never one per tick.

A reading that has run for more than `stale` seconds (the thread is stuck in
a driver) leaves no reading: latest() raises, the collector's part is null
and its one log line says why, until the reading returns.

The thread touches nothing green (no logging, no eventlet lock): it sets one
attribute per change, which the tick reads.
"""

from __future__ import annotations

import threading
import time
import weakref
from collections.abc import Callable
from typing import Generic, TypeVar

from server.blocking import os_threading
from server.logs import describe_error
from server.sampling.collector import READ_ERRORS

T = TypeVar("T")


class _Worker(Generic[T]):
    """What the thread holds: the reading and its result, never the collector (so a
    collector that is dropped ends its thread)."""

    def __init__(self, read: Callable[[], T], first: T) -> None:
        threads = os_threading()
        self.read = read
        self.kick: threading.Event = threads.Event()
        self.finished: threading.Event = threads.Event()
        self.result: T | BaseException = first
        self.busy_since: float | None = None  # monotonic start of the reading under way
        self.closed = False

    def close(self) -> None:
        self.closed = True
        self.kick.set()

    def run(self) -> None:
        while True:
            self.kick.wait()
            self.kick.clear()
            if self.closed:
                return
            self.busy_since = time.monotonic()
            try:
                value: T | BaseException = self.read()
            except Exception as exc:  # handed to the tick, which logs it once
                value = exc
            self.result = value
            self.busy_since = None
            self.finished.set()


class OffLoop(Generic[T]):
    """`read` in a daemon OS thread, once per kick; latest() is its newest result.

    `first` is the result before the first reading (the collector's own, at start).
    """

    def __init__(self, name: str, read: Callable[[], T], first: T, stale: float = 10.0) -> None:
        self.name = name
        self.stale = stale
        self._worker = _Worker(read, first)
        self._thread = os_threading().Thread(
            target=self._worker.run, name=f"{name}-reader", daemon=True
        )
        weakref.finalize(self, self._worker.close)

    @property
    def started(self) -> bool:
        return self._thread.ident is not None

    @property
    def finished(self) -> threading.Event:
        """An Event set after each reading (tests wait on it, and clear it)."""
        return self._worker.finished

    def kick(self) -> None:
        """Ask for a reading; the first kick starts the thread (nothing runs before)."""
        if not self.started:
            self._thread.start()
        self._worker.kick.set()

    def close(self, timeout: float = 2.0) -> None:
        """End the thread after the reading it is in, waiting at most `timeout` for it (a
        reading stuck in a driver is left to it)."""
        self._worker.close()
        if self.started:
            self._thread.join(timeout)

    def latest(self) -> T:
        """The newest finished reading; raises one of READ_ERRORS when that reading
        failed, or while a reading has run for more than `stale` seconds."""
        worker = self._worker
        since = worker.busy_since
        if since is not None and time.monotonic() - since > self.stale:
            raise TimeoutError(
                f"a reading has not returned for {time.monotonic() - since:.1f} s "
                "(a driver is not answering)"
            )
        value = worker.result
        if isinstance(value, BaseException):
            if isinstance(value, READ_ERRORS):
                raise value
            raise RuntimeError(describe_error(value))  # a bug: null and logged, not a failed tick
        return value
