"""Measuring this machine with psutil: StaticData once, DynamicData every tick.

No Flask here. A value that cannot be read is None (null in JSON), never a
made-up 0, and the reason is logged once, when it starts failing.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import platform
import socket
import time
from collections.abc import Callable
from typing import Any, TypeVar

import psutil

from server.logs import describe_error
from server.sampling.counters import disk_counters, net_counters, rate, whole_disks
from server.sampling.mounts import GONE, NOT_A_DIRECTORY, Filesystem, MountWatch, real_filesystems
from server.sampling.processes import ProcessTable

log = logging.getLogger("dashboard.data")

T = TypeVar("T")

# psutil raises AccessDenied / NoSuchProcess (psutil.Error); /proc and /sys
# readings raise OSError (FileNotFoundError when a device vanishes).
READ_ERRORS = (psutil.Error, OSError, RuntimeError, NotImplementedError)


class FailureLog:
    """Reads values, turning failures into None and logging each cause once."""

    def __init__(self) -> None:
        self._failing: set[str] = set()

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


# ---------------------------------------------------------------- static


@dataclasses.dataclass(frozen=True)
class StaticData:
    hostname: str
    fqdn: str
    os: dict[str, str | None]
    cpu: dict[str, Any]
    memory_total: int | None
    swap_total: int | None
    addresses: list[dict[str, str]]
    boot_time: float | None
    interval: float
    history_seconds: int
    version: str
    # Per alert rule, the warning and critical levels the page colours cards with.
    levels: dict[str, dict[str, float]] = dataclasses.field(default_factory=dict)
    host: str = ""  # this host's id in the fleet

    @classmethod
    def collect(
        cls,
        interval: float,
        history_seconds: int,
        version: str,
        levels: dict[str, dict[str, float]] | None = None,
    ) -> StaticData:
        reader = FailureLog()
        return cls(
            hostname=socket.gethostname(),
            fqdn=socket.getfqdn(),
            os={
                "system": platform.system(),
                "release": platform.release(),
                "distribution": _distribution(),
                "machine": platform.machine(),
            },
            cpu={
                "model": _cpu_model(),
                "logical": reader.read("cpu.logical", lambda: psutil.cpu_count(logical=True)),
                "physical": reader.read("cpu.physical", lambda: psutil.cpu_count(logical=False)),
            },
            memory_total=reader.read("memory_total", lambda: psutil.virtual_memory().total),
            swap_total=reader.read("swap_total", lambda: psutil.swap_memory().total),
            addresses=reader.read("addresses", _addresses) or [],
            boot_time=reader.read("boot_time", psutil.boot_time),
            interval=interval,
            history_seconds=history_seconds,
            version=version,
            levels=levels or {},
        )

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _distribution() -> str | None:
    try:
        release = platform.freedesktop_os_release()
    except OSError:
        return None
    return release.get("PRETTY_NAME") or release.get("NAME")


def _cpu_model() -> str | None:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as handle:
            for line in handle:
                key, _, value = line.partition(":")
                if key.strip() in ("model name", "Model", "Hardware", "cpu model"):
                    return value.strip()
    except OSError:
        pass
    return platform.processor() or None


_FAMILIES = {socket.AF_INET: "ipv4", socket.AF_INET6: "ipv6"}


def _addresses() -> list[dict[str, str]]:
    """IP addresses per interface, non-loopback IPv4 first (the 'main' one)."""
    found = []
    for interface, addrs in psutil.net_if_addrs().items():
        for addr in addrs:
            family = _FAMILIES.get(addr.family)
            if family:
                found.append({"interface": interface, "family": family, "address": addr.address})

    def rank(entry: dict[str, str]) -> tuple[int, int, str]:
        loopback = entry["interface"] == "lo" or entry["address"] in ("127.0.0.1", "::1")
        return (loopback, entry["family"] != "ipv4", entry["interface"])

    return sorted(found, key=rank)


# ---------------------------------------------------------------- dynamic


def _percent(value: float | None) -> float | None:
    return None if value is None else round(min(max(value, 0.0), 100.0), 1)


def _cpu_times() -> list[Any]:
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
        per_core.append(_percent(100 * busy / total) if total > 0 else 0.0)
    return (_percent(100 * busy_sum / total_sum) if total_sum > 0 else 0.0), per_core


class DynamicData:
    """Keeps previous counters; sample() returns one JSON-ready dict."""

    def __init__(
        self, top_processes: int = 5, process_every: int = 5, mount_table_every: int = 10
    ) -> None:
        self._top = top_processes
        # Scanning every process is most of a tick's cost: do it every few
        # ticks and show the last table in between (its CPU % then covers the
        # whole span between scans, which is steadier anyway).
        self._process_every = max(process_every, 1)
        # The mount table changes rarely and reading it costs as much as the
        # rest of a tick: it is read again every few ticks (and the list of
        # disks with it). A mount that went away in between says so at once
        # (its probe finds it gone); a disk that did counts for nothing.
        self._mount_table_every = max(mount_table_every, 1)
        self._ticks = 0
        self._processes: list[dict[str, Any]] | None = []
        self._filesystems: list[Filesystem] | None = None
        self._reader = FailureLog()
        self._mounts = MountWatch()
        self._table = ProcessTable(
            top_processes,
            psutil.cpu_count(logical=True) or 1,
            self._reader.read("memory_total", lambda: psutil.virtual_memory().total) or 1,
        )
        self._boot_time = self._reader.read("boot_time", psutil.boot_time)
        self._cpu_before = self._reader.read("cpu", _cpu_times)
        if self._top:
            self._processes = self._reader.read("processes", self._table.scan)
        self._last_time = time.monotonic()
        self._whole_disks = self._reader.read("disk_io.devices", whole_disks)
        self._disk_before = self._reader.read("disk_io", self._disk_io_counters)
        self._net_before = self._reader.read("net", net_counters)

    def sample(self) -> dict[str, Any]:
        read = self._reader.read
        self._ticks += 1
        filesystems = self._mount_table()
        if filesystems is not None:
            # The prober reads them while this thread reads the rest.
            self._mounts.ask([fs.mount for fs in filesystems])
        now = time.monotonic()
        elapsed, self._last_time = now - self._last_time, now
        disk_after = read("disk_io", self._disk_io_counters)
        net_after = read("net", net_counters)
        disk_rate = rate(self._disk_before, disk_after, elapsed)
        net_rate = rate(self._net_before, net_after, elapsed)
        self._disk_before, self._net_before = disk_after, net_after
        cpu_after = read("cpu", _cpu_times)
        cpu_percent, per_core = cpu_percents(self._cpu_before, cpu_after)
        self._cpu_before = cpu_after
        return {
            "ts": round(time.time(), 3),
            "cpu": {"percent": cpu_percent, "per_core": per_core},
            "memory": read("memory", self._memory),
            "swap": read("swap", self._swap),
            "disks": None if filesystems is None else self._disks(filesystems),
            "disk_io": {"read_bps": disk_rate[0], "write_bps": disk_rate[1]},
            "net": {"rx_bps": net_rate[0], "tx_bps": net_rate[1]},
            "load": read("load", lambda: [round(v, 2) for v in psutil.getloadavg()]),
            "uptime": None if self._boot_time is None else round(time.time() - self._boot_time, 1),
            "processes": self._process_table(),
        }

    def _mount_table(self) -> list[Filesystem] | None:
        if self._filesystems is None or self._ticks % self._mount_table_every == 0:
            self._filesystems = self._reader.read("disks", real_filesystems)
            self._whole_disks = self._reader.read("disk_io.devices", whole_disks)
        return self._filesystems

    def _disk_io_counters(self) -> dict[str, tuple[int, int]]:
        return disk_counters(self._whole_disks)

    def _process_table(self) -> list[dict[str, Any]] | None:
        if not self._top:
            return []
        if self._ticks % self._process_every == 0 or self._processes is None:
            self._processes = self._reader.read("processes", self._table.scan)
        return self._processes

    @staticmethod
    def _memory() -> dict[str, Any]:
        vm = psutil.virtual_memory()
        return {
            "percent": _percent(vm.percent),
            "total": vm.total,
            "used": vm.used,
            "available": vm.available,
        }

    @staticmethod
    def _swap() -> dict[str, Any]:
        sm = psutil.swap_memory()
        return {"percent": _percent(sm.percent), "total": sm.total, "used": sm.used}

    def _disks(self, filesystems: list[Filesystem]) -> list[dict[str, Any]]:
        usage = self._mounts.usage()
        disks = []
        for fs in filesystems:
            value, answering = usage.get(fs.mount, (None, False))
            # A read that raised is logged once (FailureLog); it did answer, with an error.
            value = self._reader.read(f"disk {fs.mount}", functools.partial(_value_of, value))
            if value in (GONE, NOT_A_DIRECTORY):
                continue
            disks.append(
                {
                    "mount": fs.mount,
                    "device": fs.device,
                    "fstype": fs.fstype,
                    "percent": None if value is None else _percent(value.percent),
                    "total": None if value is None else value.total,
                    "used": None if value is None else value.used,
                    "free": None if value is None else value.free,
                    "answering": answering,
                }
            )
        return disks


def _value_of(value: Any) -> Any:
    if isinstance(value, BaseException):
        raise value
    return value


class OwnUsage:
    """This server process's own cost: CPU (% of one core) and resident memory.

    CPU from time.process_time() (a clock read, no /proc file): this runs
    every tick of an otherwise idle server, where each file read shows.
    """

    def __init__(self) -> None:
        self._process = psutil.Process()
        self._reader = FailureLog()
        self._last = (time.monotonic(), time.process_time())

    def read(self) -> dict[str, Any]:
        now, used = time.monotonic(), time.process_time()
        (then, before), self._last = self._last, (now, used)
        cpu = 100 * (used - before) / (now - then) if now > then else 0.0
        return {
            "cpu_percent": round(max(cpu, 0.0), 1),
            "rss": self._reader.read("server.rss", lambda: self._process.memory_info().rss),
        }
