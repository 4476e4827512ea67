"""Glances, the peer: installed in its own venv, run as `glances -w`, polled like its UI."""

from __future__ import annotations

import gzip
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests

from bench.cost import ProcessMeter
from testkit.wait import wait_until


def install(venv: Path, extras: str = "web") -> Path:
    """Glances in its own venv, with `extras` (web; web,containers for its Docker plugin)."""
    binary = venv / "bin" / "glances"
    marker = venv / f".extras-{extras.replace(',', '-')}"
    if not binary.exists():
        print("  installing Glances into", venv, flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    if not marker.exists():
        subprocess.run(
            [str(venv / "bin" / "pip"), "install", "--quiet", f"glances[{extras}]"], check=True
        )
        marker.touch()
    return binary


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def measure(
    binary: Path, seconds: float, env: dict[str, str] | None = None
) -> tuple[float, float, tuple[int, int]]:
    """(CPU %, peak RSS MiB, (bytes per refresh, gzip bytes)) of `glances -w`, polled at 1 Hz
    (`env`: DOCKER_HOST, for its containers plugin)."""
    port = _free_port()
    proc = subprocess.Popen(
        [
            str(binary),
            "-w",
            "-B",
            "127.0.0.1",
            "-p",
            str(port),
            "-t",
            "1",
            "--disable-autodiscover",
            "--disable-check-update",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, **(env or {})},
    )
    base = f"http://127.0.0.1:{port}/api/4"
    try:

        def started() -> bool:
            if proc.poll() is not None:
                raise RuntimeError("glances did not start")
            try:
                return requests.get(base + "/status", timeout=2).ok
            except requests.RequestException:
                return False

        wait_until(started, timeout=60, interval=0.5, what="glances serving")
        for _ in range(3):  # its first refreshes fill its caches
            requests.get(base + "/all", timeout=10)
            time.sleep(1)
        meter = ProcessMeter(proc.pid)
        meter.start()
        sizes = (0, 0)
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            tick = time.monotonic()
            everything = requests.get(base + "/all", timeout=10).content
            views = requests.get(base + "/all/views", timeout=10).content
            sizes = (
                len(everything) + len(views),
                len(gzip.compress(everything)) + len(gzip.compress(views)),
            )
            time.sleep(max(0.0, 1.0 - (time.monotonic() - tick)))
        cpu, rss = meter.stop()
        return cpu, rss, sizes
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
