"""A container's counters, from the kernel: its cgroup's files (v1 or v2) and the
network counters of its first process.

The engine's stats call waits for two readings of its own (about 1.9 s a
container, moby#23188) and makes the engine burn CPU; the kernel has every
figure already, in a few small files a container, read in the tick.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

from server.sampling.counters import parse_net_dev
from server.sampling.openfiles import read_once

NO_LIMIT = 2**62  # cgroup v1 writes "no limit" as a page-rounded 2**63 - 1


@dataclass(frozen=True)
class Reading:
    """One reading of a container's counters (None where a file was not there)."""

    cpu_ns: int | None  # CPU time used, all cores, since it started
    memory: int | None  # bytes in use, less the page cache it can drop (as `docker stats`)
    memory_limit: int | None  # None: no limit of its own
    pids: int | None
    read_bytes: int | None
    write_bytes: int | None
    rx_bytes: int | None  # its network namespace's interfaces, less loopback
    tx_bytes: int | None


@dataclass(frozen=True)
class Paths:
    """Where one container's cgroup lives: v1 has a directory per controller."""

    v2: str | None = None
    cpu: str | None = None  # v1: cpuacct
    memory: str | None = None
    pids: str | None = None
    blkio: str | None = None


def find_paths(pid: int, proc: str = "/proc", root: str = "/sys/fs/cgroup") -> Paths:
    """The cgroup of process `pid` (a container's first process), from /proc/PID/cgroup.

    v1 lines are `N:controller[,controller]:/path`; the v2 line is `0::/path`.
    A v1 controller's directory is used where it is there (a hybrid host mounts
    both, and counts in v1); otherwise the unified (v2) one.
    """
    with open(f"{proc}/{pid}/cgroup", encoding="utf-8") as handle:
        lines = handle.read().splitlines()
    v1: dict[str, str] = {}
    unified = None
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if not controllers:
            unified = path
        for controller in controllers.split(","):
            v1[controller] = path

    def v1_dir(controller: str) -> str | None:
        path = v1.get(controller)
        directory = f"{root}/{controller}{path}" if path is not None else None
        return directory if directory and os.path.isdir(directory) else None

    if any(v1_dir(c) for c in ("cpuacct", "memory")):
        return Paths(cpu=v1_dir("cpuacct"), memory=v1_dir("memory"), pids=v1_dir("pids"),
                     blkio=v1_dir("blkio"))  # fmt: skip
    if unified is not None:
        return Paths(v2=f"{root}{unified}" if os.path.isdir(f"{root}{unified}") else None)
    return Paths()


def _text(path: str | None) -> str | None:
    """A small kernel file's text, read with one system call."""
    return _decoded(read_once(path))


def _number(path: str | None) -> int | None:
    return _int(read_once(path))


def _keyed(text: str | None, *keys: str) -> dict[str, int]:
    """`key value` lines (memory.stat, cpu.stat) for the keys asked."""
    found = {}
    for line in (text or "").splitlines():
        key, _, value = line.partition(" ")
        if key in keys and value.strip().isdigit():
            found[key] = int(value)
    return found


def _v1_block(text: str | None) -> tuple[int | None, int | None]:
    """blkio.throttle.io_service_bytes: `MAJ:MIN Read N` lines, summed over devices."""
    if text is None:
        return None, None
    read = write = 0
    for line in text.splitlines():
        fields = line.split()
        if len(fields) == 3 and fields[2].isdigit():
            if fields[1] == "Read":
                read += int(fields[2])
            elif fields[1] == "Write":
                write += int(fields[2])
    return read, write


def _v2_block(text: str | None) -> tuple[int | None, int | None]:
    """io.stat: `MAJ:MIN rbytes=N wbytes=N ...` lines, summed over devices."""
    if text is None:
        return None, None
    read = write = 0
    for line in text.splitlines():
        for field in line.split()[1:]:
            key, _, value = field.partition("=")
            if value.isdigit():
                if key == "rbytes":
                    read += int(value)
                elif key == "wbytes":
                    write += int(value)
    return read, write


def _network(
    pid: int, proc: str, read: Callable[[str | None], bytes | None] = read_once
) -> tuple[int | None, int | None]:
    data = read(f"{proc}/{pid}/net/dev")
    if data is None:
        return None, None
    counters = parse_net_dev(data)
    return sum(rx for rx, _ in counters.values()), sum(tx for _, tx in counters.values())


@dataclass(frozen=True)
class TickFiles:
    """The two files read every tick, their paths made once (the tick runs for each
    container every second)."""

    cpu: str | None  # v1 cpuacct.usage (ns); v2 cpu.stat (usage_usec)
    memory: str | None  # bytes charged, page cache included
    v2: bool


def tick_files(paths: Paths) -> TickFiles:
    if paths.v2 is not None:
        return TickFiles(f"{paths.v2}/cpu.stat", f"{paths.v2}/memory.current", True)
    return TickFiles(
        paths.cpu and f"{paths.cpu}/cpuacct.usage",
        paths.memory and f"{paths.memory}/memory.usage_in_bytes",
        False,
    )


def cpu_used(
    files: TickFiles, read: Callable[[str | None], bytes | None] = read_once
) -> int | None:
    """CPU ns the container has used, all cores, since it started. `read`: an
    OpenFiles' raw, in the tick; the bytes are parsed as they come (this runs for
    each container every second)."""
    if files.v2:
        usec = _keyed(_decoded(read(files.cpu)), "usage_usec").get("usage_usec")
        return None if usec is None else usec * 1000
    return _int(read(files.cpu))


def memory_charged(
    files: TickFiles, read: Callable[[str | None], bytes | None] = read_once
) -> int | None:
    """Memory bytes charged to the container, page cache included."""
    return _int(read(files.memory))


def usage(
    paths: Paths, read: Callable[[str | None], bytes | None] = read_once
) -> tuple[int | None, int | None]:
    """(CPU ns used, memory bytes charged, page cache included)."""
    files = tick_files(paths)
    return cpu_used(files, read), memory_charged(files, read)


def _int(data: bytes | None) -> int | None:
    """A file's one number; None for anything else, "max" (v2: no limit) too."""
    digits = None if data is None else data.strip()
    return int(digits) if digits and digits.isdigit() else None


def _decoded(data: bytes | None) -> str | None:
    return None if data is None else data.decode("ascii", "replace")


@dataclass(frozen=True)
class Details:
    """What changes slowly or is summed over a span: read every few ticks."""

    cache: int  # page cache the kernel can drop (inactive file pages)
    memory_limit: int | None
    pids: int | None
    read_bytes: int | None
    write_bytes: int | None
    rx_bytes: int | None
    tx_bytes: int | None


def details(
    paths: Paths,
    pid: int,
    proc: str = "/proc",
    slow: Details | None = None,
    read: Callable[[str | None], bytes | None] = read_once,
) -> Details:
    """The byte counters (with `read`: an OpenFiles' raw, as they are read every few
    ticks), and (unless `slow` is a recent reading whose cache, limit and pids stand)
    the page cache, the memory limit and pids: memory.stat is the costliest file of a
    container (the kernel sums it on each read), and they change slowly."""
    rx, tx = _network(pid, proc, read)
    if paths.v2 is not None:
        read_bytes, write_bytes = _v2_block(_decoded(read(f"{paths.v2}/io.stat")))
    else:
        blkio = paths.blkio and f"{paths.blkio}/blkio.throttle.io_service_bytes"
        read_bytes, write_bytes = _v1_block(_decoded(read(blkio)))
    if slow is not None:  # built as it is, not by dataclasses.replace: 4 µs a call
        return Details(slow.cache, slow.memory_limit, slow.pids, read_bytes, write_bytes, rx, tx)
    if paths.v2 is not None:
        cache = _keyed(_text(f"{paths.v2}/memory.stat"), "inactive_file").get("inactive_file", 0)
        limit, pids = _number(f"{paths.v2}/memory.max"), _number(f"{paths.v2}/pids.current")
        return Details(cache, limit, pids, read_bytes, write_bytes, rx, tx)
    stat = _keyed(_text(paths.memory and f"{paths.memory}/memory.stat"), "total_inactive_file")
    limit = _number(paths.memory and f"{paths.memory}/memory.limit_in_bytes")
    return Details(
        cache=stat.get("total_inactive_file", 0),
        memory_limit=None if limit is None or limit >= NO_LIMIT else limit,
        pids=_number(paths.pids and f"{paths.pids}/pids.current"),
        read_bytes=read_bytes,
        write_bytes=write_bytes,
        rx_bytes=rx,
        tx_bytes=tx,
    )


def read(paths: Paths, pid: int, proc: str = "/proc") -> Reading:
    """All of a container's counters now. Raises OSError only where a file exists and
    cannot be read; a file that is not there (a controller not mounted) is None."""
    cpu_ns, charged = usage(paths)
    more = details(paths, pid, proc)
    return Reading(
        cpu_ns=cpu_ns,
        memory=None if charged is None else max(charged - more.cache, 0),
        memory_limit=more.memory_limit,
        pids=more.pids,
        read_bytes=more.read_bytes,
        write_bytes=more.write_bytes,
        rx_bytes=more.rx_bytes,
        tx_bytes=more.tx_bytes,
    )
