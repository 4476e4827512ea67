"""The filesystems a sample shows, and their usage, read in a thread of their own.

A filesystem can hang (a dead NFS or FUSE server): its stat never returns.
So no stat runs on the loop: one OS thread (the prober) reads every mount
once a tick, kicked at the start of the tick so that its reads overlap the
tick's others, and the tick picks the values up at its end. That costs a
wake-up of one thread a tick, where a call through eventlet's pool for each
mount cost a pipe write, a hub wake-up and a timer (a third of an idle
server's tick).

A mount whose read has not returned within the deadline is "not answering":
the prober stuck on it is left to it, a new one reads the other mounts, and
the mount is not asked again until that read returns. A hung mount holds
one thread, never one per tick, and never the loop.
"""

from __future__ import annotations

import logging
import os
import time
import weakref
from collections.abc import Sequence
from typing import Any, NamedTuple

import psutil

from server.blocking import os_threading

log = logging.getLogger("dashboard.data")

# Filesystems that are not storage: kernel views, memory, images, layers.
PSEUDO_FSTYPES = frozenset(
    [
        "autofs",
        "binfmt_misc",
        "bpf",
        "cgroup",
        "cgroup2",
        "configfs",
        "debugfs",
        "devpts",
        "devtmpfs",
        "efivarfs",
        "fusectl",
        "hugetlbfs",
        "mqueue",
        "nsfs",
        "overlay",
        "proc",
        "pstore",
        "ramfs",
        "rpc_pipefs",
        "securityfs",
        "selinuxfs",
        "squashfs",
        "sysfs",
        "tmpfs",
        "tracefs",
        "aufs",
        "iso9660",
        "fuse.lxcfs",
        "fuse.snapfuse",
        "fuse.gvfsd-fuse",
    ]
)
# Network filesystems are left out too: statvfs on a hung NFS server blocks the tick.
NETWORK_FSTYPES = frozenset(["nfs", "nfs4", "cifs", "smb3", "sshfs", "fuse.sshfs", "9p"])

NOT_A_DIRECTORY = "not a directory"
GONE = "gone"
POLL_SECONDS = 0.001  # how often a tick looks for the prober's answer while it waits


class Filesystem(NamedTuple):
    mount: str  # as the host names it
    device: str
    fstype: str
    path: str  # where this process reads it: `mount`, or under the host's root in a container


def is_real_filesystem(mount: str, device: str, fstype: str) -> bool:
    if mount == "/":
        return True  # always shown, even as a container's overlay
    if fstype in PSEUDO_FSTYPES or fstype in NETWORK_FSTYPES or not device.startswith("/dev/"):
        return False
    return not (device.startswith("/dev/loop") or mount.startswith("/snap/"))


def real_filesystems(root: str = "/") -> list[Filesystem]:
    """The mount table's storage, each device once (a bind mount of it again is left out).

    In a container with the host's / bound at `root` (recursively, as Docker binds),
    this process's own table holds the host's mounts under `root`: those are the
    host's, named by their path on the host; the container's own are left out.
    """
    found = []
    seen_devices: set[str] = set()
    for part in sorted(psutil.disk_partitions(all=True), key=lambda p: len(p.mountpoint)):
        mount = host_path(part.mountpoint, root)
        if mount is None or not is_real_filesystem(mount, part.device, part.fstype):
            continue
        if part.device in seen_devices and mount != "/":
            continue
        seen_devices.add(part.device)
        found.append(Filesystem(mount, part.device, part.fstype, part.mountpoint))
    return found


def host_path(path: str, root: str) -> str | None:
    """`path` as the host names it, if it is the host's (under `root`); None if not."""
    if root == "/":
        return path
    if path == root:
        return "/"
    return path[len(root) :] if path.startswith(root + "/") else None


def probe(mount: str) -> Any:
    """Everything that touches a mount, in one call made off the loop."""
    if not os.path.isdir(mount):
        # A bind-mounted file (a container's /etc/hosts) is not a filesystem to
        # watch; a path that vanished was unmounted since the table was read.
        return GONE if not os.path.lexists(mount) else NOT_A_DIRECTORY
    return psutil.disk_usage(mount)


class _Prober:
    """An OS thread that reads the mounts it is asked for, one round per kick.

    It touches nothing green (no logging, no eventlet lock): only plain
    attributes, each set in one assignment, which the tick reads.
    """

    def __init__(self) -> None:
        threads = os_threading()
        self._kick = threads.Event()
        self._asked: tuple[int, tuple[str, ...]] = (0, ())
        self.results: dict[str, tuple[int, Any]] = {}  # mount -> (round, value or exception)
        self.reading: str | None = None  # the mount whose read has not returned yet
        self.retired = False
        threads.Thread(target=self._run, name="mount-prober", daemon=True).start()

    @property
    def round(self) -> int:
        return self._asked[0]

    def ask(self, mounts: tuple[str, ...]) -> None:
        self._asked = (self._asked[0] + 1, mounts)
        self._kick.set()

    def retire(self) -> None:
        """Ends the thread after the read it is in, if any."""
        self.retired = True
        self._kick.set()

    def answered(self, mount: str) -> bool:
        """Whether the mount's read of the round last asked has returned."""
        return self.results.get(mount, (0, None))[0] == self.round

    def _run(self) -> None:
        while True:
            self._kick.wait()
            self._kick.clear()
            if self.retired:
                return
            round_, mounts = self._asked
            for mount in mounts:
                if self.retired:
                    return
                self.reading = mount
                try:
                    value: Any = probe(mount)
                except Exception as exc:  # handed to the tick, which logs it once
                    value = exc
                self.results[mount] = (round_, value)
                self.reading = None
            if self.retired:
                return


class MountWatch:
    """Asks the prober for each mount's usage at a tick's start, and takes it at its end."""

    def __init__(self, deadline: float = 0.5, max_hung: int = 8) -> None:
        self.deadline = deadline
        self.max_hung = max_hung
        self._prober: _Prober | None = None
        self._hung: dict[str, _Prober] = {}  # mount -> the prober stuck reading it
        self._asked: tuple[str, ...] = ()
        self._asked_at = 0.0

    def ask(self, mounts: Sequence[str]) -> None:
        for mount, prober in list(self._hung.items()):
            if prober.reading != mount:
                del self._hung[mount]
                log.warning("filesystem %s answers again", mount)
        self._asked = tuple(mount for mount in mounts if mount not in self._hung)
        self._asked_at = time.monotonic()
        self._ask(self._asked)

    def _ask(self, mounts: tuple[str, ...]) -> None:
        if self._prober is None and len(self._hung) < self.max_hung:
            self._prober = _Prober()
            # Its thread ends with this watch (a test makes many).
            weakref.finalize(self, self._prober.retire)
        if self._prober is not None:
            self._prober.ask(mounts)

    def usage(self) -> dict[str, tuple[Any, bool]]:
        """Per mount asked: (its value or the exception its read raised, answering)."""
        found: dict[str, tuple[Any, bool]] = {mount: (None, False) for mount in self._hung}
        waiting = self._asked
        while waiting:
            prober = self._prober
            if prober is None:  # too many hung already: no thread more for these
                found.update((mount, (None, False)) for mount in waiting)
                break
            while not all(map(prober.answered, waiting)) and (
                time.monotonic() < self._asked_at + self.deadline
            ):
                time.sleep(POLL_SECONDS)  # green under eventlet: the loop goes on
            found.update(
                (mount, (prober.results[mount][1], True))
                for mount in waiting
                if prober.answered(mount)
            )
            waiting = tuple(mount for mount in waiting if mount not in found)
            stuck = prober.reading
            if not waiting or stuck is None:
                # Slow to start (a busy machine), not stuck: no answer this tick.
                found.update((mount, (None, False)) for mount in waiting)
                break
            prober.retire()
            self._prober = None
            self._hung[stuck] = prober
            found[stuck] = (None, False)
            log.warning(
                "filesystem %s is not answering (no answer within %.1f s); "
                "it is skipped until it answers",
                stuck,
                self.deadline,
            )
            waiting = tuple(mount for mount in waiting if mount != stuck)
            self._asked_at = time.monotonic()
            self._ask(waiting)
        return found
