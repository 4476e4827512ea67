"""The load averages, and the time since boot."""

from __future__ import annotations

import time
from typing import Any

import psutil

from server.sampling import host
from server.sampling.collector import Collector


class Load(Collector):
    """{"load": [1, 5, 15 minutes]}."""

    name = "load"

    def read(self) -> dict[str, Any]:
        return {"load": [round(v, 2) for v in psutil.getloadavg()]}

    def null(self) -> dict[str, Any]:
        return {"load": None}


class Uptime(Collector):
    """{"uptime": seconds}, from the boot time read once at start (null if it could not be)."""

    name = "uptime"

    def __init__(self) -> None:
        super().__init__()
        self._boot_time = self.failures.read("boot_time", host.boot_time)

    def read(self) -> dict[str, Any]:
        if self._boot_time is None:
            return self.null()  # said once, at start; success stays False
        return {"uptime": round(time.time() - self._boot_time, 1)}

    def null(self) -> dict[str, Any]:
        return {"uptime": None}
