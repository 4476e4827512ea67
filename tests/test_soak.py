"""Soak: 200 clients for 10 minutes; reports RSS growth. Slow: `pytest -m slow`."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from testkit.serverproc import ROOT, ServerProcess

pytestmark = [pytest.mark.slow, pytest.mark.e2e]


def test_two_hundred_clients_for_ten_minutes(tmp_path: Path) -> None:
    server = ServerProcess(
        tmp_path / "logs", "--async-mode", "eventlet", "--max-connections-per-ip", "1000"
    ).start()
    process = psutil.Process(server.proc.pid)  # type: ignore[union-attr]
    try:
        load = subprocess.Popen(
            [sys.executable, "-m", "bench.loadclient", server.url, "200", "600"],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        samples = []
        while load.poll() is None:
            samples.append(process.memory_info().rss)
            with contextlib.suppress(subprocess.TimeoutExpired):
                load.wait(30)
        figures = json.loads((load.stdout.read() if load.stdout else "").strip().splitlines()[-1])
    finally:
        server.stop()
    warm = samples[2] if len(samples) > 2 else samples[0]
    growth = (samples[-1] - warm) / 2**20
    print(
        f"\nsoak: RSS {warm / 2**20:.1f} MiB after warm-up -> {samples[-1] / 2**20:.1f} MiB "
        f"(+{growth:.1f} MiB); delivered {figures['delivered']}/{figures['expected']}, "
        f"p99 {figures['delay_p99_ms']} ms"
    )
    assert figures["held"] == 200
    assert figures["delivered"] >= 0.999 * figures["expected"]
    assert growth < 50, f"RSS grew {growth:.1f} MiB in 10 minutes"
