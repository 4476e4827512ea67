"""The recent history a host keeps in memory: as rows and as columns.

Both forms are kept as samples arrive, so a page's greeting is a copy, not
a walk over 900 samples on the event loop.
"""

from __future__ import annotations

import bisect
import math
from collections import deque
from collections.abc import Collection
from typing import Any

from server.history.columns import MOMENT_KEYS, ColumnRing

Sample = dict[str, Any]


def history_view(sample: Sample) -> Sample:
    """A sample as kept in history."""
    return {key: value for key, value in sample.items() if key not in MOMENT_KEYS}


class HistoryRing:
    """The last `history_seconds` of samples, oldest first."""

    def __init__(self, history_seconds: float, interval: float) -> None:
        self.size = max(1, math.ceil(history_seconds / interval))
        self._rows: deque[Sample] = deque(maxlen=self.size)
        self._columns = ColumnRing(self.size)
        self._columns_stale = False  # a replay went in between: rebuilt at the next read

    def __len__(self) -> int:
        return len(self._rows)

    def append(self, sample: Sample) -> None:
        row = history_view(sample)
        self._rows.append(row)
        if not self._columns_stale:
            self._columns.append(row)

    def insert(self, sample: Sample) -> None:
        """A replayed (older) sample, in time order, once."""
        row = history_view(sample)
        stamps = [s["ts"] for s in self._rows]
        where = bisect.bisect_left(stamps, row["ts"])
        if where < len(stamps) and stamps[where] == row["ts"]:
            return  # already here
        if len(self._rows) == self.size:
            if where == 0:
                return  # older than all the ring keeps
            self._rows.popleft()
            where -= 1
        self._rows.insert(where, row)
        self._columns_stale = True

    def rows(self, seconds: float | None = None, latest: Sample | None = None) -> list[Sample]:
        """The last `seconds` (by the newest sample's time); `latest` replaces the newest
        (a new page gets it whole, with its process table)."""
        samples = list(self._rows)
        if latest is not None and samples:
            samples[-1] = latest
        if seconds is None or not samples:
            return samples
        cutoff = samples[-1]["ts"] - seconds
        return [s for s in samples if s["ts"] > cutoff]

    def columns(
        self,
        seconds: float | None = None,
        after: float | None = None,
        metrics: Collection[str] | None = None,
    ) -> dict[str, Any]:
        """The column form of the last `seconds`, or of the samples after the time
        `after` (a page that has the rest already), of `metrics` only if given; see
        server/history/columns.py."""
        if self._columns_stale:
            self._columns = ColumnRing(self.size)
            for row in self._rows:
                self._columns.append(row)
            self._columns_stale = False
        since = None if seconds is None or not self._rows else self._rows[-1]["ts"] - seconds
        if after is not None:
            since = after if since is None else max(since, after)
        return self._columns.columns(since=since, metrics=metrics)
