"""server/worker.py: one loop, a bounded stop, a steady schedule, a kept history."""

from __future__ import annotations

import itertools
import logging
import threading
import time
from typing import Any

import pytest

from server.history.ring import HistoryRing
from server.worker import Sampler, next_slot


class Source:
    """A sample source that records when it was asked, and can be slow or fail."""

    def __init__(self, work: float = 0.0) -> None:
        self.work = work
        self.calls: list[float] = []
        self.fail_on: set[int] = set()
        self.slow_on: dict[int, float] = {}

    def sample(self) -> dict[str, Any]:
        n = len(self.calls)
        self.calls.append(time.monotonic())
        time.sleep(self.slow_on.get(n, self.work))
        if n in self.fail_on:
            raise RuntimeError(f"sample {n} failed")
        return {"ts": time.time(), "cpu": {"percent": 1.0}, "processes": [{"pid": 1}]}


class Recorder:
    def __init__(self) -> None:
        self.sent: list[tuple[str, dict[str, Any]]] = []

    def __call__(self, event: str, data: dict[str, Any]) -> None:
        self.sent.append((event, data))


def sampler_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "sampler" and t.is_alive()]


def test_tick_broadcasts_once_and_keeps_history() -> None:
    recorder = Recorder()
    sampler = Sampler(Source(), recorder, interval=1.0, history_seconds=3)
    for _ in range(5):
        sampler.tick()
    assert [e for e, _ in recorder.sent] == ["metrics"] * 5
    assert [d["seq"] for _, d in recorder.sent] == [1, 2, 3, 4, 5]
    history = sampler.history()
    assert [s["seq"] for s in history] == [3, 4, 5]  # the ring holds 3 s at 1 Hz
    assert all("processes" not in s for s in history)
    assert sampler.latest is not None and sampler.latest["processes"] == [{"pid": 1}]
    age = sampler.last_sample_age()
    assert age is not None and 0 <= age < 1


def test_history_by_seconds() -> None:
    sampler = Sampler(Source(), Recorder(), interval=1.0, history_seconds=100)
    for ts in range(100, 110):
        sampler.ring.append({"ts": float(ts), "seq": ts})
    assert [s["ts"] for s in sampler.history(3)] == [107.0, 108.0, 109.0]
    assert len(sampler.history(1000)) == 10
    assert len(sampler.history()) == 10


def test_start_twice_runs_one_thread_and_stop_is_bounded() -> None:
    sampler = Sampler(Source(), Recorder(), interval=0.05)
    sampler.start()
    sampler.start()
    try:
        time.sleep(0.2)
        assert len(sampler_threads()) == 1
    finally:
        started = time.monotonic()
        assert sampler.stop(timeout=2)
        assert time.monotonic() - started < 1.0
    assert sampler_threads() == []
    assert not sampler.running


def test_stop_is_bounded_even_with_a_long_interval() -> None:
    sampler = Sampler(Source(), Recorder(), interval=60)
    sampler.start()
    time.sleep(0.1)
    started = time.monotonic()
    assert sampler.stop(timeout=2)
    assert time.monotonic() - started < 0.5


class FakeClock:
    """Monotonic time that moves only when a sample works or the loop waits."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def run_ticks(
    source: Source, n: int, interval: float = 0.05, recorder: Recorder | None = None
) -> tuple[Sampler, list[float]]:
    """Run the real loop for `n` samples on a fake clock; returns when each began."""
    clock = FakeClock()
    began: list[float] = []
    sampler: Sampler

    class Timed:
        def sample(self) -> dict[str, Any]:
            began.append(clock.now)
            clock.now += source.slow_on.get(len(began) - 1, source.work)
            if len(began) - 1 in source.fail_on:
                raise RuntimeError(f"sample {len(began) - 1} failed")
            return {"ts": clock.now, "cpu": {"percent": 1.0}}

    def wait(seconds: float) -> None:
        assert seconds > 0
        clock.now += seconds
        if len(began) >= n:
            sampler.loop.stopping.set()

    sampler = Sampler(Timed(), recorder or Recorder(), interval=interval, clock=clock, wait=wait)
    sampler.loop.run()  # the loop itself, in this thread
    return sampler, began


def test_a_failing_tick_does_not_end_the_loop(caplog: pytest.LogCaptureFixture) -> None:
    source = Source()
    source.fail_on = {1, 2, 3}
    recorder = Recorder()
    with caplog.at_level(logging.ERROR, logger="dashboard.worker"):
        sampler, _ = run_ticks(source, 12, recorder=recorder)
    assert sampler.errors == 3
    assert len(recorder.sent) == 9  # the loop went on after the failures
    assert [d["seq"] for _, d in recorder.sent] == list(range(1, 10))
    tracebacks = [r for r in caplog.records if r.exc_info]
    assert len(tracebacks) == 1  # one traceback, the rest counted


def test_schedule_does_not_drift() -> None:
    # Each sample takes 10 ms: a loop that sleeps `interval` after its work
    # would be 60 * 10 ms = 0.6 s late by the last tick.
    interval = 0.05
    _, began = run_ticks(Source(work=0.01), 60, interval)
    assert began[-1] - began[0] == pytest.approx(59 * interval)


def test_a_slow_tick_is_not_followed_by_a_burst() -> None:
    interval = 0.05
    source = Source()
    source.slow_on = {5: 4.5 * interval}
    _, began = run_ticks(source, 12, interval)
    offsets = [round((t - began[0]) / interval, 6) for t in began]
    # Slot 5 overran slots 6 to 9: they are skipped, and the grid stays.
    assert offsets == [0, 1, 2, 3, 4, 5, 10, 11, 12, 13, 14, 15]


def test_next_slot_stays_on_the_grid() -> None:
    assert next_slot(10.0, 10.3, 1.0) == 11.0
    assert next_slot(10.0, 11.0, 1.0) == 12.0  # exactly on a slot that is now: the next one
    assert next_slot(10.0, 13.5, 1.0) == 14.0


def test_a_wall_clock_step_does_not_change_the_tick_rate(monkeypatch: pytest.MonkeyPatch) -> None:
    real_time = time.time
    monkeypatch.setattr(time, "time", lambda: real_time() - 3600)  # an hour back
    _, began = run_ticks(Source(), 10, 0.05)
    gaps = {round(b - a, 9) for a, b in itertools.pairwise(began)}
    assert gaps == {0.05}


def test_new_client_gets_history_before_any_later_metrics() -> None:
    recorder = Recorder()
    sampler = Sampler(Source(), recorder, interval=1.0)
    sampler.tick()
    order: list[str] = []

    def slow_greet(ring: HistoryRing, latest: dict[str, Any] | None) -> None:
        order.append(f"history {len(ring.rows(latest=latest))}")
        time.sleep(0.3)
        order.append("history sent")

    greeter = threading.Thread(target=sampler.send_history, args=(slow_greet,))
    greeter.start()
    time.sleep(0.05)
    sampler.tick()  # must wait until the history is out
    order.append(f"metrics {recorder.sent[-1][1]['seq']}")
    greeter.join()
    assert order == ["history 1", "history sent", "metrics 2"]
