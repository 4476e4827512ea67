"""Kernel files kept open between reads (server/sampling/openfiles.py), and the
process table that keeps each process's stat file open from scan to scan."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
from pathlib import Path

from server.sampling.openfiles import OpenFiles
from server.sampling.processes import ProcessTable, proc_readings


def test_open_files_are_read_again_kept_while_read_and_closed_after(tmp_path: Path) -> None:
    """The counters' files stay open between reads `idle` ticks apart, show what the
    file says now, are closed once not read for longer, and never pass the limit."""
    files = [tmp_path / f"f{i}" for i in range(3)]
    for i, path in enumerate(files):
        path.write_text(f"{i}\n")
    kept = OpenFiles(limit=2, idle=3)
    assert kept.limit == 2
    for tick in range(7):
        if tick % 3 == 0:  # every third tick, as the byte counters are read
            assert [kept.raw(str(f)) for f in files] == [b"0\n", b"1\n", b"2\n"]
            assert len(kept) == 2  # the third opened and closed as before
        kept.sweep()
        assert len(kept) == 2  # not read for up to `idle` ticks: still open
    files[0].write_text("changed\n")
    assert kept.raw(str(files[0])) == b"changed\n"  # read from its start: what it says now
    for _ in range(7):
        kept.sweep()
    assert len(kept) == 0  # no longer read: nothing left open
    assert kept.raw(str(tmp_path / "gone")) is None
    assert len(kept) == 0
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if soft != resource.RLIM_INFINITY:  # a share of the open-file limit at most
        assert OpenFiles(limit=10**9, share=8).limit == soft // 8


def test_a_kept_file_that_fails_is_opened_again_for_what_its_path_names_now() -> None:
    """A pid used again: the kept /proc/PID/stat of the exited process answers ESRCH;
    the path is opened again, and a path that names nothing now is None."""
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    kept = OpenFiles(limit=4)
    path = f"/proc/{child.pid}/stat"
    try:
        first = kept.raw(path)
        assert first is not None and first.startswith(f"{child.pid} (".encode())
        assert len(kept) == 1
    finally:
        child.kill()
        child.wait()
    assert kept.raw(path) is None  # ESRCH on the kept one, then no such file
    assert len(kept) == 0
    own = f"/proc/{os.getpid()}/stat"
    assert kept.raw(own) is not None and len(kept) == 1


def test_the_process_table_keeps_stat_files_open_and_closes_those_of_exited_processes(
    tmp_path: Path,
) -> None:
    """Each scan reads every process; its stat file stays open to the next scan, and a
    process that exited has its file closed at the scan that misses it."""
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        table = ProcessTable(top=500, cpu_count=1, memory_total=1 << 30)
        pids = {row["pid"] for row in table.scan()}
        assert child.pid in pids and os.getpid() in pids
        open_after_first = len(table._files)
        assert open_after_first >= len(pids) - 5  # a few may exit between list and read
        fresh = {r.key[0]: r for r in proc_readings()}  # no kept files: read once each
        assert fresh[child.pid].name == "python3" or fresh[child.pid].name.startswith("python")
    finally:
        child.kill()
        child.wait()
    table.scan()
    assert f"/proc/{child.pid}/stat" not in table._files._fds
    assert len(table._files) <= open_after_first
