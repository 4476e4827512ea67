"""A booted Debian guest for the Puppet path: debootstrap, then `systemd-nspawn -b`.

The guest has systemd as PID 1 and shares the host's network (no hypervisor
needed), with the checkout bound read-only at /vagrant as Vagrant's share
would be. Commands run in it through nsenter into its PID 1, with a clean
environment. debootstrap's tarball and the root filesystem it unpacks to
are cached under .cache/guest/ (gitignored). Stopped and removed by
whoever started it, pass or fail.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

import psutil

from testkit.serverproc import ROOT
from testkit.wait import wait_until

SUITE = "bookworm"
MIRROR = "http://deb.debian.org/debian"
INCLUDE = "systemd,systemd-sysv,dbus,ca-certificates,python3,iproute2"
CACHE = ROOT / ".cache" / "guest"
GUEST_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def tarball(debootstrap: str) -> Path:
    """The cached debootstrap tarball, made on first use (it needs the mirror)."""
    path = CACHE / f"{SUITE}-minbase.tgz"
    if not path.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="debootstrap-", dir=CACHE) as work:
            partial = path.with_suffix(".partial")
            subprocess.run(
                [debootstrap, "--variant=minbase", f"--include={INCLUDE}",
                 f"--make-tarball={partial}", SUITE, work, MIRROR],
                check=True, capture_output=True, timeout=1800,
            )  # fmt: skip
            partial.rename(path)
    return path


def rootfs_tar(debootstrap: str) -> Path:
    """The guest's root filesystem, unpacked once from the tarball and kept as a tar: a
    guest (and the image test's base, `docker import`) starts from it in seconds where
    debootstrap's unpacking takes most of a minute."""
    path = CACHE / f"{SUITE}-rootfs.tar"
    if not path.exists():
        packages = tarball(debootstrap)
        with tempfile.TemporaryDirectory(prefix="rootfs-", dir=CACHE) as work:
            subprocess.run(
                [debootstrap, "--variant=minbase", f"--include={INCLUDE}",
                 f"--unpack-tarball={packages}", SUITE, work, MIRROR],
                check=True, capture_output=True, timeout=1800,
            )  # fmt: skip
            os.chmod(work, 0o755)  # the tar's "." is the guest's /, made 0700 by mkdtemp
            partial = path.with_suffix(".partial")
            subprocess.run(["tar", "-C", work, "-cf", str(partial), "."], check=True, timeout=300)
            partial.rename(path)
    return path


class Guest:
    def __init__(self, debootstrap: str, nspawn: str, nsenter: str, workdir: Path) -> None:
        self.nspawn = nspawn
        self.nsenter = nsenter
        self.rootfs = workdir / "rootfs"
        self.console = workdir / "console.txt"
        self.proc: subprocess.Popen[bytes] | None = None
        self.leader: int | None = None
        self.rootfs.mkdir(parents=True)
        subprocess.run(["tar", "-C", str(self.rootfs), "-xf", str(rootfs_tar(debootstrap))],
                       check=True, timeout=300)  # fmt: skip
        # This machine reaches the registries only through its own CA bundle.
        bundle = Path("/etc/ssl/certs/ca-certificates.crt")
        if bundle.exists():
            shutil.copy(bundle, self.rootfs / "etc/ssl/certs/ca-certificates.crt")
        hosts = self.rootfs / "etc/hosts"  # as Debian's installer writes it; debootstrap does not
        if not hosts.exists():
            hosts.write_text("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n")
        (self.rootfs / "etc/pip.conf").write_text(
            "[global]\ncert = /etc/ssl/certs/ca-certificates.crt\n"
        )

    def boot(self, hostname: str) -> None:
        # debootstrap copied this machine's /etc/hostname; the guest's systemd sets it at boot.
        (self.rootfs / "etc/hostname").write_text(hostname + "\n")
        with open(self.console, "wb") as out:
            self.proc = subprocess.Popen(
                [self.nspawn, "--register=no", "--keep-unit", "-b", "-D", str(self.rootfs),
                 f"--hostname={hostname}", f"--bind-ro={ROOT}:/vagrant", "--console=passive"],
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip

        def leader() -> int | None:
            if self.proc is None or self.proc.poll() is not None:
                raise RuntimeError(f"systemd-nspawn exited: {self.console.read_text()[-2000:]}")
            for child in psutil.Process(self.proc.pid).children(recursive=True):
                if child.name() == "systemd":
                    return child.pid
            return None

        self.leader = wait_until(leader, timeout=60, what="the guest's systemd")
        # running or degraded: booted (a minimal guest may have a unit or two failing).
        wait_until(
            lambda: (
                self.run("systemctl is-system-running --wait", check=False).stdout.strip()
                in ("running", "degraded")
            ),
            timeout=120,
            what="the guest booted",
        )

    def run(
        self,
        script: str,
        env: dict[str, str] | None = None,
        check: bool = True,
        timeout: float = 900,
    ) -> subprocess.CompletedProcess[str]:
        """`script` by /bin/sh in the guest, as root, in a clean environment."""
        assert self.leader is not None
        clean = {"PATH": GUEST_PATH, "HOME": "/root", "LANG": "C.UTF-8", **(env or {})}
        command = [self.nsenter, "--target", str(self.leader), "--mount", "--uts", "--ipc",
                   "--pid", "--", "/usr/bin/env", "-i",
                   *(f"{k}={v}" for k, v in clean.items()), "/bin/sh", "-c", script]  # fmt: skip
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
        if check and result.returncode != 0:
            raise AssertionError(f"in the guest: {script}\n{result.stdout}\n{result.stderr}")
        return result

    def stop(self) -> None:
        """Power off (SIGKILL after 60 s), then remove the guest's files."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)  # nspawn asks the guest's systemd to halt
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        if self.proc is not None and self.proc.poll() is None:
            return  # still running: never delete files it may have bound from the host
        shutil.rmtree(self.rootfs, ignore_errors=True)
