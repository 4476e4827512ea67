"""The shared concerns: the one log throttle and the one background loop."""

from __future__ import annotations

import logging
import threading
import time

import pytest

from server.logs import LogThrottle, Throttle
from server.loops import DONE, BackgroundLoop


def test_a_throttle_lets_one_a_period_through_and_counts_the_rest() -> None:
    now = [0.0]
    throttle = Throttle(period=60, clock=lambda: now[0])
    assert throttle.allow("a") == (0, True)
    assert throttle.allow("b") == (0, True)  # keys apart
    assert [throttle.allow("a") for _ in range(3)] == [None, None, None]
    now[0] += 60
    assert throttle.allow("a") == (3, True)  # the next one says how many were held


def test_a_throttle_forgets_its_keys_past_its_bound() -> None:
    throttle = Throttle(period=60, max_keys=3)
    for key in range(10):  # a client inventing keys
        assert throttle.allow(key) is not None
    assert len(throttle._windows) <= 3


def test_a_log_throttle_writes_once_a_period_with_the_count(
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = [0.0]
    lines = LogThrottle(logging.getLogger("dashboard.test"), 60, clock=lambda: now[0])
    with caplog.at_level(logging.WARNING, logger="dashboard.test"):
        written = [lines.log("k", logging.WARNING, "disk %s full", "/") for _ in range(5)]
        now[0] += 61
        lines.log("k", logging.WARNING, "disk %s full", "/")
    assert written == [True, False, False, False, False]
    assert [r.getMessage() for r in caplog.records] == [
        "disk / full",
        "disk / full (4 more like it not shown)",
    ]


def test_a_loop_goes_on_after_an_error_logs_one_traceback_and_stops_in_bounds(
    caplog: pytest.LogCaptureFixture,
) -> None:
    rounds: list[int] = []

    def round() -> float:
        rounds.append(len(rounds))
        if len(rounds) <= 3:
            raise RuntimeError(f"a bug in round {len(rounds)}")
        return 0.01

    loop = BackgroundLoop("test-loop", round, logging.getLogger("dashboard.test"), error_wait=0)
    with caplog.at_level(logging.ERROR, logger="dashboard.test"):
        assert loop.start()
        assert not loop.start()  # one thread at a time
        deadline = time.monotonic() + 5
        while len(rounds) < 10 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert loop.stop(timeout=2)
    assert len(rounds) >= 10 and loop.errors == 3 and not loop.running
    tracebacks = [r for r in caplog.records if r.exc_info]
    assert len(tracebacks) == 1 and "test-loop failed" in tracebacks[0].getMessage()
    assert loop.ran_at is not None


def test_a_loop_ends_when_its_round_says_done_and_a_shared_stop_stops_all() -> None:
    loop = BackgroundLoop("once", lambda: DONE)
    loop.start()
    deadline = time.monotonic() + 5
    while loop.running and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not loop.running
    stop = threading.Event()
    loops = [BackgroundLoop(f"shared-{i}", lambda: 0.01, stopping=stop) for i in range(2)]
    for each in loops:
        each.start()
    stop.set()
    assert all(each.stop(timeout=2) for each in loops)
    assert stop.is_set()  # a shared stop is not cleared by a loop
