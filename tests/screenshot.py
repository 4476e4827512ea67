"""Refresh the README's screenshots: `python -m tests.screenshot docs`.

From live servers on loopback, in headless Chromium: the desk page in light
and dark, a phone at 390 px, wall mode at 1920x1080, and the fleet page of a
hub with 24 simulated agents (bench/agentload.py).
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

from server.fleet.tokens import AgentTokens, token_hash
from testkit.chromium import Chromium, find_chromium
from testkit.serverproc import ServerProcess

ROOT = Path(__file__).resolve().parent.parent
SHOTS = [  # file, width, height, scheme, query
    ("screenshot.png", 1400, 1000, "light", ""),
    ("screenshot-dark.png", 1400, 1000, "dark", ""),
    ("screenshot-phone.png", 390, 844, "light", ""),
    ("screenshot-kiosk.png", 1920, 1080, "dark", "?kiosk=1"),
]
ROLES = ["web", "db", "cache", "queue", "build", "edge"]
# Lower levels for the fleet shot, so its simulated hosts show every state.
FLEET_LEVELS = """
[alerts.cpu]
warning = 30
critical = 42
for_seconds = 0
clear_seconds = 5
"""


def host_page(browser: Chromium, out: Path, logs: Path) -> None:
    server = ServerProcess(logs).start()
    try:
        time.sleep(8)  # a few live points in the history
        for name, width, height, scheme, query in SHOTS:
            browser.viewport(width, height)
            browser.color_scheme(scheme)
            browser.navigate(server.url + "/" + query)
            browser.wait_for("window.__chartsFullAt > 0")
            time.sleep(2)
            browser.screenshot(str(out / name))
            print(f"wrote {out / name}")
    finally:
        server.stop()


def fleet_page(browser: Chromium, out: Path, work: Path) -> None:
    data = work / "data"  # the server's data_dir: beside its logs
    tokens = AgentTokens(str(data))
    lines = []
    for i in range(24):
        name = f"{ROLES[i % len(ROLES)]}-{i // len(ROLES) + 1:02d}"
        token = f"screenshot-token-{i:02d}-" + "x" * 24
        tokens._names[name] = {"hash": token_hash(token), "added": 0}
        lines.append(f"{name} {token}")
    tokens._write()
    (work / "tokens.txt").write_text("\n".join(lines) + "\n")
    (work / "alerts.toml").write_text(FLEET_LEVELS)
    server = ServerProcess(work / "logs", "--config", str(work / "alerts.toml")).start()
    load = subprocess.Popen(
        [sys.executable, "-m", "bench.agentload", server.url, str(work / "tokens.txt"), "60"],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
    )
    try:
        browser.viewport(1400, 1000)
        browser.color_scheme("light")
        browser.navigate(server.url + "/")
        browser.wait_for("document.body.dataset.hosts === '25'", timeout=30)
        time.sleep(25)  # sparklines and alert states
        browser.screenshot(str(out / "screenshot-fleet.png"))
        print(f"wrote {out / 'screenshot-fleet.png'}")
    finally:
        load.kill()
        load.wait()
        server.stop()


def main(folder: str) -> None:
    binary = find_chromium()
    if binary is None:
        sys.exit("chromium is not installed (make system-deps)")
    out = Path(folder)
    out.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        browser = Chromium(binary, width=1400, height=1000)
        try:
            host_page(browser, out, Path(tmp) / "logs")
            fleet_page(browser, out, Path(tmp) / "fleet")
        finally:
            browser.close()


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "docs")
