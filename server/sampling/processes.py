"""The busiest processes: pid, name, CPU and memory share (never command lines).

On Linux each process is one read of /proc/<pid>/stat, which holds all four
figures: the name (comm), CPU ticks, start time and resident pages. psutil's
Process objects read three files a process (stat, statm, and the online CPUs
for cpu_percent) with a layer of Python around each: 2.5 ms a scan of 65
processes here, against 0.85 ms. Each stat file stays open between scans and
is read again from its start (openfiles.py): opening it cost most of a scan.
Elsewhere psutil reads them.

The name is the kernel's (comm, at most 15 bytes), never psutil's name(),
which extends a 15-character comm with the start of the command line: a
process that sets its title ("sshd: alice [priv]", "postgres: user db
10.0.0.5") would show its arguments.
"""

from __future__ import annotations

import functools
import os
import sys
import time
from collections.abc import Iterator
from typing import Any, NamedTuple

import psutil

from server.sampling import host
from server.sampling.collector import Collector
from server.sampling.openfiles import OpenFiles, read_once

CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
MAX_KEPT = 8192  # processes whose stat file is kept open between scans


class Reading(NamedTuple):
    key: tuple[int, float]  # (pid, start time): a reused pid is another process
    name: str
    cpu_seconds: float  # user + system, since it started
    rss: int  # bytes


def proc_readings(proc_root: str = "/proc", files: OpenFiles | None = None) -> Iterator[Reading]:
    """Every process's reading from /proc/<pid>/stat; one gone or hidden meanwhile is
    left out. `files`: the stat files kept open between scans (then swept once a scan)."""
    read = files.raw if files is not None else functools.partial(read_once, size=4096)
    for entry in os.listdir(proc_root):
        if not entry.isdigit():
            continue
        try:
            raw = read(f"{proc_root}/{entry}/stat")
        except OSError:
            continue  # exited since the listing, or hidden from us
        if raw is None:
            continue
        # "pid (comm) state ...": comm may hold spaces and parentheses, so it
        # ends at the last ')'.
        opening, closing = raw.find(b"("), raw.rfind(b")")
        fields = raw[closing + 2 :].split(None, 22)  # rss is field 21: the rest stays whole
        if len(fields) < 22 or fields[0] == b"Z":
            continue  # a zombie has no memory and no more CPU to show
        yield Reading(
            key=(int(entry), int(fields[19]) / CLOCK_TICKS),
            name=raw[opening + 1 : closing].decode("utf-8", "replace"),
            cpu_seconds=(int(fields[11]) + int(fields[12])) / CLOCK_TICKS,
            rss=int(fields[21]) * PAGE_SIZE,
        )
    if files is not None:
        files.sweep()  # a process not in this scan has exited: its file is closed


def psutil_readings() -> Iterator[Reading]:
    """The same readings through psutil, where there is no /proc."""
    for proc in psutil.process_iter():
        try:
            with proc.oneshot():
                times = proc.cpu_times()
                reading = Reading(
                    key=(proc.pid, proc.create_time()),
                    name=os.path.basename(proc.name()),
                    cpu_seconds=times.user + times.system,
                    rss=proc.memory_info().rss,
                )
        except psutil.Error:
            continue  # gone, a zombie, or another user's that is hidden from us
        yield reading


class ProcessTable:
    """The top processes by CPU since the previous scan, then by memory."""

    def __init__(
        self, top: int, cpu_count: int, memory_total: int, proc_root: str | None = None
    ) -> None:
        self.top = top
        self._cpu_count = max(cpu_count, 1)
        self._memory_total = max(memory_total, 1)
        if proc_root is None and sys.platform.startswith("linux"):
            proc_root = "/proc"
        self._proc_root = proc_root
        # Each process's stat file stays open from one scan to the next (an
        # eighth of the open-file limit at most, the rest opened as they come).
        self._files = OpenFiles(limit=MAX_KEPT, share=8, size=4096)
        self._before: dict[tuple[int, float], float] = {}
        self._before_at: float | None = None

    def readings(self) -> Iterator[Reading]:
        if self._proc_root is not None:
            return proc_readings(self._proc_root, self._files)
        return psutil_readings()

    def scan(self) -> list[dict[str, Any]]:
        now = time.monotonic()
        elapsed = None if self._before_at is None else max(now - self._before_at, 1e-6)
        before, self._before = self._before, {}
        rows = []
        for reading in self.readings():
            self._before[reading.key] = reading.cpu_seconds
            previous = before.get(reading.key)
            # A process first seen shows 0 % until the next scan, as psutil's cpu_percent.
            used = 0.0 if previous is None or elapsed is None else reading.cpu_seconds - previous
            rows.append((used, reading))
        self._before_at = now
        rows.sort(key=lambda row: (row[0], row[1].rss), reverse=True)
        return [
            {
                "pid": reading.key[0],
                "name": reading.name,
                # Shares of the whole machine, so 0-100 like every percentage.
                "cpu_percent": _share(used / (elapsed or 1) / self._cpu_count),
                "memory_percent": _share(reading.rss / self._memory_total),
            }
            for used, reading in rows[: self.top]
        ]


def _share(fraction: float) -> float:
    return round(min(max(100 * fraction, 0.0), 100.0), 1)


class Processes(Collector):
    """{"processes": the top `top` rows}, scanned every `every` ticks.

    Scanning every process is most of a tick's cost: it is done every few
    ticks and the last table shows in between (its CPU % then covers the
    whole span between scans, which is steadier anyway). With top 0 the
    table is always [] and nothing is scanned.
    """

    name = "processes"

    def __init__(self, top: int = 5, every: int = 5) -> None:
        super().__init__()
        self._top = top
        self._every = max(every, 1)
        self._ticks = 0
        self._rows: list[dict[str, Any]] | None = []
        self._table = ProcessTable(
            top,
            psutil.cpu_count(logical=True) or 1,
            self.failures.read("memory_total", host.memory_total) or 1,
        )
        if self._top:
            self._rows = self.failures.read(self.name, self._table.scan)

    def read(self) -> dict[str, Any]:
        self._ticks += 1
        if not self._top:
            return {"processes": []}
        if self._ticks % self._every == 0 or self._rows is None:
            self._rows = None  # until a scan succeeds
            self._rows = self._table.scan()
        return {"processes": self._rows}

    def null(self) -> dict[str, Any]:
        return {"processes": None}
