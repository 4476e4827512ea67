"""server/data.py: the values, their ranges, and what happens when psutil fails."""

from __future__ import annotations

import logging
import os
import socket
import time
from collections import namedtuple
from typing import Any

import psutil
import pytest

from server.data import DynamicData, StaticData
from server.sampling import counters, processes
from server.sampling.collector import Collector, FailureLog
from server.sampling.counters import counter_rate, parse_diskstats, parse_net_dev, whole_disks
from server.sampling.host import distribution, hostname
from server.sampling.mounts import Filesystem, is_real_filesystem, real_filesystems
from server.sampling.processes import ProcessTable
from tests.contract import SAMPLE_KEYS as CONTRACT_SAMPLE_KEYS
from tests.contract import check_static

# What DynamicData.sample() returns: the contract's sample but for `seq`,
# which the Sampler adds.
SAMPLE_KEYS = CONTRACT_SAMPLE_KEYS - {"seq"}


def collector(dynamic: DynamicData, name: str) -> Any:
    return next(c for c in dynamic.collectors if c.name == name)


def assert_percent(value: Any) -> None:
    assert isinstance(value, float)
    assert 0.0 <= value <= 100.0


def test_static_data_is_collected_once_with_types() -> None:
    static = StaticData.collect(interval=1.0, history_seconds=900, version="t")
    facts = static.as_dict()
    check_static(facts)
    assert facts["hostname"] and isinstance(facts["hostname"], str)
    assert set(facts["os"]) == {"system", "release", "distribution", "machine"}
    assert facts["os"]["system"] == "Linux"
    assert facts["cpu"]["logical"] >= 1
    assert facts["memory_total"] == psutil.virtual_memory().total
    assert 0 < facts["boot_time"] < time.time()
    families = {a["family"] for a in facts["addresses"]}
    assert families <= {"ipv4", "ipv6"} and "ipv4" in families
    assert {"interface": "lo", "family": "ipv4", "address": "127.0.0.1"} in facts["addresses"]
    # The main address, listed first, is not loopback when the host has another one.
    assert facts["addresses"][0]["interface"] != "lo" or len(facts["addresses"]) <= 2
    with pytest.raises(AttributeError):
        static.hostname = "x"  # type: ignore[misc]


def test_sample_matches_the_contract() -> None:
    dynamic = DynamicData()
    time.sleep(0.2)
    sample = dynamic.sample()
    assert set(sample) == SAMPLE_KEYS
    assert abs(sample["ts"] - time.time()) < 5
    assert_percent(sample["cpu"]["percent"])
    assert len(sample["cpu"]["per_core"]) == psutil.cpu_count()
    for value in sample["cpu"]["per_core"]:
        assert_percent(value)
    memory = sample["memory"]
    assert_percent(memory["percent"])
    assert all(isinstance(memory[k], int) for k in ("total", "used", "available"))
    assert 0 < memory["used"] <= memory["total"]
    assert set(sample["swap"]) == {"percent", "total", "used"}
    mounts = [d["mount"] for d in sample["disks"]]
    assert "/" in mounts
    for disk in sample["disks"]:
        assert set(disk) == {
            "mount",
            "device",
            "fstype",
            "percent",
            "total",
            "used",
            "free",
            "answering",
        }
        assert disk["answering"] is True
        assert_percent(disk["percent"])
        assert disk["used"] <= disk["total"]
    for rates in (sample["disk_io"].values(), sample["net"].values()):
        for value in rates:
            assert isinstance(value, int) and value >= 0
    assert len(sample["load"]) == 3 and all(v >= 0 for v in sample["load"])
    assert sample["uptime"] > 0
    assert 0 < len(sample["processes"]) <= 5
    for proc in sample["processes"]:
        assert set(proc) == {"pid", "name", "cpu_percent", "memory_percent"}  # no cmdline
        assert_percent(proc["cpu_percent"])
    cpu = [p["cpu_percent"] for p in sample["processes"]]
    assert cpu == sorted(cpu, reverse=True)


def test_rates_follow_real_traffic(tmp_path: Any) -> None:
    dynamic = DynamicData(top_processes=0)
    target = tmp_path / "blob"
    with open(target, "wb") as handle:
        handle.write(b"\0" * (8 << 20))
        handle.flush()
        import os

        os.fsync(handle.fileno())
    sample = dynamic.sample()
    # Loopback is excluded from the network figure, so only the disk is checked here.
    assert sample["disk_io"]["write_bps"] is not None
    assert sample["disk_io"]["write_bps"] > 0
    assert sample["processes"] == []


@pytest.mark.parametrize(
    ("before", "after", "expected"),
    [
        ({"eth0": (1000, 500)}, {"eth0": (3000, 1500)}, (1000, 500)),
        ({"eth0": (5000, 5000)}, {"eth0": (10, 20)}, (0, 0)),  # counter reset
        ({"eth0": (100, 100), "wg0": (10**9, 10**9)}, {"eth0": (300, 300)}, (100, 100)),  # gone
        ({"eth0": (100, 100)}, {"eth0": (300, 300), "usb0": (10**9, 10**9)}, (100, 100)),  # new
    ],
)
def test_counter_rate_is_never_negative(
    before: dict[str, tuple[int, int]],
    after: dict[str, tuple[int, int]],
    expected: tuple[int, int],
) -> None:
    assert counter_rate(before, after, 2.0) == expected


def test_interface_that_disappears_gives_no_negative_rate(monkeypatch: pytest.MonkeyPatch) -> None:
    readings = iter(
        [
            {"eth0": (10_000, 10_000), "tun0": (10**9, 10**9)},
            {"eth0": (12_000, 11_000)},
            {"eth0": (100, 100)},  # driver reload: counters start again
        ]
    )
    monkeypatch.setattr(counters, "net_counters", lambda: next(readings))
    dynamic = DynamicData(top_processes=0)
    first = dynamic.sample()["net"]
    second = dynamic.sample()["net"]
    assert first["rx_bps"] > 0 and first["tx_bps"] > 0
    assert second == {"rx_bps": 0, "tx_bps": 0}


@pytest.mark.parametrize(
    ("mount", "device", "fstype", "real"),
    [
        ("/", "overlay", "overlay", True),  # the root, whatever its type
        ("/home", "/dev/sda2", "ext4", True),
        ("/snap/core/1", "/dev/loop3", "squashfs", False),
        ("/mnt/image", "/dev/loop0", "ext4", False),
        ("/run", "tmpfs", "tmpfs", False),
        ("/var/lib/docker/overlay2/x", "overlay", "overlay", False),
        ("/proc", "proc", "proc", False),
    ],
)
def test_real_filesystems(mount: str, device: str, fstype: str, real: bool) -> None:
    assert is_real_filesystem(mount, device, fstype) is real


Part = namedtuple("Part", "device mountpoint fstype opts")


def test_in_a_container_the_filesystems_are_the_hosts_under_its_root(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # An agent's container with the host's / bound at /host (recursively, as Docker
    # binds): its own table has its own root and the host's mounts under /host.
    table = [
        Part("overlay", "/", "overlay", "rw"),
        Part("/dev/sda1", "/etc/hosts", "ext4", "rw"),
        Part("/dev/sda1", "/host", "ext4", "ro"),
        Part("/dev/sdb1", "/host/srv", "xfs", "ro"),
        Part("tmpfs", "/host/run", "tmpfs", "ro"),
        Part("/dev/sdc1", "/hostile", "ext4", "rw"),  # beside /host, not under it
    ]
    monkeypatch.setattr(psutil, "disk_partitions", lambda all=False: table)
    assert real_filesystems("/host") == [
        Filesystem("/", "/dev/sda1", "ext4", "/host"),
        Filesystem("/srv", "/dev/sdb1", "xfs", "/host/srv"),
    ]
    # Not in a container: the table as it is, each path its own.
    assert [(fs.mount, fs.path) for fs in real_filesystems()] == [
        ("/", "/"),
        ("/host", "/host"),
        ("/hostile", "/hostile"),
        ("/host/srv", "/host/srv"),
    ]


def test_the_os_is_named_by_the_os_release_under_the_hosts_root(tmp_path: Any) -> None:
    (tmp_path / "etc").mkdir()
    assert distribution(str(tmp_path)) is None
    (tmp_path / "usr/lib").mkdir(parents=True)
    (tmp_path / "usr/lib/os-release").write_text('NAME="Debian GNU/Linux"\n')
    assert distribution(str(tmp_path)) == "Debian GNU/Linux"
    (tmp_path / "etc/os-release").write_text(
        "# a comment\nNAME=Debian\nBROKEN='unclosed\nPRETTY_NAME='Debian GNU/Linux 12 (bookworm)'\n"
    )
    assert distribution(str(tmp_path)) == "Debian GNU/Linux 12 (bookworm)"
    # The host's name too, from its /etc/hostname; without one, this machine's.
    assert hostname(str(tmp_path)) == socket.gethostname()
    (tmp_path / "etc/hostname").write_text("web-1\n")
    assert hostname(str(tmp_path)) == "web-1"


def test_disk_io_counts_each_byte_once(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    # /sys/block as on a server: two disks, an NVMe, LVM on sda, md RAID on sdb, a loop image.
    for name in ("sda", "sdb", "dm-0", "md0", "loop0", "zram0"):
        (tmp_path / name / "slaves").mkdir(parents=True)
    (tmp_path / "nvme0n1").mkdir()  # no slaves directory at all
    (tmp_path / "dm-0" / "slaves" / "sda2").touch()
    (tmp_path / "md0" / "slaves" / "sdb1").touch()
    disks = whole_disks(str(tmp_path))
    assert disks == {"sda", "sdb", "nvme0n1"}

    # /proc/diskstats lists sda's partition and the LVM volume too: each
    # byte written through dm-0 to sda2 shows in dm-0, sda2 and sda.
    diskstats = (
        b"   8       0 sda 10 0 6 5 20 0 12 9 0 10 14 0 0 0 0 0 0\n"
        b"   8       2 sda2 10 0 6 5 20 0 12 9 0 10 14 0 0 0 0 0 0\n"
        b" 253       0 dm-0 10 0 6 5 20 0 12 9 0 10 14 0 0 0 0 0 0\n"
        b" 259       0 nvme0n1 1 0 2 0 1 0 4 0 0 1 1 0 0 0 0 0 0\n"
        b"   7       0 loop0 9 0 9 0 9 0 9 0 0 9 9 0 0 0 0 0 0\n"
    )
    assert parse_diskstats(diskstats, disks) == {"sda": (3072, 6144), "nvme0n1": (1024, 2048)}


def test_net_counters_are_per_interface_without_loopback() -> None:
    net_dev = (
        b"Inter-|   Receive                                                |  Transmit\n"
        b" face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets\n"
        b"    lo: 9999      10    0    0    0     0          0         0     9999      10"
        b"    0    0    0     0       0          0\n"
        b"  eth0: 213240648 160000 0 0 0 0 0 0 255158 2000 0 0 0 0 0 0\n"
    )
    assert parse_net_dev(net_dev) == {"eth0": (213240648, 255158)}
    # And this machine's, read by the sampler, as psutil reads them.
    real = collector(DynamicData(top_processes=0), "net")._rates.before
    expected = psutil.net_io_counters(pernic=True)
    assert real is not None and set(real) == set(expected) - {"lo"}


def test_disk_unmounted_between_ticks(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    gone = tmp_path / "usb"
    gone.mkdir()
    parts = [Part("overlay", "/", "overlay", "rw"), Part("/dev/sdz1", str(gone), "ext4", "rw")]
    monkeypatch.setattr(psutil, "disk_partitions", lambda all=False: parts)
    dynamic = DynamicData(top_processes=0)
    assert [d["mount"] for d in dynamic.sample()["disks"]] == ["/", str(gone)]
    gone.rmdir()  # the mount table still lists it, but it is gone
    disks = dynamic.sample()["disks"]
    assert [d["mount"] for d in disks] == ["/"]
    assert disks[0]["percent"] is not None


def test_a_bind_mounted_file_is_not_a_disk(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    hosts = tmp_path / "hosts"
    hosts.write_text("127.0.0.1 localhost\n")
    parts = [Part("overlay", "/", "overlay", "rw"), Part("/dev/vda", str(hosts), "ext4", "rw")]
    monkeypatch.setattr(psutil, "disk_partitions", lambda all=False: parts)
    assert [d["mount"] for d in DynamicData(top_processes=0).sample()["disks"]] == ["/"]


def test_a_hung_filesystem_is_skipped_until_it_answers(hung_mount: str) -> None:
    dynamic = DynamicData(top_processes=0)
    started = time.monotonic()
    first = {d["mount"]: d for d in dynamic.sample()["disks"]}
    assert time.monotonic() - started < 2  # one deadline, not forever
    assert first[hung_mount]["answering"] is False and first[hung_mount]["percent"] is None
    assert first["/"]["answering"] is True and first["/"]["percent"] is not None
    started = time.monotonic()
    second = {d["mount"]: d for d in dynamic.sample()["disks"]}
    assert time.monotonic() - started < 0.3  # not asked again while its call hangs
    assert second[hung_mount]["answering"] is False


def test_unreadable_disk_is_listed_with_nulls(monkeypatch: pytest.MonkeyPatch) -> None:
    real_usage = psutil.disk_usage

    def usage(path: str) -> Any:
        if path == "/":
            raise PermissionError(13, "Permission denied")
        return real_usage(path)

    monkeypatch.setattr(psutil, "disk_usage", usage)
    root = next(d for d in DynamicData(top_processes=0).sample()["disks"] if d["mount"] == "/")
    assert root["percent"] is None and root["total"] is None and root["free"] is None


# Each collector, the field it feeds, and how to find that field in a sample.
COLLECTORS = [
    ("cpu_times", lambda s: s["cpu"]["percent"] or s["cpu"]["per_core"]),
    ("virtual_memory", lambda s: s["memory"]),
    ("swap_memory", lambda s: s["swap"]),
    ("disk_partitions", lambda s: s["disks"]),
    ("disk_counters", lambda s: s["disk_io"]["read_bps"]),
    ("net_counters", lambda s: s["net"]["rx_bps"]),
    ("getloadavg", lambda s: s["load"]),
    ("proc_readings", lambda s: s["processes"]),
]
ERRORS = [
    psutil.AccessDenied(pid=1, name="x"),
    psutil.NoSuchProcess(pid=1),
    FileNotFoundError(2, "No such file or directory", "/proc/stat"),
]


@pytest.mark.parametrize("error", ERRORS, ids=lambda e: type(e).__name__)
@pytest.mark.parametrize(("function", "field"), COLLECTORS, ids=[c[0] for c in COLLECTORS])
def test_failing_collector_gives_null_and_one_log_line(
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    function: str,
    field: Any,
    error: Exception,
) -> None:
    dynamic = DynamicData(process_every=1)

    def fail(*args: Any, **kwargs: Any) -> Any:
        raise error

    # The process table and the byte counters read /proc themselves; the rest is psutil's.
    owner = {"proc_readings": processes, "disk_counters": counters, "net_counters": counters}
    monkeypatch.setattr(owner.get(function, psutil), function, fail)
    with caplog.at_level(logging.WARNING, logger="dashboard.data"):
        samples = [dynamic.sample() for _ in range(4)]
    for sample in samples:
        assert set(sample) == SAMPLE_KEYS  # the sample is still whole
        assert field(sample) is None
    # The other fields still carry values.
    assert samples[-1]["uptime"] is not None
    warnings = [r for r in caplog.records if r.name == "dashboard.data"]
    assert len(warnings) == 1, warnings
    assert type(error).__name__ in warnings[0].getMessage()

    monkeypatch.undo()
    with caplog.at_level(logging.INFO, logger="dashboard.data"):
        dynamic.sample()
        assert field(dynamic.sample()) is not None
    assert any("can be read again" in r.getMessage() for r in caplog.records)


def test_the_collectors_parts_make_the_sample_in_order() -> None:
    dynamic = DynamicData()
    assert all(isinstance(c, Collector) for c in dynamic.collectors)
    # Each collector's null part has the keys of its part: together, the sample.
    keys = [key for c in dynamic.collectors for key in c.null()]
    assert list(dynamic.sample()) == ["ts", *keys]
    assert set(keys) == SAMPLE_KEYS - {"ts"}


def test_a_failing_collector_is_unsuccessful_until_it_reads_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    dynamic = DynamicData(top_processes=0)
    dynamic.sample()
    names = [c.name for c in dynamic.collectors]
    assert dynamic.collector_success() == dict.fromkeys(names, True)

    def fail() -> Any:
        raise psutil.AccessDenied(pid=1, name="x")

    monkeypatch.setattr(psutil, "virtual_memory", fail)
    for _ in range(2):
        assert dynamic.sample()["memory"] is None
        assert dynamic.collector_success() == {name: name != "memory" for name in names}
    monkeypatch.undo()
    assert dynamic.sample()["memory"] is not None
    assert dynamic.collector_success() == dict.fromkeys(names, True)


def stat_line(pid: int, comm: str, state: str, ticks: int, start: int, pages: int) -> str:
    # Fields 1-24 of /proc/<pid>/stat: utime 14, stime 15, starttime 22, rss 24.
    rest = ["0"] * 24
    rest[0], rest[11], rest[19], rest[21] = state, str(ticks), str(start), str(pages)
    return f"{pid} ({comm}) " + " ".join(rest) + "\n"


def test_the_process_table_reads_proc(tmp_path: Any) -> None:
    proc = tmp_path / "proc"
    procs = {
        1: ("init", "S", 100, 5, 1000),
        42: ("tmux: (a) b", "R", 500, 900, 25_000),  # a comm with spaces and a ')'
        43: ("gone", "Z", 0, 950, 0),  # a zombie
    }
    for pid, (comm, state, ticks, start, pages) in procs.items():
        (proc / str(pid)).mkdir(parents=True)
        (proc / str(pid) / "stat").write_text(stat_line(pid, comm, state, ticks, start, pages))
    (proc / "77").mkdir()  # exited between the listing and the read: no stat
    (proc / "self").mkdir()
    page = processes.PAGE_SIZE
    table = ProcessTable(top=5, cpu_count=2, memory_total=100_000 * page, proc_root=str(proc))
    first = table.scan()
    assert [(r["pid"], r["name"], r["cpu_percent"]) for r in first] == [
        (42, "tmux: (a) b", 0.0),  # first seen: 0 % until the next scan, then by memory
        (1, "init", 0.0),
    ]
    assert first[0]["memory_percent"] == 25.0
    # 2 s of CPU for pid 1 over a (short) span on 2 cores: capped at 100 %.
    (proc / "1" / "stat").write_text(
        stat_line(1, "init", "S", 100 + 2 * processes.CLOCK_TICKS, 5, 1000)
    )
    # pid 42 exited and its pid was reused: another process, first seen.
    (proc / "42" / "stat").write_text(stat_line(42, "new", "S", 9_000, 1_000, 10))
    second = table.scan()
    assert [(r["pid"], r["name"], r["cpu_percent"]) for r in second] == [
        (1, "init", 100.0),
        (42, "new", 0.0),
    ]


def test_the_process_table_shares_add_up_on_this_machine() -> None:
    table = ProcessTable(
        top=1000, cpu_count=psutil.cpu_count() or 1, memory_total=psutil.virtual_memory().total
    )
    table.scan()
    burn_until = time.monotonic() + 0.3
    while time.monotonic() < burn_until:
        pass  # this process: about a core for 0.3 s
    rows = {r["pid"]: r for r in table.scan()}
    me = rows[os.getpid()]
    assert me["name"] == psutil.Process().name()[:15]
    assert me["cpu_percent"] >= 50 / (psutil.cpu_count() or 1)
    assert sum(r["memory_percent"] for r in rows.values()) <= 100.5


def test_failure_log_logs_each_field_once(caplog: pytest.LogCaptureFixture) -> None:
    reader = FailureLog()

    def boom() -> int:
        raise psutil.AccessDenied()

    with caplog.at_level(logging.WARNING):
        for _ in range(10):
            assert reader.read("a", boom) is None
            assert reader.read("b", boom) is None
    assert len(caplog.records) == 2


def test_process_scan_runs_every_few_ticks(monkeypatch: pytest.MonkeyPatch) -> None:
    scans = []
    real_scan = ProcessTable.scan

    def counting_scan(self: ProcessTable) -> Any:
        scans.append(1)
        return real_scan(self)

    monkeypatch.setattr(ProcessTable, "scan", counting_scan)
    dynamic = DynamicData(process_every=5)
    tables = [dynamic.sample()["processes"] for _ in range(10)]
    assert len(scans) == 1 + 2  # at start, then every fifth tick
    assert all(t for t in tables)  # the last table shows in between
