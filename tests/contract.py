"""Checks of payloads against the contract in docs/contract.md, shared by the tests."""

from __future__ import annotations

from typing import Any

STATIC_KEYS = {
    "hostname",
    "fqdn",
    "os",
    "cpu",
    "memory_total",
    "swap_total",
    "addresses",
    "boot_time",
    "interval",
    "version",
}
SAMPLE_KEYS = {
    "ts",
    "seq",
    "cpu",
    "memory",
    "swap",
    "disks",
    "disk_io",
    "net",
    "load",
    "uptime",
    "processes",
}


def _percent_or_null(value: Any) -> None:
    assert value is None or (isinstance(value, int | float) and 0 <= value <= 100), value


def _size_or_null(value: Any) -> None:
    assert value is None or (isinstance(value, int) and value >= 0), value


def check_static(static: dict[str, Any]) -> None:
    assert set(static) >= STATIC_KEYS
    assert set(static["os"]) >= {"system", "release", "distribution", "machine"}
    assert set(static["cpu"]) >= {"model", "logical", "physical"}
    for address in static["addresses"]:
        assert set(address) >= {"interface", "family", "address"}
    assert isinstance(static["hostname"], str) and static["hostname"]


def check_sample(sample: dict[str, Any], with_processes: bool = True) -> None:
    expected = SAMPLE_KEYS if with_processes else SAMPLE_KEYS - {"processes"}
    assert expected <= set(sample), expected - set(sample)
    assert isinstance(sample["ts"], float) and isinstance(sample["seq"], int)
    _percent_or_null(sample["cpu"]["percent"])
    for core in sample["cpu"]["per_core"] or []:
        _percent_or_null(core)
    if sample["memory"] is not None:
        assert set(sample["memory"]) >= {"percent", "total", "used", "available"}
        _percent_or_null(sample["memory"]["percent"])
        for key in ("total", "used", "available"):
            _size_or_null(sample["memory"][key])
    if sample["swap"] is not None:
        assert set(sample["swap"]) >= {"percent", "total", "used"}
    assert any(d["mount"] == "/" for d in sample["disks"])
    for disk in sample["disks"]:
        assert set(disk) >= {"mount", "device", "fstype", "percent", "total", "used", "free"}
        assert disk.get("answering") in (True, False, None)  # None: a downsampled point
        _percent_or_null(disk["percent"])
        for key in ("total", "used", "free"):
            _size_or_null(disk[key])
    for key in ("read_bps", "write_bps"):
        _size_or_null(sample["disk_io"][key])
    for key in ("rx_bps", "tx_bps"):
        _size_or_null(sample["net"][key])
    assert sample["load"] is None or len(sample["load"]) == 3
    assert sample["uptime"] is None or sample["uptime"] > 0
    if with_processes:
        for proc in sample["processes"]:
            assert set(proc) == {"pid", "name", "cpu_percent", "memory_percent"}
