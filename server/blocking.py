"""Running blocking I/O (SQLite, fsync) off eventlet's hub.

Under eventlet, threading is monkey-patched: a Thread is a green thread and
a blocking call in it stalls every socket. Such calls go through eventlet's
pool of OS threads (tpool), which do only the call: no logging, no green
locks. Under `threading` they are plain calls.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
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
