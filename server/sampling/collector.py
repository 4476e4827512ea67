"""The one shape of a collector: a part of the sample, read from this machine.

A collector has a `name` (its label in /metrics'
`dashboard_collector_success{collector}`), reads its part of the sample
(`read()`: a dict of its top-level keys, {"memory": {...}}), and says what
that part is when it cannot read (`null()`: {"memory": None}, or a dict of
nulls where the page expects one). When `read()` raises one of READ_ERRORS,
`collect()` gives the null part instead, logs one line when the reading starts
failing and one when it can be read again, and the collector's `success` is
False until then.

Adding a collector (containers, sensors, a GPU) is one module under
server/sampling/ with a subclass of Collector, and one entry in the list
DynamicData (server/data.py) builds: its keys go into the sample in the
list's order. A value that cannot be read is None (null in JSON), never a
made-up 0.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any, ClassVar, TypeVar

import psutil

from server.logs import describe_error

log = logging.getLogger("dashboard.data")

T = TypeVar("T")

# psutil raises AccessDenied / NoSuchProcess (psutil.Error); /proc and /sys
# readings raise OSError (FileNotFoundError when a device vanishes).
READ_ERRORS = (psutil.Error, OSError, RuntimeError, NotImplementedError)


class FailureLog:
    """Reads values, turning failures into None and logging each cause once.

    Edge-triggered: one line when a field starts failing, one when it can be
    read again. Which fields are failing now is also what a collector's
    success flag reads.
    """

    def __init__(self) -> None:
        self._failing: set[str] = set()

    @property
    def failing(self) -> frozenset[str]:
        return frozenset(self._failing)

    def read(self, field: str, reader: Callable[[], T]) -> T | None:
        try:
            value = reader()
        except READ_ERRORS as exc:
            if field not in self._failing:
                self._failing.add(field)
                log.warning(
                    "cannot read %s: %s; it is null until it can be read",
                    field,
                    describe_error(exc),
                )
            return None
        if field in self._failing:
            self._failing.discard(field)
            log.info("%s can be read again", field)
        return value


class Collector(ABC):
    """One part of the sample. Subclasses set `name` and write `read()` and `null()`.

    `failures` logs every reading the collector makes through it (at start,
    say) under that reading's name; while any of them fails, `success` is
    False. A reading of one item among many (one disk's usage) that fails
    goes through a FailureLog of its own: that item shows nulls, and the
    collector still succeeds.
    """

    name: ClassVar[str]
    # True when read() waits for work that begin() started (the mount prober):
    # DynamicData reads such a collector after the others, so the work runs
    # beside their reads. Its keys keep their place in the sample.
    waits: ClassVar[bool] = False

    def __init__(self) -> None:
        self.failures = FailureLog()

    @abstractmethod
    def read(self) -> dict[str, Any]:
        """This tick's part of the sample; raises one of READ_ERRORS if it cannot be read."""

    @abstractmethod
    def null(self) -> dict[str, Any]:
        """The part when it cannot be read: the same keys, with nulls (a new dict each call)."""

    def begin(self) -> None:  # noqa: B027 (a hook: most collectors start nothing)
        """Called at each tick's start, before any collector reads."""

    def collect(self) -> dict[str, Any]:
        """read(), or null() with the failure logged once."""
        part = self.failures.read(self.name, self.read)
        return self.null() if part is None else part

    @property
    def success(self) -> bool:
        """False while any reading of this collector fails."""
        return not self.failures.failing


def percent(value: float | None) -> float | None:
    """A percentage as the sample carries it: 0-100, one decimal."""
    return None if value is None else round(min(max(value, 0.0), 100.0), 1)
