"""server/sampling/mounts.py: the prober thread, a read that hangs, and one that comes back."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import pytest

from server.sampling import mounts
from server.sampling.mounts import MountWatch


class Gates(dict[str, threading.Event]):
    """The mounts whose reads block until set, and how many reads block now."""

    blocked = 0


@pytest.fixture
def hanging(monkeypatch: pytest.MonkeyPatch) -> Gates:
    """probe() that blocks on a mount's event until the test sets it; others answer at once."""
    gates = Gates()

    def probe(mount: str) -> Any:
        if mount in gates:
            gates.blocked += 1
            gates[mount].wait(10)
            gates.blocked -= 1
        if mount == "/broken":
            raise PermissionError(13, "Permission denied")
        return f"usage of {mount}"

    monkeypatch.setattr(mounts, "probe", probe)
    return gates


def ask_and_take(watch: MountWatch, wanted: list[str]) -> dict[str, tuple[Any, bool]]:
    watch.ask(wanted)
    return watch.usage()


def test_each_tick_reads_every_mount_again(hanging: Gates) -> None:
    watch = MountWatch(deadline=0.5)
    assert ask_and_take(watch, ["/", "/home"]) == {
        "/": ("usage of /", True),
        "/home": ("usage of /home", True),
    }
    # A read that raised is handed over as its exception, as an answer.
    second = ask_and_take(watch, ["/", "/broken"])
    assert second["/"] == ("usage of /", True)
    error, answering = second["/broken"]
    assert isinstance(error, PermissionError) and answering


def test_a_hung_mount_is_left_to_its_thread_and_comes_back(
    hanging: Gates, caplog: pytest.LogCaptureFixture
) -> None:
    hanging["/nfs"] = threading.Event()
    watch = MountWatch(deadline=0.2)
    with caplog.at_level(logging.WARNING, logger="dashboard.data"):
        started = time.monotonic()
        first = ask_and_take(watch, ["/", "/nfs", "/home"])
        assert time.monotonic() - started < 1.0  # one deadline
        # The mounts after the hung one are read by a new prober, in the same tick.
        assert first == {
            "/": ("usage of /", True),
            "/nfs": (None, False),
            "/home": ("usage of /home", True),
        }
        started = time.monotonic()
        second = ask_and_take(watch, ["/", "/nfs", "/home"])
        assert time.monotonic() - started < 0.15  # not asked again, nothing waits for it
        assert second["/nfs"] == (None, False) and second["/home"] == ("usage of /home", True)
        hanging["/nfs"].set()  # its read returns
        time.sleep(0.05)
        hanging.pop("/nfs")
        third = ask_and_take(watch, ["/", "/nfs", "/home"])
    assert third["/nfs"] == ("usage of /nfs", True)
    messages = [r.getMessage() for r in caplog.records]
    assert sum("/nfs is not answering" in m for m in messages) == 1
    assert sum("/nfs answers again" in m for m in messages) == 1


def test_hung_mounts_hold_at_most_max_hung_threads(hanging: Gates) -> None:
    for mount in ("/a", "/b", "/c"):
        hanging[mount] = threading.Event()
    watch = MountWatch(deadline=0.1, max_hung=2)
    try:
        usage = ask_and_take(watch, ["/a", "/b", "/c", "/"])
        # /a and /b each hold a thread; then no thread more: /c and / are not read.
        assert usage == {m: (None, False) for m in ("/a", "/b", "/c", "/")}
        assert hanging.blocked == 2
        ask_and_take(watch, ["/a", "/b", "/c", "/"])
        time.sleep(0.05)
        assert hanging.blocked == 2
    finally:
        for gate in hanging.values():
            gate.set()
