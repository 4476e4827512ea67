"""Refresh the README's screenshot: `python -m tests.screenshot docs/screenshot.png`."""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from testkit.chromium import Chromium, find_chromium
from testkit.serverproc import ServerProcess


def main(path: str) -> None:
    binary = find_chromium()
    if binary is None:
        sys.exit("chromium is not installed (make system-deps)")
    with tempfile.TemporaryDirectory() as logs:
        server = ServerProcess(Path(logs)).start()
        browser = Chromium(binary, width=1280, height=1000)
        try:
            browser.navigate(server.url + "/")
            browser.wait_for("document.body.dataset.status === 'live'")
            time.sleep(6)  # let a few live points join the history
            browser.screenshot(path)
        finally:
            browser.close()
            server.stop()
    print(f"wrote {path}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "docs/screenshot.png")
