"""Debian's dockerd, started by a test with a socket, data root and exec root of its own,
and an image imported from busybox-static (no registry is reachable).

`--storage-driver=vfs --bridge=none --iptables=false`: no overlay mounts, no
network set-up on the host; containers run with `--network none`. Everything
it made is removed at stop(): its containers, then the daemon (by its own
PID), then its directories.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tarfile
import tempfile
from pathlib import Path

from testkit.wait import wait_until

IMAGE = "dashtest/busybox:1"
# What the tests' containers run (Docker's and Podman's); `rm` and `test` make a
# healthcheck turn unhealthy on cue.
APPLETS = ("sh", "sleep", "yes", "cat", "echo", "dd", "head", "tr", "true", "false", "ls",
           "rm", "test")  # fmt: skip


def busybox_rootfs(busybox: str, image: Path) -> Path:
    """A root filesystem of busybox-static and its applets' links, as a tar to import
    (no registry is reachable)."""
    with tarfile.open(image, "w") as tar:
        for directory in ("bin", "proc", "sys", "dev", "etc", "tmp"):
            info = tarfile.TarInfo(directory)
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            tar.addfile(info)
        tar.add(busybox, "bin/busybox")
        for applet in APPLETS:
            info = tarfile.TarInfo(f"bin/{applet}")
            info.type, info.linkname = tarfile.SYMTYPE, "busybox"
            tar.addfile(info)
    return image


def mount_table() -> list[list[str]]:
    """This process's mount table (/proc/self/mountinfo), a list of fields a mount: the
    fifth is its mount point, those from the seventh to "-" its propagation."""
    with open("/proc/self/mountinfo", encoding="utf-8") as table:
        return [line.split() for line in table]


def mounts_under(folder: Path) -> list[str]:
    """The mount points in this process's mount table that are `folder` or inside it."""
    prefix = str(folder)
    points = [fields[4] for fields in mount_table()]
    return [p for p in points if p == prefix or p.startswith(prefix + "/")]


class Docker:
    def __init__(
        self, dockerd: str, docker: str, busybox: str, *, data_tmpfs_mib: int | None = None
    ) -> None:
        """`data_tmpfs_mib`: its data root on a tmpfs of that size, so that a container's
        root filesystem is not the host's (the image test tells the two apart)."""
        self.dockerd = dockerd
        self.docker = docker
        self.busybox = busybox
        # A short path: a unix socket's path is at most 107 bytes.
        self.root = Path(tempfile.mkdtemp(prefix="dashdocker-"))
        self.socket = str(self.root / "docker.sock")
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = self.root / "dockerd.log"
        self.data_tmpfs_mib = data_tmpfs_mib

    def start(self) -> Docker:
        if self.data_tmpfs_mib:
            data = self.root / "data"
            data.mkdir()
            subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={self.data_tmpfs_mib}m",
                            "dashtest-docker", str(data)], check=True, timeout=30)  # fmt: skip
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                [
                    self.dockerd, "--host", f"unix://{self.socket}",
                    "--data-root", str(self.root / "data"), "--exec-root", str(self.root / "exec"),
                    "--pidfile", str(self.root / "docker.pid"), "--storage-driver=vfs",
                    "--bridge=none", "--iptables=false", "--ip6tables=false",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its containerd goes with it
            )  # fmt: skip
        wait_until(lambda: self.cli("version", check=False).returncode == 0, timeout=60,
                   what=f"dockerd answering (log: {self.log})")  # fmt: skip
        self._import_image()
        return self

    def _import_image(self) -> None:
        image = busybox_rootfs(self.busybox, self.root / "rootfs.tar")
        with open(image, "rb") as handle:
            subprocess.run([self.docker, "import", "-", IMAGE], stdin=handle, env=self.env,
                           check=True, capture_output=True, timeout=120)  # fmt: skip

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "DOCKER_HOST": f"unix://{self.socket}"}

    def cli(
        self, *args: str, check: bool = True, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        try:
            return subprocess.run([self.docker, *args], env=self.env, check=check,
                                  capture_output=True, text=True, timeout=timeout)  # fmt: skip
        except subprocess.CalledProcessError as exc:  # what docker said, in the test's report
            raise AssertionError(f"docker {' '.join(args)}: {exc.stderr[-3000:]}") from None

    def run(self, name: str, *options_and_command: str) -> str:
        """`docker run -d --network none --name NAME ...`: the container's id."""
        args = ["run", "-d", "--network", "none", "--name", name, *options_and_command]
        return self.cli(*args).stdout.strip()

    def stop(self) -> None:
        if self.proc is not None:
            if self.proc.poll() is None:
                ids = self.cli("ps", "-aq", check=False).stdout.split()
                if ids:
                    self.cli("rm", "-f", *ids, check=False)
                self.proc.send_signal(signal.SIGTERM)
                try:
                    self.proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                    self.proc.wait(timeout=10)
            # Its containerd and shims, if any outlived it (same session).
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
        # What is still mounted under its root (the data tmpfs; the host network's netns
        # file dockerd binds for a --network host container), lazily, innermost first.
        for mount in sorted(mounts_under(self.root), key=len, reverse=True):
            subprocess.run(["umount", "--lazy", mount], check=False, timeout=30)
        shutil.rmtree(self.root, ignore_errors=True)
