"""Memory and swap: how much is used, of how much."""

from __future__ import annotations

from typing import Any

import psutil

from server.sampling.collector import Collector, percent


class Memory(Collector):
    name = "memory"

    def read(self) -> dict[str, Any]:
        vm = psutil.virtual_memory()
        return {
            "memory": {
                "percent": percent(vm.percent),
                "total": vm.total,
                "used": vm.used,
                "available": vm.available,
            }
        }

    def null(self) -> dict[str, Any]:
        return {"memory": None}


class Swap(Collector):
    name = "swap"

    def read(self) -> dict[str, Any]:
        sm = psutil.swap_memory()
        return {"swap": {"percent": percent(sm.percent), "total": sm.total, "used": sm.used}}

    def null(self) -> dict[str, Any]:
        return {"swap": None}
