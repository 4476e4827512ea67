"""The Disks collector: each real filesystem's usage, read by the mount prober (mounts.py)."""

from __future__ import annotations

import functools
from typing import Any

from server.sampling.collector import READ_ERRORS, Collector, FailureLog, percent
from server.sampling.mounts import GONE, NOT_A_DIRECTORY, Filesystem, MountWatch, real_filesystems


class Disks(Collector):
    """{"disks": [{"mount", "device", "fstype", "percent", "total", "used", "free", "answering"}]}.

    The mount table changes rarely and reading it costs as much as the rest
    of a tick: it is read again every `table_every` ticks (and every tick
    while it cannot be read). A mount that went away in between says so at
    once (its probe finds it gone). A disk whose usage cannot be read is
    listed with nulls, logged once per mount; the collector still succeeds.
    """

    name = "disks"
    waits = True  # begin() asks the prober, read() takes its answers

    def __init__(self, table_every: int = 10, root: str = "/") -> None:
        super().__init__()
        self._root = root  # where the host's / is: "/", or its mount in a container
        self._table_every = max(table_every, 1)
        self._ticks = 0
        self._filesystems: list[Filesystem] | None = None
        self._table_error: BaseException | None = None
        self._mounts = MountWatch()
        self._per_disk = FailureLog()

    def begin(self) -> None:
        self._ticks += 1
        if self._filesystems is None or self._ticks % self._table_every == 0:
            try:
                self._filesystems, self._table_error = real_filesystems(self._root), None
            except READ_ERRORS as exc:
                self._filesystems, self._table_error = None, exc
        if self._filesystems is not None:
            # The prober reads them while this thread reads the rest.
            self._mounts.ask([fs.path for fs in self._filesystems])

    def read(self) -> dict[str, Any]:
        if self._table_error is not None:
            raise self._table_error.with_traceback(None)  # collect() logs it once
        assert self._filesystems is not None
        usage = self._mounts.usage()
        disks = []
        for fs in self._filesystems:
            value, answering = usage.get(fs.path, (None, False))
            # A read that raised is logged once (FailureLog); it did answer, with an error.
            value = self._per_disk.read(f"disk {fs.mount}", functools.partial(_value_of, value))
            if value in (GONE, NOT_A_DIRECTORY):
                continue
            disks.append(
                {
                    "mount": fs.mount,
                    "device": fs.device,
                    "fstype": fs.fstype,
                    "percent": None if value is None else percent(value.percent),
                    "total": None if value is None else value.total,
                    "used": None if value is None else value.used,
                    "free": None if value is None else value.free,
                    "answering": answering,
                }
            )
        return {"disks": disks}

    def null(self) -> dict[str, Any]:
        return {"disks": None}


def _value_of(value: Any) -> Any:
    if isinstance(value, BaseException):
        raise value
    return value
