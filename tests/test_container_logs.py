"""Containers' output in the firehose: a real dockerd of the test's own, real containers
that print (to stdout and stderr, a secret, a flood), restart, appear later and join a
Compose project by label; a real server follows them for a real Socket.IO page. The
multiplexed stream's parser on frames cut anywhere, and oversize ones."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import socketio

from server.config import ConfigError, load
from server.firehose.containers import NO_END, Demux, unix_time
from server.firehose.feed import LocalFeed
from server.firehose.follow import MAX_LINE, Redactor, shape
from server.firehose.relay import local_feed
from server.firehose.sources import LogSource, parse_log_sources
from testkit.config import write_toml
from testkit.docker import IMAGE, Docker
from testkit.serverproc import ServerProcess, run_server_command
from testkit.wait import wait_until

PROJECT = "com.docker.compose.project"
CAP = 50  # firehose_lines_per_second of the server under test


def frame(stream: int, payload: bytes) -> bytes:
    return bytes([stream, 0, 0, 0]) + len(payload).to_bytes(4, "big") + payload


# ---------------------------------------------------------------- the stream's parser


def test_frames_split_anywhere_give_the_same_lines() -> None:
    data = (
        frame(1, b"out one\n")
        + frame(2, b"err half ")  # stderr's line goes on in a later frame
        + frame(1, b"out two\nout three\n")
        + frame(2, b"and its end\n")
        + frame(1, b"")
    )
    want = [b"out one", b"out two", b"out three", b"err half and its end"]
    assert Demux(multiplexed=True).feed(data) == want
    for size in (1, 3, 7, 8, 9):  # headers and payloads cut at every place
        demux = Demux(multiplexed=True)
        lines = []
        for at in range(0, len(data), size):
            lines += demux.feed(data[at : at + size])
        assert lines == want, size
        assert demux.flush() == []


def test_an_oversize_frame_keeps_its_first_bytes_and_says_how_many_were_cut() -> None:
    demux = Demux(multiplexed=True)
    big = b"x" * (100 * 1024)
    lines = demux.feed(frame(1, big + b"\n") + frame(2, b"after\n"))
    assert len(lines) == 2 and lines[1] == b"after"
    assert len(lines[0]) <= MAX_LINE and lines[0].startswith(b"x" * 8000)
    kept = lines[0].index(b" ")
    assert lines[0].endswith(f" … [{len(big) - kept} more bytes cut]".encode())
    assert shape(lines[0], Redactor()) == lines[0].decode()  # nothing cut twice
    # A frame that claims 4 GiB: what is kept stays bounded, and it is passed on in parts.
    demux = Demux(multiplexed=True)
    out = demux.feed(bytes([1, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF]))
    for _ in range(NO_END // (64 * 1024)):
        out += demux.feed(b"y" * (64 * 1024))
    assert len(out) == 1 and len(out[0]) <= MAX_LINE and out[0].endswith(b" more bytes cut]")
    assert demux.flush() == []


def test_a_tty_stream_is_raw_and_a_stream_that_is_no_frames_is_taken_as_raw() -> None:
    demux = Demux(multiplexed=False)
    assert demux.feed(b"tty one\r\ntty t") + demux.feed(b"wo\r\n") == [b"tty one\r", b"tty two\r"]
    assert shape(b"tty one\r", Redactor()) == "tty one"
    demux = Demux(multiplexed=True)  # the inspect said no TTY, the bytes say otherwise
    assert demux.feed(b"plain text\nmore\n") == [b"plain text", b"more"]
    assert demux.multiplexed is False
    assert Demux(True, prefix=b"shop-web-1 | ").feed(frame(1, b"up\n")) == [b"shop-web-1 | up"]


def test_a_runs_end_as_the_engines_since() -> None:
    assert unix_time("2026-12-07T06:10:12.939953461Z") == "1796623812.939953461"
    assert unix_time("2026-12-07T07:10:12.5+01:00") == "1796623812.500000000"
    assert unix_time("0001-01-01T00:00:00Z") is None  # never ran
    assert unix_time("yesterday") is None


def test_container_sources_are_named_and_need_an_engine(tmp_path: Path) -> None:
    assert parse_log_sources("web=docker:web;shop=compose:shop") == (
        LogSource("web", "docker:web"),
        LogSource("shop", "compose:shop"),
    )
    for bad in ("w=docker:", "w=docker:x", "w=docker:-web", "w=docker:../web",
                "w=compose:Shop", "w=compose:a b", "w=podman:web"):  # fmt: skip
        with pytest.raises(ValueError):
            parse_log_sources(bad)
    with pytest.raises(ConfigError, match="setting 'log_sources'"):
        load([], {"DASHBOARD_LOG_SOURCES": "web=docker:web;x=docker:/etc"})
    # Listed, with no engine to read it from: the process stops at start (one line).
    with pytest.raises(ConfigError, match=r"setting 'log_sources': source 'web'.*containers"):
        load(["--log-dir", str(tmp_path), "--containers", "off"],
             {"DASHBOARD_LOG_SOURCES": "web=docker:web"})  # fmt: skip
    config = load(["--log-dir", str(tmp_path), "--containers", "/run/x.sock"],
                  {"DASHBOARD_LOG_SOURCES": "web=docker:web"})  # fmt: skip
    assert local_feed(config).engine == "/run/x.sock"  # an engine that may start later


def test_an_engine_that_is_not_there_is_said_once_without_its_path(tmp_path: Path) -> None:
    socket_path = str(tmp_path / "none.sock")
    feed = LocalFeed([LogSource("web", "docker:web")], 100, Redactor(), engine=socket_path)
    started = time.monotonic()
    texts = [str(line["text"]) for line in feed.step({"web"}).get("web", [])]
    assert time.monotonic() - started < 1  # refused at once: no wait for a backlog
    assert len(texts) == 1 and texts[0].startswith("… web is unreadable: the engine: ")
    assert socket_path not in texts[0]
    assert feed.step({"web"}) == {}  # said once
    feed.close()


@pytest.mark.e2e
def test_a_bad_container_source_stops_the_server_with_one_line() -> None:
    done = run_server_command("--log-sources", "web=docker:../web")
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "setting 'log_sources'" in done.stderr


# ---------------------------------------------------------------- a real engine


class Page:
    """A Socket.IO client that records the `firehose` lines it gets, by source."""

    def __init__(self, url: str) -> None:
        self.lines: list[tuple[str, str, float]] = []  # (source, text, arrived)
        self._lock = threading.Lock()
        self.sio = socketio.Client()
        self.sio.on("firehose", self._record)
        self.sio.connect(url, transports=["websocket"], wait_timeout=10)

    def _record(self, batch: dict[str, Any]) -> None:
        now = time.monotonic()
        with self._lock:
            self.lines += [(batch["source"], line["text"], now) for line in batch["lines"]]

    def subscribe(self, *sources: str) -> dict[str, Any]:
        answer: dict[str, Any] = self.sio.call(
            "firehose_subscribe", {"sources": list(sources)}, timeout=10
        )
        return answer

    def texts(self, source: str) -> list[str]:
        with self._lock:
            return [text for s, text, _ in self.lines if s == source]

    def arrivals(self, source: str, text: str) -> list[float]:
        with self._lock:
            return [at for s, t, at in self.lines if s == source and t == text]

    def close(self) -> None:
        self.sio.disconnect()


@pytest.fixture(scope="module")
def server(docker: Docker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    root = tmp_path_factory.mktemp("container-logs")
    sources = {"web": "docker:web", "later": "docker:later", "shop": "compose:shop",
               "flood": "docker:flood"}  # fmt: skip
    config = write_toml(root / "dashboard.toml", log_sources=sources, containers=docker.socket,
                        firehose_lines_per_second=CAP)  # fmt: skip
    process = ServerProcess(root / "logs", "--config", str(config)).start()
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture
def page(server: ServerProcess) -> Iterator[Page]:
    client = Page(server.url)
    try:
        yield client
    finally:
        client.close()


@pytest.mark.e2e
def test_a_containers_lines_reach_the_page_redacted_with_stderr_and_across_a_restart(
    docker: Docker, page: Page
) -> None:
    docker.run("web", IMAGE, "sh", "-c",
               "echo web starts; echo login password=hunter2; echo to stderr >&2;"
               " i=0; while true; do i=$((i+1)); echo tick $i; sleep 0.2; done")  # fmt: skip
    try:
        assert page.subscribe("web").get("ok") is True
        wait_until(lambda: "tick 3" in page.texts("web"), timeout=15, what="web's lines")
        texts = page.texts("web")
        # stdout and stderr are two pipes: their order is the engine's.
        assert {"web starts", "login password=[redacted]", "to stderr"} <= set(texts[:4])
        assert not any("hunter2" in t for t in texts)
        # Restarted: a new run is a new stream, from its first line.
        docker.cli("restart", "-t", "0", "web")
        wait_until(lambda: page.texts("web").count("tick 3") == 2, timeout=15,
                   what="the new run's lines")  # fmt: skip
        texts = page.texts("web")
        assert texts.count("web starts") == 2 and texts.count("to stderr") == 2
        assert texts.count("tick 1") == 2  # nothing of either run twice, nothing lost
    finally:
        docker.cli("rm", "-f", "web", check=False)


@pytest.mark.e2e
def test_a_container_that_does_not_exist_yet_is_waited_for_and_said_once(
    docker: Docker, page: Page
) -> None:
    try:
        assert page.subscribe("later").get("ok") is True
        waiting = "… later is unreadable: no container named later (yet)"
        wait_until(lambda: waiting in page.texts("later"), timeout=10, what="the wait said")
        time.sleep(2.5)  # the engine is asked every second meanwhile: said once all the same
        assert page.texts("later") == [waiting]
        docker.run("later", IMAGE, "sh", "-c", "echo hello from later; sleep 1; echo bye")
        wait_until(lambda: "bye" in page.texts("later"), timeout=15, what="later's lines")
        stopped = "… later is unreadable: container later is not running"
        wait_until(lambda: stopped in page.texts("later"), timeout=10, what="its stop said")
        # Said when it streams (the engine is asked first, the lines come next), and
        # again when it stops.
        readable = "… later is readable"
        assert page.texts("later") == [waiting, readable, "hello from later", "bye", stopped]
    finally:
        docker.cli("rm", "-f", "later", check=False)


@pytest.mark.e2e
def test_a_project_source_follows_each_of_its_containers(docker: Docker, page: Page) -> None:
    names = ["shop-web-1", "shop-db-1", "other-web-1", "shop-worker-1"]
    try:
        docker.run("shop-web-1", "--label", f"{PROJECT}=shop", IMAGE, "sh", "-c",
                   "echo web up; sleep 1000")  # fmt: skip
        docker.run("shop-db-1", "--label", f"{PROJECT}=shop", IMAGE, "sh", "-c",
                   "echo db up >&2; sleep 1000")  # fmt: skip
        docker.run("other-web-1", "--label", f"{PROJECT}=other", IMAGE, "sh", "-c",
                   "echo other up; sleep 1000")  # fmt: skip
        assert page.subscribe("shop").get("ok") is True
        want = {"shop-web-1 | web up", "shop-db-1 | db up"}
        wait_until(lambda: want <= set(page.texts("shop")), timeout=15, what="both containers")
        # One that joins the project later is followed too (the engine is asked every 5 s).
        docker.run("shop-worker-1", "--label", f"{PROJECT}=shop", IMAGE, "sh", "-c",
                   "echo worker up; sleep 1000")  # fmt: skip
        wait_until(lambda: "shop-worker-1 | worker up" in page.texts("shop"), timeout=15,
                   what="the new container")  # fmt: skip
        assert not any("other" in t for t in page.texts("shop"))
        assert sorted(page.texts("shop")) == sorted([*want, "shop-worker-1 | worker up"])
    finally:
        docker.cli("rm", "-f", *names, check=False)


@pytest.mark.e2e
def test_a_flood_is_capped_like_a_files(docker: Docker, page: Page) -> None:
    try:
        assert page.subscribe("flood").get("ok") is True
        # Started after the page watches, and after a pause: the stream is open first.
        docker.run(
            "flood", IMAGE, "sh", "-c", "sleep 2; yes flood-line | head -n 20000; sleep 1000"
        )
        dropped = wait_until(
            lambda: [t for t in page.texts("flood") if t.startswith("… ") and "dropped" in t],
            timeout=20, what="a dropped marker",
        )  # fmt: skip
        assert dropped[0].endswith(f"lines dropped (over {CAP} a second)")
        time.sleep(1.5)
        arrived = page.arrivals("flood", "flood-line")
        span = arrived[-1] - arrived[0]
        assert len(arrived) <= CAP * (span + 2), (len(arrived), span)
        assert len(arrived) < 20000
    finally:
        docker.cli("rm", "-f", "flood", check=False)


@pytest.mark.e2e
def test_a_container_the_settings_do_not_list_is_refused(
    docker: Docker, page: Page, server: ServerProcess
) -> None:
    try:
        docker.run("secret", IMAGE, "sh", "-c", "echo the secret; sleep 1000")
        for sources in (["secret"], ["docker:secret"], ["compose:shop"], ["docker:web"],
                        [docker.socket]):  # fmt: skip
            answer = page.subscribe(*sources)
            assert "error" in answer and "unknown source" in answer["error"], sources
        time.sleep(1)
        assert not any(s == "secret" or "the secret" in t for s, t, _ in page.lines)
    finally:
        docker.cli("rm", "-f", "secret", check=False)
