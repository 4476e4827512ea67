"""Each agent link's clock against the hub's, measured NTP-style over the link.

The hub asks the agent for its clocks (`clock`: wall and monotonic) and
times the round trip: the agent read them, at best guess, halfway through.
Two offsets come out of each round trip:

- `offset`: the agent's wall clock minus the hub's ("10 min ahead"), shown on
  the tile and the host page, and exported;
- the hub's wall clock minus the agent's monotonic clock. A sample that
  carries `mono` (the agent's monotonic clock when it was taken) is placed on
  the hub's timeline with it, so a wall clock that steps on the agent (NTP,
  a VM resumed) moves none of its samples: no duplicates, holes or disorder.

The monotonic offset is kept while new measurements agree with it within
MONO_SLACK: its jitter (the round trip's asymmetry) would otherwise move
points by milliseconds from one measurement to the next.
"""

from __future__ import annotations

import math
import threading
from collections import deque
from typing import Any

MONO_SLACK = 0.05  # seconds: a new monotonic offset within this of the kept one is the same
KEEP = 8  # round trips remembered; the shortest of them is the best estimate


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


class LinkClock:
    """What the round trips of one agent's link say about its clocks."""

    def __init__(self) -> None:
        self.offset: float | None = None  # agent wall - hub wall, seconds
        self.mono_offset: float | None = None  # hub wall - agent monotonic
        self.measured = threading.Event()  # set after the first answer (or a failed ask)
        self._trips: deque[tuple[float, float, float | None]] = deque(maxlen=KEEP)

    def add(self, sent: float, received: float, answer: Any) -> bool:
        """One round trip: hub wall clock when asked and answered, and the agent's
        answer `{"ts", "mono"}`. False if the answer is not a clock reading."""
        ts = answer.get("ts") if isinstance(answer, dict) else None
        mono = answer.get("mono") if isinstance(answer, dict) else None
        if not isinstance(ts, int | float) or not _finite(ts) or received < sent:
            return False
        if not (mono is None or _finite(mono)):
            return False
        middle = (sent + received) / 2
        trip = (received - sent, ts - middle, None if mono is None else middle - mono)
        placing = trip[2]
        if (
            placing is not None
            and self.mono_offset is not None
            and abs(placing - self.mono_offset) > trip[0] + MONO_SLACK
        ):
            # The monotonic clock moved against the hub's (the agent's machine was
            # suspended, or the hub's clock stepped): the older round trips are void.
            self._trips.clear()
        self._trips.append(trip)
        # The latest round trip says where the wall clock is now (it may have
        # stepped); the shortest one is the best placing of the monotonic clock.
        self.offset = trip[1]
        placings = [(rtt, placing) for rtt, _wall, placing in self._trips if placing is not None]
        if not placings:
            self.mono_offset = None
        else:
            best = min(placings)[1]
            if self.mono_offset is None or abs(best - self.mono_offset) > MONO_SLACK:
                self.mono_offset = best
        self.measured.set()
        return True

    def unknown(self) -> None:
        """No clock answer (an older agent): its timestamps are taken as they are."""
        self.measured.set()

    def to_hub(self, sample: dict[str, Any]) -> float:
        """The sample's time on the hub's timeline."""
        mono = sample.get("mono")
        if self.mono_offset is not None and isinstance(mono, int | float) and _finite(mono):
            return round(float(mono) + self.mono_offset, 3)
        ts = float(sample["ts"])
        return round(ts - self.offset, 3) if self.offset is not None else ts


def describe(offset: float) -> str:
    """What a tile says of a clock `offset` seconds off: "clock 10 min ahead"."""
    size = abs(offset)
    if size >= 86400:
        amount = f"{size / 86400:.1f} d"
    elif size >= 3600:
        amount = f"{size / 3600:.1f} h"
    elif size >= 60:
        amount = f"{size / 60:.0f} min"
    else:
        amount = f"{size:.0f} s"
    return f"clock {amount} {'ahead' if offset > 0 else 'behind'}"
