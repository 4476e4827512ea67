"""Measuring cost: CPU per tick in-process, and a server process's CPU and RSS."""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
from typing import Any

import psutil

from server.data import DynamicData
from server.worker import Sampler


def encode_once(event: str, data: dict[str, Any]) -> None:
    """What a broadcast costs the sampler: the one JSON encode."""
    json.dumps(data)


def sampler_tick(ticks: int) -> float:
    """CPU seconds per tick: the full sample and its one JSON encode."""
    sampler = Sampler(
        DynamicData(),
        broadcast=encode_once,
        interval=1.0,
        history_seconds=900,
    )
    sampler.tick()  # warm: the first process scan creates the Process objects
    started = time.process_time()
    for _ in range(ticks):
        sampler.tick()
    return (time.process_time() - started) / ticks


def psutil_floor_tick(ticks: int, process_every: int = 5, mount_table_every: int = 10) -> float:
    """CPU seconds per tick for the same psutil calls, bare: the floor.

    Like the sampler, it scans the processes every `process_every` ticks and
    reads the mount table every `mount_table_every` ticks.
    """
    count = [0]
    mounts: list[str] = []

    def once() -> None:
        count[0] += 1
        psutil.cpu_times(percpu=True)
        psutil.virtual_memory()
        psutil.swap_memory()
        if not count[0] % mount_table_every or not mounts:
            mounts[:] = [
                part.mountpoint
                for part in psutil.disk_partitions(all=True)
                if part.mountpoint == "/" or part.device.startswith("/dev/")
            ]
        for mount in mounts:
            with contextlib.suppress(OSError):
                psutil.disk_usage(mount)
        psutil.disk_io_counters(perdisk=True, nowrap=False)
        psutil.net_io_counters(pernic=True, nowrap=False)
        psutil.getloadavg()
        if count[0] % process_every:
            return
        for proc in psutil.process_iter():
            try:
                with proc.oneshot():
                    proc.cpu_percent(interval=None)
                    proc.name()
                    proc.memory_percent()
            except psutil.Error:
                pass

    once()
    started = time.process_time()
    for _ in range(ticks):
        once()
    return (time.process_time() - started) / ticks


def thread_runtimes(pid: int) -> dict[int, int] | None:
    """Each live thread's CPU time in ns (Linux schedstat), or None where there is none."""
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return None
    found = {}
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as handle:
                found[int(tid)] = int(handle.read().split()[0])
        except (OSError, ValueError, IndexError):
            continue  # ended meanwhile
    return found or None


class ProcessMeter:
    """CPU % (of one core) and RSS of a process over a span of time.

    CPU in nanoseconds from each thread's schedstat where Linux has it: the
    process's utime + stime come in 10 ms ticks, 0.03 % of 30 s, a tenth of
    an idle server's figure. Threads are read every 0.5 s, so one that ends
    within the span loses at most its last half second.
    """

    def __init__(self, pid: int) -> None:
        self.process = psutil.Process(pid)
        self._cpu0 = 0.0
        self._t0 = 0.0
        self._peak_rss = 0
        self._base: dict[int, int] | None = None
        self._seen: dict[int, int] = {}
        self._stop = threading.Event()
        self._watcher: threading.Thread | None = None

    def _cpu(self) -> float:
        times = self.process.cpu_times()
        return times.user + times.system

    def _note_threads(self) -> None:
        for tid, runtime in (thread_runtimes(self.process.pid) or {}).items():
            self._seen[tid] = max(runtime, self._seen.get(tid, 0))

    def rss_mib(self) -> float:
        return self.process.memory_info().rss / 2**20

    def start(self) -> None:
        self._base = thread_runtimes(self.process.pid)
        self._seen = dict(self._base or {})
        self._cpu0, self._t0 = self._cpu(), time.monotonic()
        self._peak_rss = self.process.memory_info().rss
        self._stop.clear()
        self._watcher = threading.Thread(target=self._watch, daemon=True)
        self._watcher.start()

    def _watch(self) -> None:
        while not self._stop.wait(0.5):
            try:
                self._peak_rss = max(self._peak_rss, self.process.memory_info().rss)
            except psutil.Error:
                return
            self._note_threads()

    def stop(self) -> tuple[float, float]:
        """(CPU % since start, peak RSS in MiB)."""
        elapsed = time.monotonic() - self._t0
        if self._base is not None:
            self._note_threads()
            used = sum(runtime - self._base.get(tid, 0) for tid, runtime in self._seen.items())
            cpu = used / 1e9 / elapsed * 100
        else:
            cpu = (self._cpu() - self._cpu0) / elapsed * 100
        self._stop.set()
        if self._watcher is not None:
            self._watcher.join()
        return cpu, self._peak_rss / 2**20

    def measure(self, seconds: float) -> tuple[float, float]:
        self.start()
        time.sleep(seconds)
        return self.stop()
