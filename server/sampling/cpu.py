"""CPU busy share, of the whole machine and of each core, between two ticks."""

from __future__ import annotations

from typing import Any

import psutil

from server.sampling.collector import Collector, percent


def cpu_times() -> list[Any]:
    return list(psutil.cpu_times(percpu=True))


def _busy_and_total(times: Any) -> tuple[float, float]:
    # As psutil's cpu_percent: guest time is already in user and nice, and
    # idle and iowait are not busy.
    total = sum(times) - getattr(times, "guest", 0) - getattr(times, "guest_nice", 0)
    return total - times.idle - getattr(times, "iowait", 0), total


def cpu_percents(
    before: list[Any] | None, after: list[Any] | None
) -> tuple[float | None, list[float | None] | None]:
    """(the whole machine's busy %, each core's) between two per-core readings.

    One read of /proc/stat a tick serves both: the machine's total is the sum
    over its cores, as the kernel's own first line is.
    """
    if after is None:
        return None, None
    if before is None or len(before) != len(after):  # a core came or went: start again
        return None, [None] * len(after)
    per_core: list[float | None] = []
    busy_sum = total_sum = 0.0
    for old, new in zip(before, after, strict=True):
        (busy_old, total_old), (busy_new, total_new) = _busy_and_total(old), _busy_and_total(new)
        busy, total = max(busy_new - busy_old, 0.0), total_new - total_old
        busy_sum += busy
        total_sum += max(total, 0.0)
        per_core.append(percent(100 * busy / total) if total > 0 else 0.0)
    return (percent(100 * busy_sum / total_sum) if total_sum > 0 else 0.0), per_core


class Cpu(Collector):
    """{"cpu": {"percent", "per_core"}}: null until two readings in a row succeed."""

    name = "cpu"

    def __init__(self) -> None:
        super().__init__()
        self._before = self.failures.read(self.name, cpu_times)

    def read(self) -> dict[str, Any]:
        before, self._before = self._before, None  # a failed reading starts again
        self._before = after = cpu_times()
        cpu_percent, per_core = cpu_percents(before, after)
        return {"cpu": {"percent": cpu_percent, "per_core": per_core}}

    def null(self) -> dict[str, Any]:
        return {"cpu": {"percent": None, "per_core": None}}
