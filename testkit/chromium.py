"""Headless Chromium driven over the DevTools protocol, for browser tests."""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import subprocess
import tempfile
from typing import Any

import psutil
import requests
import websocket

from testkit.wait import wait_until

FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
    "--no-first-run",
    "--no-default-browser-check",
    "--remote-debugging-address=127.0.0.1",
    "--remote-debugging-port=0",
]

# Read by server/static/common.js (`testing`).
TEST_FLAG = "window.__DASHBOARD_TEST__ = true;"


def find_chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


class Chromium:
    """One headless browser with a fresh profile, and one page to drive."""

    def __init__(self, binary: str, width: int = 1280, height: int = 900) -> None:
        self._profile = tempfile.mkdtemp(prefix="chromium-profile-")
        # Chromium puts its singleton socket in a directory under TMPDIR that a
        # terminated browser leaves behind: inside the profile, it goes with it.
        scratch = os.path.join(self._profile, "tmp")
        os.mkdir(scratch)
        self._proc = subprocess.Popen(
            [
                binary,
                *FLAGS,
                f"--user-data-dir={self._profile}",
                f"--window-size={width},{height}",
                "about:blank",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env={**os.environ, "TMPDIR": scratch},
            # Its own process group: its helpers (GPU, renderers, utilities) can be
            # ended with it, and only they.
            start_new_session=True,
        )
        port = self._wait_for_port()
        targets = requests.get(f"http://127.0.0.1:{port}/json/list", timeout=5).json()
        page = next(t for t in targets if t["type"] == "page")
        self._ws = websocket.create_connection(
            page["webSocketDebuggerUrl"], timeout=30, suppress_origin=True
        )
        self._next_id = 0
        self.events: list[dict[str, Any]] = []  # what the page reported between calls
        self.call("Page.enable")
        # Before any script of each document this tab loads: the dashboard puts
        # its insides (charts, timings) on `window` only when it is set.
        self.call("Page.addScriptToEvaluateOnNewDocument", source=TEST_FLAG)
        self.call("Runtime.enable")
        self.call("Log.enable")
        self.viewport(width, height)

    def viewport(self, width: int, height: int) -> None:
        """The page's size (a phone below 700 px wide)."""
        self.call(
            "Emulation.setDeviceMetricsOverride",
            width=width,
            height=height,
            deviceScaleFactor=1,
            mobile=width < 700,
        )

    def color_scheme(self, scheme: str) -> None:
        """prefers-color-scheme: "light" or "dark"."""
        self.call(
            "Emulation.setEmulatedMedia",
            features=[{"name": "prefers-color-scheme", "value": scheme}],
        )

    def console_errors(self) -> list[str]:
        """Errors the page logged or threw, and failed loads (a 404 favicon among them)."""
        self.evaluate("0")  # collect what arrived since the last call
        errors = []
        for event in self.events:
            params = event.get("params", {})
            if event.get("method") == "Runtime.exceptionThrown":
                details = params.get("exceptionDetails", {})
                described = (details.get("exception") or {}).get("description") or ""
                errors.append(f"{details.get('text')} {described}".strip())
            elif event.get("method") == "Log.entryAdded" and params["entry"]["level"] == "error":
                errors.append(f"{params['entry'].get('text')} {params['entry'].get('url', '')}")
            elif event.get("method") == "Runtime.consoleAPICalled" and params["type"] == "error":
                errors.append(" ".join(str(a.get("value")) for a in params.get("args", [])))
        return errors

    def _wait_for_port(self) -> int:
        marker = os.path.join(self._profile, "DevToolsActivePort")

        def port() -> int | None:
            if self._proc.poll() is not None:
                raise RuntimeError(f"chromium exited with {self._proc.returncode}")
            try:
                with open(marker, encoding="utf-8") as handle:
                    return int(handle.readline())
            except (FileNotFoundError, ValueError):
                return None

        return wait_until(port, timeout=30, interval=0.1, what="chromium's DevTools port")

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        self._next_id += 1
        call_id = self._next_id
        self._ws.send(json.dumps({"id": call_id, "method": method, "params": params}))
        while True:
            message = json.loads(self._ws.recv())
            if "method" in message and len(self.events) < 10_000:
                self.events.append(message)
            if message.get("id") == call_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                result: dict[str, Any] = message.get("result", {})
                return result

    def navigate(self, url: str) -> None:
        self.call("Page.navigate", url=url)

    def evaluate(self, expression: str) -> Any:
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def evaluate_async(self, expression: str, timeout: float = 60) -> Any:
        """An expression that gives a promise; its value once settled."""
        self._ws.settimeout(timeout)
        try:
            result = self.call(
                "Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True
            )
        finally:
            self._ws.settimeout(30)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression[:80]}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout: float = 15.0) -> Any:
        errors: list[RuntimeError] = []

        def value() -> Any:
            try:
                return self.evaluate(expression)
            except RuntimeError as exc:  # e.g. the page is still loading
                errors[:] = [exc]
                return None

        try:
            return wait_until(value, timeout=timeout, interval=0.2, what=expression)
        except TimeoutError as exc:
            raise TimeoutError(f"{exc} (last error: {errors[-1] if errors else None})") from None

    def screenshot(self, path: str) -> None:
        data = self.call("Page.captureScreenshot", format="png", captureBeyondViewport=True)
        with open(path, "wb") as handle:
            handle.write(base64.b64decode(data["data"]))

    def close(self) -> None:
        try:
            self._ws.close()
        finally:
            self._proc.terminate()
            try:
                self._proc.wait(10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
            # Helpers still writing to the profile would leave a part of it behind.
            self._end_helpers()
            shutil.rmtree(self._profile, ignore_errors=True)

    def _end_helpers(self) -> None:
        # The session this browser started holds its own processes only; once the
        # browser is gone they have nothing left to do (SIGTERM: ~1.6 s to go).
        group = self._proc.pid
        try:
            os.killpg(group, signal.SIGKILL)
        except ProcessLookupError:
            return
        wait_until(lambda: not _group_alive(group), timeout=10, what="Chromium's helpers to end")


def _group_alive(group: int) -> bool:
    """Whether a process of the group still runs (the dead wait as zombies for PID 1)."""
    for proc in psutil.process_iter(["status"]):
        try:
            if proc.info["status"] != psutil.STATUS_ZOMBIE and os.getpgid(proc.pid) == group:
                return True
        except ProcessLookupError:
            continue  # ended meanwhile
    return False
