"""The sample's series, each declared once.

Every place that reads a series from a sample takes it from here: the
store's columns and downsampled points, the CSV header, the /metrics
families, the values the alert rules watch and their default levels, and the
levels the page colours its cards with (sent in `static`). A new series, or
the fleet's host label, is added here once.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

Sample = Mapping[str, Any]
Path = tuple[str | int, ...]

PERCENT, BYTES, RATE, LOAD = "percent", "bytes", "bytes/s", "load"


@dataclasses.dataclass(frozen=True)
class Levels:
    """An alert rule's levels, with the clear levels and hold times that stop flapping."""

    warning: float
    critical: float
    warning_clear: float
    critical_clear: float
    for_seconds: float  # how long a level must hold before it fires
    clear_seconds: float  # how long a clear must hold before it clears


@dataclasses.dataclass(frozen=True)
class Series:
    metric: str  # its name in `bands`, in alerts and in the CSV's column family
    path: Path | None  # where it sits in a sample; None: derived (see value())
    unit: str
    description: str
    column: str | None = None  # store and CSV column; None: not kept on disk
    prometheus: str | None = None  # /metrics family; percentages become 0-1 ratios
    rule: str | None = None  # the alert rule that watches it
    levels: Levels | None = None  # that rule's default levels

    @property
    def per_disk(self) -> bool:
        """Kept for the root filesystem; exported and watched for every disk."""
        return self.path is not None and self.path[0] == "disks"

    def value(self, sample: Sample, cores: int = 1) -> Any:
        """This series' value in `sample` (None if missing or unreadable)."""
        if self.path is None:  # load.per_core
            load = lookup(sample, ("load", 0))
            return None if load is None else load / max(cores, 1)
        return lookup(sample, self.path)

    @property
    def digits(self) -> int:
        """Decimals the sample carries: whole bytes, loads to 2, percentages to 1."""
        return 0 if self.unit in (BYTES, RATE) else 2 if self.unit == LOAD else 1

    def rounded_sql(self, expression: str) -> str:
        """`expression` (an average) rounded in SQL as the sample carries it; the
        store rounds when it folds, so a read of 10,000 points rounds nothing."""
        if self.digits == 0:
            return f"CAST(ROUND({expression}) AS INTEGER)"
        return f"ROUND({expression}, {self.digits})"


SERIES: tuple[Series, ...] = (
    Series(
        "cpu.percent",
        ("cpu", "percent"),
        PERCENT,
        "CPU busy share of all cores, last tick.",
        column="cpu_percent",
        prometheus="dashboard_cpu_usage_ratio",
        rule="cpu",
        levels=Levels(75, 90, 70, 85, 30, 30),
    ),
    Series(
        "memory.percent",
        ("memory", "percent"),
        PERCENT,
        "Memory used share.",
        column="memory_percent",
        prometheus="dashboard_memory_usage_ratio",
        rule="memory",
        levels=Levels(85, 95, 80, 90, 60, 60),
    ),
    Series(
        "memory.used",
        ("memory", "used"),
        BYTES,
        "Memory used in bytes.",
        column="memory_used",
        prometheus="dashboard_memory_used_bytes",
    ),
    Series(
        "swap.percent",
        ("swap", "percent"),
        PERCENT,
        "Swap used share.",
        column="swap_percent",
        prometheus="dashboard_swap_usage_ratio",
        rule="swap",
        levels=Levels(80, 95, 75, 90, 60, 60),
    ),
    Series(
        "disk./.percent",
        ("disks", "/", "percent"),
        PERCENT,
        "Filesystem used share.",
        column="disk_root_percent",
        prometheus="dashboard_filesystem_usage_ratio",
        rule="disk",
        levels=Levels(80, 90, 78, 88, 60, 60),
    ),
    Series(
        "disk_io.read_bps",
        ("disk_io", "read_bps"),
        RATE,
        "Disk read rate over the last tick.",
        column="disk_read_bps",
        prometheus="dashboard_disk_read_bytes_per_second",
    ),
    Series(
        "disk_io.write_bps",
        ("disk_io", "write_bps"),
        RATE,
        "Disk write rate over the last tick.",
        column="disk_write_bps",
        prometheus="dashboard_disk_written_bytes_per_second",
    ),
    Series(
        "net.rx_bps",
        ("net", "rx_bps"),
        RATE,
        "Network receive rate (no loopback).",
        column="net_rx_bps",
        prometheus="dashboard_network_receive_bytes_per_second",
    ),
    Series(
        "net.tx_bps",
        ("net", "tx_bps"),
        RATE,
        "Network transmit rate (no loopback).",
        column="net_tx_bps",
        prometheus="dashboard_network_transmit_bytes_per_second",
    ),
    Series(
        "load.1",
        ("load", 0),
        LOAD,
        "1m load average.",
        column="load1",
        prometheus="node_load1",
    ),
    Series(
        "load.per_core",
        None,
        LOAD,
        "1m load average per logical core.",
        rule="load",
        levels=Levels(1.5, 3.0, 1.2, 2.5, 120, 120),
    ),
)


@dataclasses.dataclass(frozen=True)
class Chart:
    """A chart of the host page: its lines are series of SERIES, one unit."""

    id: str  # the page's element is chart-<id>; the browser tests find it there
    title: str
    lines: tuple[tuple[str, str], ...]  # (legend label, series metric)

    @property
    def unit(self) -> str:
        """The unit of its lines: percent charts run 0-100, rates fit their data."""
        return BY_METRIC[self.lines[0][1]].unit


CHARTS: tuple[Chart, ...] = (
    Chart("cpu", "CPU %", (("total", "cpu.percent"),)),
    Chart("memory", "Memory %", (("used", "memory.percent"), ("swap", "swap.percent"))),
    Chart("disk", "Disk I/O", (("read", "disk_io.read_bps"), ("write", "disk_io.write_bps"))),
    Chart("net", "Network", (("rx", "net.rx_bps"), ("tx", "net.tx_bps"))),
)

BY_METRIC: dict[str, Series] = {s.metric: s for s in SERIES}
CHARTED: frozenset[str] = frozenset(metric for c in CHARTS for _, metric in c.lines)
STORED: tuple[Series, ...] = tuple(s for s in SERIES if s.column)
WATCHED: dict[str, Series] = {s.rule: s for s in SERIES if s.rule}


def lookup(sample: Any, path: Path) -> Any:
    """The value at `path`: dict keys, list indexes, and disks by their mount."""
    node = sample
    for key in path:
        if isinstance(node, Mapping):
            node = node.get(key)
        elif isinstance(node, list) and isinstance(key, int):
            node = node[key] if -len(node) <= key < len(node) else None
        elif isinstance(node, list):
            node = next((d for d in node if isinstance(d, Mapping) and d.get("mount") == key), None)
        else:
            return None
    return node


def place(sample: dict[str, Any], path: Path, value: Any) -> None:
    """Put `value` at `path` in a sample skeleton (see server/history/tiers.py, point())."""
    node: Any = sample
    for key in path[:-1]:
        node = lookup(node, (key,))
    node[path[-1]] = value
