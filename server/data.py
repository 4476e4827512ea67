"""This machine's facts and samples, assembled from what server/sampling/ reads.

StaticData: the host's facts, read once at start (sampling/host.py).
DynamicData: one JSON-ready sample a tick, the parts of its list of
collectors (one module each under sampling/: cpu, memory, disks, counters,
load, processes; containers, services, sensors, gpu and smart where the machine
has them) plus `ts`. How a collector reads, fails and logs is declared once,
in sampling/collector.py. OwnUsage: this server process's own cost.

No Flask here, and no reading of the machine but OwnUsage's. A value that
cannot be read is None (null in JSON), never a made-up 0, and the reason is
logged once, when it starts failing.
"""

from __future__ import annotations

import dataclasses
import os
import time
from typing import TYPE_CHECKING, Any

import psutil

from server.sampling import gpu, host, sensors
from server.sampling import services as systemd_units
from server.sampling import smart as smart_disks
from server.sampling.collector import Collector, FailureLog
from server.sampling.counters import DiskIO, Net
from server.sampling.cpu import Cpu
from server.sampling.disks import Disks
from server.sampling.engine import find_socket
from server.sampling.load import Load, Uptime
from server.sampling.memory import Memory, Swap
from server.sampling.processes import Processes

if TYPE_CHECKING:
    from server.config import Config


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
        host_root: str = "/",
    ) -> StaticData:
        return cls(
            **host.facts(host_root),
            interval=interval,
            history_seconds=history_seconds,
            version=version,
            levels=levels or {},
        )

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class DynamicData:
    """sample() returns one JSON-ready dict: `ts`, then each collector's part in list order."""

    def __init__(
        self,
        top_processes: int = 5,
        process_every: int = 5,
        mount_table_every: int = 10,
        containers: str = "off",
        services: str = "off",
        smart: str = "off",
        smart_every: float = 300.0,
        host_root: str = "/",
    ) -> None:
        self.collectors: list[Collector] = [
            Cpu(),
            Memory(),
            Swap(),
            Disks(table_every=mount_table_every, root=host_root),
            DiskIO(devices_every=mount_table_every),
            Net(),
            Load(),
            Uptime(),
            Processes(top=top_processes, every=process_every),
        ]
        # What runs here: only where an engine's socket is (`containers` setting).
        socket_path = find_socket(containers)
        if socket_path is not None:  # imported only then: nothing loads where there is none
            from server.sampling.containers import Containers
            from server.sampling.engine import Engine

            cores = psutil.cpu_count(logical=True) or 1
            # In a container, the host's cgroups are under its root: a container's own
            # /sys/fs/cgroup holds only its own cgroup where the host has cgroup v1.
            cgroups = os.path.join(host_root, "sys/fs/cgroup")
            self.collectors.append(Containers(Engine(socket_path), cores, cgroup_root=cgroups))
        # systemd's units: only where systemd runs (`services` setting), read off the
        # loop every few seconds (server/sampling/services.py).
        units = systemd_units.find(services)
        if units is not None:
            self.collectors.append(units)
        # Sensors and GPUs: only where the machine has some, found once, here (no
        # collector, no thread and no key of the sample where it has none).
        for found in (sensors.find(), gpu.find()):
            if found is not None:
                self.collectors.append(found)
        # Disk health: only where smartctl runs as root (`smart` setting), read off the
        # loop every `smart_every` seconds (server/sampling/smart.py).
        health = smart_disks.find(smart, smart_every)
        if health is not None:
            self.collectors.append(health)
        # A collector that waits on work its begin() started is read last.
        self._read_order = sorted(self.collectors, key=lambda c: c.waits)

    @classmethod
    def configured(cls, config: Config) -> DynamicData:
        """As the settings say: the server and an agent sample alike."""
        return cls(
            top_processes=config.top_processes,
            containers=config.containers,
            services=config.services,
            smart=config.smart,
            smart_every=config.smart_every,
            host_root=config.host_root,
        )

    def sample(self) -> dict[str, Any]:
        for collector in self.collectors:
            collector.begin()
        sample: dict[str, Any] = {"ts": round(time.time(), 3)}
        parts = {collector.name: collector.collect() for collector in self._read_order}
        for collector in self.collectors:
            sample.update(parts[collector.name])
        return sample

    def collector_success(self) -> dict[str, bool]:
        """Per collector, whether all its readings succeed now (/metrics'
        dashboard_collector_success)."""
        return {collector.name: collector.success for collector in self.collectors}


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
