"""server/blocking.py: bounded pools, one holder per key, calls with a deadline."""

from __future__ import annotations

import threading
import time

import pytest

from server.blocking import BoundedPool, Busy, KeyedLock


def test_a_bounded_pool_refuses_past_its_deadline() -> None:
    pool = BoundedPool(size=1, deadline=0.1)
    release = threading.Event()
    holder = threading.Thread(target=pool.run, args=(release.wait, 5))
    holder.start()
    time.sleep(0.05)
    started = time.monotonic()
    with pytest.raises(Busy):
        pool.run(lambda: None)
    assert time.monotonic() - started < 0.5
    release.set()
    holder.join()
    assert pool.run(lambda: 42) == 42  # the slot is free again


def test_a_keyed_lock_holds_one_per_key() -> None:
    lock = KeyedLock()
    with lock.hold("a", timeout=1):
        with pytest.raises(Busy), lock.hold("a", timeout=0.05):
            pass
        with lock.hold("b", timeout=0.05):
            pass  # another key is free
    with lock.hold("a", timeout=0.05):
        pass
    assert lock._held == {}  # nothing kept for keys no one holds
