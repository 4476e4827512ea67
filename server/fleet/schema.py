"""What an agent may send: one declaration of each message, checked before anything reads it.

The hub checks every `static` and every sample against SAMPLE and STATIC
below, so the store, the alert rules, the pages and `/metrics` can trust
what they read: types, ranges that fit the store (64-bit integers, finite
floats), string lengths and characters, list lengths. A value that fails is
refused with the path of the first problem.

The numbers that are series take their range from their unit in
server/series.py (a percentage is 0-100, bytes and rates are whole or
fractional counts that fit 64 bits); the rest is declared here. A key a new
capability adds to a sample (containers, checks, ...) is declared here too,
or every sample that carries it is refused.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from typing import Any

from server import series
from server.firehose.sources import MAX_SOURCES
from server.firehose.sources import NAME as SOURCE  # a log source's name
from server.fleet.tokens import NAME  # a host id, as add-agent takes it
from server.sampling.containers import MAX_ITEMS as MAX_CONTAINERS
from server.sampling.gpu import MAX_GPUS, MAX_WATTS
from server.sampling.gpu import NAME_LENGTH as GPU_NAME
from server.sampling.sensors import HIGHEST, LOWEST, MAX_FANS, MAX_RPM, MAX_TEMPERATURES
from server.sampling.sensors import NAME_LENGTH as SENSOR_NAME
from server.sampling.services import MAX_UNITS, UNIT_NAME, WORD
from server.sampling.smart import (
    DEVICE_LENGTH,
    MAX_COUNT,
    MAX_DRIVES,
    MAX_HOURS,
    MAX_WEAR,
    MODEL_LENGTH,
    PROTOCOL_LENGTH,
)

INT64 = 2**63
# No control characters and no line breaks of any kind (they would forge log lines).
PRINTABLE = re.compile(r"\A[^\x00-\x1f\x7f-\x9f\u2028\u2029]*\Z")
MAX_CORES = 1024
MAX_DISKS = 64  # mounts in one sample
MAX_PROCESSES = 100
MAX_ADDRESSES = 64
MAX_LEVELS = 80  # alert rules whose levels a static carries (one per disk, and the rest)


class Problem(Exception):
    """What is wrong, and where: the path is built on the way out, so a value that
    passes costs no string work."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message
        self.path: list[str] = []

    def at(self, key: Any) -> Problem:
        self.path.append(str(key)[:40])
        return self

    def __str__(self) -> str:
        where = ".".join(reversed(self.path))
        return f"{where} {self.message}" if where else self.message


class Shape:
    """A value's declaration; check() raises Problem for a value it does not admit."""

    null: bool = True

    def problem(self, value: Any, name: str) -> str | None:
        """What is wrong with `value` (named `name` in the answer), or None."""
        try:
            self.check(value)
        except Problem as found:
            return str(found.at(name))
        return None

    def check(self, value: Any) -> None:
        if value is None:
            if not self.null:
                raise Problem("is missing")
            return
        self.check_value(value)

    def check_value(self, value: Any) -> None:
        raise NotImplementedError


@dataclasses.dataclass(frozen=True)
class Number(Shape):
    low: float = 0
    high: float = INT64 - 1
    integer: bool = False
    null: bool = True

    def check_value(self, value: Any) -> None:
        kind = type(value)  # int and float first: the common case costs two compares
        if (kind is not int and kind is not float) and (
            isinstance(value, bool) or not isinstance(value, int | float)
        ):
            raise Problem("must be a number")
        if self.integer and not isinstance(value, int):
            raise Problem("must be a whole number")
        if not self.low <= value <= self.high:  # NaN fails this too
            raise Problem(f"must be within {self.low:g} and {self.high:g}")


@dataclasses.dataclass(frozen=True)
class Flag(Shape):
    null: bool = True

    def check_value(self, value: Any) -> None:
        if not isinstance(value, bool):
            raise Problem("must be true or false")


@dataclasses.dataclass(frozen=True)
class Text(Shape):
    longest: int = 256
    pattern: re.Pattern[str] = PRINTABLE
    null: bool = True

    def check_value(self, value: Any) -> None:
        if not isinstance(value, str):
            raise Problem("must be text")
        if len(value) > self.longest:
            raise Problem(f"is longer than {self.longest} characters")
        if not self.pattern.match(value):
            raise Problem("has characters it may not have")


@dataclasses.dataclass(frozen=True)
class ListOf(Shape):
    item: Shape
    longest: int
    exactly: int | None = None
    null: bool = True

    def check_value(self, value: Any) -> None:
        if not isinstance(value, list):
            raise Problem("must be a list")
        if len(value) > self.longest or self.exactly not in (None, len(value)):
            wanted = self.exactly if self.exactly is not None else f"at most {self.longest}"
            raise Problem(f"must have {wanted} items")
        check = self.item.check
        for i, item in enumerate(value):
            try:
                check(item)
            except Problem as found:
                raise found.at(i) from None


@dataclasses.dataclass(frozen=True)
class Table(Shape):
    fields: Mapping[str, Shape]
    required: frozenset[str] = frozenset()
    null: bool = True

    def __post_init__(self) -> None:
        # A shape that may not be null may not be absent.
        needed = self.required | {k for k, shape in self.fields.items() if not shape.null}
        object.__setattr__(self, "_needed", needed)

    def check_value(self, value: Any) -> None:
        if not isinstance(value, dict):
            raise Problem("must be a table")
        fields = self.fields
        for key, item in value.items():
            shape = fields.get(key)
            if shape is None:
                raise Problem("is not a key the contract knows").at(key)
            try:
                shape.check(item)
            except Problem as found:
                raise found.at(key) from None
        for key in self._needed:  # type: ignore[attr-defined]
            if value.get(key) is None:
                raise Problem("is missing").at(key)


@dataclasses.dataclass(frozen=True)
class MapOf(Shape):
    """A table whose keys are names (rule names, say), each value of one shape."""

    key: Text
    value: Shape
    longest: int
    null: bool = True

    def check_value(self, value: Any) -> None:
        if not isinstance(value, dict) or len(value) > self.longest:
            raise Problem(f"must be a table of at most {self.longest} entries")
        for key, item in value.items():
            try:
                self.key.check(key)
                self.value.check(item)
            except Problem as found:
                raise found.at(key) from None


# A series' unit gives its range (server/series.py).
UNIT_SHAPES: dict[str, Number] = {
    series.PERCENT: Number(0, 100),
    series.BYTES: Number(0, INT64 - 1),
    series.RATE: Number(0, INT64 - 1),
    series.LOAD: Number(0, 1e9),
}


def of_series(*path: str | int) -> Number:
    """The declared series at `path` (a disk's fields: the root filesystem's series)."""
    for s in series.SERIES:
        if s.path is not None and tuple(s.path) == path:
            return UNIT_SHAPES[s.unit]
    raise KeyError(f"no series at {path}")


PERCENT = UNIT_SHAPES[series.PERCENT]
BYTES = Number(0, INT64 - 1, integer=True)
DISK = Table(
    {
        "mount": Text(512),
        "device": Text(256),
        "fstype": Text(32),
        "percent": of_series("disks", "/", "percent"),
        "total": BYTES,
        "used": BYTES,
        "free": BYTES,
        "answering": Flag(),
    },
    required=frozenset({"mount", "device", "fstype"}),  # /metrics labels by all three
    null=False,
)
RATE = Number(0, INT64 - 1)
CONTAINER = Table(
    {
        "name": Text(128, null=False),
        "image": Text(256),
        "state": Text(16, null=False),
        "health": Text(16),
        "restarts": Number(0, 2**31, integer=True),
        "exit_code": Number(-(2**31), 2**31, integer=True),
        "started_at": Number(0, 2**40),
        "project": Text(128),
        "service": Text(128),
        "cpu_percent": Number(0, 100),
        "memory_used": BYTES,
        "memory_limit": BYTES,
        "pids": Number(0, 2**31, integer=True),
        "rx_bps": RATE,
        "tx_bps": RATE,
        "read_bps": RATE,
        "write_bps": RATE,
    },
    null=False,
)
CONTAINERS = Table(
    {
        "running": Number(0, 2**31, integer=True, null=False),
        "unhealthy": Number(0, 2**31, integer=True, null=False),
        "stopped": Number(0, 2**31, integer=True, null=False),
        "items": ListOf(CONTAINER, MAX_CONTAINERS),
    }
)
# systemd's units (server/sampling/services.py): names in systemd's own alphabet, states
# in its words, so a name is safe as a label, in a log line and in an alert's rule.
COUNT_OF = Number(0, 2**31, integer=True, null=False)
SERVICES = Table(
    {
        "failed": COUNT_OF,
        "restarting": COUNT_OF,
        "activating": COUNT_OF,
        "ok": COUNT_OF,
        "units": ListOf(
            Table(
                {
                    "name": Text(256, UNIT_NAME, null=False),
                    "state": Text(32, WORD, null=False),
                    "sub": Text(32, WORD),
                    "result": Text(32, WORD),
                    "restarts": Number(0, 2**31, integer=True),
                },
                null=False,
            ),
            MAX_UNITS,
            null=False,
        ),
    }
)
# Sensors and GPUs (server/sampling/sensors.py, gpu.py): °C within what a sensor
# may read, names as the kernel and the drivers give them.
CELSIUS = Number(LOWEST, HIGHEST)
SENSORS = Table(
    {
        "temperatures": ListOf(
            Table(
                {
                    "sensor": Text(SENSOR_NAME, null=False),
                    "label": Text(SENSOR_NAME, null=False),
                    "current": CELSIUS,
                    "high": CELSIUS,
                    "critical": CELSIUS,
                },
                null=False,
            ),
            MAX_TEMPERATURES,
            null=False,
        ),
        "fans": ListOf(
            Table(
                {
                    "sensor": Text(SENSOR_NAME, null=False),
                    "label": Text(SENSOR_NAME, null=False),
                    "rpm": Number(0, MAX_RPM, integer=True),
                },
                null=False,
            ),
            MAX_FANS,
            null=False,
        ),
        "battery": Table(
            {
                "percent": PERCENT,
                "plugged": Flag(),
                "seconds_left": Number(0, 2**31, integer=True),
            }
        ),
    }
)
GPU = Table(
    {
        "index": Number(0, 2 * MAX_GPUS, integer=True, null=False),
        "name": Text(GPU_NAME, null=False),
        "vendor": Text(16),
        "utilization_percent": PERCENT,
        "memory_used": BYTES,
        "memory_total": BYTES,
        "temperature": CELSIUS,
        "power": Number(0, MAX_WATTS),
        "suspended": Flag(),
    },
    null=False,
)
# Disk health (server/sampling/smart.py): what smartctl says of each drive.
HEALTH = re.compile(r"\A(passed|failed)\Z")
SECTORS = Number(0, MAX_COUNT, integer=True)
DRIVE = Table(
    {
        "device": Text(DEVICE_LENGTH, null=False),
        "model": Text(MODEL_LENGTH),
        "protocol": Text(PROTOCOL_LENGTH),
        "supported": Flag(),
        "standby": Flag(),
        "health": Text(6, HEALTH),
        "temperature": CELSIUS,
        "power_on_hours": Number(0, MAX_HOURS, integer=True),
        "reallocated": SECTORS,
        "pending": SECTORS,
        "uncorrectable": SECTORS,
        "media_errors": SECTORS,
        "wear_percent": Number(0, MAX_WEAR, integer=True),
    },
    null=False,
)

SAMPLE = Table(
    {
        "ts": Number(0, 2**40, null=False),  # epoch seconds (the hub checks the window)
        "seq": Number(0, INT64 - 1, integer=True),
        "mono": Number(0, 2**40),  # the agent's monotonic clock (server/fleet/clock.py)
        "host": Text(64, NAME),
        "cpu": Table(
            {"percent": of_series("cpu", "percent"), "per_core": ListOf(PERCENT, MAX_CORES)}
        ),
        "memory": Table(
            {
                "percent": of_series("memory", "percent"),
                "total": BYTES,
                "used": of_series("memory", "used"),
                "available": BYTES,
            }
        ),
        "swap": Table({"percent": of_series("swap", "percent"), "total": BYTES, "used": BYTES}),
        "disks": ListOf(DISK, MAX_DISKS),
        "disk_io": Table(
            {
                "read_bps": of_series("disk_io", "read_bps"),
                "write_bps": of_series("disk_io", "write_bps"),
            }
        ),
        "net": Table({"rx_bps": of_series("net", "rx_bps"), "tx_bps": of_series("net", "tx_bps")}),
        "load": ListOf(of_series("load", 0), 3, 3),  # 1, 5 and 15 minutes
        "uptime": Number(0, 2**40),
        "processes": ListOf(
            Table(
                {
                    "pid": Number(0, 2**31, integer=True),
                    "name": Text(256),
                    "cpu_percent": PERCENT,
                    "memory_percent": PERCENT,
                },
                required=frozenset({"name"}),
                null=False,
            ),
            MAX_PROCESSES,
        ),
        "containers": CONTAINERS,
        "services": SERVICES,
        "sensors": SENSORS,
        "gpus": ListOf(GPU, MAX_GPUS),
        "disk_health": ListOf(DRIVE, MAX_DRIVES),
    },
    null=False,
)
COUNT = Number(1, MAX_CORES, integer=True)
STATIC = Table(
    {
        "hostname": Text(255),
        "fqdn": Text(255),
        "os": Table({k: Text(128) for k in ("system", "release", "distribution", "machine")}),
        "cpu": Table({"model": Text(256), "logical": COUNT, "physical": COUNT}),
        "memory_total": BYTES,
        "swap_total": BYTES,
        "addresses": ListOf(
            Table({"interface": Text(64), "family": Text(16), "address": Text(64)}, null=False),
            MAX_ADDRESSES,
        ),
        "boot_time": Number(0, 2**40),
        "interval": Number(0.1, 3600),
        "history_seconds": Number(0, 8 * 86400, integer=True),
        "version": Text(64),
        "levels": MapOf(Text(600), MapOf(Text(16), Number(-1e12, 1e12), 8), MAX_LEVELS),
        "host": Text(64, NAME),
        "log_sources": ListOf(Text(32, SOURCE, null=False), MAX_SOURCES),
    },
    null=False,
)


def sample_problem(sample: Any) -> str | None:
    return SAMPLE.problem(sample, "sample")


def static_problem(static: Any) -> str | None:
    return STATIC.problem(static, "static")
