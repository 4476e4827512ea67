"""Debian's Podman, rootful, started by a test with storage and state of its own, its
Docker-compatible API served on a socket of its own (`podman system service`), and an
image imported from busybox-static (no registry is reachable).

Every podman call, the service's included, gets the same global flags: its own
`--root`, `--runroot` and `--tmpdir` (the state database and the events log live
there), `--storage-driver vfs` (no overlay mounts), `--cgroup-manager cgroupfs` (no
systemd needed: PID 1 need not be systemd) and `--events-backend file` (journald
need not run). Containers run with `--network none`. A containers.conf of its own
sets the default ulimits (see CONTAINERS_CONF below). Healthchecks get no systemd
timer here: a test runs them with `podman healthcheck run`.

Everything it made is removed at stop(): its containers, then the service (by its own
PID), the conmon processes that outlived them (by PID, those under its root), what
is still mounted under its root, its empty cgroups, then its directories. Left: the
image blob cache every rootful podman keeps in /var/lib/containers/cache (shared;
not ours to remove).
"""

from __future__ import annotations

import contextlib
import os
import resource
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

from testkit.docker import IMAGE, busybox_rootfs
from testkit.wait import wait_until

# Where podman's cgroupfs manager puts containers (libpod-<id>) and conmon (conmon/).
CGROUP_PARENT = "libpod_parent"
CGROUPS = "/sys/fs/cgroup"


def _ulimits() -> str:
    """Podman gives a rootful container nofile=1048576 and an nproc as high by default;
    a process without CAP_SYS_RESOURCE (a sandbox, this CI's) cannot raise its hard
    limits, and runc then fails ("error setting rlimit type 7"). Both are set below
    what podman itself runs with (its conmon had nproc 32768 here); nproc counts every
    process of root on the host, so it is not set low."""
    nofile = min(resource.getrlimit(resource.RLIMIT_NOFILE)[1], 1024)
    return f'[containers]\ndefault_ulimits = ["nofile={nofile}:{nofile}", "nproc=16384:16384"]\n'


class Podman:
    def __init__(self, podman: str, busybox: str) -> None:
        self.podman = podman
        self.busybox = busybox
        # A short path: a unix socket's path is at most 107 bytes.
        self.root = Path(tempfile.mkdtemp(prefix="dashpodman-"))
        self.socket = str(self.root / "podman.sock")
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = self.root / "podman.log"
        self.flags = [
            "--root", str(self.root / "storage"), "--runroot", str(self.root / "run"),
            "--tmpdir", str(self.root / "tmp"), "--storage-driver", "vfs",
            "--cgroup-manager", "cgroupfs", "--events-backend", "file",
            "--network-config-dir", str(self.root / "networks"),
            "--volumepath", str(self.root / "volumes"),
        ]  # fmt: skip
        self.conf = self.root / "containers.conf"

    @property
    def env(self) -> dict[str, str]:
        # Only this file is read (not /etc/containers/containers.conf): nothing of the host's.
        return {**os.environ, "CONTAINERS_CONF": str(self.conf)}

    def start(self) -> Podman:
        self.conf.write_text(_ulimits())
        self._import_image()
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                [self.podman, *self.flags, "system", "service", "--time=0",
                 f"unix://{self.socket}"],
                env=self.env, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,  # what it starts goes with it
            )  # fmt: skip
        wait_until(lambda: self.remote("version", check=False).returncode == 0, timeout=60,
                   what=f"podman's service answering (log: {self.log})")  # fmt: skip
        return self

    def _import_image(self) -> None:
        self.cli("import", str(busybox_rootfs(self.busybox, self.root / "rootfs.tar")), IMAGE)

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """podman ARGS on this instance's storage (not through the service: as a user's
        `podman run` does, the same state the service reads)."""
        return subprocess.run([self.podman, *self.flags, *args], env=self.env, check=check,
                              capture_output=True, text=True, timeout=120)  # fmt: skip

    def remote(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """podman ARGS through the service's socket."""
        return subprocess.run(
            [self.podman, "--remote", "--url", f"unix://{self.socket}", *args],
            env=self.env, check=check, capture_output=True, text=True, timeout=120,
        )  # fmt: skip

    def run(self, name: str, *options_and_command: str) -> str:
        """`podman run -d --network none --name NAME ...`: the container's id."""
        args = ["run", "-d", "--network", "none", "--name", name, *options_and_command]
        return self.cli(*args).stdout.strip()

    def stop(self) -> None:
        if self.proc is not None:
            ids = self.cli("ps", "-aq", "--no-trunc", check=False).stdout.split()
            if ids:
                self.cli("rm", "-f", "-t", "0", *ids, check=False)  # -t 0: no 10 s grace
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGTERM)
                try:
                    self.proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                    self.proc.wait(timeout=10)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self._kill_conmons()
            self._unmount()
            self._remove_cgroups(ids)
        shutil.rmtree(self.root, ignore_errors=True)

    def _kill_conmons(self) -> None:
        """conmon daemonizes (its own session, parent 1), and runs `podman container
        cleanup` when its container exits: one that outlived the service is found by its
        command line, which names this instance's directories."""
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                if (entry / "comm").read_text().strip() not in ("conmon", "podman"):
                    continue
                if str(self.root).encode() in (entry / "cmdline").read_bytes():
                    os.kill(int(entry.name), signal.SIGKILL)
            except OSError:
                continue  # gone meanwhile

    def _unmount(self) -> None:
        """A container's /dev/shm and the like, if one outlived a failed rm: rmtree must
        not walk into a mount."""
        with open("/proc/self/mountinfo", encoding="utf-8") as handle:
            points = [line.split()[4] for line in handle]
        for point in sorted((p for p in points if p.startswith(f"{self.root}/")), reverse=True):
            subprocess.run(["umount", "-l", point], check=False, capture_output=True)

    def _remove_cgroups(self, ids: list[str]) -> None:
        """Empty cgroup directories it made (rmdir fails on one that still has a process,
        or that another podman uses: only empty ones go)."""
        hierarchies = [Path(CGROUPS), *Path(CGROUPS).iterdir()]  # v2 at the top, v1 below
        for hierarchy in hierarchies:
            parent = hierarchy / CGROUP_PARENT
            for directory in [*(parent / f"libpod-{i}" for i in ids), parent / "conmon", parent]:
                with contextlib.suppress(OSError):
                    directory.rmdir()
