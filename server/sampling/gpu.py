"""GPUs: how busy, how much of their memory is used, how hot, how much power they draw.

NVIDIA's through NVML (the nvidia-ml-py package, module `pynvml`), imported
only where NVIDIA's driver is loaded (/proc/driver/nvidia, /dev/nvidiactl):
elsewhere it is never imported and costs nothing. AMD's and Intel's through their driver's
sysfs files under /sys/class/drm/cardN/device: gpu_busy_percent,
mem_info_vram_used and mem_info_vram_total (amdgpu), and its hwmon's
first temperature (temp1_input; xe's temp2_input) and power1_average (or
power1_input; Intel's discrete GPUs give an energy counter, energyN_input,
made watts between two readings).

A GPU the kernel has put to sleep (runtime power management: a laptop's
second GPU) is not read, for a read of its files wakes it, and would keep it
awake every second: its entry says `suspended` and its figures are null
(but its memory size, read at start).

Readings run off the loop (server/sampling/offloop.py): an NVML call waits on
the driver, and can hang while a GPU is in trouble.

Where no GPU with one of these figures is found (a VM, a server without one,
an Intel iGPU, which has none of these files), no collector is made: the
sample has no `gpus`, and nothing is read per tick.
"""

from __future__ import annotations

import contextlib
import dataclasses
import glob
import importlib
import logging
import os
import re
import time
from typing import Any, NamedTuple

from server.logs import describe_error
from server.sampling.collector import Collector, FailureLog, percent
from server.sampling.offloop import OffLoop
from server.sampling.sensors import Outcome, celsius, clean, read_number, text_of

log = logging.getLogger("dashboard.data")

MAX_GPUS = 16  # GPUs in one sample
NAME_LENGTH = 128
MAX_WATTS = 100_000.0
VENDORS = {"0x1002": "amd", "0x8086": "intel", "0x10de": "nvidia"}  # PCI vendor ids
VENDOR_NAMES = {"amd": "AMD", "intel": "Intel", "nvidia": "NVIDIA"}
ASLEEP = ("suspended", "suspending")  # runtime_status values of a GPU not to be woken
_CARD = re.compile(r"\Acard(\d+)\Z")


def _name(value: Any) -> str:
    """NVML's text (bytes from older bindings) as the sample carries it."""
    return clean(value.decode(errors="replace") if isinstance(value, bytes) else str(value),
                 NAME_LENGTH)  # fmt: skip


def watts(value: float) -> float | None:
    return round(value, 1) if 0 <= value <= MAX_WATTS else None


@dataclasses.dataclass
class Gpu:
    index: int
    name: str
    vendor: str
    memory_total: int | None
    status: str | None  # its power/runtime_status file; None where the kernel has none

    @property
    def field(self) -> str:
        """Its name in the log's lines."""
        return f"gpu {self.index} ({self.name})"

    def asleep(self) -> bool:
        """Whether the kernel has put it to sleep (a read of this file wakes nothing)."""
        return self.status is not None and text_of(self.status, 16) in ASLEEP

    def figures(self, **values: Any) -> dict[str, Any]:
        return {
            "index": self.index,
            "name": self.name,
            "vendor": self.vendor,
            "utilization_percent": None,
            "memory_used": None,
            "memory_total": self.memory_total,
            "temperature": None,
            "power": None,
            "suspended": False,
            **values,
        }


@dataclasses.dataclass
class NvidiaGpu(Gpu):
    handle: Any = None
    unsupported: set[str] = dataclasses.field(default_factory=set)  # NVML said so: not asked


@dataclasses.dataclass
class DrmGpu(Gpu):
    busy: str | None = None  # the files it has, each None where it has not
    vram_used: str | None = None
    temperature: str | None = None
    power: str | None = None  # microwatts
    energy: str | None = None  # microjoules, a counter
    last_energy: tuple[float, int] | None = None  # (monotonic, microjoules) of the last reading


class Reading(NamedTuple):
    part: list[dict[str, Any]]  # the sample's `gpus`
    errors: dict[str, OSError]  # per failing GPU (Gpu.field): why


# ---------------------------------------------------------------- NVIDIA


def load_nvml(proc: str = "/proc", dev: str = "/dev") -> Any | None:
    """pynvml, initialised, where NVIDIA's driver is loaded (its /proc directory, or its
    control device, which a container is given without the other); else None, and
    nothing imported."""
    if not os.path.isdir(f"{proc}/driver/nvidia") and not os.path.exists(f"{dev}/nvidiactl"):
        return None
    try:
        nvml = importlib.import_module("pynvml")
    except ImportError:
        log.warning("NVIDIA's driver is loaded but nvidia-ml-py is not installed: "
                    "its GPUs are not sampled")  # fmt: skip
        return None
    try:
        nvml.nvmlInit()
    except Exception as exc:  # pynvml.NVMLError: no library, a driver of another version
        log.warning("NVIDIA's driver is loaded but NVML cannot be opened (%s): "
                    "its GPUs are not sampled", describe_error(exc))  # fmt: skip
        return None
    return nvml


def _nvidia_gpus(nvml: Any, root: str) -> list[NvidiaGpu]:
    try:
        count = int(nvml.nvmlDeviceGetCount())
    except nvml.NVMLError as exc:
        log.warning("NVML cannot count the GPUs (%s): they are not sampled", describe_error(exc))
        return []
    gpus: list[NvidiaGpu] = []
    for i in range(min(count, MAX_GPUS)):
        try:
            handle = nvml.nvmlDeviceGetHandleByIndex(i)
            name = _name(nvml.nvmlDeviceGetName(handle))
        except nvml.NVMLError as exc:  # lost, or fallen off the bus, at start
            log.warning("NVML cannot open GPU %d (%s): it is not sampled", i, describe_error(exc))
            continue
        total = status = None
        with contextlib.suppress(nvml.NVMLError):  # the readings say why, if it fails again
            total = int(nvml.nvmlDeviceGetMemoryInfo(handle).total)
        with contextlib.suppress(nvml.NVMLError):  # no bus id: never taken for asleep
            bus = _name(nvml.nvmlDeviceGetPciInfo(handle).busId)[-12:].lower()  # 0000:01:00.0
            status = _first(f"{root}/bus/pci/devices/{bus}/power/runtime_status")
        gpus.append(NvidiaGpu(i, name or f"GPU {i}", "nvidia", total, status, handle))
    return gpus


def _not_there(nvml: Any) -> set[int]:
    """NVML's answers for a call this GPU or driver does not have: not asked again."""
    names = ("NVML_ERROR_NOT_SUPPORTED", "NVML_ERROR_FUNCTION_NOT_FOUND",
             "NVML_ERROR_ARGUMENT_VERSION_MISMATCH")  # fmt: skip
    return {getattr(nvml, n) for n in names if hasattr(nvml, n)}


def _read_nvidia(nvml: Any, gpu: NvidiaGpu, errors: dict[str, OSError]) -> dict[str, Any]:
    handle = gpu.handle

    def ask(what: str, call: Any, *args: Any) -> Any:
        if what in gpu.unsupported:
            return None
        try:
            return call(handle, *args)
        except nvml.NVMLError as exc:
            if getattr(exc, "value", None) in _not_there(nvml):
                gpu.unsupported.add(what)  # (a MIG slice has no utilisation, some no power)
            else:
                errors.setdefault(gpu.field, OSError(f"{what}: {exc}"))
            return None

    rates = ask("utilization", nvml.nvmlDeviceGetUtilizationRates)
    # v2 (drivers from R510): its `used` leaves out what the driver reserves, as
    # nvidia-smi shows it; v1 counts that as used (479 MiB on an H100). v1 where v2 is
    # not there.
    memory = ask("memory_v2", nvml.nvmlDeviceGetMemoryInfo, nvml.nvmlMemory_v2)
    if memory is None and "memory_v2" in gpu.unsupported:
        memory = ask("memory", nvml.nvmlDeviceGetMemoryInfo)
    temperature = ask("temperature", nvml.nvmlDeviceGetTemperature, nvml.NVML_TEMPERATURE_GPU)
    milliwatts = ask("power", nvml.nvmlDeviceGetPowerUsage)
    return gpu.figures(
        utilization_percent=None if rates is None else percent(float(rates.gpu)),
        memory_used=None if memory is None else int(memory.used),
        memory_total=gpu.memory_total if memory is None else int(memory.total),
        temperature=None if temperature is None else celsius(int(temperature) * 1000),
        power=None if milliwatts is None else watts(milliwatts / 1000),
    )


# ---------------------------------------------------------------- sysfs (AMD, Intel)


def _first(*paths: str) -> str | None:
    return next((p for p in paths if os.path.exists(p)), None)


def _channels(hwmon: str | None, kind: str) -> list[str]:
    """A hwmon's `{kind}N_input` files, in channel order: the first need not be 1 (xe's
    temperatures start at temp2, and an A380 on xe has energy2 alone)."""
    numbered = []
    for path in glob.glob(f"{hwmon}/{kind}*_input") if hwmon else []:
        found = re.fullmatch(rf"{kind}(\d+)_input", os.path.basename(path))
        if found:
            numbered.append((int(found.group(1)), path))
    return [path for _, path in sorted(numbered)]


def _counting(counters: list[str], asleep: bool) -> str | None:
    """The first energy counter that has counted: a B580 on Linux 6.16 gives its `card`
    counter (energy1) as 0, its `pkg` one (energy2) counting. (A GPU asleep is not woken
    to be asked: its first.)"""
    for path in counters:
        with contextlib.suppress(OSError):
            if asleep or read_number(path) > 0:
                return path
    return None


def _drm_gpus(root: str, skip_nvidia: bool) -> list[DrmGpu]:
    gpus: list[DrmGpu] = []
    cards = [c for c in glob.glob(f"{root}/class/drm/card*") if _CARD.match(os.path.basename(c))]
    for card in sorted(cards, key=lambda c: int(os.path.basename(c)[4:])):
        device = f"{card}/device"
        vendor_id = text_of(f"{device}/vendor", 8)
        vendor = VENDORS.get(vendor_id, vendor_id or "unknown")
        if vendor == "nvidia" and skip_nvidia:
            continue  # NVML reads it
        hwmons = sorted(glob.glob(f"{device}/hwmon/hwmon*"))
        hwmon = hwmons[0] if hwmons else None
        power = hwmon and _first(f"{hwmon}/power1_average", f"{hwmon}/power1_input")
        status = _first(f"{device}/power/runtime_status")
        asleep = status is not None and text_of(status, 16) in ASLEEP
        gpu = DrmGpu(
            0, "", vendor, None, status,
            busy=_first(f"{device}/gpu_busy_percent"),
            vram_used=_first(f"{device}/mem_info_vram_used"),
            temperature=next(iter(_channels(hwmon, "temp")), None),
            power=power or None,
            energy=None if power else _counting(_channels(hwmon, "energy"), asleep),
        )  # fmt: skip
        if not any((gpu.busy, gpu.vram_used, gpu.temperature, gpu.power, gpu.energy)):
            continue  # nothing to read: an Intel iGPU, a virtual display
        try:
            gpu.memory_total = read_number(f"{device}/mem_info_vram_total")
        except OSError:
            gpu.memory_total = None
        device_id = text_of(f"{device}/device", 8)
        gpu.name = text_of(f"{device}/product_name", NAME_LENGTH) or " ".join(
            filter(None, (VENDOR_NAMES.get(vendor, vendor), "GPU", device_id))
        )
        gpus.append(gpu)
    return gpus


def _read_drm(gpu: DrmGpu, errors: dict[str, OSError]) -> dict[str, Any]:
    def number(path: str | None) -> int | None:
        if path is None:
            return None
        try:
            return read_number(path)
        except OSError as exc:
            errors.setdefault(gpu.field, exc)
            return None

    busy = number(gpu.busy)
    used = number(gpu.vram_used)
    temperature = number(gpu.temperature)
    power = None
    if gpu.power is not None:
        microwatts = number(gpu.power)
        power = None if microwatts is None else watts(microwatts / 1e6)
    elif gpu.energy is not None:
        now, microjoules = time.monotonic(), number(gpu.energy)
        last, gpu.last_energy = gpu.last_energy, None
        if microjoules is not None:
            gpu.last_energy = (now, microjoules)
            if last is not None and now > last[0] and microjoules >= last[1]:
                power = watts((microjoules - last[1]) / 1e6 / (now - last[0]))
    return gpu.figures(
        utilization_percent=None if busy is None else percent(float(busy)),
        memory_used=used,
        temperature=None if temperature is None else celsius(temperature),
        power=power,
    )


# ---------------------------------------------------------------- reading


class GpuReader:
    """Reads every GPU found, once per call: the reading thread's work (it logs nothing;
    the tick says what failed)."""

    def __init__(self, gpus: list[Gpu], nvml: Any | None = None) -> None:
        self.gpus = gpus
        self.nvml = nvml

    def __call__(self) -> Reading:
        errors: dict[str, OSError] = {}
        part = []
        for gpu in self.gpus:
            if gpu.asleep():
                if isinstance(gpu, DrmGpu):
                    gpu.last_energy = None  # no rate across a sleep
                part.append(gpu.figures(suspended=True))
            elif isinstance(gpu, NvidiaGpu):
                part.append(_read_nvidia(self.nvml, gpu, errors))
            else:
                assert isinstance(gpu, DrmGpu)
                part.append(_read_drm(gpu, errors))
        return Reading(part, errors)


class Gpus(Collector):
    """{"gpus": [...]}: null while no reading comes (a driver that does not answer). One
    GPU that cannot be read has null figures, logged once."""

    name = "gpus"

    def __init__(self, reader: GpuReader) -> None:
        super().__init__()
        self.reader = reader
        self.items = FailureLog()
        self.offloop = OffLoop("gpus", reader, reader())  # the first reading, at start

    def begin(self) -> None:
        self.offloop.kick()

    def read(self) -> dict[str, Any]:
        reading = self.offloop.latest()
        for field in set(reading.errors) | self.items.failing:  # edges only: logged once
            self.items.read(field, Outcome(reading.errors.get(field)))
        return {"gpus": reading.part}

    def null(self) -> dict[str, Any]:
        return {"gpus": None}


def find(
    root: str = "/sys", proc: str = "/proc", nvml: Any | None = None, dev: str = "/dev"
) -> Gpus | None:
    """The collector where the machine has a GPU to read; else None (and nothing runs).

    `nvml`: a pynvml module (tests give a fake); by default loaded where the driver is.
    """
    nvml = nvml if nvml is not None else load_nvml(proc, dev)
    nvidia = _nvidia_gpus(nvml, root) if nvml is not None else []
    drm = _drm_gpus(root, skip_nvidia=bool(nvidia))
    # NVML's index (nvidia-smi's), then the cards' in their order.
    after = nvidia[-1].index + 1 if nvidia else 0
    for number, gpu in enumerate(drm):
        gpu.index = after + number
    gpus: list[Gpu] = [*nvidia, *drm][:MAX_GPUS]
    if not gpus:
        if nvml is not None:
            with contextlib.suppress(Exception):  # nothing of NVML is used after this
                nvml.nvmlShutdown()
        return None
    return Gpus(GpuReader(gpus, nvml if nvidia else None))
