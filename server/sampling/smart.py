"""Disk health: each drive's S.M.A.R.T. figures, through `smartctl --json` (smartmontools).

What a drive says of itself moves by the hour, and asking it is a command to
the drive (tens of milliseconds; seconds through a slow USB bridge), so it is
read every `smart_every` seconds (300 by default), in an OS thread of its own
(server/sampling/offloop.py), and the newest reading is attached to every
sample as `disk_health`. Each smartctl call has a deadline (CALL_TIMEOUT: the
process is killed past it) and a round has one too (ROUND_TIMEOUT: the drives
not reached keep their last entry).

The drives are those `smartctl --scan-open` finds, each asked with the type
the scan gave it; where it finds none (a VM's virtio disk is not scanned),
those of /sys/block that are not virtual (loop, zram, dm, md are). At most
MAX_DRIVES. Each is asked `--info --health --attributes --nocheck=standby`:
read-only, and a spun-down disk is not woken (smartctl answers "Device is in
STANDBY mode" and the entry keeps its last figures, with `standby: true`).

A drive that does not support S.M.A.R.T. (a virtio disk, a USB bridge smartctl
does not know) keeps an entry with `supported: false` and null figures, so the
sample says why it has none; it is said once in the log, and asked again once
a day only (another drive may have come in under its name).

A serial number is never put in the sample (nor in /metrics): it identifies one
physical drive, and its owner through the vendor's warranty records, and would
go to the hub, the store and every page; no figure here needs it.

Where smartctl is not installed, or the process is not root (smartctl needs
root to send commands to a drive), or `smart = off`, no collector is made:
one log line, no key in the sample, nothing runs.

The figures: `health` (smartctl's overall assessment, "passed" or "failed"),
`temperature` (°C), `power_on_hours`; ATA's attributes 5 (reallocated sectors),
197 (pending) and 198 (offline uncorrectable), raw counts; NVMe's
`percentage_used` (`wear_percent`, which may pass 100) and `media_errors`;
SCSI's grown defect list (`reallocated`) and endurance used (`wear_percent`).
A figure a drive does not give is null.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import re
import shutil
import subprocess
import time
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

from server.sampling.collector import Collector, FailureLog
from server.sampling.offloop import OffLoop
from server.sampling.sensors import HIGHEST, LOWEST, Outcome, clean

log = logging.getLogger("dashboard.data")

MAX_DRIVES = 32  # drives in one sample
DEVICE_LENGTH = 64  # a device's name in the sample: "/dev/sda", "/dev/bus/0 megaraid,1"
MODEL_LENGTH = 64
PROTOCOL_LENGTH = 16
MAX_COUNT = 2**48  # ATA raw values are 48 bits
MAX_HOURS = 2**32
MAX_WEAR = 255  # NVMe's percentage_used is a byte, and may pass 100
CALL_TIMEOUT = 15.0  # seconds one smartctl call may take before it is killed
ROUND_TIMEOUT = 120.0  # seconds one round may take; drives not reached wait for the next
MAX_OUTPUT = 1 << 20  # bytes of JSON one call may give (a full -x is ~40 KB)
EVERY_DEFAULT = 300.0

QUERY = ("--json=c", "--info", "--health", "--attributes", "--nocheck=standby")
SCAN = ("--json=c", "--scan-open")
UNSUPPORTED_RETRY = 86400.0  # seconds before a drive found unsupported is asked again
_STANDBY = re.compile(r"Device is in \S+.* mode")
# Kernel block devices that are no drive: their sysfs path is under devices/virtual.
_VIRTUAL = "/devices/virtual/"


class Answer(NamedTuple):
    status: int  # smartctl's exit status (a bit mask)
    output: bytes  # its JSON


# How smartctl is called: the arguments after the program's name, its answer. Tests give
# one that answers with captured outputs.
Run = Callable[[Sequence[str]], Answer]


@dataclasses.dataclass(frozen=True)
class Drive:
    """A drive to ask: its device and the type to ask it as (None: smartctl's guess)."""

    name: str
    type: str | None = None
    open_error: str | None = None  # the scan could not open it

    @property
    def device(self) -> str:
        """Its name in the sample: the path, with the type where a path holds several
        drives (a RAID controller's `megaraid,0`, `megaraid,1`)."""
        label = f"{self.name} {self.type}" if self.type and "," in self.type else self.name
        return clean(label, DEVICE_LENGTH)

    def args(self) -> list[str]:
        return [*QUERY, *(["-d", self.type] if self.type else []), self.name]


class Reading(NamedTuple):
    part: list[dict[str, Any]]  # the sample's `disk_health`
    errors: dict[str, OSError]  # per drive that could not be asked this round: why
    notes: list[str]  # lines for the log, once: drives found not to support S.M.A.R.T.


# ---------------------------------------------------------------- running smartctl


def smartctl_path() -> str | None:
    """smartctl's path: on PATH, or in /usr/sbin (not on a user's PATH on Debian)."""
    return shutil.which("smartctl") or shutil.which("smartctl", path="/usr/sbin:/sbin")


def runner(path: str, timeout: float = CALL_TIMEOUT) -> Run:
    """A Run that executes smartctl with a deadline.

    Past `timeout` the process is killed, and waited for one second more: a smartctl
    stuck in the kernel (a drive that does not answer) cannot be killed until the
    kernel lets go, and the reading thread must not wait for that.
    """
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C"}

    def run(args: Sequence[str]) -> Answer:
        # Not `with Popen(...)`: its exit waits for the process without a deadline.
        process = subprocess.Popen(
            [path, *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=env,
        )
        try:
            output, _ = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(1.0)  # else left to the kernel; Popen reaps it later
            raise TimeoutError(f"smartctl took more than {timeout:g} s") from None
        finally:
            if process.stdout is not None:
                process.stdout.close()
        return Answer(process.returncode, output[:MAX_OUTPUT])

    return run


def parse(answer: Answer) -> dict[str, Any]:
    """smartctl's JSON, whatever its exit status (a bit mask: 1 also says "unable to detect
    device type", 2 "cannot open", 4 and above what it found wrong with the drive: the
    JSON says more); OSError where there is none (smartctl before 7.0 had no --json)."""
    try:
        found = json.loads(answer.output)
    except ValueError:
        raise OSError(f"smartctl gave no JSON (exit status {answer.status}): "
                      "smartmontools 7.0 or later is needed") from None  # fmt: skip
    if not isinstance(found, dict):
        raise OSError("smartctl's JSON is not an object")
    return found


def table(found: dict[str, Any], key: str) -> dict[str, Any]:
    """A table of smartctl's JSON; empty where it is absent (or not a table)."""
    value = found.get(key)
    return value if isinstance(value, dict) else {}


def messages(found: dict[str, Any]) -> list[str]:
    """What smartctl said beside its figures ("Unable to detect device type", ...)."""
    said = table(found, "smartctl").get("messages") or []
    return [m["string"] for m in said if isinstance(m, dict) and isinstance(m.get("string"), str)]


# ---------------------------------------------------------------- finding the drives


def scanned(found: dict[str, Any]) -> list[Drive]:
    """The drives of a `--scan-open` answer."""
    drives = []
    for item in found.get("devices") or []:
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            continue
        kind, error = item.get("type"), item.get("open_error")
        drives.append(Drive(item["name"], kind if isinstance(kind, str) else None,
                            error if isinstance(error, str) else None))  # fmt: skip
    return drives


def block_devices(root: str = "/sys") -> list[Drive]:
    """The kernel's whole disks that are hardware (not loop, zram, dm, md, ...), where the
    scan finds none: smartctl's guess of their type."""
    try:
        names = sorted(os.listdir(f"{root}/block"))
    except OSError:
        return []
    drives = []
    for name in names:
        target = os.path.realpath(f"{root}/block/{name}")
        if _VIRTUAL in target or not os.path.exists(f"{root}/block/{name}/device"):
            continue
        drives.append(Drive(f"/dev/{name}"))
    return drives


# ---------------------------------------------------------------- one drive's entry


def _int(value: Any, high: float) -> int | None:
    """A count smartctl gave, or None where it gave none (or nonsense)."""
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    return value if 0 <= value <= high else None


def _attributes(found: dict[str, Any]) -> dict[int, Any]:
    """ATA attributes by id: their raw values."""
    rows = table(found, "ata_smart_attributes").get("table") or []
    return {a["id"]: table(a, "raw").get("value") for a in rows
            if isinstance(a, dict) and isinstance(a.get("id"), int)}  # fmt: skip


def _model(found: dict[str, Any]) -> str | None:
    model = found.get("model_name") or found.get("scsi_model_name")
    if not isinstance(model, str):
        vendor, product = found.get("scsi_vendor"), found.get("scsi_product")
        model = " ".join(p for p in (vendor, product) if isinstance(p, str)) or None
    return clean(model, MODEL_LENGTH) if model else None


def blank(device: str, model: str | None = None, supported: bool | None = None) -> dict[str, Any]:
    """An entry without figures."""
    return {
        "device": device,
        "model": model,
        "protocol": None,
        "supported": supported,
        "standby": False,
        "health": None,
        "temperature": None,
        "power_on_hours": None,
        "reallocated": None,
        "pending": None,
        "uncorrectable": None,
        "media_errors": None,
        "wear_percent": None,
    }


def supports_smart(found: dict[str, Any]) -> bool:
    """Whether the answer has health figures: an overall assessment, ATA attributes, the
    NVMe health log; and the drive does not say it has no S.M.A.R.T."""
    support = found.get("smart_support")
    if isinstance(support, dict) and support.get("available") is False:
        return False
    keys = ("smart_status", "ata_smart_attributes", "nvme_smart_health_information_log")
    return any(isinstance(found.get(k), dict) for k in keys)


def entry(device: str, found: dict[str, Any]) -> dict[str, Any]:
    """A supported drive's entry, from smartctl's JSON."""
    passed = table(found, "smart_status").get("passed")
    temperature = table(found, "temperature").get("current")
    attributes = _attributes(found)
    nvme = table(found, "nvme_smart_health_information_log")
    wear = nvme.get("percentage_used")
    if wear is None:  # SCSI: smartmontools 7.4's name, then older ones'
        wear = table(found, "endurance_used").get("current_percent")
    if wear is None:
        wear = found.get("scsi_percentage_used_endurance_indicator")
    reallocated = attributes.get(5)
    if reallocated is None:
        reallocated = found.get("scsi_grown_defect_list")
    protocol = table(found, "device").get("protocol")
    return {
        **blank(device, _model(found), True),
        "protocol": clean(protocol, PROTOCOL_LENGTH) if isinstance(protocol, str) else None,
        "health": None if not isinstance(passed, bool) else "passed" if passed else "failed",
        "temperature": temperature if isinstance(temperature, int | float)
        and not isinstance(temperature, bool) and LOWEST <= temperature <= HIGHEST else None,
        "power_on_hours": _int(table(found, "power_on_time").get("hours"), MAX_HOURS),
        "reallocated": _int(reallocated, MAX_COUNT),
        "pending": _int(attributes.get(197), MAX_COUNT),
        "uncorrectable": _int(attributes.get(198), MAX_COUNT),
        "media_errors": _int(nvme.get("media_errors"), MAX_COUNT),
        "wear_percent": _int(wear, MAX_WEAR),
    }  # fmt: skip


# ---------------------------------------------------------------- reading


class SmartReader:
    """One round a call: the drives, then each drive that supports S.M.A.R.T. The reading
    thread's work: it logs nothing (the tick logs what a Reading says)."""

    def __init__(
        self, run: Run, root: str = "/sys", clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.run = run
        self.root = root
        self.clock = clock
        # Drives without S.M.A.R.T.: their model (if known) and since when. Asked again
        # after UNSUPPORTED_RETRY only (another drive may have come in under that name).
        self.unsupported: dict[Drive, tuple[str | None, float]] = {}
        self.said: set[Drive] = set()  # those the log has been told of (once each)
        self.last: dict[str, dict[str, Any]] = {}  # device -> its last entry
        self.calls = 0  # smartctl runs (tests count them)

    def _ask(self, args: Sequence[str]) -> dict[str, Any]:
        self.calls += 1
        return parse(self.run(args))

    def drives(self) -> list[Drive]:
        """What to ask this round: the scan's drives, or else /sys/block's; bounded."""
        found = scanned(self._ask(SCAN)) or block_devices(self.root)
        seen: set[str] = set()
        unique = []
        for drive in found:
            if drive.device not in seen:
                seen.add(drive.device)
                unique.append(drive)
        return unique[:MAX_DRIVES]

    def __call__(self) -> Reading:
        started = self.clock()
        part: list[dict[str, Any]] = []
        errors: dict[str, OSError] = {}
        notes: list[str] = []
        for drive in self.drives():
            device = drive.device
            known = self.unsupported.get(drive)
            if known is not None and started - known[1] < UNSUPPORTED_RETRY:
                part.append(blank(device, known[0], False))
            elif drive.open_error is not None:
                part.append(self._unsupported(drive, None, drive.open_error, notes))
            elif self.clock() - started > ROUND_TIMEOUT:  # the rest keep their last entry
                part.append(self.last.get(device) or blank(device))
            else:
                try:
                    found = self._ask(drive.args())
                except OSError as exc:
                    errors[device] = exc
                    part.append(blank(device, (self.last.get(device) or {}).get("model")))
                    continue
                part.append(self._entry(drive, found, notes))
        self.last = {e["device"]: e for e in part}
        return Reading(part, errors, notes)

    def _entry(self, drive: Drive, found: dict[str, Any], notes: list[str]) -> dict[str, Any]:
        device = drive.device
        said = messages(found)
        if any(_STANDBY.search(line) for line in said):  # spun down: not woken
            return {**(self.last.get(device) or blank(device, _model(found))), "standby": True}
        if not supports_smart(found):
            why = "; ".join(said) or "it gives no health figures"
            return self._unsupported(drive, _model(found), why, notes)
        self.unsupported.pop(drive, None)
        return entry(device, found)

    def _unsupported(
        self, drive: Drive, model: str | None, why: str, notes: list[str]
    ) -> dict[str, Any]:
        self.unsupported[drive] = (model, self.clock())
        if drive not in self.said:
            self.said.add(drive)
            notes.append(
                f"disk health: {drive.device} does not support S.M.A.R.T. through smartctl "
                f"({clean(why, 200)}); asked again once a day only"
            )
        return blank(drive.device, model, False)


class DiskHealth(Collector):
    """{"disk_health": [...]}: a round every `every` seconds, off the loop; each sample
    carries the newest. Null before the first round, and while smartctl cannot be run
    (its one log line says why); a drive that cannot be asked has null figures."""

    name = "disk_health"

    def __init__(self, reader: SmartReader, every: float = EVERY_DEFAULT) -> None:
        super().__init__()
        self.reader = reader
        self.every = every
        self.items = FailureLog()
        # A round's worst: drives asked until ROUND_TIMEOUT, then the call under way.
        self.offloop: OffLoop[Reading | None] = OffLoop(
            "smart", reader, None, stale=ROUND_TIMEOUT + 2 * CALL_TIMEOUT
        )
        self._next_round: float | None = None
        self._noted: Reading | None = None  # the reading whose notes were logged

    def begin(self) -> None:
        now = time.monotonic()
        if self._next_round is None or now >= self._next_round:
            self._next_round = now + self.every
            self.offloop.kick()

    def read(self) -> dict[str, Any]:
        reading = self.offloop.latest()
        if reading is None:
            return {"disk_health": None}  # the first round is under way
        if reading is not self._noted:  # a new round: its lines, once
            self._noted = reading
            for note in reading.notes:
                log.info("%s", note)
            failed = {f"disk health of {d}": exc for d, exc in reading.errors.items()}
            present = {f"disk health of {e['device']}" for e in reading.part}
            for field in (set(failed) | self.items.failing) & present:  # edges only
                self.items.read(field, Outcome(failed.get(field)))
        return {"disk_health": reading.part}

    def null(self) -> dict[str, Any]:
        return {"disk_health": None}


def find(
    mode: str = "auto", every: float = EVERY_DEFAULT, run: Run | None = None, root: str = "/sys"
) -> DiskHealth | None:
    """The collector, where smartctl can be run as root; else None (one line says why,
    and nothing runs). `run` replaces smartctl (tests)."""
    if mode == "off":
        return None
    if run is None:
        path = smartctl_path()
        if path is None:
            log.info("disk health: smartctl is not installed (Debian: smartmontools); "
                     "S.M.A.R.T. is not read")  # fmt: skip
            return None
        if os.geteuid() != 0:
            log.info("disk health: smartctl needs root to ask the drives; "
                     "S.M.A.R.T. is not read")  # fmt: skip
            return None
        run = runner(path)
    return DiskHealth(SmartReader(run, root), every)
