"""The real server as a subprocess on a free loopback port, for end-to-end tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import requests

from testkit.wait import wait_until

ROOT = Path(__file__).resolve().parent.parent


def run_server_command(
    *args: str, input: str | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """`python -m server ARGS` run to its end (30 s at most), its output kept as text."""
    return subprocess.run(
        [sys.executable, "-m", "server", *args],
        cwd=ROOT,
        input=input,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class ServerProcess:
    """`python -m server` on 127.0.0.1; stopped by its own PID only."""

    def __init__(
        self,
        log_dir: Path,
        *args: str,
        port: int | None = None,
        env: dict[str, str] | None = None,
        cwd: Path = ROOT,
    ) -> None:
        self.cwd = cwd
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_dir = log_dir
        self.data_dir = log_dir.parent / "data"
        self.args = [
            "--host", "127.0.0.1",
            "--port", str(self.port),
            "--log-dir", str(log_dir),
            "--data-dir", str(self.data_dir),
            *args,
        ]  # fmt: skip
        self.env = {**os.environ, **(env or {})}
        self.proc: subprocess.Popen[str] | None = None

    def start(self, wait: bool = True) -> ServerProcess:
        # To a file, not a pipe: a pipe nobody drains fills up and then
        # blocks the server's console logging, and with it the server.
        self.console = self.log_dir.parent / f"console-{self.port}.txt"
        self.console.parent.mkdir(parents=True, exist_ok=True)
        with open(self.console, "a") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "server", *self.args],
                cwd=self.cwd,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                text=True,
            )
        if wait:
            self.wait_healthy()
        return self

    def wait_healthy(self, timeout: float = 20.0) -> None:
        def healthy() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}: {self.output()}")
            try:
                return requests.get(self.url + "/healthz", timeout=1).status_code == 200
            except requests.RequestException:
                return False

        wait_until(healthy, timeout=timeout, interval=0.1, what="server healthy")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def output(self) -> str:
        """What the server printed on its console (stdout and stderr)."""
        return self.console.read_text() if self.console.exists() else ""
