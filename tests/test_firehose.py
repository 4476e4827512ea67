"""The firehose's followers (tail -F), line shaping, redaction, the rate cap, settings."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from server.config import ConfigError, load
from server.firehose.feed import LocalFeed
from server.firehose.follow import MAX_LINE, FileFollower, RateCap, Redactor, last_lines, shape
from server.firehose.sources import LogSource, parse_log_sources, with_app_log


def write(path: Path, text: str, mode: str = "a") -> None:
    with open(path, mode) as handle:
        handle.write(text)


def test_starts_at_the_end_and_gives_complete_lines(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    write(log, "old 1\nold 2\n")
    follower = FileFollower(str(log))
    assert follower.poll() == []
    write(log, "new 1\nnew 2\npart")
    assert follower.poll() == [b"new 1", b"new 2"]
    write(log, "ial\n")
    assert follower.poll() == [b"partial"]


def test_rotation_by_rename_and_create(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    write(log, "")
    follower = FileFollower(str(log))
    write(log, "before 1\n")
    assert follower.poll() == [b"before 1"]
    write(log, "before 2\n")  # written, then the file is rotated before the next poll
    os.rename(log, tmp_path / "app.log.1")
    write(tmp_path / "app.log.1", "late to the old file\n")
    assert follower.poll() == [b"before 2", b"late to the old file"]  # not re-created yet
    write(log, "after 1\n")
    assert follower.poll() == [b"after 1"]
    write(log, "after 2\n")
    assert follower.poll() == [b"after 2"]


def test_copytruncate_and_truncation(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    write(log, "x" * 100 + "\n")
    follower = FileFollower(str(log))
    write(log, "one\n")
    assert follower.poll() == [b"one"]
    # copytruncate: copied away, then cut to nothing in place; then written again.
    (tmp_path / "app.log.1").write_bytes(log.read_bytes())
    with open(log, "r+") as handle:
        handle.truncate(0)
    write(log, "two\n")
    assert follower.poll() == [b"two"]
    write(log, "", mode="w")  # `> app.log`
    write(log, "three\n")
    assert follower.poll() == [b"three"]


def test_a_file_that_appears_later_is_read_from_its_start(tmp_path: Path) -> None:
    log = tmp_path / "late.log"
    follower = FileFollower(str(log))
    assert follower.poll() == [] and follower.problem == "no such file (yet)"
    write(log, "first\nsecond\n")
    assert follower.poll() == [b"first", b"second"]
    assert follower.problem is None


def test_long_lines_are_cut_and_bad_utf8_replaced() -> None:
    redact = Redactor()
    long = shape(b"a" * (MAX_LINE + 500), redact)
    assert long.startswith("a" * MAX_LINE) and long.endswith("[500 more bytes cut]")
    assert shape(b"caf\xc3\xa9 \xff\xfe ok", redact) == "café \ufffd\ufffd ok"


def test_a_line_longer_than_any_read_is_passed_on_in_pieces(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    write(log, "")
    follower = FileFollower(str(log))
    write(log, "b" * (3 * MAX_LINE))  # no newline yet
    pieces = follower.poll()
    assert len(pieces) == 1 and len(pieces[0]) == 3 * MAX_LINE


@pytest.mark.parametrize(
    ("line", "shown"),
    [
        ("login ok password=hunter2 user=bob", "login ok password=[redacted] user=bob"),
        ("db_password: 's3cr3t value' next", "db_password: [redacted] next"),
        ('{"api_key": "abc123"}', '{"api_key": [redacted]}'),
        ("TOKEN=eyJhbGciOi; rest", "TOKEN=[redacted]; rest"),
        ("GET /?secret=xyz&page=2", "GET /?secret=[redacted]&page=2"),
        ("nothing to hide here", "nothing to hide here"),
    ],
)
def test_redaction_hides_secret_values(line: str, shown: str) -> None:
    assert Redactor()(line) == shown


def test_extra_redaction_patterns() -> None:
    redact = Redactor([r"\b\d{3}-\d{2}-\d{4}\b", r"card (?P<value>\d+)"])
    assert redact("ssn 123-45-6789 card 4111111111111111") == "ssn [redacted] card [redacted]"


def test_the_rate_cap_drops_and_says_so_once_a_second() -> None:
    now = [100.0]
    cap = RateCap(3, clock=lambda: now[0])
    assert cap.admit([b"1", b"2"]) == [b"1", b"2"]
    assert cap.admit([b"3", b"4", b"5"]) == [b"3"]
    assert cap.admit([b"6"]) == []
    assert cap.flush() == []  # the same second: no marker yet
    now[0] = 101.2
    assert cap.flush() == ["… 3 lines dropped (over 3 a second)"]
    assert cap.admit([b"7"]) == [b"7"]
    assert cap.flush() == []


def test_last_lines_gives_the_backlog(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    write(log, "".join(f"line {i}\n" for i in range(500)) + "unfinished")
    assert last_lines(str(log), 200) == [f"line {i}".encode() for i in range(300, 500)]
    assert last_lines(str(tmp_path / "missing.log"), 5) == []


def test_a_feed_follows_only_what_is_watched(tmp_path: Path) -> None:
    a, b = tmp_path / "a.log", tmp_path / "b.log"
    write(a, "a old\n")
    write(b, "b old\n")
    feed = LocalFeed([LogSource("a", str(a)), LogSource("b", str(b))], 100, Redactor())
    assert feed.poll() == {} and feed.watched == set()
    new = feed.step({"a"})  # newly watched: its backlog, nothing new yet
    assert {name: [line["text"] for line in lines] for name, lines in new.items()} == {
        "a": ["a old"]
    }
    write(a, "a new token=xyz\n")
    write(b, "b new\n")
    new = feed.step({"a"})
    assert [line["text"] for line in new["a"]] == ["a new token=[redacted]"]
    assert "b" not in new
    feed.step(set())
    assert feed.watched == set()
    # A source that cannot be read says why, and the rest go on.
    feed.step({"a", "nope"})
    assert feed.problems() == {"a": None}


def test_sources_setting(tmp_path: Path) -> None:
    sources = parse_log_sources("syslog=/var/log/syslog;ssh=journald:ssh.service")
    assert sources == (
        LogSource("syslog", "/var/log/syslog"),
        LogSource("ssh", "journald:ssh.service"),
    )
    assert with_app_log(sources, "logs")[0] == LogSource(
        "dashboard", os.path.abspath("logs/dashboard.log")
    )
    for bad in ("syslog=relative/path", "bad name=/x", "=/x", "x", "a=/x;a"):
        with pytest.raises(ValueError):
            parse_log_sources(bad)
    with pytest.raises(ConfigError, match="log_sources"):
        load([], {"DASHBOARD_LOG_SOURCES": "etc=../../etc/shadow"})
    with pytest.raises(ConfigError, match="firehose_redact"):
        load([], {"DASHBOARD_FIREHOSE_REDACT": "(unclosed"})
    config = tmp_path / "dashboard.toml"
    config.write_text('[log_sources]\nnginx = "/var/log/nginx/*.log"\n')
    assert load(["--config", str(config)]).log_sources == (
        LogSource("nginx", "/var/log/nginx/*.log"),
    )


def test_an_unreadable_source_says_why_in_its_stream(tmp_path: Path) -> None:
    log = tmp_path / "later.log"
    feed = LocalFeed([LogSource("later", str(log))], 100, Redactor())
    new = feed.step({"later"})
    assert [line["text"] for line in new["later"]] == ["… later is unreadable: no such file (yet)"]
    assert feed.step({"later"}) == {}  # said once
    write(log, "here now\n")
    new = feed.step({"later"})
    assert [line["text"] for line in new["later"]] == ["here now", "… later is readable"]


def test_the_hub_tells_an_agent_what_is_watched_and_stops_it_after() -> None:
    from server.firehose.relay import Firehose

    told: list[tuple[str, list[str]]] = []
    rooms: list[tuple[str, str, str]] = []
    firehose = Firehose(
        "hub",
        LocalFeed([], 100, Redactor()),
        lambda *args, **kwargs: None,
        lambda sid, room: rooms.append(("enter", sid, room)),
        lambda sid, room: rooms.append(("leave", sid, room)),
        lambda host: ["syslog", "app"] if host == "agent-1" else None,
        lambda host, names: told.append((host, names)),
    )
    assert firehose.subscribe("page-1", "ops", "agent-1", ["syslog"]) is None
    assert firehose.subscribe("page-2", "ops", "agent-1", None) is None
    assert told[-1] == ("agent-1", ["app", "syslog"])
    firehose.unsubscribe("page-2")
    assert told[-1] == ("agent-1", ["syslog"])
    firehose.unsubscribe("page-1", "agent-1")
    assert told[-1] == ("agent-1", [])  # nobody watches: the agent sends nothing
    assert ("leave", "page-1", "firehose:agent-1:syslog") in rooms
    # Lines of a source nobody watches are dropped at the hub.
    assert firehose.from_agent("agent-1", {"source": "syslog", "lines": []}) is None
    assert firehose.subscribe("page-1", "ops", "agent-1", ["../../etc/shadow"]) is not None


def test_firehose_off_refuses_every_subscription(tmp_path: Path) -> None:
    from server.app import create_app
    from server.config import Config

    app, socketio = create_app(
        Config(
            async_mode="threading",
            log_dir=str(tmp_path / "logs"),
            data_dir=str(tmp_path / "data"),
            firehose=False,
        )
    )
    page = socketio.test_client(app)
    assert page.emit("firehose_subscribe", {}, callback=True) == {
        "error": "the firehose is off on this server"
    }
    static = next(e for e in page.get_received() if e["name"] == "static")["args"][0]
    assert "log_sources" not in static
    assert 'id="firehose"' not in app.test_client().get("/").get_data(as_text=True)
    page.disconnect()
