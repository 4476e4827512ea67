"""Sensors and GPUs: read from sysfs trees captured on real machines (tests/fixtures/captured/,
its README says whose and what was kept) and NVML's answers built from real nvidia-smi
captures; and on this machine, which has none of them: nothing found, nothing read.

Then the layers a sample passes: what an agent may send (server/fleet/schema.py), the
contract's table, the temperature rule, /metrics, and the page, in Chromium through a
real hub that an agent with sensors and GPUs reports to.
"""

from __future__ import annotations

import csv
import importlib
import json
import logging
import re
import shutil
import subprocess
import sys
import threading
import time
import types
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
import requests
from flask.testing import FlaskClient

from server.fleet import schema
from server.sampling import gpu, sensors
from server.sampling.offloop import OffLoop
from server.state import DashboardState
from tests.contract import check_keys

DATA = Path(__file__).parent / "fixtures"
CAPTURED = DATA / "captured"
# Two coretemp chips, an Apple SMC's fans in the older layout, an nct6779's fan, a
# thermal zone (not read: hwmon has temperatures) and a ThinkPad's battery.
NODE_EXPORTER = CAPTURED / "node_exporter" / "sys"
# No hwmon: two thermal zones; a Radeon RX Vega and an i915 iGPU; a ThinkPad's battery.
PROCFS = CAPTURED / "procfs" / "sys"
NVME = CAPTURED / "procfs-nvme" / "sys"  # an NVMe drive's hwmon
LACT = CAPTURED / "lact"  # a machine's /sys/class/drm each
with (CAPTURED / "nvidia_gpu_exporter" / "query-gpu.csv").open(newline="") as _csv:
    NVIDIA_SMI = list(csv.DictReader(_csv))
ZONES = DATA / "sensors-zones" / "sys"  # synthetic: no capture has a trip point


def battery_of(tree: Path) -> Callable[[], Any]:
    """psutil.sensors_battery() itself, reading the captured /sys/class/power_supply."""

    def read() -> Any:
        linux: Any = importlib.import_module("psutil._pslinux")
        real = linux.POWER_SUPPLY_PATH
        linux.POWER_SUPPLY_PATH = str(tree / "class" / "power_supply")
        try:
            return psutil.sensors_battery()
        finally:
            linux.POWER_SUPPLY_PATH = real

    return read


def named(part: dict[str, Any]) -> list[tuple[str, str, Any, Any, Any]]:
    return [(t["sensor"], t["label"], t["current"], t["high"], t["critical"])
            for t in part["temperatures"]]  # fmt: skip


def settled(collector: sensors.Sensors | gpu.Gpus) -> dict[str, Any]:
    """One tick's part once the reading this tick kicked has finished (the tick itself
    takes the newest finished one, without waiting)."""
    collector.offloop.finished.clear()
    collector.begin()
    assert collector.offloop.finished.wait(5)
    return collector.collect()


# ---------------------------------------------------------------- sensors, from sysfs trees


def test_a_machines_sensors_are_found_with_their_own_levels() -> None:
    reader = sensors.SensorReader(str(NODE_EXPORTER), battery=battery_of(NODE_EXPORTER))
    part = reader().part
    coretemp = [("Physical id 0", 55.0), ("Core 0", 54.0), ("Core 1", 52.0), ("Core 2", 53.0),
                ("Core 3", 50.0)]  # fmt: skip
    # Two sockets' chips of one name, told apart; the thermal zone (cpu-thermal) is not
    # read where hwmon has temperatures.
    assert named(part) == [
        *((chip, label, current, 84.0, 100.0) for chip in ("coretemp", "coretemp#2")
          for label, current in coretemp),
    ]  # fmt: skip
    # The Apple SMC's hwmon has neither channels nor name: both are its device's (older
    # kernels' layout). A stopped fan is 0 rpm, not null; the nct6779 has fan2 alone.
    assert part["fans"] == [
        {"sensor": "applesmc", "label": "Left side", "rpm": 0},
        {"sensor": "applesmc", "label": "Right side", "rpm": 1998},
        {"sensor": "nct6779", "label": "fan2", "rpm": 1098},
    ]
    # psutil on the ThinkPad's BAT0 (energy_now / energy_full, at power_now) and AC.
    assert part["battery"] == {"percent": 81.2, "plugged": False, "seconds_left": 26327}
    check_keys("sample.sensors", part)
    for key, items in (("temperatures", part["temperatures"]), ("fans", part["fans"])):
        for item in items:
            check_keys(f"sample.sensors.{key}[]", item)
    check_keys("sample.sensors.battery", part["battery"])
    assert schema.sample_problem({"ts": time.time(), "sensors": part}) is None


def test_an_nvme_drives_own_levels_are_kept_and_its_unset_ones_are_none() -> None:
    part = sensors.SensorReader(str(NVME), battery=lambda: None)().part
    assert named(part) == [
        ("nvme", "Composite", 43.9, 84.8, 94.8),
        # Its other sensors' "high" is 65261.85 °C (the drive's 0xFFFF kelvin): no level.
        ("nvme", "Sensor 1", 43.9, None, None),
        ("nvme", "Sensor 2", 45.9, None, None),
        ("nvme", "Sensor 8", 43.9, None, None),  # temp9: a channel's label, as the drive's
    ]
    assert part["fans"] == [] and part["battery"] is None


def test_thermal_zones_stand_in_where_hwmon_has_no_temperature() -> None:
    reader = sensors.SensorReader(str(PROCFS), battery=battery_of(PROCFS))
    part = reader().part
    # The zones have no trip point: no levels. The ACPI zone's -44 °C is what it said.
    assert named(part) == [
        ("bcm2835_thermal", "thermal_zone0", 49.9, None, None),
        ("acpitz", "thermal_zone1", -44.0, None, None),
    ]
    assert part["battery"] == {"percent": 98.8, "plugged": False, "seconds_left": 36857}


def test_thermal_zones_trip_points_are_their_levels() -> None:
    # Synthetic (tests/fixtures/sensors-zones/): no capture has a trip point.
    part = sensors.SensorReader(str(ZONES), battery=lambda: None)().part
    assert named(part) == [
        ("cpu-thermal", "thermal_zone0", 48.7, 90.0, 110.0),  # hot and critical trip points
        ("gpu-thermal", "thermal_zone1", 46.3, None, 110.0),
    ]


def test_a_channel_that_answers_with_an_error_is_left_out(tmp_path: Path) -> None:
    # Synthetic: no capture has one. A ThinkPad's unconnected channels answer ENXIO
    # (lm-sensors shows N/A); a directory fails to read as they do.
    hwmon = tmp_path / "class" / "hwmon" / "hwmon3"
    hwmon.mkdir(parents=True)
    (hwmon / "name").write_text("thinkpad\n")
    (hwmon / "temp1_input").write_text("52000\n")
    (hwmon / "temp1_label").write_text("CPU\n")
    (hwmon / "temp2_input").mkdir()
    (hwmon / "temp2_label").write_text("GPU\n")
    (hwmon / "temp3_input").write_text("45000\n")
    part = sensors.SensorReader(str(tmp_path), battery=lambda: None)().part
    assert named(part) == [("thinkpad", "CPU", 52.0, None, None),
                           ("thinkpad", "temp3", 45.0, None, None)]  # fmt: skip


def _tree(root: Path, chips: list[tuple[str, int, int]]) -> None:
    """A hwmon tree: per chip (name, temperatures, fans)."""
    for i, (name, temperatures, fans) in enumerate(chips):
        hwmon = root / "class" / "hwmon" / f"hwmon{i}"
        hwmon.mkdir(parents=True)
        (hwmon / "name").write_text(name + "\n")
        for n in range(1, temperatures + 1):
            (hwmon / f"temp{n}_input").write_text(f"{40000 + n * 100}\n")
            label = "Package id 0" if n == 1 else f"Core {n - 2}"
            (hwmon / f"temp{n}_label").write_text(label + "\n")
        for n in range(1, fans + 1):
            (hwmon / f"fan{n}_input").write_text(f"{1000 + n}\n")


def test_many_sensors_are_bounded_a_channel_of_each_chip_in_turn(tmp_path: Path) -> None:
    # Two sockets of 40 cores, two drives, a board with 20 fans.
    _tree(tmp_path, [("coretemp", 41, 0), ("coretemp", 41, 0), ("nvme", 3, 0),
                     ("nct6798", 2, 20)])  # fmt: skip
    part = sensors.SensorReader(str(tmp_path), battery=lambda: None)().part
    temperatures = [(t["sensor"], t["label"]) for t in part["temperatures"]]
    assert len(temperatures) == sensors.MAX_TEMPERATURES == 32
    counts = Counter(sensor for sensor, _ in temperatures)
    assert counts == {"coretemp": 14, "coretemp#2": 13, "nvme": 3, "nct6798": 2}
    assert ("coretemp", "Package id 0") in temperatures
    assert ("coretemp#2", "Package id 0") in temperatures
    assert [sensor for sensor, _ in temperatures] == sorted(
        (sensor for sensor, _ in temperatures), key=["coretemp", "coretemp#2", "nvme",
                                                     "nct6798"].index)  # fmt: skip
    assert len(part["fans"]) == sensors.MAX_FANS


def test_a_label_given_twice_in_a_chip_is_made_unique(tmp_path: Path) -> None:
    hwmon = tmp_path / "class" / "hwmon" / "hwmon0"
    hwmon.mkdir(parents=True)
    (hwmon / "name").write_text("it8686\n")
    for n in (1, 2):
        (hwmon / f"temp{n}_input").write_text("30000\n")
        (hwmon / f"temp{n}_label").write_text("System\n")
    part = sensors.SensorReader(str(tmp_path), battery=lambda: None)().part
    assert [t["label"] for t in part["temperatures"]] == ["System", "System #2"]


def test_a_reading_reads_inputs_only_and_finds_again_now_and_then(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tree = tmp_path / "sys"
    shutil.copytree(NODE_EXPORTER, tree)
    reader = sensors.SensorReader(str(tree), battery=lambda: None)
    opened: list[str] = []
    real_open = open

    def spy(path: Any, *args: Any, **kwargs: Any) -> Any:
        opened.append(str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr("builtins.open", spy)
    reader()
    # One file a sensor: 10 temperatures and 3 fans; no name, label or level.
    assert len(opened) == 13 and all(p.endswith("_input") for p in opened), opened
    # A drive added since: found at the next finding.
    new = tree / "class" / "hwmon" / "hwmon4"
    new.mkdir()
    (new / "name").write_text("drivetemp\n")
    (new / "temp1_input").write_text("33000\n")
    (new / "temp1_crit").write_text("70000\n")
    while reader.readings % sensors.REDISCOVER_EVERY != sensors.REDISCOVER_EVERY - 1:
        assert "drivetemp" not in [t["sensor"] for t in reader().part["temperatures"]]
    assert "drivetemp" in [t["sensor"] for t in reader().part["temperatures"]]


def test_the_battery_is_read_every_few_readings(tmp_path: Path) -> None:
    plugged = tmp_path / "sys"
    shutil.copytree(PROCFS, plugged)
    (plugged / "class" / "power_supply" / "AC" / "online").write_text("1\n")  # its charger
    asked: list[int] = []

    def answer() -> Any:
        asked.append(1)
        return battery_of(plugged if len(asked) > 1 else NODE_EXPORTER)()

    reader = sensors.SensorReader(str(NODE_EXPORTER), battery=answer)
    assert reader.has_battery and len(asked) == 1  # asked once at start, whether it has one
    parts = [reader().part["battery"] for _ in range(sensors.BATTERY_EVERY + 1)]
    assert len(asked) == 3  # the first reading and the one BATTERY_EVERY after it
    assert parts[0] == {"percent": 98.8, "plugged": True, "seconds_left": None}
    assert parts[1] == parts[0]


def test_a_sensor_that_fails_is_null_and_said_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    tree = tmp_path / "sys"
    shutil.copytree(NODE_EXPORTER, tree)
    collector = sensors.find(str(tree), battery=lambda: None)
    assert collector is not None
    package = tree / "class" / "hwmon" / "hwmon0" / "temp1_input"
    try:
        with caplog.at_level(logging.INFO, logger="dashboard.data"):
            package.unlink()
            first, second = settled(collector), settled(collector)
            package.write_text("61000\n")
            healed = settled(collector)
    finally:
        collector.offloop.close()
    for part in (first, second):
        temperatures = {(t["sensor"], t["label"]): t for t in part["sensors"]["temperatures"]}
        assert temperatures["coretemp", "Physical id 0"]["current"] is None
        assert temperatures["coretemp", "Core 0"]["current"] == 54.0
        assert temperatures["coretemp#2", "Physical id 0"]["current"] == 55.0
    assert collector.success  # one sensor among many: the collector still reads
    lines = [r.getMessage() for r in caplog.records if "coretemp/Physical id 0" in r.getMessage()]
    assert len(lines) == 2, lines
    assert lines[0].startswith("cannot read temperature coretemp/Physical id 0")
    assert lines[1] == "temperature coretemp/Physical id 0 can be read again"
    assert healed["sensors"]["temperatures"][0]["current"] == 61.0


def test_a_reading_that_hangs_is_null_until_it_returns(caplog: pytest.LogCaptureFixture) -> None:
    collector = sensors.find(str(NODE_EXPORTER), battery=lambda: None)
    assert collector is not None
    gate = threading.Event()
    reader = collector.reader

    def hung() -> sensors.Reading:
        gate.wait(10)  # an embedded controller that does not answer
        return reader()

    collector.offloop = OffLoop("sensors", hung, reader(), stale=0.3)
    try:
        with caplog.at_level(logging.INFO, logger="dashboard.data"):
            collector.begin()
            assert collector.collect()["sensors"] is not None  # the last reading, at once
            time.sleep(0.5)
            started = time.perf_counter()
            for _ in range(3):
                collector.begin()  # kicks while it hangs: still one thread, one reading
                assert collector.collect() == {"sensors": None}
            assert time.perf_counter() - started < 0.1  # the tick never waits on it
            assert not collector.success
            gate.set()
            assert collector.offloop.finished.wait(5)
            assert collector.collect()["sensors"]["temperatures"]
        assert collector.success
    finally:
        gate.set()
        collector.offloop.close()
    said = [r.getMessage() for r in caplog.records if r.getMessage().startswith(
        ("cannot read sensors", "sensors can be read again"))]  # fmt: skip
    assert len(said) == 2 and "has not returned" in said[0], said


# ---------------------------------------------------------------- this machine: none


def test_this_machine_has_none_and_nothing_is_read_per_tick(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """This VM has no hwmon, thermal zone, battery, GPU or NVIDIA driver (as CI's)."""
    from server.data import DynamicData

    if sensors.find() is not None or gpu.find() is not None:
        pytest.skip("this machine has sensors or a GPU: the fixtures' tests cover it")

    calls: Counter[str] = Counter()

    def counted(name: str, function: Any) -> Any:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            calls[name] += 1
            return function(*args, **kwargs)

        return wrapper

    for module, name in ((sensors, "discover"), (sensors, "read_number"),
                         (gpu, "_drm_gpus"), (gpu, "load_nvml")):  # fmt: skip
        monkeypatch.setattr(module, name, counted(name, getattr(module, name)))
    monkeypatch.setattr(sensors.SensorReader, "__call__", counted("reading", lambda self: None))
    had_pynvml = "pynvml" in sys.modules
    threads_before = {t.name for t in threading.enumerate()}

    data = DynamicData()
    assert calls == {"discover": 1, "_drm_gpus": 1, "load_nvml": 1}  # looked once, at start
    names = {c.name for c in data.collectors}
    assert not names & {"sensors", "gpus"}
    for _ in range(3):
        sample = data.sample()
        assert "sensors" not in sample and "gpus" not in sample
    assert calls == {"discover": 1, "_drm_gpus": 1, "load_nvml": 1}  # and never per tick
    assert "sensors" not in data.collector_success()
    assert ("pynvml" in sys.modules) == had_pynvml  # NVML's bindings were not imported
    new_threads = {t.name for t in threading.enumerate()} - threads_before
    assert not [n for n in new_threads if n.endswith("-reader")]


# ---------------------------------------------------------------- GPUs: sysfs (AMD, Intel)


def test_an_amd_gpu_is_read_from_sysfs_and_an_intel_igpu_is_left_out() -> None:
    found = gpu.find(str(PROCFS), proc="/nonexistent")
    assert found is not None
    try:
        part = settled(found)["gpus"]
    finally:
        found.offloop.close()
    # A Radeon RX Vega (card0; the capture has no hwmon under it: no temperature, no
    # power); its empty product_name gives way to the PCI device id. The i915 iGPU
    # (card1) has none of the files: left out.
    assert part == [
        {"index": 0, "name": "AMD GPU 0x687f", "vendor": "amd", "utilization_percent": 4.0,
         "memory_used": 1490378752, "memory_total": 8573157376, "temperature": None,
         "power": None, "suspended": False},
    ]  # fmt: skip
    check_keys("sample.gpus[]", part[0])
    assert schema.sample_problem({"ts": time.time(), "gpus": part}) is None


def _figures(name: str, vendor: str, *figures: Any) -> dict[str, Any]:
    keys = ("utilization_percent", "memory_used", "memory_total", "temperature", "power")
    return {"index": 0, "name": name, "vendor": vendor, **dict(zip(keys, figures, strict=True)),
            "suspended": False}  # fmt: skip


@pytest.mark.parametrize(
    ("snapshot", "expected"),
    [
        # amdgpu: its hwmon's temp1 (edge) and power1_average (PPT).
        ("amd-vega56", _figures("AMD GPU 0x687f", "amd", 0.0, 16613376, 8573157376, 38.0, 8.0)),
        # An APU: power1_average (3.103 W) before power1_input (3.142 W).
        ("amd-phoenix", _figures("AMD GPU 0x15bf", "amd", 0.0, 1272893440, 4294967296, 25.0, 3.1)),
        # Intel Arc: an energy counter (energy1 on i915), watts once it has moved (its
        # captured value does not): 0 W since the reading at start.
        ("intel-a380-i915", _figures("Intel GPU", "intel", None, None, None, 55.0, 0.0)),
        # On xe: temperatures from temp2 (pkg), and energy2 alone.
        ("intel-a380-xe", _figures("Intel GPU 0x56a5", "intel", None, None, None, 56.0, 0.0)),
        # Linux 6.16's xe: energy1 (card) reads 0, energy2 (pkg) counts.
        ("intel-b580-6.16", _figures("Intel GPU 0xe20b", "intel", None, None, None, 46.0, 0.0)),
        # An iGPU, and NVIDIA's card on its own driver, without NVML: nothing to read.
        ("intel-tigerlake", None),
        ("nvidia-rtx4080", None),
    ],
)
def test_captured_gpus_are_read_from_sysfs(snapshot: str, expected: Any) -> None:
    found = gpu.find(str(LACT / snapshot / "sys"), proc="/nonexistent")
    if expected is None:
        assert found is None
        return
    assert found is not None
    try:
        assert settled(found)["gpus"] == [expected]
    finally:
        found.offloop.close()


def test_a_gpu_asleep_is_not_woken(tmp_path: Path) -> None:
    tree = tmp_path / "sys"
    shutil.copytree(LACT / "amd-vega56" / "sys", tree)
    device = tree / "class" / "drm" / "card0" / "device"
    found = gpu.find(str(tree), proc="/nonexistent")
    assert found is not None
    (device / "power" / "runtime_status").write_text("suspended\n")
    # Its figures' files, should they be read, now fail: they must not be.
    for name in ("gpu_busy_percent", "mem_info_vram_used", "hwmon/hwmon4/temp1_input"):
        (device / name).unlink()
        (device / name).mkdir()
    reading = found.reader()
    assert reading.errors == {}
    assert reading.part == [
        {"index": 0, "name": "AMD GPU 0x687f", "vendor": "amd", "utilization_percent": None,
         "memory_used": None, "memory_total": 8573157376, "temperature": None,
         "power": None, "suspended": True},
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("snapshot", "counter"),
    [("intel-a380-i915", "hwmon1/energy1_input"), ("intel-a380-xe", "hwmon0/energy2_input"),
     ("intel-b580-6.16", "hwmon4/energy2_input")],
)  # fmt: skip
def test_an_intel_dgpus_energy_counter_is_made_watts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, snapshot: str, counter: str
) -> None:
    tree = tmp_path / "sys"
    shutil.copytree(LACT / snapshot / "sys", tree)
    path = next(tree.glob(f"class/drm/card*/device/hwmon/{counter}"))
    captured = int(path.read_text())  # microjoules
    clock = [100.0]
    monkeypatch.setattr("server.sampling.gpu.time.monotonic", lambda: clock[0])
    found = gpu.find(str(tree), proc="/nonexistent")  # its first reading, at start
    assert found is not None
    found.offloop.close()
    clock[0] += 1.0
    first = found.reader().part[0]
    clock[0] += 2.0
    path.write_text(f"{captured + 30_000_000}\n")  # 30 J since
    second = found.reader().part[0]
    assert first["power"] == 0.0  # nothing drawn since the reading at start
    assert second["power"] == 15.0  # 30 J in 2 s
    assert second["utilization_percent"] is None and second["memory_total"] is None


# ---------------------------------------------------------------- GPUs: NVML

H100 = "linux-x86_64__nvidia-h100-80gb-hbm3__590.48.01"
H200_MIG = "linux-x86_64__nvidia-h200-mig__590.48.01"


def nvml_answers(capture: str, state: str) -> dict[str, Any]:
    """What NVML answers for the GPU of a captured `nvidia-smi --query-gpu` row, which
    prints NVML's figures in MiB and W (tests/fixtures/README.md: what is derived)."""
    row = next(r for r in NVIDIA_SMI if (r["capture"], r["state"]) == (capture, state))

    def value(column: str, unit: str) -> float | None:
        text = row[column]
        return None if text == "[N/A]" else float(text.removesuffix(unit))

    def mib(column: str) -> int:
        return int(value(f"memory.{column} [MiB]", " MiB") or 0) * 2**20

    total, free = mib("total"), mib("free")
    busy, watts = value("utilization.gpu [%]", " %"), value("power.draw [W]", " W")
    memory = value("utilization.memory [%]", " %")
    return {
        "name": row["name"],
        "busId": row["pci.bus_id"],
        # nvmlDeviceGetMemoryInfo v1: `used` is total - free, what the driver reserves
        # included; v2 (the collector's, where the driver has it) shows that apart, as
        # nvidia-smi prints it.
        "memory": {"total": total, "free": free, "used": total - free},
        "memory_v2": {"total": total, "free": free, "reserved": mib("reserved"),
                      "used": mib("used")},
        # "[N/A]": NVML answers NOT_SUPPORTED (utilisation, on a GPU in MIG mode).
        "utilization": "NOT_SUPPORTED" if busy is None else
                       {"gpu": int(busy), "memory": int(memory or 0)},
        "temperature": int(row["temperature.gpu"]),
        "power_mw": "NOT_SUPPORTED" if watts is None else round(watts * 1000),
    }  # fmt: skip


def test_nvml_answers_agree_with_their_capture() -> None:
    for capture, state in ((H100, "load"), (H200_MIG, "load")):
        row = next(r for r in NVIDIA_SMI if (r["capture"], r["state"]) == (capture, state))
        used = nvml_answers(capture, state)["memory"]["used"] // 2**20
        used_mib, reserved_mib = (
            int(row[f"memory.{c} [MiB]"].split()[0]) for c in ("used", "reserved")
        )
        shown = used_mib + reserved_mib
        assert abs(used - shown) <= 1, (capture, used, shown)  # MiB, each figure rounded


class FakeNvml:
    """pynvml as the GPU collector uses it, answering what NVML answers for two captured
    GPUs, put in one machine by this test: an H100 under load, and an H200 in MIG mode."""

    NVML_ERROR_NOT_SUPPORTED = 3
    NVML_ERROR_FUNCTION_NOT_FOUND = 13
    NVML_ERROR_GPU_IS_LOST = 15
    NVML_TEMPERATURE_GPU = 0
    nvmlMemory_v2 = 0x02000028

    class NVMLError(Exception):
        def __init__(self, value: int) -> None:
            messages = {3: "Not Supported", 13: "Function Not Found", 15: "GPU is lost"}
            super().__init__(messages.get(value, "Unknown Error"))
            self.value = value

    def __init__(self, driver_before_r510: bool = False) -> None:
        self.gpus = [nvml_answers(H100, "load"), nvml_answers(H200_MIG, "load")]
        self.without_v2 = driver_before_r510  # no nvmlDeviceGetMemoryInfo_v2 in its library
        self.calls: Counter[tuple[int, str]] = Counter()
        self.lost: set[int] = set()
        self.initialised = False
        self.shut = False

    def nvmlInit(self) -> None:
        self.initialised = True

    def nvmlShutdown(self) -> None:
        self.shut = True

    def nvmlDeviceGetCount(self) -> int:
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> int:
        return index

    def nvmlDeviceGetName(self, handle: int) -> Any:
        name = self.gpus[handle]["name"]
        return name.encode() if handle else name  # older bindings answer bytes

    def nvmlDeviceGetPciInfo(self, handle: int) -> Any:
        return types.SimpleNamespace(busId=self.gpus[handle]["busId"].encode())

    def _answer(self, handle: int, what: str) -> Any:
        self.calls[handle, what] += 1
        if handle in self.lost:
            raise self.NVMLError(self.NVML_ERROR_GPU_IS_LOST)
        value = self.gpus[handle][what]
        if value == "NOT_SUPPORTED":
            raise self.NVMLError(self.NVML_ERROR_NOT_SUPPORTED)
        return types.SimpleNamespace(**value) if isinstance(value, dict) else value

    def nvmlDeviceGetUtilizationRates(self, handle: int) -> Any:
        return self._answer(handle, "utilization")

    def nvmlDeviceGetMemoryInfo(self, handle: int, version: int | None = None) -> Any:
        if version is None:
            return self._answer(handle, "memory")
        assert version == self.nvmlMemory_v2
        if self.without_v2:
            self.calls[handle, "memory_v2"] += 1
            raise self.NVMLError(self.NVML_ERROR_FUNCTION_NOT_FOUND)
        return self._answer(handle, "memory_v2")

    def nvmlDeviceGetTemperature(self, handle: int, sensor: int) -> Any:
        assert sensor == self.NVML_TEMPERATURE_GPU
        return self._answer(handle, "temperature")

    def nvmlDeviceGetPowerUsage(self, handle: int) -> Any:
        return self._answer(handle, "power_mw")


def _pci(root: Path, bus: str, status: str) -> Path:
    path = root / "bus" / "pci" / "devices" / bus / "power" / "runtime_status"
    path.parent.mkdir(parents=True)
    path.write_text(status + "\n")
    return path


# nvidia-smi: 100 %, 19818 MiB used (+ 479 reserved) of 81559 MiB, 59 °C, 631.95 W.
H100_FIGURES = {"index": 0, "name": "NVIDIA H100 80GB HBM3", "vendor": "nvidia",
                "utilization_percent": 100.0, "memory_used": 19818 * 2**20,
                "memory_total": 81559 * 2**20, "temperature": 59.0, "power": 632.0,
                "suspended": False}  # fmt: skip
# nvidia-smi: utilisation [N/A] (MIG), 16959 MiB used (+ 614) of 143771 MiB, 36 °C, 295.01 W.
H200_FIGURES = {"index": 1, "name": "NVIDIA H200", "vendor": "nvidia",
                "utilization_percent": None, "memory_used": 16959 * 2**20,
                "memory_total": 143771 * 2**20, "temperature": 36.0, "power": 295.0,
                "suspended": False}  # fmt: skip


def test_nvidia_gpus_are_read_through_nvml(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    nvml = FakeNvml()
    _pci(tmp_path, "0000:00:09.0", "active")
    found = gpu.find(str(tmp_path), proc="/nonexistent", nvml=nvml)
    assert found is not None
    try:
        with caplog.at_level(logging.INFO, logger="dashboard.data"):
            part = settled(found)["gpus"]
            assert part == [H100_FIGURES, H200_FIGURES]
            # Not supported is not a failure, and is not asked again.
            settled(found)
            assert nvml.calls[1, "utilization"] == 1
            assert not caplog.records
            # A GPU that falls off the bus: null figures, said once, the other one read.
            nvml.lost.add(0)
            lost = [settled(found)["gpus"] for _ in range(2)]
            assert lost[0][0]["utilization_percent"] is None and lost[0][1]["temperature"] == 36.0
            assert found.success
            nvml.lost.clear()
            assert settled(found)["gpus"][0] == H100_FIGURES
    finally:
        found.offloop.close()
    said = [r.getMessage() for r in caplog.records]
    assert len(said) == 2, said
    assert said[0].startswith("cannot read gpu 0 (NVIDIA H100 80GB HBM3)") and "lost" in said[0]
    assert said[1] == "gpu 0 (NVIDIA H100 80GB HBM3) can be read again"


def test_an_nvidia_gpu_asleep_is_not_asked(tmp_path: Path) -> None:
    nvml = FakeNvml()
    status = _pci(tmp_path, "0000:83:00.0", "active")  # the H200
    found = gpu.find(str(tmp_path), proc="/nonexistent", nvml=nvml)
    assert found is not None
    status.write_text("suspended\n")
    asked = nvml.calls.copy()
    part = found.reader().part
    assert part[1]["suspended"] is True and part[1]["temperature"] is None
    assert nvml.calls - asked == Counter(
        {(0, w): 1 for w in ("utilization", "memory_v2", "temperature", "power_mw")}
    )


def test_a_driver_before_r510_is_asked_the_v1_memory_figure(tmp_path: Path) -> None:
    """Without NVML's v2 memory call, v1's `used` (what the driver reserves included)
    is shown, and v2 is not asked again, nor is it an error."""
    nvml = FakeNvml(driver_before_r510=True)
    found = gpu.find(str(tmp_path), proc="/nonexistent", nvml=nvml)
    assert found is not None
    try:
        for _ in range(2):
            part = settled(found)["gpus"]
        assert found.success
        assert part[0]["memory_used"] == 20296 * 2**20  # 19818 used + 479 reserved, rounded
        assert part[1]["memory_used"] == 17572 * 2**20
        assert nvml.calls[0, "memory_v2"] == 1 and nvml.calls[0, "memory"] >= 2  # each reading
    finally:
        found.offloop.close()


def test_nvml_is_loaded_only_where_the_driver_is(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    fake = FakeNvml()
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    dev = tmp_path / "dev"
    dev.mkdir()
    # No /proc/driver/nvidia, no /dev/nvidiactl: not even imported.
    assert gpu.load_nvml(str(tmp_path), str(dev)) is None
    assert not fake.initialised
    (dev / "nvidiactl").touch()  # a container given the device alone
    assert gpu.load_nvml(str(tmp_path), str(dev)) is fake and fake.initialised
    fake.initialised = False
    (dev / "nvidiactl").unlink()
    (tmp_path / "driver" / "nvidia").mkdir(parents=True)
    assert gpu.load_nvml(str(tmp_path), str(dev)) is fake and fake.initialised
    # The driver without the bindings: said, and no GPU figures.
    monkeypatch.setitem(sys.modules, "pynvml", None)
    with caplog.at_level(logging.WARNING, logger="dashboard.data"):
        assert gpu.load_nvml(str(tmp_path), str(dev)) is None
    assert "nvidia-ml-py is not installed" in caplog.text
    # NVML with no GPU to read and no other card: shut again, no collector.
    empty = FakeNvml()
    empty.gpus = []
    assert gpu.find(str(tmp_path), proc="/nonexistent", nvml=empty) is None
    assert empty.shut


# ---------------------------------------------------------------- what an agent may send


def _sensors_part() -> dict[str, Any]:
    part = sensors.SensorReader(str(NODE_EXPORTER), battery=battery_of(NODE_EXPORTER))().part
    copied: dict[str, Any] = json.loads(json.dumps(part))  # as it comes over the wire
    return copied


def _gpus_part(tmp_path: Path) -> list[dict[str, Any]]:
    found = gpu.find(str(tmp_path), proc="/nonexistent", nvml=FakeNvml())
    assert found is not None
    found.offloop.close()
    return list(found.reader().part)


def test_the_hub_takes_sensors_and_gpus_and_refuses_what_is_out_of_bounds(
    tmp_path: Path,
) -> None:
    good: dict[str, Any] = {"ts": time.time(), "sensors": _sensors_part(),
                            "gpus": _gpus_part(tmp_path)}  # fmt: skip
    assert schema.sample_problem(good) is None
    assert schema.sample_problem({**good, "sensors": None, "gpus": None}) is None

    def problem(path: str, value: Any) -> str | None:
        sample = json.loads(json.dumps(good))
        *parents, last = [int(p) if p.isdigit() else p for p in path.split(".")]
        node = sample
        for p in parents:
            node = node[p]
        node[last] = value
        return schema.sample_problem(sample)

    temperature = good["sensors"]["temperatures"][0]
    cases = [
        ("sensors.temperatures.0.current", 2000.0, "current must be within -273 and 1000"),
        ("sensors.temperatures.0.label", "evil\n2026 INFO forged",
         "label has characters it may not have"),
        ("sensors.temperatures.0.sensor", None, "sensor is missing"),
        ("sensors.temperatures", [temperature] * 33, "temperatures must have at most 32 items"),
        ("sensors.fans.0.rpm", -1, "rpm must be within 0 and 1e+06"),
        ("sensors.fans.0.rpm", 1.5, "rpm must be a whole number"),
        ("sensors.battery.plugged", "yes", "plugged must be true or false"),
        ("sensors.battery.volts", 12.4, "volts is not a key the contract knows"),
        ("gpus.0.utilization_percent", 101, "utilization_percent must be within 0 and 100"),
        ("gpus.0.memory_used", 2**64, "memory_used must be within 0 and 9.22337e+18"),
        ("gpus.0.name", "x" * 129, "name is longer than 128 characters"),
        ("gpus", [good["gpus"][0]] * 17, "gpus must have at most 16 items"),
        ("gpus.0.uuid", "GPU-1", "uuid is not a key the contract knows"),
    ]  # fmt: skip
    for path, value, message in cases:
        parent = path.rsplit(".", 1)[0] if "." in path else ""
        where = "sample." + (parent + "." if parent else "")
        assert problem(path, value) == where + message, path


# ---------------------------------------------------------------- the temperature rule


def _engine(**table: Any) -> Any:
    from server.alerts.rules import AlertEngine
    from server.alerts.settings import parse_settings

    settings = parse_settings({"anomaly": False, **table})
    return AlertEngine(settings, interval=1, cores=2, host="box")


Currents = dict[tuple[str, str], float]


def _reading(ts: float, currents: Currents | None = None, tree: Path = NODE_EXPORTER) -> Any:
    """A captured machine's sensors, each at 40 °C but those given: {(chip, label): °C}."""
    part = sensors.SensorReader(str(tree), battery=lambda: None)().part
    for t in part["temperatures"]:
        t["current"] = (currents or {}).get((t["sensor"], t["label"]), 40.0)
    return {"ts": ts, "cpu": {"percent": 1.0}, "disks": [], "sensors": part}


def _changes(engine: Any, ts: float, currents: Currents,
             tree: Path = NODE_EXPORTER) -> list[tuple[str, str, float]]:  # fmt: skip
    return [(a["rule"], a["level"], a["threshold"])
            for a in engine.evaluate(_reading(ts, currents, tree))]  # fmt: skip


PACKAGE = "temperature:coretemp/Physical id 0"


def _package(current: float) -> Currents:
    return {("coretemp", "Physical id 0"): current}


def test_a_temperature_fires_at_its_own_levels_with_hysteresis() -> None:
    engine = _engine(temperature={"for_seconds": 0, "clear_seconds": 0})
    assert _changes(engine, 0, _package(83.9)) == []  # its high level is 84
    assert _changes(engine, 1, _package(84.0)) == [(PACKAGE, "warning", 84.0)]
    alert = engine.active[PACKAGE]
    assert alert["metric"] == PACKAGE and alert["value"] == 84.0
    assert _changes(engine, 2, _package(100.0)) == [(PACKAGE, "critical", 100.0)]
    assert _changes(engine, 3, _package(96.0)) == []  # above its clear level, 95
    assert _changes(engine, 4, _package(94.0)) == [(PACKAGE, "warning", 95.0)]
    assert _changes(engine, 5, _package(80.0)) == []  # the warning clears below 79
    assert _changes(engine, 6, _package(78.9)) == [(PACKAGE, "ok", 79.0)]
    # The second socket's chip, of the same name, is judged on its own.
    assert _changes(engine, 7, {("coretemp#2", "Core 0"): 101.0}) == [
        ("temperature:coretemp#2/Core 0", "critical", 100.0),
    ]
    # An NVMe drive's own levels (high 84.85, critical 94.85, as the drive gives them).
    engine = _engine(temperature={"for_seconds": 0, "clear_seconds": 0})
    assert _changes(engine, 0, {("nvme", "Composite"): 95.0}, NVME) == [
        ("temperature:nvme/Composite", "critical", 94.8),
    ]


def test_a_temperature_holds_before_it_fires_and_before_it_clears() -> None:
    engine = _engine()  # 30 s and 30 s
    assert _changes(engine, 0, _package(90.0)) == []
    assert _changes(engine, 29, _package(90.0)) == []
    assert _changes(engine, 30, _package(90.0)) == [(PACKAGE, "warning", 84.0)]
    assert _changes(engine, 31, _package(60.0)) == []
    assert _changes(engine, 61, _package(60.0)) == [(PACKAGE, "ok", 79.0)]


def test_sensors_without_levels_are_judged_only_under_a_ceiling() -> None:
    # The drive's Sensor 1 gives no level (its 65261.85 °C is none): not judged at 99 °C.
    sensor_1 = ("nvme", "Sensor 1")
    engine = _engine(temperature={"for_seconds": 0})
    assert _changes(engine, 0, {sensor_1: 99.0}, NVME) == []
    # Ceilings: at most 70 / 90 for every sensor, lower than the sensors' own here.
    engine = _engine(temperature={"warning": 70, "critical": 90, "for_seconds": 0})
    assert _changes(engine, 0, {sensor_1: 75.0, ("nvme", "Composite"): 91.0}, NVME) == [
        ("temperature:nvme/Composite", "critical", 90.0),
        ("temperature:nvme/Sensor 1", "warning", 70.0),
    ]
    assert engine.settings.rules["temperature"].warning_clear == 65  # the gap kept


def test_the_temperature_rule_keeps_state_without_readings_and_resolves_gone_sensors() -> None:
    engine = _engine(temperature={"for_seconds": 0, "clear_seconds": 0})
    assert _changes(engine, 0, _package(85.0)) == [(PACKAGE, "warning", 84.0)]
    no_reading = {"ts": 1.0, "cpu": {"percent": 1.0}, "disks": [], "sensors": None}
    assert engine.evaluate(no_reading) == []  # the sensors do not answer: judge nothing
    unread = _reading(2)
    for t in unread["sensors"]["temperatures"]:
        t["current"] = None  # a sensor that cannot be read: judged on nothing
    assert engine.evaluate(unread) == []
    assert PACKAGE in engine.active
    # The chip is gone (its module unloaded): its alert resolves, its rules freed.
    gone = _reading(3)
    gone["sensors"]["temperatures"] = [t for t in gone["sensors"]["temperatures"]
                                       if t["sensor"] != "coretemp"]  # fmt: skip
    assert [(a["rule"], a["level"]) for a in engine.evaluate(gone)] == [(PACKAGE, "ok")]
    assert not [r for r in engine._rules if r.startswith("temperature:coretemp/")]
    assert [r for r in engine._rules if r.startswith("temperature:coretemp#2/")]


def test_the_temperature_rule_is_bounded_and_follows_hosts() -> None:
    from server.sampling.sensors import MAX_TEMPERATURES

    engine = _engine(temperature={"for_seconds": 0})
    for round_ in range(5):  # sensors whose names change each sample, as a hostile agent's
        temps = [{"sensor": f"s{round_}", "label": f"t{i}", "current": 50.0, "high": 60.0,
                  "critical": 70.0} for i in range(MAX_TEMPERATURES)]  # fmt: skip
        part = {"temperatures": temps, "fans": [], "battery": None}
        engine.evaluate({"ts": float(round_), "cpu": {"percent": 1.0}, "disks": [],
                         "sensors": part})  # fmt: skip
    assert sum(r.startswith("temperature:") for r in engine._rules) <= MAX_TEMPERATURES
    elsewhere = _engine(temperature={"for_seconds": 0, "hosts": ["other"]})
    assert _changes(elsewhere, 0, _package(99.0)) == []


def test_temperature_settings_are_checked_at_start() -> None:
    from server.alerts.settings import AlertSettingsError, page_levels, parse_settings

    levels = page_levels(parse_settings({}))
    assert levels["temperature"] == {"warning": 1000.0, "critical": 1000.0}  # none: own only
    with pytest.raises(AlertSettingsError, match="warning must not exceed critical"):
        parse_settings({"temperature": {"critical": 90}})
    with pytest.raises(AlertSettingsError, match=r"'alerts\.temperature\.high' is unknown"):
        parse_settings({"temperature": {"high": 90}})


# ---------------------------------------------------------------- /metrics


def test_metrics_carry_sensors_and_gpus_with_bounded_labels(
    client: FlaskClient, state: DashboardState, tmp_path: Path
) -> None:
    from testkit.system import require_binary
    from tests.test_metrics_export import scrape

    sample = state.sampler.tick()
    # Two captured machines' sensors in one sample (this test's making): the NVMe
    # drive's give a sensor without levels.
    part = _sensors_part()
    part["temperatures"] += sensors.SensorReader(str(NVME), battery=lambda: None)().part[
        "temperatures"
    ]
    sample["sensors"] = part
    sample["gpus"] = _gpus_part(tmp_path)
    found = scrape(client)

    def value(family: str, **labels: str) -> float:
        matches = [v for got, v in found[family] if all(got.get(k) == w for k, w in labels.items())]
        assert len(matches) == 1, (family, labels, found.get(family))
        return matches[0]

    assert value("dashboard_sensor_temperature_celsius", sensor="coretemp",
                 label="Physical id 0") == 55.0  # fmt: skip
    assert value("dashboard_sensor_temperature_celsius", sensor="coretemp#2",
                 label="Core 3") == 50.0  # fmt: skip
    assert value("dashboard_sensor_temperature_high_celsius", sensor="nvme",
                 label="Composite") == 84.8  # fmt: skip
    assert value("dashboard_sensor_temperature_critical_celsius", sensor="coretemp",
                 label="Core 0") == 100.0  # fmt: skip
    # A level the sensor does not give is left out, not 0.
    assert not [v for got, v in found["dashboard_sensor_temperature_high_celsius"]
                if got["label"] == "Sensor 1"]  # fmt: skip
    assert len(found["dashboard_sensor_temperature_celsius"]) == 14
    assert value("dashboard_fan_rpm", sensor="applesmc", label="Right side") == 1998
    assert value("dashboard_fan_rpm", sensor="applesmc", label="Left side") == 0
    assert value("dashboard_battery_ratio") == 0.812
    assert value("dashboard_battery_plugged") == 0
    assert value("dashboard_battery_seconds_left") == 26327
    assert value("dashboard_gpu_utilization_ratio", gpu="0",
                 name="NVIDIA H100 80GB HBM3") == 1.0  # fmt: skip
    assert value("dashboard_gpu_memory_used_bytes", gpu="1") == 16959 * 2**20
    assert value("dashboard_gpu_memory_total_bytes", gpu="0") == 81559 * 2**20
    assert value("dashboard_gpu_temperature_celsius", gpu="1") == 36.0
    assert value("dashboard_gpu_power_watts", gpu="0") == 632.0
    # The H200 in MIG mode gives no utilisation: left out.
    assert not [v for got, v in found["dashboard_gpu_utilization_ratio"] if got["gpu"] == "1"]
    assert value("dashboard_gpu_suspended", gpu="0") == 0
    labels = {tuple(sorted(got)) for name, samples in found.items() if "_gpu_" in name
              for got, _ in samples}  # fmt: skip
    assert labels == {("gpu", "host", "name")}
    promtool = require_binary("promtool")
    text = client.get("/metrics").get_data(as_text=True)
    check = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True,
                           text=True, timeout=30)  # fmt: skip
    flagged = {line.split()[0] for line in (check.stdout + check.stderr).splitlines()
               if line.strip()}  # fmt: skip
    assert not {name for name in flagged if "sensor" in name or "gpu" in name
                or "fan" in name or "battery" in name}, check.stdout + check.stderr  # fmt: skip


# ---------------------------------------------------------------- the page, through a hub


@pytest.fixture
def hub_with_box(tmp_path: Path) -> Iterator[tuple[Any, dict[str, Any]]]:
    """A hub whose temperature rule fires at once, and an agent `box` with sensors and GPUs,
    sending a sample a second (its coretemp package at its critical 100 °C); the test may
    change what the next samples carry (the dict it is given)."""
    from server.fleet.tokens import AgentTokens
    from testkit.config import write_toml
    from testkit.fleet import stand_in_agent
    from testkit.serverproc import ServerProcess

    config = write_toml(tmp_path / "hub.toml",
                        alerts={"temperature": {"for_seconds": 0, "clear_seconds": 0}})  # fmt: skip
    hub = ServerProcess(tmp_path / "hub" / "logs", "--config", str(config))
    token = AgentTokens(str(hub.data_dir)).add("box")
    part = _sensors_part()
    for t in part["temperatures"]:
        if (t["sensor"], t["label"]) == ("coretemp", "Physical id 0"):
            t["current"] = 100.0
    carried: dict[str, Any] = {"sensors": part, "gpus": _gpus_part(tmp_path)}
    hub.start()
    try:
        with stand_in_agent(hub.url, token, carried):
            yield hub, carried
    finally:
        hub.stop()


@pytest.mark.e2e
@pytest.mark.browser
def test_an_agents_sensors_and_gpus_reach_the_hubs_alerts_metrics_and_page(
    hub_with_box: tuple[Any, dict[str, Any]], browser: Any
) -> None:
    from testkit.wait import wait_until

    hub, carried = hub_with_box

    def alerts() -> list[tuple[str, str]] | None:
        active = requests.get(hub.url + "/api/hosts/box/alerts", timeout=5).json()["active"]
        found = [(a["rule"], a["level"]) for a in active if a["rule"].startswith("temperature")]
        return found or None

    assert wait_until(alerts, timeout=30, interval=0.5) == [(PACKAGE, "critical")]
    metrics = requests.get(hub.url + "/metrics", timeout=5).text
    assert re.search(r'dashboard_sensor_temperature_celsius\{[^}]*host="box"[^}]*'
                     r'label="Physical id 0"[^}]*\} 100\.0', metrics), metrics  # fmt: skip
    assert re.search(r'dashboard_gpu_utilization_ratio\{gpu="0",host="box",'
                     r'name="NVIDIA H100 80GB HBM3"\} 1\.0', metrics)  # fmt: skip

    browser.navigate(hub.url + "/host/box")
    browser.wait_for("document.body.dataset.status === 'live'", timeout=20)
    card = browser.wait_for("""(c => c && c.classList.contains('crit') && c.dataset.alert
      && JSON.stringify({value: c.querySelector('.big').textContent,
        lines: [...c.querySelectorAll('.sub')].map(e => e.textContent),
        alert: c.dataset.alert}))(document.getElementById('card-sensors'))""")
    assert json.loads(card) == {
        "value": "100.0\u00a0°C",
        "lines": [
            "Physical id 0 · coretemp",
            "fans up to 1998\u00a0rpm",
            "battery 81% · 7:18 left",
        ],
        "alert": "critical",
    }
    assert browser.evaluate("document.getElementById('cpu-temperature').textContent") == (
        "100.0\u00a0°C"
    )  # the CPU's hottest (coretemp), in the CPU card's heading
    gpus = json.loads(
        browser.evaluate("""JSON.stringify([...document.querySelectorAll('.gpu-card')]
      .map(c => [c.id, c.querySelector('h2').textContent, c.querySelector('.big').textContent,
                 ...[...c.querySelectorAll('.sub')].map(e => e.textContent)]))""")
    )
    assert gpus == [
        [
            "card-gpu-0",
            "GPU 0",
            "100.0 %",
            "19 GiB of 80 GiB",
            "59.0\u00a0°C · 632\u00a0W",
            "NVIDIA H100 80GB HBM3",
        ],
        [
            "card-gpu-1",
            "GPU 1",
            "\u2013",  # no utilisation
            "17 GiB of 140 GiB",
            "36.0\u00a0°C · 295\u00a0W",
            "NVIDIA H200",
        ],
    ]
    # Rendered by the server with the page: in place before the socket brought anything.
    html = requests.get(hub.url + "/host/box", timeout=5).text
    assert 'id="card-sensors"' in html and 'id="card-gpu-1"' in html
    # The sensors and the GPUs' driver stop answering: the cards stay, and say so.
    carried.update(sensors=None, gpus=None)
    gone = browser.wait_for("""(s => s.textContent === 'not answering' && JSON.stringify(
      [s.closest('.card').className, ...[...document.querySelectorAll('.gpu-card')]
        .map(c => c.className + ' ' + c.querySelector('.gpu-heat').textContent)]))(
      document.getElementById('sensors-name'))""")
    assert json.loads(gone) == [
        "card sensors-card unknown",
        "card gpu-card unknown not answering",
        "card gpu-card unknown not answering",
    ]
    # The hub's own host has none: no card, no room kept for one, nothing in the heading.
    own = requests.get(hub.url + "/api/static", timeout=5).json()["host"]
    browser.navigate(hub.url + "/host/" + own)
    browser.wait_for("document.body.dataset.status === 'live'", timeout=20)
    browser.wait_for("document.body.dataset.seq")
    assert (
        browser.evaluate("""[document.getElementById('card-sensors'),
      document.querySelector('.gpu-card'),
      document.getElementById('cpu-temperature').textContent].filter(Boolean).length""")
        == 0
    )
    assert browser.console_errors() == []
