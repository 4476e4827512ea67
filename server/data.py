"""Measuring this machine with psutil: StaticData once, DynamicData every tick.

No Flask here. A value that cannot be read is None (null in JSON), never a
made-up 0, and the reason is logged once, when it starts failing.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
import platform
import socket
import sys
import time
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import psutil

from server.blocking import Pending

log = logging.getLogger("dashboard.data")

T = TypeVar("T")

# psutil raises AccessDenied / NoSuchProcess (psutil.Error); /proc and /sys
# readings raise OSError (FileNotFoundError when a device vanishes).
READ_ERRORS = (psutil.Error, OSError, RuntimeError, NotImplementedError)

# Filesystems that are not storage: kernel views, memory, images, layers.
PSEUDO_FSTYPES = frozenset(
    [
        "autofs",
        "binfmt_misc",
        "bpf",
        "cgroup",
        "cgroup2",
        "configfs",
        "debugfs",
        "devpts",
        "devtmpfs",
        "efivarfs",
        "fusectl",
        "hugetlbfs",
        "mqueue",
        "nsfs",
        "overlay",
        "proc",
        "pstore",
        "ramfs",
        "rpc_pipefs",
        "securityfs",
        "selinuxfs",
        "squashfs",
        "sysfs",
        "tmpfs",
        "tracefs",
        "aufs",
        "iso9660",
        "fuse.lxcfs",
        "fuse.snapfuse",
        "fuse.gvfsd-fuse",
    ]
)
# Network filesystems are left out too: statvfs on a hung NFS server blocks the tick.
NETWORK_FSTYPES = frozenset(["nfs", "nfs4", "cifs", "smb3", "sshfs", "fuse.sshfs", "9p"])
# Block devices whose I/O is not a disk's: loop images, compressed RAM, RAM disks.
VIRTUAL_DISK_PREFIXES = ("loop", "ram", "zram")


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


def describe_error(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


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


def _disk_io_counters() -> dict[str, tuple[int, int]]:
    counters = psutil.disk_io_counters(perdisk=True, nowrap=False) or {}
    return {
        name: (c.read_bytes, c.write_bytes)
        for name, c in counters.items()
        if not name.startswith(VIRTUAL_DISK_PREFIXES)
    }


def _net_io_counters() -> dict[str, tuple[int, int]]:
    counters = psutil.net_io_counters(pernic=True, nowrap=False) or {}
    # Loopback traffic is the machine talking to itself (this dashboard
    # included), not network load.
    return {name: (c.bytes_recv, c.bytes_sent) for name, c in counters.items() if name != "lo"}


def is_real_filesystem(mount: str, device: str, fstype: str) -> bool:
    if mount == "/":
        return True  # always shown, even as a container's overlay
    if fstype in PSEUDO_FSTYPES or fstype in NETWORK_FSTYPES or not device.startswith("/dev/"):
        return False
    return not (device.startswith("/dev/loop") or mount.startswith("/snap/"))


NOT_A_DIRECTORY = "not a directory"
GONE = "gone"


def _probe(mount: str) -> Any:
    """Everything that touches a mount, in one call made off the loop."""
    if not os.path.isdir(mount):
        # A bind-mounted file (a container's /etc/hosts) is not a filesystem to
        # watch; a path that vanished was unmounted since the table was read.
        return GONE if not os.path.lexists(mount) else NOT_A_DIRECTORY
    return psutil.disk_usage(mount)


class MountWatch:
    """Asks each mount for its usage in a pool thread, with a deadline.

    A filesystem can hang (a dead NFS or FUSE server): its stat never
    returns. Then the mount is "not answering": its call goes on in its
    thread, and the mount is not asked again until that call has returned,
    so a hung mount holds one thread, never one per tick, and never the loop.
    """

    def __init__(self, deadline: float = 0.5, max_hung: int = 8) -> None:
        self.deadline = deadline
        self.max_hung = max_hung
        self._hung: dict[str, Pending] = {}

    def usage(self, mount: str) -> tuple[Any, bool]:
        """(the probe's result, answering); raises what the probe raised."""
        hung = self._hung.get(mount)
        if hung is not None:
            if not hung.done:
                return None, False
            del self._hung[mount]
            log.warning("filesystem %s answers again", mount)
        if len(self._hung) >= self.max_hung:
            return None, False  # too many hung already: no thread more for this one
        pending = Pending(_probe, mount)
        if not pending.wait(self.deadline):
            self._hung[mount] = pending
            log.warning(
                "filesystem %s is not answering (no answer within %.1f s); "
                "it is skipped until it answers",
                mount,
                self.deadline,
            )
            return None, False
        return pending.result(), True


class DynamicData:
    """Keeps previous counters; sample() returns one JSON-ready dict."""

    def __init__(self, top_processes: int = 5, process_every: int = 5) -> None:
        self._top = top_processes
        # Scanning every process is most of a tick's cost: do it every few
        # ticks and show the last table in between (its CPU % then covers the
        # whole span between scans, which is steadier anyway).
        self._process_every = max(process_every, 1)
        self._ticks = 0
        self._processes: list[dict[str, Any]] | None = []
        self._reader = FailureLog()
        self._mounts = MountWatch()
        self._cpu_count = psutil.cpu_count(logical=True) or 1
        self._boot_time = self._reader.read("boot_time", psutil.boot_time)
        # cpu_percent's first call only sets a baseline and returns 0.0: prime it.
        self._reader.read("cpu.percent", lambda: psutil.cpu_percent(interval=None))
        self._reader.read("cpu.per_core", lambda: psutil.cpu_percent(interval=None, percpu=True))
        if self._top:
            self._processes = self._reader.read("processes", self._top_processes)
        self._last_time = time.monotonic()
        self._disk_before = self._reader.read("disk_io", _disk_io_counters)
        self._net_before = self._reader.read("net", _net_io_counters)

    def sample(self) -> dict[str, Any]:
        read = self._reader.read
        now = time.monotonic()
        elapsed, self._last_time = now - self._last_time, now
        disk_after = read("disk_io", _disk_io_counters)
        net_after = read("net", _net_io_counters)
        disk_rate = _rate(self._disk_before, disk_after, elapsed)
        net_rate = _rate(self._net_before, net_after, elapsed)
        self._disk_before, self._net_before = disk_after, net_after
        return {
            "ts": round(time.time(), 3),
            "cpu": {
                "percent": _percent(read("cpu.percent", lambda: psutil.cpu_percent(interval=None))),
                "per_core": read("cpu.per_core", self._per_core),
            },
            "memory": read("memory", self._memory),
            "swap": read("swap", self._swap),
            "disks": read("disks", self._disks),
            "disk_io": {"read_bps": disk_rate[0], "write_bps": disk_rate[1]},
            "net": {"rx_bps": net_rate[0], "tx_bps": net_rate[1]},
            "load": read("load", lambda: [round(v, 2) for v in psutil.getloadavg()]),
            "uptime": None if self._boot_time is None else round(time.time() - self._boot_time, 1),
            "processes": self._process_table(),
        }

    def _process_table(self) -> list[dict[str, Any]] | None:
        if not self._top:
            return []
        self._ticks += 1
        if self._ticks % self._process_every == 0 or self._processes is None:
            self._processes = self._reader.read("processes", self._top_processes)
        return self._processes

    @staticmethod
    def _per_core() -> list[float | None]:
        return [_percent(v) for v in psutil.cpu_percent(interval=None, percpu=True)]

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

    def _disks(self) -> list[dict[str, Any]]:
        disks = []
        seen_devices: set[str] = set()
        partitions = sorted(psutil.disk_partitions(all=True), key=lambda p: len(p.mountpoint))
        for part in partitions:
            if not is_real_filesystem(part.mountpoint, part.device, part.fstype):
                continue
            if part.device in seen_devices and part.mountpoint != "/":
                continue  # the same device bind-mounted again
            seen_devices.add(part.device)
            probe = self._reader.read(
                f"disk {part.mountpoint}", functools.partial(self._mounts.usage, part.mountpoint)
            )
            # A probe that raised (FailureLog logged why) did answer, with an error.
            usage, answering = probe if probe is not None else (None, True)
            if usage in (GONE, NOT_A_DIRECTORY):
                continue
            disks.append(
                {
                    "mount": part.mountpoint,
                    "device": part.device,
                    "fstype": part.fstype,
                    "percent": None if usage is None else _percent(usage.percent),
                    "total": None if usage is None else usage.total,
                    "used": None if usage is None else usage.used,
                    "free": None if usage is None else usage.free,
                    "answering": answering,
                }
            )
        return disks

    def _top_processes(self) -> list[dict[str, Any]]:
        """The busiest processes: pid, name, CPU and memory share (never command lines)."""
        rows = []
        # process_iter() hands back the same Process object for a pid on each
        # call, and cpu_percent() measures since that object's previous call.
        for proc in psutil.process_iter():
            try:
                with proc.oneshot():
                    cpu = proc.cpu_percent(interval=None)
                    memory = proc.memory_percent()
            except (psutil.NoSuchProcess, psutil.ZombieProcess):
                continue
            except psutil.AccessDenied:
                continue  # other users' processes may be hidden; skip them
            # Share of the whole machine, so 0-100 like every percentage.
            rows.append((_percent(cpu / self._cpu_count) or 0.0, _percent(memory) or 0.0, proc))
        rows.sort(key=lambda r: (r[0], r[1]), reverse=True)
        top = []
        for cpu, memory, proc in rows[: self._top]:
            name = executable_name(proc)
            if name is not None:
                top.append(
                    {"pid": proc.pid, "name": name, "cpu_percent": cpu, "memory_percent": memory}
                )
        return top


def executable_name(proc: psutil.Process) -> str | None:
    """The kernel's name for a process (Linux: comm, 15 characters), never its title.

    psutil's name() extends a 15-character comm with the start of the command
    line, so a process that sets its title ("sshd: alice [priv]", "postgres:
    user db 10.0.0.5") would show its arguments. comm is the executable's name,
    or what the process set with prctl(PR_SET_NAME): never more than 15 bytes.
    """
    if sys.platform.startswith("linux"):
        try:
            with open(f"/proc/{proc.pid}/comm", encoding="utf-8", errors="replace") as handle:
                return handle.read().rstrip("\n")
        except OSError:
            return None  # gone, or hidden from us
    try:  # elsewhere psutil's name is the executable's own
        return os.path.basename(proc.name())
    except psutil.Error:
        return None


def _rate(
    before: Mapping[str, tuple[int, int]] | None,
    after: Mapping[str, tuple[int, int]] | None,
    seconds: float,
) -> tuple[int | None, int | None]:
    if before is None or after is None:
        return None, None
    return counter_rate(before, after, seconds)


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
