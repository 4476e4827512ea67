"""Disk and network byte counters, the rates between two readings, and the
collectors that read them each tick (DiskIO, Net).

On Linux the counters are one read each of /proc/diskstats and /proc/net/dev,
parsed for the two numbers a rate needs: psutil builds a named tuple of every
field for every device first, which costs more than the rest of the read (a
tenth of an idle server's tick). Elsewhere psutil reads them.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Mapping
from typing import Any

import psutil

from server.sampling.collector import Collector

LINUX = sys.platform.startswith("linux")
SECTOR = 512  # /proc/diskstats counts 512-byte sectors, whatever the disk's own
# Block devices whose I/O is not a disk's: loop images, compressed RAM, RAM disks.
VIRTUAL_DISK_PREFIXES = ("loop", "ram", "zram")

Counters = dict[str, tuple[int, int]]


def whole_disks(sys_block: str = "/sys/block") -> frozenset[str]:
    """The block devices whose I/O is a disk's, each byte once.

    /proc/diskstats also counts a partition's bytes in its disk, and a device
    mapper (LVM, dm-crypt) or md RAID device's bytes in the disks under it: so
    only whole disks (in /sys/block) that stack on nothing (no slaves) count.
    """
    found = set()
    for name in os.listdir(sys_block):
        if name.startswith(VIRTUAL_DISK_PREFIXES):
            continue
        try:
            stacked = bool(os.listdir(os.path.join(sys_block, name, "slaves")))
        except OSError:
            stacked = False  # no slaves directory: an ordinary disk
        if not stacked:
            found.add(name)
    return frozenset(found)


def read_proc(path: str) -> bytes:
    handle = os.open(path, os.O_RDONLY)
    try:
        return os.read(handle, 1 << 20)
    finally:
        os.close(handle)


def parse_diskstats(text: bytes, disks: frozenset[str]) -> Counters:
    """(bytes read, bytes written) of each of `disks`, from /proc/diskstats."""
    found = {}
    for line in text.splitlines():
        fields = line.split()
        # major minor name reads merged sectors-read ms writes merged sectors-written ...
        if len(fields) >= 10 and (name := fields[2].decode()) in disks:
            found[name] = (int(fields[5]) * SECTOR, int(fields[9]) * SECTOR)
    return found


def parse_net_dev(text: bytes) -> Counters:
    """(bytes received, bytes sent) of each interface but loopback, from /proc/net/dev."""
    found = {}
    for line in text.splitlines()[2:]:  # two lines of headings
        name, _, rest = line.partition(b":")
        fields = rest.split()
        # Loopback traffic is the machine talking to itself (this dashboard
        # included), not network load.
        if len(fields) >= 9 and (interface := name.strip().decode()) != "lo":
            found[interface] = (int(fields[0]), int(fields[8]))
    return found


def disk_counters(disks: frozenset[str] | None) -> Counters:
    if LINUX and disks is not None:
        return parse_diskstats(read_proc("/proc/diskstats"), disks)
    counters = psutil.disk_io_counters(perdisk=True, nowrap=False) or {}
    return {
        name: (c.read_bytes, c.write_bytes)
        for name, c in counters.items()
        if (name in disks if disks is not None else not name.startswith(VIRTUAL_DISK_PREFIXES))
    }


def net_counters() -> Counters:
    if LINUX:
        return parse_net_dev(read_proc("/proc/net/dev"))
    counters = psutil.net_io_counters(pernic=True, nowrap=False) or {}
    return {name: (c.bytes_recv, c.bytes_sent) for name, c in counters.items() if name != "lo"}


def counter_rate(
    before: Mapping[str, tuple[int, int]],
    after: Mapping[str, tuple[int, int]],
    seconds: float,
) -> tuple[int, int]:
    """Bytes/s summed over devices seen in both readings.

    A device that vanished or appeared is left out, and a counter that went
    backwards (reset, wrap, driver reload) counts as 0, so a rate is never
    negative.
    """
    first = second = 0
    for name, (a_before, b_before) in before.items():
        if name in after:
            a_after, b_after = after[name]
            first += max(a_after - a_before, 0)
            second += max(b_after - b_before, 0)
    seconds = max(seconds, 1e-6)
    return round(first / seconds), round(second / seconds)


def rate(
    before: Mapping[str, tuple[int, int]] | None,
    after: Mapping[str, tuple[int, int]] | None,
    seconds: float,
) -> tuple[int | None, int | None]:
    """counter_rate, or nothing when either reading failed."""
    if before is None or after is None:
        return None, None
    return counter_rate(before, after, seconds)


class Rates:
    """The last reading of some counters, and the rates since it at the next."""

    def __init__(self) -> None:
        self.before: Counters | None = None
        self._at = time.monotonic()

    def next(self, read: Callable[[], Counters]) -> tuple[int | None, int | None]:
        """Reads again: (None, None) until two readings in a row succeed; raises what read does."""
        now = time.monotonic()
        elapsed, self._at = now - self._at, now
        before, self.before = self.before, None  # a failed reading starts again
        self.before = after = read()
        return rate(before, after, elapsed)


class DiskIO(Collector):
    """{"disk_io": {"read_bps", "write_bps"}}: the whole disks' bytes/s since the last tick.

    The list of whole disks is read again every `devices_every` ticks, with
    the mount table (a disk added or gone).
    """

    name = "disk_io"

    def __init__(self, devices_every: int = 10) -> None:
        super().__init__()
        self._devices_every = max(devices_every, 1)
        self._ticks = 0
        self._rates = Rates()
        self._devices = self.failures.read("disk_io.devices", whole_disks)
        self._rates.before = self.failures.read(self.name, self._counters)

    def read(self) -> dict[str, Any]:
        self._ticks += 1
        if self._ticks == 1 or self._ticks % self._devices_every == 0:
            self._devices = self.failures.read("disk_io.devices", whole_disks)
        read_bps, write_bps = self._rates.next(self._counters)
        return {"disk_io": {"read_bps": read_bps, "write_bps": write_bps}}

    def null(self) -> dict[str, Any]:
        return {"disk_io": {"read_bps": None, "write_bps": None}}

    def _counters(self) -> Counters:
        return disk_counters(self._devices)


class Net(Collector):
    """{"net": {"rx_bps", "tx_bps"}}: bytes/s through every interface but loopback."""

    name = "net"

    def __init__(self) -> None:
        super().__init__()
        self._rates = Rates()
        self._rates.before = self.failures.read(self.name, net_counters)

    def read(self) -> dict[str, Any]:
        rx_bps, tx_bps = self._rates.next(net_counters)
        return {"net": {"rx_bps": rx_bps, "tx_bps": tx_bps}}

    def null(self) -> dict[str, Any]:
        return {"net": {"rx_bps": None, "tx_bps": None}}
