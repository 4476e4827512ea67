"""Background loops: every thread of this project that runs until it is stopped.

One shape for all of them (the sampler, the history writer, the fleet's judge,
the core's lease, the firehose, webhook receivers, an agent's link): a stop
event, a bounded join, and an exception in one round logged (a traceback at
most once a minute per loop) and counted while the loop goes on. A loop that
dies in silence is what /healthz's loop ages exist to catch; this keeps the
loops from dying of a bug in the first place.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from server.logs import LogThrottle

log = logging.getLogger("dashboard.loops")

DONE = -1.0  # a round's answer that ends the loop (nothing left to do)

# One round; it answers how long to wait before the next (0 or None: at once, it
# waited itself), or DONE.
Round = Callable[[], float | None]


class BackgroundLoop:
    """`round` again and again in a daemon thread of its own, until stop()."""

    def __init__(
        self,
        name: str,
        round: Round,
        logger: logging.Logger = log,
        error_wait: float = 1.0,
        stopping: threading.Event | None = None,
    ) -> None:
        self.name = name
        self._round = round
        self._errors = LogThrottle(logger)
        self._error_wait = error_wait  # a round that failed: a pause, not a hot spin
        # Several loops of one part may share a stop (an agent's link stops as one).
        self._shared_stop = stopping is not None
        self.stopping = stopping or threading.Event()
        self.errors = 0
        self.ran_at: float | None = None  # monotonic, after each round
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()

    def start(self) -> bool:
        """Start the thread; False (and nothing done) while it runs."""
        with self._start_lock:
            if self.running:
                return False
            if not self._shared_stop:
                self.stopping.clear()
            self._thread = threading.Thread(target=self.run, name=self.name, daemon=True)
            self._thread.start()
            return True

    def stop(self, timeout: float = 5.0) -> bool:
        """Ask the loop to end and wait up to `timeout`; True if it ended."""
        self.stopping.set()
        thread = self._thread
        if thread is None or thread is threading.current_thread():
            return True
        thread.join(timeout)
        if thread.is_alive():
            log.warning("background loop %s did not stop within %.1f s", self.name, timeout)
            return False
        return True

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def run(self) -> None:
        """The loop itself, in the calling thread (start() runs it in its own)."""
        while not self.stopping.is_set():
            try:
                wait = self._round()
            except Exception:
                self.errors += 1
                self._errors.log(
                    "round", logging.ERROR, "%s failed; the loop goes on", self.name, exc_info=True
                )
                wait = self._error_wait
            self.ran_at = time.monotonic()
            if wait == DONE:
                return
            if wait:
                self.stopping.wait(wait)
