"""History in columns: the timestamps once, one array per value, constants once.

A list of samples repeats every key, and every disk's device, type and size,
each second. The column form (`format: "columns"`) carries the same values:

    {"format": "columns", "step": 1, "ts": [...],
     "series": {"cpu.percent": [...], "disks./home.used": [...], ...},
     "constant": {"memory.total": 8000000000, "disks./home.device": "/dev/sda2", ...}}

A key is the value's path in a sample joined by dots: dict keys, a list's
index (`cpu.per_core.0`, `load.2`), a disk by its mount (`disks./home.percent`)
and a band's edge (`bands.cpu.percent.0` is the minimum, `.1` the maximum).
A value that is equal in every sample is in `constant`, the rest in
`series`, null where a sample lacks it. `seq` and the moment tables
(processes, server) are not history and are left out.

The ring keeps its columns as samples arrive (a few microseconds a sample),
so a page's greeting copies arrays instead of walking 900 samples.
"""

from __future__ import annotations

import bisect
from collections import deque
from collections.abc import Collection, Sequence
from typing import Any

Sample = dict[str, Any]

FORMATS = ("rows", "columns")
# Tables of the moment, not series: left out of the history (server/history/ring.py).
# `containers`, `sensors` and `gpus` too: up to 200 rows (or 48 sensors) a sample
# would swamp the ring and the raw tier. Each container's CPU and memory have
# tiers of their own (server/history/entities.py). `disk_health` is read every few
# minutes: the same table in every sample, no series. `services` (systemd's units)
# is a state, not a series: what it counts is judged by the alert rules.
MOMENT_KEYS = frozenset(
    {"processes", "server", "clock_offset", "clock_note", "containers", "sensors", "gpus",
     "disk_health", "services"}
)  # fmt: skip
LEFT_OUT = frozenset({"ts", "seq"}) | MOMENT_KEYS
_MISSING = object()  # a sample without this key (null in the answer)


def leaves(sample: Sample) -> list[tuple[str, Any]]:
    """(key, value) for every scalar of a sample but its time and moment tables."""
    out: list[tuple[str, Any]] = []
    for key, value in sample.items():
        if key not in LEFT_OUT:
            _walk(key, value, out)
    return out


def _walk(prefix: str, value: Any, out: list[tuple[str, Any]]) -> None:
    if isinstance(value, dict):
        for key, inner in value.items():
            _walk(f"{prefix}.{key}", inner, out)
    elif isinstance(value, list):
        for index, inner in enumerate(value):
            if isinstance(inner, dict) and "mount" in inner:
                for key, field in inner.items():
                    if key != "mount":
                        _walk(f"{prefix}.{inner['mount']}.{key}", field, out)
            else:
                _walk(f"{prefix}.{index}", inner, out)
    else:
        out.append((prefix, value))


class ColumnRing:
    """The last `size` samples as columns, appended in time order."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._ts: deque[float] = deque(maxlen=size)
        self._columns: dict[str, deque[Any]] = {}
        self._missing: dict[str, int] = {}  # per column: how many samples lack it

    def __len__(self) -> int:
        return len(self._ts)

    def append(self, sample: Sample) -> None:
        full = len(self._ts) == self.size
        self._ts.append(sample["ts"])
        values = dict(leaves(sample))
        for key, column in list(self._columns.items()):
            if full and column[0] is _MISSING:
                self._missing[key] -= 1
            value = values.pop(key, _MISSING)
            column.append(value)  # maxlen: the oldest falls off
            if value is _MISSING:
                self._missing[key] += 1
                if self._missing[key] == len(column):
                    del self._columns[key], self._missing[key]  # no sample has it any more
        for key, value in values.items():  # keys this ring has not seen yet
            column = deque([_MISSING] * (len(self._ts) - 1), maxlen=self.size)
            column.append(value)
            self._columns[key] = column
            self._missing[key] = len(self._ts) - 1

    def columns(
        self, step: int = 1, since: float | None = None, metrics: Collection[str] | None = None
    ) -> dict[str, Any]:
        """The column form of the samples after `since` (all of them if None); of the
        columns of `metrics` and their bands only, if given: what a page draws
        (series.CHARTED) is a third of what a sample carries."""
        ts = list(self._ts)
        start = 0 if since is None else bisect.bisect_right(ts, since)
        ts = ts[start:]
        columns: dict[str, list[Any]] = {}
        for key, kept in self._columns.items():
            if metrics is not None and not of_metrics(key, metrics):
                continue  # not copied at all: a host of 1,024 cores has 1,024 such columns
            column = list(kept)[start:]
            if self._missing[key]:
                if column.count(_MISSING) == len(column):
                    continue  # no sample of this window has it
                column = [None if value is _MISSING else value for value in column]
            columns[key] = column
        return column_form(ts, columns, step)


def column_form(ts: list[float], columns: dict[str, list[Any]], step: int) -> dict[str, Any]:
    """The answer: columns whose values are all equal go to `constant`."""
    series: dict[str, list[Any]] = {}
    constant: dict[str, Any] = {}
    for key, column in columns.items():
        if column and column.count(column[0]) == len(column):
            constant[key] = column[0]
        else:
            series[key] = column
    return {"format": "columns", "step": step, "ts": ts, "series": series, "constant": constant}


def of_metrics(key: str, metrics: Collection[str]) -> bool:
    """Whether a column is one of `metrics` or one of their bands."""
    if key.startswith("bands."):
        key = key[len("bands.") :].rpartition(".")[0]
    return key in metrics


def to_columns(samples: Sequence[Sample], step: int = 1) -> dict[str, Any]:
    """The column form of `samples` (oldest first)."""
    ring = ColumnRing(max(1, len(samples)))
    for sample in samples:
        ring.append(sample)
    return ring.columns(step)
