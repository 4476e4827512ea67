"""Disk health (server/sampling/smart.py): smartctl's JSON as real drives answered it
(tests/fixtures/smart/, see its README), through the reader, the collector, the hub's
checks, the disk_health rule, /metrics and the page; and this machine's own smartctl,
whose virtio disk has no S.M.A.R.T."""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import requests
from flask.testing import FlaskClient

from server.fleet import schema
from server.sampling import smart
from server.state import DashboardState
from tests.contract import check_keys

FIXTURES = Path(__file__).parent / "fixtures" / "smart"
QUERY = list(smart.QUERY)


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def exit_status(name: str) -> int:
    """The exit status smartctl gave with the capture (in its JSON)."""
    status: int = json.loads(fixture(name))["smartctl"]["exit_status"]
    return status


class Captured:
    """Stands in for smartctl: one captured answer per command line; records each call."""

    def __init__(self, answers: dict[tuple[str, ...], str]) -> None:
        self.answers = dict(answers)
        self.calls: list[tuple[str, ...]] = []

    def __call__(self, args: Sequence[str]) -> smart.Answer:
        key = tuple(args)
        self.calls.append(key)
        name = self.answers[key]
        return smart.Answer(exit_status(name), fixture(name))

    def asked(self, device: str) -> int:
        return sum(call[-1] == device for call in self.calls)


def query(device: str, kind: str | None = None) -> tuple[str, ...]:
    return (*QUERY, *(("-d", kind) if kind else ()), device)


SCAN = tuple(smart.SCAN)


def entry_of(name: str, device: str = "/dev/sda") -> dict[str, Any]:
    return smart.entry(device, smart.parse(smart.Answer(exit_status(name), fixture(name))))


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# ---------------------------------------------------------------- one drive's answer


def test_an_ata_disk_that_passes() -> None:
    assert entry_of("ata_pass.json") == {
        "device": "/dev/sda",
        "model": "WDC WD20EFRX-68EUZN0",
        "protocol": "ATA",
        "supported": True,
        "standby": False,
        "health": "passed",
        "temperature": 34,
        "power_on_hours": 47657,
        "reallocated": 0,
        "pending": 0,
        "uncorrectable": 0,
        "media_errors": None,  # an ATA disk has no such figure: null, not 0
        "wear_percent": None,
    }


def test_a_failing_disk_behind_a_usb_bridge_and_one_with_reallocated_sectors() -> None:
    failing = entry_of("ata_failed_usb_bridge.json", "/dev/sdc")
    assert exit_status("ata_failed_usb_bridge.json") == 216  # bits: failing, prefail, logs
    assert (failing["model"], failing["health"], failing["reallocated"], failing["pending"],
            failing["uncorrectable"], failing["temperature"], failing["power_on_hours"]) == (
        "Hitachi HDS721050DLE630", "failed", 1975, 8, 0, 25, 65592)  # fmt: skip
    scarred = entry_of("ata_reallocated.json")
    assert (scarred["model"], scarred["health"], scarred["reallocated"], scarred["pending"]) == (
        "ST3500418AS", "passed", 304, 0)  # fmt: skip


def test_nvme_drives_give_wear_and_media_errors() -> None:
    worn = entry_of("nvme_worn.json", "/dev/nvme6")
    assert (worn["protocol"], worn["wear_percent"], worn["media_errors"], worn["temperature"],
            worn["power_on_hours"], worn["reallocated"], worn["pending"]) == (
        "NVMe", 75, 0, 19, 49441, None, None)  # fmt: skip
    errors = entry_of("nvme_media_errors.json", "/dev/nvme0")
    assert (errors["model"], errors["health"], errors["media_errors"], errors["wear_percent"]) == (
        "Samsung SSD 970 EVO 500GB", "passed", 7, 3)  # fmt: skip
    failed = entry_of("nvme_failed.json", "/dev/nvme0")  # critical warning 0x10
    assert (failed["model"], failed["health"]) == ("SAMSUNG MZWLL3T2HAJQ-00005", "failed")


def test_a_scsi_drive_gives_its_grown_defects_as_reallocated() -> None:
    scsi = entry_of("scsi_defects.json")
    assert (scsi["model"], scsi["protocol"], scsi["health"], scsi["reallocated"],
            scsi["temperature"], scsi["power_on_hours"], scsi["pending"]) == (
        "SEAGATE ST373453LC", "SCSI", "passed", 260, 33, 102880, None)  # fmt: skip


def test_no_serial_number_is_read_though_every_capture_has_one() -> None:
    for name in ("ata_pass.json", "ata_failed_usb_bridge.json", "nvme_media_errors.json"):
        found = json.loads(fixture(name))
        assert found["serial_number"]
        assert found["serial_number"] not in json.dumps(entry_of(name))
        assert "serial" not in json.dumps(entry_of(name))


def test_answers_without_health_figures_are_not_supported() -> None:
    for name in ("virtio_unsupported.json", "open_failed.json"):
        found = smart.parse(smart.Answer(exit_status(name), fixture(name)))
        assert not smart.supports_smart(found), name
    virtio = smart.parse(smart.Answer(1, fixture("virtio_unsupported.json")))
    assert smart.messages(virtio) == ["/dev/vda: Unable to detect device type"]
    with pytest.raises(OSError, match=r"no JSON .* 7\.0 or later"):
        smart.parse(smart.Answer(1, b"smartctl 6.6 2016-05-31 r4324\n=======> UNRECOGNIZED "
                                    b"OPTION: json\n"))  # fmt: skip


# ---------------------------------------------------------------- finding the drives


def test_the_scan_gives_the_drives_and_their_types() -> None:
    def drives(name: str) -> list[tuple[str, str | None, list[str]]]:
        reader = smart.SmartReader(Captured({SCAN: name}))
        return [(d.device, d.type, d.args()[len(QUERY) :]) for d in reader.drives()]

    assert drives("scan_nvme.json") == [("/dev/nvme0", "nvme", ["-d", "nvme", "/dev/nvme0"])]
    assert drives("scan_simple.json")[0] == ("/dev/sda", "scsi", ["-d", "scsi", "/dev/sda"])
    assert len(drives("scan_simple.json")) == 7
    # Two drives behind one RAID controller: one path, told apart by their type.
    assert drives("scan_megaraid.json") == [
        ("/dev/bus/0 megaraid,0", "megaraid,0", ["-d", "megaraid,0", "/dev/bus/0"]),
        ("/dev/bus/0 megaraid,1", "megaraid,1", ["-d", "megaraid,1", "/dev/bus/0"]),
    ]


def _sysfs(root: Path, devices: dict[str, str]) -> None:
    """/sys/block/<name> links to a device's path, with a `device` link where hardware."""
    (root / "block").mkdir(parents=True)
    for name, path in devices.items():
        target = root / "devices" / path / name
        target.mkdir(parents=True)
        if "virtual" not in path:
            (target / "device").symlink_to(root / "devices" / path)
        (root / "block" / name).symlink_to(target)


def test_where_the_scan_finds_none_the_kernels_hardware_disks_are_asked(tmp_path: Path) -> None:
    _sysfs(tmp_path, {"vda": "pci0000:00/0000:00:02.0/virtio1/block",
                      "sdb": "pci0000:00/0000:00:14.0/usb2/host0/block",
                      "loop0": "virtual/block", "zram0": "virtual/block",
                      "dm-0": "virtual/block"})  # fmt: skip
    reader = smart.SmartReader(Captured({SCAN: "scan_open_none.json"}), root=str(tmp_path))
    assert [(d.device, d.type) for d in reader.drives()] == [("/dev/sdb", None),
                                                            ("/dev/vda", None)]  # fmt: skip


def test_the_drives_are_bounded() -> None:
    scan = {"devices": [{"name": f"/dev/sd{i}", "type": "sat"} for i in range(40)]}

    def run(args: Sequence[str]) -> smart.Answer:
        return smart.Answer(0, json.dumps(scan).encode())

    assert len(smart.SmartReader(run).drives()) == smart.MAX_DRIVES == 32


# ---------------------------------------------------------------- rounds


def test_a_round_reads_every_drive_and_an_unsupported_one_is_said_once_and_not_asked_again(
    tmp_path: Path,
) -> None:
    _sysfs(tmp_path, {"vda": "pci0000:00/0000:00:02.0/virtio1/block",
                      "vdb": "pci0000:00/0000:00:03.0/virtio2/block"})  # fmt: skip
    run = Captured({SCAN: "scan_open_none.json", query("/dev/vda"): "virtio_unsupported.json",
                    query("/dev/vdb"): "ata_pass.json"})  # fmt: skip
    clock = Clock()
    reader = smart.SmartReader(run, root=str(tmp_path), clock=clock)
    first = reader()
    assert [(e["device"], e["supported"], e["health"]) for e in first.part] == [
        ("/dev/vda", False, None), ("/dev/vdb", True, "passed")]  # fmt: skip
    assert first.part[0] == {**smart.blank("/dev/vda"), "supported": False}
    for entry in first.part:
        check_keys("sample.disk_health[]", entry)
    assert first.notes == [
        "disk health: /dev/vda does not support S.M.A.R.T. through smartctl (/dev/vda: Unable "
        "to detect device type); asked again once a day only"
    ]
    for _ in range(3):
        clock.now += 300
        again = reader()
        assert again.part == first.part and again.notes == []
    assert (run.asked("/dev/vda"), run.asked("/dev/vdb")) == (1, 4)
    # A day on, it is asked again (another drive may be there now); not said again.
    clock.now += smart.UNSUPPORTED_RETRY
    assert reader().notes == []
    assert run.asked("/dev/vda") == 2


def test_a_drive_the_scan_could_not_open_is_not_asked() -> None:
    # smartctl --scan-open's "open_error" (smartctl.cpp, scan_devices): the text as
    # smartctl gives it for a USB bridge it does not know.
    scan = {"devices": [{"name": "/dev/sdc", "info_name": "/dev/sdc", "type": "scsi",
                         "protocol": "SCSI", "open_error": "/dev/sdc: Unknown USB bridge "
                         "[0x0bda:0x9201 (0xf200)]"}]}  # fmt: skip
    calls: list[Sequence[str]] = []

    def run(args: Sequence[str]) -> smart.Answer:
        calls.append(args)
        return smart.Answer(0, json.dumps(scan).encode())

    reading = smart.SmartReader(run)()
    assert [(e["device"], e["supported"]) for e in reading.part] == [("/dev/sdc", False)]
    assert "Unknown USB bridge" in reading.notes[0]
    assert calls == [SCAN]


def test_a_disk_in_standby_is_not_woken_and_keeps_its_last_figures() -> None:
    run = Captured({SCAN: "scan_nvme.json", query("/dev/nvme0", "nvme"): "ata_pass.json"})
    reader = smart.SmartReader(run)
    awake = reader().part[0]
    run.answers[query("/dev/nvme0", "nvme")] = "standby_synthesised.json"
    asleep = reader().part[0]
    assert asleep == {**awake, "standby": True}
    assert "--nocheck=standby" in run.calls[-1]  # smartctl is told not to spin it up
    fresh = smart.SmartReader(run)().part[0]  # asleep from the start: nothing known yet
    assert (fresh["standby"], fresh["supported"], fresh["health"]) == (True, None, None)


def test_a_drive_that_cannot_be_asked_has_nulls_and_is_said_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    answers = Captured({SCAN: "scan_nvme.json", query("/dev/nvme0", "nvme"): "nvme_worn.json"})
    failing = {"now": False}

    def run(args: Sequence[str]) -> smart.Answer:
        if failing["now"] and args[-1] == "/dev/nvme0":
            raise TimeoutError("smartctl took more than 15 s")
        return answers(args)

    collector = smart.DiskHealth(smart.SmartReader(run), every=0)
    try:
        with caplog.at_level(logging.INFO, logger="dashboard.data"):
            assert settled(collector)["disk_health"][0]["wear_percent"] == 75
            failing["now"] = True
            for _ in range(3):
                part = settled(collector)["disk_health"]
                assert part == [{**smart.blank("/dev/nvme0"), "model": "INTEL SSDPE2KX020T7"}]
            failing["now"] = False
            assert settled(collector)["disk_health"][0]["wear_percent"] == 75
        assert collector.success  # one drive failing is that drive's nulls
    finally:
        collector.offloop.close()
    said = [r.getMessage() for r in caplog.records if "disk health of" in r.getMessage()]
    assert said == [
        "cannot read disk health of /dev/nvme0: TimeoutError: smartctl took more than 15 s; "
        "it is null until it can be read",
        "disk health of /dev/nvme0 can be read again",
    ]


def settled(collector: smart.DiskHealth) -> dict[str, Any]:
    """One tick's part once the round this tick kicked has finished."""
    collector.offloop.finished.clear()
    collector.begin()
    assert collector.offloop.finished.wait(5)
    return collector.collect()


def test_the_collector_reads_every_few_minutes_off_the_tick(
    caplog: pytest.LogCaptureFixture,
) -> None:
    run = Captured({SCAN: "scan_megaraid.json",
                    query("/dev/bus/0", "megaraid,0"): "ata_pass.json",
                    query("/dev/bus/0", "megaraid,1"): "virtio_unsupported.json"})  # fmt: skip
    collector = smart.DiskHealth(smart.SmartReader(run), every=0.5)
    try:
        with caplog.at_level(logging.INFO, logger="dashboard.data"):
            assert collector.collect() == {"disk_health": None}  # before the first round
            part = settled(collector)["disk_health"]
            assert [(e["device"], e["supported"]) for e in part] == [
                ("/dev/bus/0 megaraid,0", True), ("/dev/bus/0 megaraid,1", False)]  # fmt: skip
            asked = len(run.calls)
            for _ in range(20):  # ticks within the period: no round, the same part each
                collector.begin()
                assert collector.collect()["disk_health"] is part
            assert len(run.calls) == asked == 3
            time.sleep(0.6)
            settled(collector)  # the period is over: a round
            assert len(run.calls) == asked + 2  # the scan and the supported drive only
    finally:
        collector.offloop.close()
    lines = [r.getMessage() for r in caplog.records if "does not support" in r.getMessage()]
    assert len(lines) == 1 and "/dev/bus/0 megaraid,1" in lines[0]


def test_a_smartctl_that_hangs_is_killed_at_its_deadline(tmp_path: Path) -> None:
    hung = tmp_path / "smartctl"
    hung.write_text("#!/bin/sh\nexec sleep 30\n")
    hung.chmod(0o755)
    run = smart.runner(str(hung), timeout=0.5)
    started = time.monotonic()
    with pytest.raises(TimeoutError, match=r"more than 0\.5 s"):
        run(["--scan-open"])
    assert time.monotonic() - started < 3
    quick = tmp_path / "quick"
    quick.write_text(f"#!/bin/sh\ncat {FIXTURES / 'nvme_failed.json'}\nexit 8\n")
    quick.chmod(0o755)
    answer = smart.runner(str(quick))(["-a"])
    assert answer.status == 8 and smart.entry("/dev/nvme0", smart.parse(answer))["health"] == (
        "failed"
    )


def test_without_smartctl_or_root_nothing_runs_and_one_line_says_why(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="dashboard.data"):
        assert smart.find("off") is None
        assert not caplog.records  # off: not even looked for
        monkeypatch.setattr(smart, "smartctl_path", lambda: None)
        assert smart.find("auto") is None
        monkeypatch.setattr(smart, "smartctl_path", lambda: "/usr/sbin/smartctl")
        monkeypatch.setattr(os, "geteuid", lambda: 1000)
        assert smart.find("auto") is None
    assert [r.getMessage() for r in caplog.records] == [
        "disk health: smartctl is not installed (Debian: smartmontools); S.M.A.R.T. is not read",
        "disk health: smartctl needs root to ask the drives; S.M.A.R.T. is not read",
    ]


# ---------------------------------------------------------------- this machine's smartctl


def test_this_machines_smartctl_finds_its_virtio_disk_unsupported_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The real smartctl on this VM (CI's too): its disks are virtio, without S.M.A.R.T.;
    each is said once and not asked again the next round."""
    from testkit.system import require_binary, skip_or_fail_under_ci

    path = require_binary("smartctl")
    if os.geteuid() != 0:
        skip_or_fail_under_ci("smartctl needs root to ask the drives")
    real = smart.runner(path)
    calls: list[tuple[str, ...]] = []

    def run(args: Sequence[str]) -> smart.Answer:
        calls.append(tuple(args))
        return real(args)

    collector = smart.DiskHealth(smart.SmartReader(run), every=0)
    try:
        with caplog.at_level(logging.INFO, logger="dashboard.data"):
            first = settled(collector)["disk_health"]
            asked_first = [c[-1] for c in calls if "--scan-open" not in c]
            calls.clear()
            second = settled(collector)["disk_health"]
    finally:
        collector.offloop.close()
    assert collector.success
    unsupported = [e["device"] for e in first if e["supported"] is False]
    if os.path.exists("/sys/block/vda"):
        assert "/dev/vda" in unsupported
        vda = next(e for e in first if e["device"] == "/dev/vda")
        assert vda == {**smart.blank("/dev/vda"), "supported": False}
    for entry in first:
        check_keys("sample.disk_health[]", entry)
    assert schema.sample_problem({"ts": time.time(), "disk_health": first}) is None
    # The second round asks the drives that answered, and not those without S.M.A.R.T.
    asked_second = [c[-1] for c in calls if "--scan-open" not in c]
    assert not set(asked_second) & set(unsupported), (asked_second, unsupported)
    assert set(unsupported) <= set(asked_first)
    assert second == first or [e["device"] for e in second] == [e["device"] for e in first]
    said = [r.getMessage() for r in caplog.records if "does not support" in r.getMessage()]
    assert sorted(line.split()[2] for line in said) == sorted(unsupported)


def test_a_sample_of_this_machine_carries_disk_health_where_smartctl_runs() -> None:
    from server.data import DynamicData

    data = DynamicData(top_processes=0, smart="off")
    assert "disk_health" not in data.sample()
    assert "disk_health" not in data.collector_success()
    if smart.smartctl_path() is None or os.geteuid() != 0:
        pytest.skip("smartctl is not installed here, or this is not root")
    data = DynamicData(top_processes=0, smart="auto", smart_every=60)
    health = next(c for c in data.collectors if c.name == "disk_health")
    assert isinstance(health, smart.DiskHealth)
    try:
        health.offloop.finished.clear()
        assert data.sample()["disk_health"] is None  # the first round is under way
        assert health.offloop.finished.wait(30)
        part = data.sample()["disk_health"]
        assert isinstance(part, list) and data.collector_success()["disk_health"] is True
    finally:
        health.offloop.close()


def test_disk_health_is_of_the_moment_not_history() -> None:
    from server.history.columns import MOMENT_KEYS, leaves

    assert "disk_health" in MOMENT_KEYS
    sample = {"ts": 1.0, "cpu": {"percent": 1.0}, "disk_health": [entry_of("ata_pass.json")]}
    assert [key for key, _ in leaves(sample)] == ["cpu.percent"]


# ---------------------------------------------------------------- the hub's checks


def _part() -> list[dict[str, Any]]:
    return [entry_of("ata_pass.json", "/dev/sda"), entry_of("nvme_worn.json", "/dev/nvme0"),
            {**smart.blank("/dev/vda"), "supported": False}]  # fmt: skip


def test_the_hub_takes_disk_health_and_refuses_what_is_out_of_bounds() -> None:
    good: dict[str, Any] = {"ts": time.time(), "disk_health": _part()}
    assert schema.sample_problem(good) is None
    assert schema.sample_problem({**good, "disk_health": None}) is None
    every = [entry_of(name) for name in ("ata_failed_usb_bridge.json", "ata_reallocated.json",
                                         "nvme_failed.json", "nvme_media_errors.json",
                                         "scsi_defects.json")]  # fmt: skip
    assert schema.sample_problem({**good, "disk_health": every}) is None

    def problem(index: int, key: str, value: Any) -> str | None:
        sample = json.loads(json.dumps(good))
        sample["disk_health"][index][key] = value
        return schema.sample_problem(sample)

    cases = [
        (0, "health", "OK", "health has characters it may not have"),
        (0, "health", "ok\n", "health has characters it may not have"),
        (0, "device", None, "device is missing"),
        (0, "device", "/dev/sda\n2026 INFO forged", "device has characters it may not have"),
        (0, "model", "x" * 65, "model is longer than 64 characters"),
        (0, "reallocated", -1, "reallocated must be within 0 and 2.81475e+14"),
        (0, "pending", 1.5, "pending must be a whole number"),
        (1, "wear_percent", 256, "wear_percent must be within 0 and 255"),
        (0, "temperature", 1001, "temperature must be within -273 and 1000"),
        (0, "supported", "yes", "supported must be true or false"),
        (0, "serial_number", "WD-WCC4M0XXXXXX", "serial_number is not a key the contract knows"),
    ]
    for index, key, value, message in cases:
        where = f"sample.disk_health.{index}."
        assert problem(index, key, value) == where + message, (key, value)
    many = {**good, "disk_health": [good["disk_health"][0]] * 33}
    assert schema.sample_problem(many) == "sample.disk_health must have at most 32 items"


# ---------------------------------------------------------------- the disk_health rule


def _engine(**table: Any) -> Any:
    from server.alerts.rules import AlertEngine
    from server.alerts.settings import parse_settings

    settings = parse_settings({"anomaly": False, **table})
    return AlertEngine(settings, interval=1, cores=2, host="box")


def _drives(**changes: dict[str, Any]) -> list[dict[str, Any]]:
    """/dev/sda (passes), /dev/nvme0 (75 % worn) and /dev/vda (no S.M.A.R.T.), with some
    figures changed (by device name without /dev/)."""
    part = _part()
    for entry in part:
        entry.update(changes.get(entry["device"].removeprefix("/dev/"), {}))
    return part


def _changes(engine: Any, ts: float, part: Any) -> list[tuple[str, str, str, float]]:
    sample = {"ts": ts, "cpu": {"percent": 1.0}, "disks": [], "disk_health": part}
    return [(a["rule"], a["level"], a["metric"], a["value"]) for a in engine.evaluate(sample)]


SDA = "disk_health:/dev/sda"


def test_a_failed_drive_is_critical_and_named_at_once() -> None:
    engine = _engine()
    assert _changes(engine, 0, _drives()) == []
    assert _changes(engine, 1, _drives(sda={"health": "failed"})) == [
        (SDA, "critical", SDA, 2.0)]  # fmt: skip
    assert engine.active[SDA]["threshold"] == 2.0
    assert _changes(engine, 2, _drives(sda={"health": "failed"})) == []
    # A failed drive from the captures, as the reader gives it.
    engine = _engine()
    failing = [entry_of("ata_failed_usb_bridge.json", "/dev/sdc")]
    assert _changes(engine, 0, failing) == [("disk_health:/dev/sdc", "critical",
                                             "disk_health:/dev/sdc", 2.0)]  # fmt: skip


def test_pending_sectors_warn_and_reallocations_warn_when_they_rise() -> None:
    from server.alerts.settings import SECTOR_WINDOW

    engine = _engine()
    # 304 reallocated from the start, and staying there: a scar, not news.
    assert _changes(engine, 0, _drives(sda={"reallocated": 304})) == []
    assert _changes(engine, 300, _drives(sda={"reallocated": 304})) == []
    assert _changes(engine, 600, _drives(sda={"reallocated": 305})) == [
        (SDA, "warning", SDA, 1.0)]  # fmt: skip
    assert _changes(engine, 600 + SECTOR_WINDOW - 1, _drives(sda={"reallocated": 305})) == []
    assert _changes(engine, 600 + SECTOR_WINDOW, _drives(sda={"reallocated": 305})) == [
        (SDA, "ok", SDA, 0.0)]  # fmt: skip
    # Sectors pending reallocation warn while there are any.
    assert _changes(engine, 90000, _drives(sda={"pending": 8})) == [(SDA, "warning", SDA, 1.0)]
    assert _changes(engine, 90300, _drives(sda={"pending": 0})) == [(SDA, "ok", SDA, 0.0)]
    # NVMe media errors that rise, and wear at 90 %.
    nvme = "disk_health:/dev/nvme0"
    assert _changes(engine, 90600, _drives(nvme0={"media_errors": 2})) == [
        (nvme, "warning", nvme, 1.0)]  # fmt: skip
    engine = _engine()
    assert _changes(engine, 0, _drives(nvme0={"wear_percent": 89})) == []
    assert _changes(engine, 1, _drives(nvme0={"wear_percent": 90})) == [
        (nvme, "warning", nvme, 1.0)]  # fmt: skip
    assert _changes(engine, 2, _drives(nvme0={"wear_percent": 91, "health": "failed"})) == [
        (nvme, "critical", nvme, 2.0)]  # fmt: skip


def test_the_rule_holds_and_clears_as_set() -> None:
    engine = _engine(disk_health={"for_seconds": 600, "clear_seconds": 300})
    failed = _drives(sda={"health": "failed"})
    assert _changes(engine, 0, failed) == []
    assert _changes(engine, 599, failed) == []  # one reading is not yet enough
    assert _changes(engine, 600, failed) == [(SDA, "critical", SDA, 2.0)]
    assert _changes(engine, 700, _drives()) == []
    assert _changes(engine, 1000, _drives()) == [(SDA, "ok", SDA, 0.0)]


def test_drives_without_figures_keep_their_state_and_gone_drives_resolve() -> None:
    engine = _engine()
    assert _changes(engine, 0, _drives(sda={"health": "failed"})) == [
        (SDA, "critical", SDA, 2.0)]  # fmt: skip
    assert _changes(engine, 1, None) == []  # smartctl cannot be run: judge nothing
    unasked = _drives(sda={**smart.blank("/dev/sda")})  # not asked this round
    assert _changes(engine, 2, unasked) == []
    assert SDA in engine.active
    assert not [r for r in engine._rules if r == "disk_health:/dev/vda"]  # never judged
    gone = [e for e in _drives() if e["device"] != "/dev/sda"]  # the drive was pulled
    assert _changes(engine, 3, gone) == [(SDA, "ok", SDA, 0.0)]
    assert SDA not in engine._rules and "/dev/sda" not in engine._sectors


def test_the_rule_is_bounded_follows_hosts_and_gives_the_page_its_levels() -> None:
    from server.alerts.settings import page_levels, parse_settings

    engine = _engine()
    for round_ in range(5):  # names that change each sample, as a hostile agent's
        part = [{**smart.blank(f"/dev/x{round_}-{i}"), "supported": True, "health": "passed"}
                for i in range(smart.MAX_DRIVES)]  # fmt: skip
        _changes(engine, float(round_), part)
    assert sum(r.startswith("disk_health:") for r in engine._rules) <= smart.MAX_DRIVES
    elsewhere = _engine(disk_health={"hosts": ["other"]})
    assert _changes(elsewhere, 0, _drives(sda={"health": "failed"})) == []
    assert page_levels(parse_settings({}))["disk_health"] == {"warning": 1.0, "critical": 2.0}


# ---------------------------------------------------------------- /metrics


def test_metrics_carry_disk_health_with_bounded_labels(
    client: FlaskClient, state: DashboardState
) -> None:
    from server.web.metrics_export import DISK_HEALTH_GAUGES
    from testkit.system import require_binary
    from tests.test_metrics_export import scrape

    sample = state.sampler.tick()
    sample["disk_health"] = [*_part(), entry_of("ata_failed_usb_bridge.json", "/dev/sdc")]
    found = scrape(client)

    def value(family: str, device: str) -> float | None:
        matches = [v for got, v in found[family] if got["device"] == device]
        assert len(matches) <= 1, (family, device)
        return matches[0] if matches else None

    assert value("dashboard_disk_smart_healthy", "/dev/sda") == 1
    assert value("dashboard_disk_smart_healthy", "/dev/sdc") == 0
    assert value("dashboard_disk_smart_supported", "/dev/vda") == 0
    assert value("dashboard_disk_smart_healthy", "/dev/vda") is None  # left out, not 0
    assert value("dashboard_disk_temperature_celsius", "/dev/sda") == 34
    assert value("dashboard_disk_reallocated_sectors", "/dev/sdc") == 1975
    assert value("dashboard_disk_pending_sectors", "/dev/sdc") == 8
    assert value("dashboard_disk_uncorrectable_sectors", "/dev/sdc") == 0
    assert value("dashboard_disk_media_errors", "/dev/nvme0") == 0
    assert value("dashboard_disk_media_errors", "/dev/sda") is None
    assert value("dashboard_disk_wear_ratio", "/dev/nvme0") == 0.75
    assert value("dashboard_disk_power_on_seconds", "/dev/sda") == 47657 * 3600
    families = {name for name, _, _ in DISK_HEALTH_GAUGES} | {
        "dashboard_disk_smart_supported", "dashboard_disk_smart_healthy",
        "dashboard_disk_wear_ratio", "dashboard_disk_power_on_seconds"}  # fmt: skip
    assert families <= set(found)
    labels = {tuple(sorted(got)) for name in families for got, _ in found[name]}
    assert labels == {("device", "host", "model")}
    model = [got["model"] for got, _ in found["dashboard_disk_smart_healthy"]
             if got["device"] == "/dev/sdc"]  # fmt: skip
    assert model == ["Hitachi HDS721050DLE630"]
    promtool = require_binary("promtool")
    text = client.get("/metrics").get_data(as_text=True)
    check = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True,
                           text=True, timeout=30)  # fmt: skip
    flagged = {line.split()[0] for line in (check.stdout + check.stderr).splitlines()
               if line.strip()}  # fmt: skip
    assert not {name for name in flagged if "_disk_" in name}, check.stdout + check.stderr


# ---------------------------------------------------------------- the page, through a hub


@pytest.fixture
def hub_with_box(tmp_path: Path) -> Iterator[tuple[Any, dict[str, Any]]]:
    """A hub (S.M.A.R.T. off for its own host), and an agent `box` sending a sample a second
    whose disk_health is the captures' (its /dev/sdc failing); the test may change what
    the next samples carry (the dict it is given)."""
    from server.fleet.tokens import AgentTokens
    from testkit.config import write_toml
    from testkit.fleet import stand_in_agent
    from testkit.serverproc import ServerProcess

    config = write_toml(tmp_path / "hub.toml", smart="off")
    hub = ServerProcess(tmp_path / "hub" / "logs", "--config", str(config))
    token = AgentTokens(str(hub.data_dir)).add("box")
    carried: dict[str, Any] = {"disk_health": [
        *_part(), entry_of("ata_failed_usb_bridge.json", "/dev/sdc")]}  # fmt: skip
    hub.start()
    try:
        with stand_in_agent(hub.url, token, carried):
            yield hub, carried
    finally:
        hub.stop()


CARD = """(c => c && JSON.stringify({level: c.className, alert: c.dataset.alert || null,
  value: c.querySelector('.big').textContent,
  lines: [...c.querySelectorAll('.sub')].map(e => e.textContent), title: c.title}))(
  document.getElementById('card-drives'))"""


@pytest.mark.e2e
@pytest.mark.browser
def test_an_agents_failing_drive_reaches_the_hubs_alerts_metrics_and_page(
    hub_with_box: tuple[Any, dict[str, Any]], browser: Any
) -> None:
    from testkit.wait import wait_until

    hub, carried = hub_with_box
    sdc = "disk_health:/dev/sdc"

    def alerts() -> list[tuple[str, str]] | None:
        active = requests.get(hub.url + "/api/hosts/box/alerts", timeout=5).json()["active"]
        found = [(a["rule"], a["level"]) for a in active if a["rule"].startswith("disk_health")]
        return found or None

    assert wait_until(alerts, timeout=30, interval=0.5) == [(sdc, "critical")]
    metrics = requests.get(hub.url + "/metrics", timeout=5).text
    assert re.search(r'dashboard_disk_smart_healthy\{device="/dev/sdc",host="box",'
                     r'model="Hitachi HDS721050DLE630"\} 0\.0', metrics), metrics  # fmt: skip
    assert re.search(r'dashboard_disk_wear_ratio\{device="/dev/nvme0",host="box",'
                     r'model="INTEL SSDPE2KX020T7"\} 0\.75', metrics)  # fmt: skip

    # Rendered by the server with the page: in place before the socket brought anything.
    html = requests.get(hub.url + "/host/box", timeout=5).text
    assert 'id="card-drives"' in html
    browser.navigate(hub.url + "/host/box")
    browser.wait_for("document.body.dataset.status === 'live'", timeout=20)
    card = json.loads(browser.wait_for(CARD.replace("c && JSON", "c && c.dataset.alert && JSON")))
    assert card == {
        "level": "card drives-card crit",
        "alert": "critical",
        "value": "failed",
        "lines": ["/dev/sdc · 8 pending · 1975 reallocated",
                  "Hitachi HDS721050DLE630 · /dev/sdc"],
        "title": "/dev/sda WDC WD20EFRX-68EUZN0: passed, 34.0\u00a0°C, 47657 h\n"
                 "/dev/nvme0 INTEL SSDPE2KX020T7: passed, 19.0\u00a0°C, 49441 h, 75 % worn\n"
                 "/dev/vda: no S.M.A.R.T.\n"
                 "/dev/sdc Hitachi HDS721050DLE630: failed, 25.0\u00a0°C, 65592 h",
    }  # fmt: skip
    # The drive is replaced: the card is quiet again, the hottest drive shown.
    carried["disk_health"] = _part()
    calm = "c && !c.dataset.alert && c.classList.contains('ok') && JSON"
    quiet = browser.wait_for(CARD.replace("c && JSON", calm), timeout=30)
    assert {k: v for k, v in json.loads(quiet).items() if k != "title"} == {
        "level": "card drives-card ok",
        "alert": None,
        "value": "healthy",
        "lines": ["2 drives · 34.0\u00a0°C", "WDC WD20EFRX-68EUZN0 · /dev/sda"],
    }
    # Only a drive without S.M.A.R.T.: no card, nothing held for one.
    carried["disk_health"] = [{**smart.blank("/dev/vda"), "supported": False}]
    time.sleep(2.5)
    html = requests.get(hub.url + "/host/box", timeout=5).text
    assert 'id="card-drives"' not in html
    browser.navigate(hub.url + "/host/box")
    browser.wait_for("document.body.dataset.status === 'live'", timeout=20)
    browser.wait_for("document.body.dataset.seq")
    assert browser.evaluate("document.getElementById('card-drives')") is None
    # The hub's own host, with S.M.A.R.T. off: no key, no card.
    own = requests.get(hub.url + "/api/static", timeout=5).json()["host"]
    assert "disk_health" not in requests.get(hub.url + "/api/metrics", timeout=5).json()
    browser.navigate(hub.url + "/host/" + own)
    browser.wait_for("document.body.dataset.status === 'live'", timeout=20)
    browser.wait_for("document.body.dataset.seq")
    assert browser.evaluate("document.getElementById('card-drives')") is None
    assert browser.console_errors() == []
