"""Temperatures, fans and the battery: the kernel's sensors, each with its own levels.

Temperatures and fans come from the files psutil's sensors_temperatures() and
sensors_fans() read (/sys/class/hwmon; /sys/class/thermal where hwmon has no
temperature), in two halves:
- what a sensor is (its chip, its label, its high and critical levels) is
  found at start and again every REDISCOVER_EVERY readings;
- a reading reads each sensor's input file and nothing else. psutil reads
  five files a sensor and walks the tree on each call, for names and levels
  that do not change.
The battery is psutil.sensors_battery(), every BATTERY_EVERY readings (eight
files; it moves by the minute).

Readings run off the loop (server/sampling/offloop.py): an ACPI thermal zone
or a laptop's fan is read through the embedded controller, tens of
milliseconds each, and an NVMe temperature is a command to the drive.

Bounded: at most MAX_TEMPERATURES temperatures and MAX_FANS fans, taken a
channel of each chip in turn, so a chip with a sensor per core gives way to
the others (its first channel, the package, stays). Names are the kernel's:
the chip's (`coretemp`, `nvme`; a second chip of the same name is `nvme#2`)
and the channel's label, or the channel (`temp1`) where it has none, as
lm-sensors shows it.

Where the machine has none of these (a VM, most containers), find() finds
nothing and no collector is made: the sample has no `sensors`, and nothing
is read per tick; sensors that appear later (a driver loaded after the
service started) are found by a restart. Where it has some, those that come
and go are found at the next finding.
"""

from __future__ import annotations

import dataclasses
import glob
import os
import re
from collections.abc import Callable
from typing import Any, NamedTuple

import psutil

from server.sampling.collector import Collector, FailureLog, percent
from server.sampling.offloop import OffLoop

MAX_TEMPERATURES = 32  # temperatures in one sample
MAX_FANS = 16  # fans in one sample
NAME_LENGTH = 64  # a chip's name, a channel's label
LOWEST, HIGHEST = -273.0, 1000.0  # °C: the kernel's value outside is no temperature (null)
MAX_RPM = 1_000_000
REDISCOVER_EVERY = 60  # readings (a minute at 1 s): sensors that came, went or changed levels
BATTERY_EVERY = 10  # readings between two reads of the battery

_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_INPUT = re.compile(r"\A(temp|fan)(\d+)_input\Z")
_TRAILING_NUMBER = re.compile(r"(\d+)\Z")


@dataclasses.dataclass(frozen=True)
class Channel:
    """One sensor: what it is, and the file its value is in."""

    sensor: str  # the chip's name, unique on the host
    label: str  # unique within its chip
    path: str
    high: float | None = None  # °C, temperatures only
    critical: float | None = None

    @property
    def field(self) -> str:
        """Its name in the log's lines: `temperature coretemp/Core 0`, `fan thinkpad/fan1`."""
        kind = "fan" if os.path.basename(self.path).startswith("fan") else "temperature"
        return f"{kind} {self.sensor}/{self.label}"


class Reading(NamedTuple):
    part: dict[str, Any]  # the sample's `sensors`
    errors: dict[str, OSError]  # per failing field (Channel.field, "battery"): why


# ---------------------------------------------------------------- files


def read_number(path: str) -> int:
    """A sysfs file's integer; OSError for a file that is gone or holds no number."""
    with open(path, "rb", buffering=0) as f:
        text = f.read(64)
    try:
        return int(text)
    except ValueError:
        raise OSError(f"{path} holds no number: {text[:20]!r}") from None


def celsius(millidegrees: int) -> float | None:
    value = millidegrees / 1000
    return round(value, 1) if LOWEST <= value <= HIGHEST else None


def clean(text: str, length: int = NAME_LENGTH) -> str:
    """A name as the kernel or a driver gave it, without what could forge a log line."""
    return _UNPRINTABLE.sub("?", text.strip())[:length]


def text_of(path: str, length: int = NAME_LENGTH) -> str:
    """A name file's text, cleaned; '' where it is absent."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return clean(f.read(512), length)
    except OSError:
        return ""


def _level(path: str) -> float | None:
    """A level (tempN_max, tempN_crit, a trip point) in °C; None where absent, unreadable
    or not above 0 (what some chips give for "not set")."""
    try:
        value = celsius(read_number(path))
    except OSError:
        return None
    return value if value is not None and value > 0 else None


def _number_in(path: str) -> int:
    found = _TRAILING_NUMBER.search(path)
    return int(found.group(1)) if found else 0


# ---------------------------------------------------------------- finding


def _hwmon_dirs(root: str) -> list[str]:
    """Each hwmon device once, in the kernel's order: /sys/class/hwmon's, and coretemp's
    where the class lacks it (as psutil reads, its issue #1708)."""
    dirs = sorted(glob.glob(f"{root}/class/hwmon/hwmon*"), key=_number_in)
    known = {os.path.realpath(d) for d in dirs}
    for extra in sorted(glob.glob(f"{root}/devices/platform/coretemp.*/hwmon/hwmon*")):
        if os.path.realpath(extra) not in known:
            dirs.append(extra)
    return dirs


def _inputs(directory: str) -> dict[str, list[int]]:
    """The channels with an input file: {"temp": [1, 2, ...], "fan": [...]}, in order."""
    found: dict[str, list[int]] = {"temp": [], "fan": []}
    try:
        names = os.listdir(directory)
    except OSError:
        return found
    for name in names:
        match = _INPUT.match(name)
        if match:
            found[match.group(1)].append(int(match.group(2)))
    for numbers in found.values():
        numbers.sort()
    return found


def _readable(channel: Channel) -> bool:
    """Whether its input reads now: a channel that fails at once is left out, as psutil
    leaves it out (an unconnected input answers EIO or ENODATA)."""
    try:
        read_number(channel.path)
    except OSError:
        return False
    return True


def _unique(channels: list[Channel]) -> list[Channel]:
    """A label given twice in one chip gets `#2`, `#3` (/metrics' labels and the alert
    rules' names must be unique)."""
    seen: dict[str, int] = {}
    out = []
    for channel in channels:
        seen[channel.label] = count = seen.get(channel.label, 0) + 1
        out.append(channel if count == 1 else
                   dataclasses.replace(channel, label=f"{channel.label} #{count}"))  # fmt: skip
    return out


def _hwmon_chips(root: str) -> tuple[list[list[Channel]], list[list[Channel]]]:
    """Per chip, its temperatures and its fans."""
    temperatures: list[list[Channel]] = []
    fans: list[list[Channel]] = []
    names: dict[str, int] = {}
    for hwmon in _hwmon_dirs(root):
        name = text_of(f"{hwmon}/name")
        base, inputs = hwmon, _inputs(hwmon)
        if not inputs["temp"] and not inputs["fan"]:  # older kernels: under device/, and
            base, inputs = f"{hwmon}/device", _inputs(f"{hwmon}/device")  # the name too
            name = name or text_of(f"{base}/name")
        if not name:
            continue
        found_temperatures = [
            Channel(name, text_of(f"{base}/temp{n}_label") or f"temp{n}", f"{base}/temp{n}_input",
                    _level(f"{base}/temp{n}_max"), _level(f"{base}/temp{n}_crit"))
            for n in inputs["temp"]
        ]  # fmt: skip
        found_fans = [
            Channel(name, text_of(f"{base}/fan{n}_label") or f"fan{n}", f"{base}/fan{n}_input")
            for n in inputs["fan"]
        ]
        found_temperatures = [c for c in found_temperatures if _readable(c)]
        found_fans = [c for c in found_fans if _readable(c)]
        if not found_temperatures and not found_fans:
            continue
        names[name] = count = names.get(name, 0) + 1
        chip = name if count == 1 else f"{name}#{count}"[:NAME_LENGTH]
        if found_temperatures:
            temperatures.append(_unique([dataclasses.replace(c, sensor=chip)
                                         for c in found_temperatures]))  # fmt: skip
        if found_fans:
            fans.append(_unique([dataclasses.replace(c, sensor=chip) for c in found_fans]))
    return temperatures, fans


def _thermal_zones(root: str) -> list[list[Channel]]:
    """/sys/class/thermal's zones, where hwmon has no temperature (psutil's fallback): the
    zone's type is the sensor, the zone the label; its `hot` and `critical` trip points
    are its levels."""
    zones: list[list[Channel]] = []
    for zone in sorted(glob.glob(f"{root}/class/thermal/thermal_zone*"), key=_number_in):
        kind = text_of(f"{zone}/type")
        if not kind:
            continue
        levels: dict[str, float | None] = {}
        for trip in sorted(glob.glob(f"{zone}/trip_point_*_type")):
            trip_type = text_of(trip)
            if trip_type in ("hot", "critical") and levels.get(trip_type) is None:
                levels[trip_type] = _level(trip.removesuffix("type") + "temp")
        channel = Channel(kind, os.path.basename(zone), f"{zone}/temp",
                          levels.get("hot"), levels.get("critical"))  # fmt: skip
        if _readable(channel):
            zones.append([channel])
    return zones


def _bounded(chips: list[list[Channel]], most: int) -> list[Channel]:
    """At most `most` channels, a channel of each chip in turn, kept in the chips' order."""
    taken = [0] * len(chips)
    left, depth = most, 0
    while left > 0 and any(depth < len(chip) for chip in chips):
        for i, chip in enumerate(chips):
            if depth < len(chip) and left > 0:
                taken[i] += 1
                left -= 1
        depth += 1
    return [channel for chip, n in zip(chips, taken, strict=True) for channel in chip[:n]]


def discover(root: str = "/sys") -> tuple[list[Channel], list[Channel]]:
    """The machine's temperatures and fans (bounded), read from the sysfs under `root`."""
    temperatures, fans = _hwmon_chips(root)
    if not temperatures:
        temperatures = _thermal_zones(root)
    return _bounded(temperatures, MAX_TEMPERATURES), _bounded(fans, MAX_FANS)


def battery_part(found: Any) -> dict[str, Any] | None:
    """psutil's sbattery as the sample carries it; None without a battery."""
    if found is None:
        return None
    seconds = found.secsleft  # negative: psutil's "unlimited" (plugged in) or "unknown"
    plugged = found.power_plugged
    return {
        "percent": percent(found.percent),
        "plugged": plugged if isinstance(plugged, bool) else None,
        "seconds_left": int(seconds) if isinstance(seconds, int | float)
        and 0 <= seconds < 2**31 else None,
    }  # fmt: skip


# ---------------------------------------------------------------- reading


class SensorReader:
    """Finds the sensors, then reads them once per call: the reading thread's work (it
    logs nothing; the tick says what failed)."""

    def __init__(self, root: str = "/sys", battery: Callable[[], Any] | None = None) -> None:
        self.root = root
        self._battery_reader = battery or psutil.sensors_battery
        self.temperatures, self.fans = discover(root)
        try:
            self.has_battery = self._battery_reader() is not None
        except (psutil.Error, OSError):
            self.has_battery = False
        self.readings = 0
        self._battery: dict[str, Any] | None = None
        self._battery_error: OSError | None = None

    @property
    def found(self) -> bool:
        return bool(self.temperatures or self.fans or self.has_battery)

    def __call__(self) -> Reading:
        self.readings += 1
        if self.readings % REDISCOVER_EVERY == 0:
            self.temperatures, self.fans = discover(self.root)
        errors: dict[str, OSError] = {}
        temperatures = []
        for channel in self.temperatures:
            current = None
            try:
                current = celsius(read_number(channel.path))
            except OSError as exc:
                errors[channel.field] = exc
            temperatures.append({"sensor": channel.sensor, "label": channel.label,
                                 "current": current, "high": channel.high,
                                 "critical": channel.critical})  # fmt: skip
        fans = []
        for channel in self.fans:
            rpm = None
            try:
                rpm = read_number(channel.path)
            except OSError as exc:
                errors[channel.field] = exc
            valid = rpm is not None and 0 <= rpm <= MAX_RPM
            fans.append({"sensor": channel.sensor, "label": channel.label,
                         "rpm": rpm if valid else None})  # fmt: skip
        if self.has_battery and self.readings % BATTERY_EVERY == 1:
            self._read_battery()
        if self._battery_error is not None:
            errors["battery"] = self._battery_error
        part = {"temperatures": temperatures, "fans": fans, "battery": self._battery}
        return Reading(part, errors)

    def _read_battery(self) -> None:
        try:
            self._battery = battery_part(self._battery_reader())
            self._battery_error = None
        except psutil.Error as exc:
            self._battery, self._battery_error = None, OSError(str(exc))
        except OSError as exc:
            self._battery, self._battery_error = None, exc


class Sensors(Collector):
    """{"sensors": {temperatures, fans, battery}}: null while no reading comes (a driver
    that does not answer). One sensor that cannot be read is null, logged once."""

    name = "sensors"

    def __init__(self, reader: SensorReader) -> None:
        super().__init__()
        self.reader = reader
        self.items = FailureLog()
        self.offloop = OffLoop("sensors", reader, reader())  # the first reading, at start

    def begin(self) -> None:
        self.offloop.kick()

    def read(self) -> dict[str, Any]:
        reading = self.offloop.latest()
        if reading.errors or self.items.failing:  # edges only: a line when one fails or heals
            present = self._fields(reading.part)
            for field in (set(reading.errors) | self.items.failing) & present:
                self.items.read(field, Outcome(reading.errors.get(field)))
        return {"sensors": reading.part}

    @staticmethod
    def _fields(part: dict[str, Any]) -> set[str]:
        fields = {f"temperature {t['sensor']}/{t['label']}" for t in part["temperatures"]}
        fields |= {f"fan {f['sensor']}/{f['label']}" for f in part["fans"]}
        return fields | {"battery"}

    def null(self) -> dict[str, Any]:
        return {"sensors": None}


class Outcome:
    """A reader for FailureLog.read: raises what the reading thread met, or reads None."""

    def __init__(self, error: OSError | None) -> None:
        self.error = error

    def __call__(self) -> None:
        if self.error is not None:
            raise self.error


def find(root: str = "/sys", battery: Callable[[], Any] | None = None) -> Sensors | None:
    """The collector where the machine has a temperature, a fan or a battery; else None
    (and nothing runs)."""
    reader = SensorReader(root, battery)
    return Sensors(reader) if reader.found else None
