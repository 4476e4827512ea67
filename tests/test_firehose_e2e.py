"""The firehose end to end: a real server follows two files (one rotated mid-test),
a real Socket.IO client gets every line once, in order, within a second; the
page shows them as text, coloured by source, filtered; refusals hold."""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import socketio

from testkit.auth import basic_auth_headers, password_hash
from testkit.chromium import Chromium
from testkit.config import write_toml
from testkit.serverproc import ServerProcess
from testkit.wait import wait_until

pytestmark = pytest.mark.e2e


class Page:
    """A Socket.IO client that records `firehose` lines with their arrival time."""

    def __init__(self, url: str, **connect: Any) -> None:
        self.lines: list[tuple[str, str, float]] = []  # (source, text, arrived)
        self._lock = threading.Lock()
        self.sio = socketio.Client()
        self.sio.on("firehose", self._record)
        self.sio.connect(url, transports=["websocket"], wait_timeout=10, **connect)

    def _record(self, batch: dict[str, Any]) -> None:
        now = time.time()
        with self._lock:
            self.lines += [(batch["source"], line["text"], now) for line in batch["lines"]]

    def texts(self, source: str) -> list[str]:
        with self._lock:
            return [text for s, text, _ in self.lines if s == source]

    def arrived(self, text: str) -> float:
        with self._lock:
            return next(at for _, t, at in self.lines if t == text)


@pytest.fixture
def logs(tmp_path: Path) -> Iterator[tuple[ServerProcess, Path, Path]]:
    a, b = tmp_path / "a.log", tmp_path / "b.log"
    a.write_text("a backlog 1\na backlog 2\n")
    b.write_text("")
    config = write_toml(tmp_path / "dashboard.toml", log_sources={"alpha": str(a), "beta": str(b)})
    server = ServerProcess(tmp_path / "logs", "--config", str(config)).start()
    try:
        yield server, a, b
    finally:
        server.stop()


def test_every_line_once_in_order_within_a_second(
    logs: tuple[ServerProcess, Path, Path],
) -> None:
    server, a, b = logs
    page = Page(server.url)
    try:
        answer = page.sio.call("firehose_subscribe", {"sources": ["alpha", "beta"]}, timeout=10)
        assert answer["ok"] is True
        # The backlog of a newly watched source: its last lines, at once.
        wait_until(lambda: page.texts("alpha")[:2] == ["a backlog 1", "a backlog 2"], timeout=5)
        written: dict[str, list[tuple[str, float]]] = {"alpha": [], "beta": []}
        for i in range(60):
            for source, path in (("alpha", a), ("beta", b)):
                text = f"{source} line {i}"
                with open(path, "a") as handle:
                    handle.write(text + "\n")
                written[source].append((text, time.time()))
            if i == 30:  # beta is rotated by rename-and-create, as logrotate does
                os.rename(b, b.with_suffix(".log.1"))
                b.write_text("")
            time.sleep(0.02)
        for source in ("alpha", "beta"):
            want = [text for text, _ in written[source]]

            def all_in(source: str = source, want: list[str] = want) -> bool:
                return page.texts(source)[-len(want) :] == want

            wait_until(all_in, timeout=5, what=f"every {source} line")
            got = [t for t in page.texts(source) if "backlog" not in t]
            assert got == want  # each once, in order
            delays = [page.arrived(text) - at for text, at in written[source]]
            assert max(delays) < 1.0, max(delays)
    finally:
        page.sio.disconnect()


def test_a_path_or_an_unknown_source_is_refused(logs: tuple[ServerProcess, Path, Path]) -> None:
    server, _, _ = logs
    page = Page(server.url)
    try:
        for sources in (["../../etc/shadow"], ["/etc/passwd"], ["nope"], "alpha", [1]):
            answer = page.sio.call("firehose_subscribe", {"sources": sources}, timeout=10)
            assert "error" in answer, sources
        answer = page.sio.call("firehose_subscribe", {"host": "elsewhere"}, timeout=10)
        assert answer == {"error": "no such host in this fleet"}
        log = (server.log_dir / "dashboard.log").read_text()
        assert "/etc/shadow" not in log.split("firehose:")[-1] or "watches" not in log
    finally:
        page.sio.disconnect()


def test_with_login_on_a_client_without_a_session_gets_no_lines(tmp_path: Path) -> None:
    secret = tmp_path / "secret.log"
    secret.write_text("secret backlog\n")
    config = write_toml(
        tmp_path / "dashboard.toml",
        password_hash=password_hash("right-password-123"),
        log_sources={"secret": str(secret)},
    )
    server = ServerProcess(tmp_path / "logs", "--config", str(config)).start()
    try:
        with pytest.raises(socketio.exceptions.ConnectionError):
            Page(server.url)
        page = Page(server.url, headers=basic_auth_headers("admin", "right-password-123"))
        answer = page.sio.call("firehose_subscribe", {}, timeout=10)
        assert answer["ok"] is True
        wait_until(lambda: page.texts("secret") == ["secret backlog"], timeout=5)
        page.sio.disconnect()
        log = (server.log_dir / "dashboard.log").read_text()
        assert "firehose: admin watches" in log and "secret" in log
    finally:
        server.stop()


def open_panel(server: ServerProcess, browser: Chromium) -> None:
    """The host page, live, with its Logs panel shown."""
    browser.navigate(server.url + "/")
    browser.wait_for("document.body.dataset.status === 'live'")
    browser.evaluate("document.getElementById('firehose-toggle').click()")


@pytest.mark.browser
def test_the_page_shows_lines_as_text_coloured_by_source_and_filtered(
    logs: tuple[ServerProcess, Path, Path], browser: Chromium
) -> None:
    server, a, b = logs
    open_panel(server, browser)
    browser.wait_for("document.querySelectorAll('#firehose-lines .fh-line').length >= 2")
    with open(a, "a") as handle:
        handle.write('ERROR <img src=x onerror="window.__pwned=1"> from alpha\n')
    with open(b, "a") as handle:
        handle.write("WARN plain words from beta\n")
    browser.wait_for(
        "[...document.querySelectorAll('#firehose-lines .fh-text')].filter("
        "t => / from (alpha|beta)$/.test(t.textContent)).length === 2"
    )
    rows = json.loads(
        browser.evaluate(
            "JSON.stringify([...document.querySelectorAll('#firehose-lines .fh-line')]"
            ".map(r => [r.querySelector('.fh-source').textContent,"
            " r.querySelector('.fh-text').textContent,"
            " getComputedStyle(r).borderLeftColor, r.className]))"
        )
    )
    by_text = {text: (source, colour, cls) for source, text, colour, cls in rows}
    markup = 'ERROR <img src=x onerror="window.__pwned=1"> from alpha'
    assert by_text[markup][0] == "alpha" and "fh-error" in by_text[markup][2]
    assert by_text["WARN plain words from beta"][0] == "beta"
    assert "fh-warn" in by_text["WARN plain words from beta"][2]
    assert by_text[markup][1] != by_text["WARN plain words from beta"][1]  # a colour each
    # The markup is text: no element was made from it, and no script ran.
    assert browser.evaluate("document.querySelectorAll('#firehose-lines img').length") == 0
    assert browser.evaluate("window.__pwned === undefined") is True

    def visible() -> list[str]:
        shown: list[str] = json.loads(
            browser.evaluate(
                "JSON.stringify([...document.querySelectorAll('#firehose-lines .fh-line')]"
                ".filter(r => !r.hidden).map(r => r.querySelector('.fh-text').textContent))"
            )
        )
        return shown

    def type_filter(text: str) -> None:
        browser.evaluate(
            "(f => { f.value = " + json.dumps(text) + "; f.dispatchEvent(new Event('input')); })"
            "(document.getElementById('firehose-filter'))"
        )

    type_filter("FROM BETA")  # a substring, case-insensitive
    assert visible() == ["WARN plain words from beta"]
    type_filter("/^a backlog [12]$/")
    assert visible() == ["a backlog 1", "a backlog 2"]
    type_filter("")
    assert len(visible()) >= 4


@pytest.mark.browser
def test_the_panel_pauses_when_scrolled_up_and_on_request(
    logs: tuple[ServerProcess, Path, Path], browser: Chromium
) -> None:
    server, a, _ = logs

    def write(lines: list[str]) -> None:
        with open(a, "a") as handle:
            handle.write("".join(line + "\n" for line in lines))

    def count(text: str) -> int:
        return int(
            browser.evaluate(
                "[...document.querySelectorAll('#firehose-lines .fh-text')]"
                f".filter(t => t.textContent.startsWith({json.dumps(text)})).length"
            )
        )

    open_panel(server, browser)
    write([f"fill {i}" for i in range(80)])  # more than the box shows
    wait_until(lambda: count("fill") == 80, timeout=5, what="80 lines shown")
    at_bottom = "(b => b.scrollTop + b.clientHeight >= b.scrollHeight - 4)"
    box = "document.getElementById('firehose-lines')"
    assert browser.evaluate(f"{at_bottom}({box})") is True  # it follows the tail
    # Scrolled up: no jump, and a button says how many lines came below.
    browser.evaluate(f"{box}.scrollTop = 0; {box}.dispatchEvent(new Event('scroll'))")
    write(["below 1", "below 2", "below 3"])
    wait_until(lambda: count("below") == 3, timeout=5, what="lines below the view")
    assert browser.evaluate(f"{box}.scrollTop") == 0
    more = "document.getElementById('firehose-more')"
    shown = browser.evaluate(f"!{more}.hidden && {more}.textContent")
    # 3, or more if the app's own log (a source too) wrote meanwhile.
    assert shown.endswith(" new lines") and int(shown.split()[0]) >= 3, shown
    browser.evaluate(f"{more}.click()")
    assert browser.evaluate(f"{at_bottom}({box}) && {more}.hidden") is True
    # Pause holds the lines; resume shows them.
    browser.evaluate("document.getElementById('firehose-pause').click()")
    write(["held 1", "held 2"])
    # "Resume (N)": 2 held, or more if the app's own log wrote meanwhile.
    browser.wait_for(
        "parseInt(document.getElementById('firehose-pause').textContent.slice(8)) >= 2"
    )
    assert count("held") == 0
    browser.evaluate("document.getElementById('firehose-pause').click()")
    assert count("held") == 2
