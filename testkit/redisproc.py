"""Debian's redis-server on a free loopback port, with a password; stopped by its own PID."""

from __future__ import annotations

import signal
import socket
import subprocess
from pathlib import Path

from testkit.serverproc import free_port
from testkit.wait import wait_until


class RedisProcess:
    def __init__(self, binary: str, workdir: Path, password: str = "queue-password-1") -> None:
        self.binary = binary
        self.workdir = workdir
        self.port = free_port()
        self.password = password
        self.url = f"redis://:{password}@127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> RedisProcess:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [
                self.binary, "--port", str(self.port), "--bind", "127.0.0.1",
                "--requirepass", self.password, "--save", "", "--appendonly", "no",
                "--dir", str(self.workdir),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip

        def listening() -> bool:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return True
            except OSError:
                return False

        wait_until(listening, timeout=10, interval=0.05, what="redis-server listening")
        return self

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)
