"""`python -m server agent`: this machine's sampler and a link to the hub. No Flask, no port.

The agent connects out (python-socketio's client, WebSocket only) to the
hub's `/agent` namespace with its token, sends its `static` on every
connect, and each sample as it is taken. Samples wait in a bounded buffer
until the hub acknowledges them, which it does once they are committed to
its store; after a reconnect every unacknowledged one goes again, oldest
first, so the hub's history has no gap (the hub keeps each sample once).
Past `agent_buffer_seconds` the oldest go, and how many is logged. At a stop
(SIGTERM: an upgrade, a restart) what is not acknowledged is kept in
`data_dir`, and the next process sends it first: none of it is lost.

A refused batch is sent again after a backoff when the hub says the reason
passes (its disk is full, it is busy, the rate), and dropped and counted
when it does not (a sample of the wrong shape); each reason is logged at most
once a minute, with a count. The buffer goes by `seq`, not by time: this
host's wall clock may step. Each sample carries `mono`, this host's monotonic
clock, and the agent answers the hub's `clock` round trips, so the hub
places samples on its own timeline (server/fleet/clock.py).
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import signal
import threading
import time
import urllib.parse
from collections import deque
from types import FrameType
from typing import Any

import socketio

from server import __version__
from server.config import Config, ConfigError
from server.data import DynamicData, StaticData
from server.firehose.relay import local_feed
from server.fleet.protocol import (
    BATCH_BYTES,
    MAX_BATCH,
    MAX_CONTAINER_BYTES,
    NAMESPACE,
    NEWEST_ONLY,
    PROTOCOL,
)
from server.logs import LogThrottle
from server.loops import DONE, BackgroundLoop
from server.private import write_private_json
from server.wire import compact_json
from server.worker import Sampler

log = logging.getLogger("dashboard.agent")

BUFFER_FILE = "agent-buffer.json"  # in data_dir: what a stopped agent had not sent
RETRY_FIRST = 1.0  # seconds before a refused batch goes again; doubles to RETRY_MAX
RETRY_MAX = 15.0

Sample = dict[str, Any]
NEWEST_ONLY_KEYS = frozenset(NEWEST_ONLY)


def within_bytes(batch: list[Sample]) -> list[Sample]:
    """The oldest samples of `batch` that fit one message (at least one: a sample
    alone fits, its container table trimmed); the rest go in the next batch."""
    if len(batch) <= 1:  # the usual batch, at 1 Hz: nothing to weigh
        return batch
    size = 0
    for count, sample in enumerate(batch):
        size += len(compact_json(sample)) + 1
        if size > BATCH_BYTES and count > 0:
            return batch[:count]
    return batch


def fitted(table: dict[str, Any]) -> dict[str, Any]:
    """A container table within MAX_CONTAINER_BYTES: its least busy rows left out (they
    come busiest first), its counts whole."""
    items = table.get("items") or []
    while items and len(compact_json(items)) > MAX_CONTAINER_BYTES:
        items = items[: len(items) * 3 // 4]
    return {**table, "items": items}


class Link:
    """The buffer of samples not yet acknowledged, and the one thread that sends them."""

    def __init__(self, config: Config, static: dict[str, Any]) -> None:
        # https://hub/agents: the hub's Nginx sends the /agents/socket.io/ path
        # to the core; a bare https://hub uses /socket.io/.
        parsed = urllib.parse.urlsplit(config.hub_url)
        self.url = f"{parsed.scheme}://{parsed.netloc}"
        prefix = parsed.path.strip("/")
        self.socketio_path = f"{prefix}/socket.io" if prefix else "socket.io"
        self.token = config.hub_token
        self.static = static
        self.buffer: deque[Sample] = deque(
            maxlen=max(1, math.ceil(config.agent_buffer_seconds / config.interval))
        )
        self.acked = 0  # seq of the newest sample the hub has kept (seqs start at 1)
        self.seq = 0  # the link numbers its samples: a kept buffer's come first
        self.sent = 0  # seq of the newest sample sent since the last connect
        self.dropped = 0
        self.refused: dict[str, int] = {}  # reason -> batches refused since start
        self._retry_delay = RETRY_FIRST
        self._hub_places = False  # the hub asked for our clocks: it reads `mono`
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._connected = threading.Event()
        # Each reason (a refusal, a failed connect, dropped samples) once a minute.
        self._lines = LogThrottle(log)
        # The hub's CA goes to the WebSocket itself: python-engineio takes a CA
        # path only from a requests session (which the agent leaves out), and a
        # path given as ssl_verify would just mean "verify, with the system's CAs".
        ca = {"sslopt": {"ca_certs": config.hub_ca_file}} if config.hub_ca_file else {}
        self.sio = socketio.Client(
            reconnection=True,
            reconnection_attempts=0,  # forever
            reconnection_delay=1,
            reconnection_delay_max=30,
            randomization_factor=0.5,  # jitter: a fleet does not come back in step
            ssl_verify=True,
            websocket_extra_options=ca,
            handle_sigint=False,
        )
        self.sio.on("connect", self._on_connect, namespace=NAMESPACE)
        self.sio.on("disconnect", self._on_disconnect, namespace=NAMESPACE)
        self.sio.on("connect_error", self._on_connect_error, namespace=NAMESPACE)
        self.sio.on("firehose_watch", self._on_firehose_watch, namespace=NAMESPACE)
        self.sio.on("clock", self._on_clock, namespace=NAMESPACE)
        self.sio.on("bye", self._on_bye, namespace=NAMESPACE)
        self._bye: str | None = None
        # Log lines only while a page at the hub watches them (the hub says which).
        self.feed = local_feed(config) if config.firehose else None
        self._firehose_wanted: set[str] = set()
        self._firehose = BackgroundLoop("agent-logs", self._send_lines, log, stopping=self._stop)
        self._sender = BackgroundLoop("agent-send", self._send_samples, log, stopping=self._stop)
        self._connector = BackgroundLoop("agent-link", self._connect, log, stopping=self._stop)
        self._connect_delay = float(self.sio.reconnection_delay)

    # ---- the sampler's side

    def add(self, event: str, sample: Sample) -> None:
        """The Sampler's broadcast: keep the sample and wake the sender."""
        # The link numbers its samples (`seq`): a kept buffer's numbers go on.
        sample = {k: v for k, v in sample.items() if k not in ("server", "seq")}
        sample["mono"] = round(time.monotonic(), 3)  # the hub's timeline is placed by it
        self._keep(sample)
        if self.dropped:
            self._lines.log("dropped", logging.WARNING,
                            "hub unreachable for longer than the buffer holds: "
                            "%d oldest samples dropped", self.dropped)  # fmt: skip
        self._wake.set()

    def _keep(self, sample: Sample) -> None:
        with self._lock:
            if len(self.buffer) == self.buffer.maxlen:
                self.dropped += 1
            if "seq" in sample:  # a kept one: its number, as the hub may have it
                self.seq = max(self.seq, sample["seq"])
            else:
                self.seq += 1
                sample = {**sample, "seq": self.seq}
            self.buffer.append(sample)

    def save(self, path: str) -> None:
        """At stop, once the link is down: the samples the hub has not acknowledged, for
        the next process to send first (an upgrade or a restart loses none), and the
        count it goes on from. The same numbers again: the hub's store knows a sample it
        has by its number (and keeps it once), and a new number is never an old one's."""
        with self._lock:
            kept = [{k: v for k, v in s.items() if k not in NEWEST_ONLY_KEYS}
                    for s in self.buffer]  # fmt: skip
            seq = self.seq
        try:
            write_private_json(path, {"boot_id": boot_id(), "seq": seq, "samples": kept})
        except OSError as exc:
            log.error("could not keep %d samples the hub has not acknowledged: %s", len(kept), exc)
            return
        if kept:
            log.info("kept %d samples the hub has not acknowledged in %s", len(kept), path)

    def restore(self, path: str) -> None:
        """Before the first sample: what the last process kept, to go first. Placed by
        `mono` where this host has not rebooted since (the same monotonic clock)."""
        try:
            with open(path, encoding="utf-8") as handle:
                data = json.load(handle)
            os.remove(path)
        except FileNotFoundError:
            return
        except (OSError, ValueError) as exc:
            log.error("could not read the samples the last agent kept in %s: %s", path, exc)
            return
        data = data if isinstance(data, dict) else {}
        listed = data.get("samples")
        samples = [s for s in (listed if isinstance(listed, list) else [])
                   if isinstance(s, dict) and isinstance(s.get("seq"), int)]  # fmt: skip
        same_boot = bool(boot_id()) and data.get("boot_id") == boot_id()
        for sample in sorted(samples, key=lambda s: s["seq"])[-(self.buffer.maxlen or 1) :]:
            self._keep(sample if same_boot else {k: v for k, v in sample.items() if k != "mono"})
        if isinstance(data.get("seq"), int):
            self.seq = max(self.seq, data["seq"])
        if samples:
            log.info("sending first the %d samples the last agent kept", len(samples))

    # ---- the link

    def start(self) -> None:
        self._sender.start()
        self._connector.start()
        if self.feed is not None:
            self._firehose.start()

    def _on_clock(self, data: Any = None) -> dict[str, float]:
        """The hub's round trip: this host's clocks, read as late as possible. A hub that
        asks places samples by `mono`; an older one would refuse the key."""
        self._hub_places = True
        return {"ts": time.time(), "mono": time.monotonic()}

    def _on_firehose_watch(self, data: Any = None) -> None:
        names = data.get("sources") if isinstance(data, dict) else None
        if isinstance(names, list):
            self._firehose_wanted = {n for n in names if isinstance(n, str)}

    def _send_lines(self) -> float:
        """Four times a second while the hub wants lines; idle (no file open) otherwise."""
        assert self.feed is not None
        wanted = self._firehose_wanted if self._connected.is_set() else set()
        if not wanted and not self.feed.watched:
            return 0.25
        for name, lines in self.feed.step(wanted).items():
            if self._connected.is_set():
                try:
                    self.sio.emit("firehose", {"source": name, "lines": lines},
                                  namespace=NAMESPACE)  # fmt: skip
                except socketio.exceptions.BadNamespaceError:
                    break
        return 0.25

    def _connect(self) -> float:
        """Until the link holds or the agent stops. The client's `retry` covers a hub
        that does not answer; a hub that answers and refuses this agent (its token
        not read yet, or not there yet) is asked again here, at the same pace."""
        try:
            self.sio.connect(
                self.url,
                auth={"token": self.token, "protocol": PROTOCOL, "version": __version__},
                transports=["websocket"],
                namespaces=[NAMESPACE],
                socketio_path=self.socketio_path,
                wait_timeout=10,
                retry=True,
            )
            return DONE  # from here the client reconnects a lost link itself
        except Exception as exc:
            if not self.sio.failed_namespaces:  # a refusal is logged by _on_connect_error
                self._log_failure(f"could not connect to {self.url}: {exc}")
        delay = self._connect_delay
        self._connect_delay = min(delay * 2, self.sio.reconnection_delay_max)
        return delay * random.uniform(0.5, 1.5)  # a fleet does not come back in step

    def _on_connect(self) -> None:
        log.info("connected to the hub at %s", self.url)
        self.sio.emit("static", self.static, namespace=NAMESPACE)
        with self._lock:
            self.sent = self.acked  # what the hub did not acknowledge goes again
        self._connected.set()
        self._wake.set()

    def _on_disconnect(self, reason: Any = None) -> None:
        self._connected.clear()
        # The next hub may be an older one: no `mono` until it asks for our clocks. Not
        # at connect: the hub asks at once, and its ask can be handled before our
        # connect handler (samples then went without `mono` until the next ask, 30 s).
        self._hub_places = False
        if reason == self.sio.reason.SERVER_DISCONNECT:  # the client does not reconnect
            log.error("the hub closed the link: %s", self._bye or "no reason given")
            return
        log.warning("lost the hub (%s); buffering and reconnecting", reason)

    def _on_bye(self, data: Any = None) -> None:
        """Why the hub is about to close this link: this agent removed, or another agent
        with the same token connected. Said when the link closes; no reconnect helps."""
        message = data.get("message") if isinstance(data, dict) else None
        self._bye = str(message)[:300] if message else None

    def _on_connect_error(self, data: Any = None) -> None:
        message = data.get("message") if isinstance(data, dict) else str(data)
        self._log_failure(f"the hub at {self.url} refused this agent: {message}")

    def _log_failure(self, line: str) -> None:
        """Each reason once a minute: the agent asks again every 30 s at most."""
        self._lines.log(line, logging.ERROR, "%s", line)

    def _send_samples(self) -> None:
        self._wake.wait(1.0)
        self._wake.clear()
        while self._connected.is_set() and not self._stop.is_set():
            batch = self._next_batch()
            if not batch:
                break
            try:
                answer = self.sio.call("samples", batch, namespace=NAMESPACE, timeout=10)
            except (socketio.exceptions.TimeoutError, socketio.exceptions.BadNamespaceError):
                break  # the link is going; the next connect sends these again
            wait = self._answered(batch, answer)
            if wait:  # refused for a passing reason: the same samples again, later
                self._stop.wait(wait)

    def _next_batch(self) -> list[Sample]:
        """The oldest samples not sent since the last connect, at most MAX_BATCH."""
        with self._lock:
            batch = [s for s in self.buffer if s["seq"] > self.sent][:MAX_BATCH]
            newest = self.buffer[-1]["seq"] if self.buffer else None
        # Tables of the moment (NEWEST_ONLY): only the newest sample carries them.
        batch = [s if s["seq"] == newest or not NEWEST_ONLY_KEYS & s.keys()
                 else {k: v for k, v in s.items() if k not in NEWEST_ONLY_KEYS}
                 for s in batch]  # fmt: skip
        if batch and batch[-1]["seq"] == newest and isinstance(batch[-1].get("containers"), dict):
            batch[-1] = {**batch[-1], "containers": fitted(batch[-1]["containers"])}
        if not self._hub_places:  # not asked for our clocks (yet): an older hub
            batch = [{k: v for k, v in s.items() if k != "mono"} for s in batch]
        return within_bytes(batch)

    def _answered(self, batch: list[Sample], answer: Any) -> float:
        """Take the hub's answer; seconds to wait before sending these again, or 0."""
        answer = answer if isinstance(answer, dict) else {"error": "no answer", "retry": True}
        if "error" in answer and "seq" not in answer and "ts" not in answer:
            reason = str(answer.get("reason") or "refused")[:32]
            retry = answer.get("retry") is not False
            self._count_refusal(reason, str(answer["error"])[:300], retry)
            if retry:
                delay = self._retry_delay * random.uniform(0.5, 1.5)
                self._retry_delay = min(self._retry_delay * 2, RETRY_MAX)
                return delay
            handled = batch[-1]["seq"]  # the hub will never take these: forget them
        else:
            self._retry_delay = RETRY_FIRST
            seq = answer.get("seq")
            if not isinstance(seq, int):  # a hub from before `seq` in the answer
                newest = answer.get("ts") or -math.inf
                seq = max((s["seq"] for s in batch if s["ts"] <= newest), default=0)
            handled = seq
            if answer.get("refused"):
                self._count_refusal("shape", str(answer.get("error"))[:300], retry=False)
        with self._lock:
            self.sent = max(self.sent, batch[-1]["seq"])
            self.acked = max(self.acked, handled)
            while self.buffer and self.buffer[0]["seq"] <= self.acked:
                self.buffer.popleft()
        return 0.0

    def _count_refusal(self, reason: str, message: str, retry: bool) -> None:
        """Counted always; logged once a minute per reason, with how many were not."""
        self.refused[reason] = self.refused.get(reason, 0) + 1
        outcome = "sending them again" if retry else "they are dropped"
        line = "the hub refused 1 batch(es) (%s: %s); %s"  # the throttle adds how many more
        self._lines.log(("refused", reason), logging.ERROR, line, reason, message, outcome)

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        self.sio.disconnect()
        for loop in (self._sender, self._firehose):  # the connector may be mid-handshake
            loop.stop(timeout=2.0)


def boot_id() -> str:
    """This boot's id (Linux): a monotonic time means nothing in another boot."""
    try:
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as handle:
            return handle.read().strip()
    except OSError:
        return ""


def run(config: Config) -> int:
    """The agent's main loop; returns at SIGTERM or SIGINT."""
    if not config.hub_url or not config.hub_token:
        raise ConfigError(
            "setting 'hub_url'/'hub_token': an agent needs both (the token from add-agent, "
            "or its file: hub_token_file)"
        )
    static = StaticData.collect(
        interval=config.interval,
        history_seconds=config.history_seconds,
        version=__version__,
        host_root=config.host_root,
    )
    # The hub names this host by its token: the static goes without a name of its own.
    static_dict = {k: v for k, v in static.as_dict().items() if k != "host"}
    link = Link(config, static_dict)
    kept = os.path.join(config.data_dir, BUFFER_FILE)
    link.restore(kept)
    if link.feed is not None:
        static_dict["log_sources"] = link.feed.names
    sampler = Sampler(
        DynamicData.configured(config),
        broadcast=link.add,
        interval=config.interval,
        history_seconds=60,  # the hub keeps the history; this ring is not read
    )
    stopping = threading.Event()

    def stop(signum: int, frame: FrameType | None) -> None:
        stopping.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    link.start()
    sampler.start()
    log.info("agent of %s reporting to %s", static.hostname, config.hub_url)
    while not stopping.wait(1.0):
        pass
    log.info("agent stopping")
    sampler.stop()
    link.stop()
    link.save(kept)
    return 0
