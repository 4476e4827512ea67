"""Synthetic samples and a store filled with days of them (tests and bench)."""

from __future__ import annotations

import copy
import math
import random
from typing import Any

from server.history.store import HistoryStore


def synthetic_sample(ts: float, seq: int, rng: random.Random) -> dict[str, Any]:
    """A sample shaped like the real ones (two cores, two disks), as kept in history."""
    cpu = max(0.0, min(100.0, 20 + 15 * math.sin(ts / 3600) + rng.gauss(0, 5)))
    return {
        "ts": ts,
        "seq": seq,
        "cpu": {"percent": round(cpu, 1), "per_core": [round(cpu, 1), round(cpu / 2, 1)]},
        "memory": {
            "percent": 41.5,
            "total": 8_000_000_000,
            "used": 3_320_000_000 + seq % 1000,
            "available": 4_680_000_000,
        },
        "swap": {"percent": 0.0, "total": 2_000_000_000, "used": 0},
        "disks": [
            {
                "mount": "/",
                "device": "/dev/sda1",
                "fstype": "ext4",
                "percent": 61.2,
                "total": 100_000_000_000,
                "used": 61_200_000_000,
                "free": 38_800_000_000,
            },
            {
                "mount": "/home",
                "device": "/dev/sda2",
                "fstype": "ext4",
                "percent": 12.0,
                "total": 400_000_000_000,
                "used": 48_000_000_000,
                "free": 352_000_000_000,
            },
        ],
        "disk_io": {
            "read_bps": rng.randrange(0, 5_000_000),
            "write_bps": rng.randrange(0, 9_000_000),
        },
        "net": {"rx_bps": rng.randrange(0, 2_000_000), "tx_bps": rng.randrange(0, 1_000_000)},
        "load": [round(cpu / 50, 2), 0.5, 0.4],
        "uptime": 1000.0 + seq,
    }


def fill(
    store: HistoryStore,
    clock: list[float],
    seconds: int,
    start: float,
    batch: int = 600,
    seed: int = 1,
) -> None:
    """Feed `seconds` of 1 Hz samples from `start`, moving `clock[0]` along."""
    rng = random.Random(seed)
    for offset in range(0, seconds, batch):
        for i in range(offset, min(offset + batch, seconds)):
            store.add(synthetic_sample(start + i, i + 1, rng))
        clock[0] = start + min(offset + batch, seconds)
        store.flush()


def like_this_host(base: dict[str, Any], ts: float, seq: int, rng: random.Random) -> dict[str, Any]:
    """A sample of this machine's own shape (its disks, totals, host id) with moving
    values: what a real history of this host holds (the bench's connect cost)."""
    sample = copy.deepcopy(base)
    cpu = max(0.0, min(100.0, 20 + 15 * math.sin(ts / 3600) + rng.gauss(0, 5)))
    sample.update(ts=round(ts, 3), seq=seq, uptime=round(1000.0 + seq, 1))
    sample["cpu"]["percent"] = round(cpu, 1)
    sample["cpu"]["per_core"] = [round(min(100.0, cpu * rng.uniform(0.5, 1.5)), 1)
                                 for _ in sample["cpu"]["per_core"]]  # fmt: skip
    memory = sample["memory"]
    memory["used"] += rng.randrange(-50_000_000, 50_000_000)
    memory["available"] = memory["total"] - memory["used"]
    memory["percent"] = round(100 * memory["used"] / memory["total"], 1)
    for disk in sample["disks"]:
        if disk.get("used") is not None:
            disk["used"] += rng.randrange(0, 4096) * 4096 * (seq % 5 == 0)
            disk["free"] = disk["total"] - disk["used"]
    sample["disk_io"] = {"read_bps": rng.randrange(0, 5_000_000),
                         "write_bps": rng.randrange(0, 9_000_000)}  # fmt: skip
    sample["net"] = {"rx_bps": rng.randrange(0, 2_000_000), "tx_bps": rng.randrange(0, 1_000_000)}
    sample["load"] = [round(cpu / 50, 2), 0.5, 0.4]
    return sample
