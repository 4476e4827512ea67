"""The app factory: builds the Flask app, its SocketIO and the state they share."""

from __future__ import annotations

import dataclasses
import math
import re
import time
from typing import Any

from flask import Flask
from flask_compress import Compress
from flask_socketio import SocketIO

from server import __version__, access
from server.alerts.notify import AlertNotifier
from server.alerts.rules import AlertEngine
from server.alerts.settings import page_levels
from server.alerts.webhooks import WebhookSender
from server.blocking import run_blocking
from server.config import Config
from server.data import DynamicData, OwnUsage, StaticData
from server.firehose.relay import Firehose, local_feed
from server.fleet.hosts import Fleet, Host
from server.fleet.hub import AgentLink
from server.fleet.tokens import AgentTokens
from server.history.store import HistoryStore, Retention
from server.state import DashboardState
from server.web import api, events, metrics_export, pages, queue
from server.wire import JsonPacket, JsonProvider
from server.worker import Sampler

TOKENS_EVERY = 5  # ticks between looks at the agents file (add-agent, remove-agent)
MIRROR_EVERY = 5  # ticks between the core's mirrors of statics and alerts (role core)


class _Labelled:
    """The sample source with the host's id in each sample."""

    def __init__(self, source: DynamicData, host_id: str) -> None:
        self.source = source
        self.host_id = host_id

    def sample(self) -> dict[str, Any]:
        sample = self.source.sample()
        sample["host"] = self.host_id
        return sample


def host_id_of(hostname: str) -> str:
    """The hub's own id in the fleet: its hostname, as a URL-safe name."""
    return re.sub(r"[^A-Za-z0-9._-]", "-", hostname)[:64].strip("-.") or "local"


def _firehose(config: Config, socketio: SocketIO, fleet: Fleet, link: AgentLink) -> Firehose | None:
    """The live log tails (off with firehose = false, and on web processes, whose
    pages' lines would have to come from the core: not built yet)."""
    if not config.firehose or config.role == "web":
        return None
    feed = local_feed(config)
    assert fleet.local.static is not None
    fleet.local.static["log_sources"] = feed.names

    def sources_of(host_id: str) -> list[str] | None:
        host = fleet.get(host_id)
        if host is None:
            return None
        names = (host.static or {}).get("log_sources")
        return [n for n in names if isinstance(n, str)] if isinstance(names, list) else []

    firehose = Firehose(
        fleet.local.id,
        feed,
        socketio.emit,
        lambda sid, room: socketio.server.enter_room(sid, room, namespace="/"),
        lambda sid, room: socketio.server.leave_room(sid, room, namespace="/"),
        sources_of,
        link.watch,
    )
    link.firehose = firehose
    return firehose


def create_app(config: Config | None = None) -> tuple[Flask, SocketIO]:
    """Build the Flask app and its SocketIO; the Sampler is made, not started.

    role all: one process does everything (no message queue). role core: the
    same, publishing through the queue, without pages of its own behind
    Nginx. role web: pages, REST and sockets only, kept up to date from the
    queue (server/web/queue.py); it never samples and never writes the store.
    """
    config = config or Config()
    app = Flask(__name__)
    app.json = JsonProvider(app)
    # Text answers compressed when served without Nginx (Nginx gzips its own);
    # Socket.IO is Engine.IO's, not Flask's, and is not touched.
    app.config["COMPRESS_MIMETYPES"] = [
        "text/html", "text/css", "text/plain", "text/csv", "text/javascript",
        "application/javascript", "application/json", "image/svg+xml",
    ]  # fmt: skip
    # Static files are sent as streams; gzip too, for clients without brotli.
    app.config["COMPRESS_ALGORITHM_STREAMING"] = ["zstd", "br", "gzip", "deflate"]
    Compress(app)
    observed: list[Any] = []  # the web's view, once built (the manager starts first)

    def observe(event: str, data: Any) -> None:
        if observed:
            observed[0](event, data)

    managers: dict[str, Any] = {}
    if config.role == "core":
        managers["client_manager"] = queue.core_manager(config.message_queue)
    elif config.role == "web":
        managers["client_manager"] = queue.ObservingManager(config.message_queue, observe)
    socketio = SocketIO(
        app,
        async_mode=config.async_mode,
        serializer=JsonPacket,
        # Pages send only handshakes and pings; an agent's batch of samples
        # stays well under this. Anything larger closes that connection.
        max_http_buffer_size=64 * 1024,
        # Same origin only, unless other origins are listed on purpose; never
        # "*" (the session cookie is a credential).
        cors_allowed_origins=list(config.cors_origins) or None,
        cors_credentials=bool(config.cors_origins),
        logger=False,
        engineio_logger=False,
        **managers,
    )

    def to_room(room: str) -> Any:
        return lambda event, data: socketio.emit(event, data, to=room)

    static = StaticData.collect(
        interval=config.interval,
        history_seconds=config.history_seconds,
        version=__version__,
        levels=page_levels(config.alerts),
    )
    local_id = host_id_of(static.hostname)
    static = dataclasses.replace(static, host=local_id)
    webhooks = WebhookSender(
        config.alerts.webhooks,
        timeout=config.alerts.webhook_timeout,
        retries=config.alerts.webhook_retries,
    )
    store = HistoryStore(
        config.history_file,
        Retention(
            raw=config.retention_raw, tier_10s=config.retention_10s, tier_1m=config.retention_1m
        ),
        max_bytes=config.history_max_mb * 1024 * 1024,
        local_host=local_id,
        synchronous=config.history_sync,
        keep_local=math.ceil(config.history_seconds / config.interval),  # what the ring holds
    )
    own = OwnUsage()
    gates = access.install(app, config)

    def server_stats() -> dict[str, object]:
        # store_error: the page's banner while the history cannot be written.
        return {**own.read(), "clients": gates.caps.connected, "store_error": store.failure}

    def make_notifier(host_id: str, cores: int) -> AlertNotifier:
        engine = AlertEngine(config.alerts, interval=config.interval, cores=cores, host=host_id)
        return AlertNotifier(engine, to_room(f"host:{host_id}"), webhooks, host=host_id)

    local_notifier = make_notifier(local_id, static.cpu.get("logical") or 1)
    ticks = [0]

    def fleet_tick(sample: dict[str, Any]) -> None:
        """Once a second, after the hub's own sample: the tiles, the agents file, the mirror.

        The hosts' states are judged on a faster clock of their own (DashboardState).
        """
        fleet.local.seen(sample)
        # The core's fleet pages are on web processes it can't count.
        if fleet.viewers or config.role == "core":
            socketio.emit("fleet", fleet.summary(), to="fleet")
        ticks[0] += 1
        if ticks[0] % TOKENS_EVERY == 0 and run_blocking(tokens.reload):
            link.revoke_missing()
        if config.role == "core" and ticks[0] % MIRROR_EVERY == 1:
            mirror = fleet.mirror()
            socketio.emit("mirror", mirror, to="mirror")  # no page joins it: for web processes
            assert lease is not None
            socketio.start_background_task(lease.mirror, mirror)

    sampler = Sampler(
        _Labelled(DynamicData(top_processes=config.top_processes), local_id),
        broadcast=to_room(f"host:{local_id}"),
        interval=config.interval,
        history_seconds=config.history_seconds,
        server_stats=server_stats,
        observers=[local_notifier, store.add, fleet_tick],
    )

    def make_host(host_id: str) -> Host:
        return Host(
            host_id,
            make_notifier(host_id, 1),
            config.interval,
            config.history_seconds,
            clock_warn=config.clock_offset_warn,
        )

    local = Host(
        local_id,
        local_notifier,
        config.interval,
        config.history_seconds,
        None if config.role == "web" else sampler,
    )
    local.static = static.as_dict()
    fleet = Fleet(local, make_host, lambda event, data, room: socketio.emit(event, data, to=room))
    tokens = AgentTokens(config.data_dir)
    if config.role == "web":
        observed.append(fleet.observe)
        # python-socketio starts the queue's listener with the first client;
        # a web process keeps its view of the stream from the start.
        socketio.server.manager_initialized = True
        socketio.server.manager.initialize()
        fleet.apply_mirror(queue.read_mirror(config.message_queue) or {})
    else:
        store.open()
    names = tokens.names if config.role != "web" else [h for h in fleet.hosts if h != local_id]
    if config.role == "web":
        local.preload(store.recent(config.history_seconds))
    for name in names:  # the agents' recent history, for their pages after a restart
        fleet.ensure(name).preload(store.recent(config.history_seconds, host=name))

    def publish(host: Host, sample: dict[str, Any]) -> None:
        socketio.emit("metrics", sample, to=f"host:{host.id}")
        if host.static and host.alerts.cores == 1:
            host.alerts.cores = (host.static.get("cpu") or {}).get("logical") or 1
        host.notifier(sample, time.time())  # hold times on the hub's clock, not the agent's

    link = AgentLink(
        fleet, tokens, publish, lambda host, s, ticket: store.add(s, host=host.id, ticket=ticket)
    )
    link.store_failure = lambda: store.failure
    firehose = _firehose(config, socketio, fleet, link)
    if config.role != "web":  # agents report to the core (Nginx routes them there)
        sampler.preload(store.recent(config.history_seconds))
        socketio.server.register_namespace(link)
    lease = (
        queue.CoreLease(config.message_queue, config.interval) if config.role == "core" else None
    )
    state = DashboardState(
        config=config,
        static=static,
        sampler=sampler,
        alerts=local_notifier.engine,
        webhooks=webhooks,
        store=store,
        access=gates,
        fleet=fleet,
        link=link,
        lease=lease,
        firehose=firehose,
    )
    fleet.degraded = state.problems  # the pages' banner and /healthz
    state.registry = metrics_export.build_registry(state)
    app.extensions["dashboard"] = state
    app.register_blueprint(api.api)
    app.register_blueprint(metrics_export.metrics_export)
    app.register_blueprint(pages.pages)
    pages.register_errors(app)
    events.register(socketio, state)
    return app, socketio
