"""The app factory: builds the parts a role needs and wires them as a sample flows.

The life of a sample, in the names below: the Sampler (build_sampling) takes
one a second from DynamicData, sends it to its host's room as `metrics`, and
hands it to its observers: the host's AlertNotifier (build_alerts), the
HistoryStore (build_store) and the FleetTick (build_fleet). An agent's sample
comes in through the AgentLink (build_fleet), which checks it, stores it and
publishes it the same way. build_web serves pages, REST and sockets from the
DashboardState that holds the parts.

A new capability is one builder here, or one entry in a part's list (a
collector in DynamicData, a notifier in build_alerts): not a new branch.
"""

from __future__ import annotations

import dataclasses
import math
import re
import time
from collections.abc import Callable
from typing import Any

from flask import Flask
from flask.json.provider import DefaultJSONProvider
from flask_compress import Compress
from flask_socketio import SocketIO

from server import __version__, access
from server.access import Access
from server.alerts.dispatch import Dispatcher
from server.alerts.evidence import Evidence
from server.alerts.notify import AlertNotifier, Channel
from server.alerts.rules import AlertEngine
from server.alerts.settings import page_levels
from server.alerts.silences import Silences
from server.alerts.webhooks import WebhookSender
from server.alerts.windows import holds_of
from server.config import Config
from server.data import DynamicData, OwnUsage, StaticData
from server.firehose.relay import Firehose, local_feed
from server.fleet import install
from server.fleet.hosts import Fleet, Host
from server.fleet.hub import AgentLink
from server.fleet.protocol import MAX_MESSAGE
from server.fleet.tick import FleetTick
from server.fleet.tokens import AgentTokens
from server.history.alert_log import HistoryChannel
from server.history.store import HistoryStore, Retention
from server.loops import BackgroundLoop
from server.state import DashboardState
from server.web import api, events, metrics_export, pages, queue
from server.wire import JsonPacket, compact_json
from server.worker import Sampler


@dataclasses.dataclass(frozen=True)
class Role:
    """What a process of each `role` setting does."""

    samples: bool  # samples this host, writes the store, takes the agents' link
    publishes: bool  # sends through the message queue to web processes (and mirrors)
    observes: bool  # keeps its view of the fleet from the core's stream


ROLES = {
    "all": Role(samples=True, publishes=False, observes=False),
    "core": Role(samples=True, publishes=True, observes=False),
    "web": Role(samples=False, publishes=False, observes=True),
}


def create_app(config: Config | None = None) -> tuple[Flask, SocketIO]:
    """Build the Flask app and its SocketIO; nothing is started (DashboardState.start).

    role all: one process does everything. role core: the same, publishing
    through the message queue, without pages of its own behind Nginx. role web:
    pages, REST and sockets only, kept up to date from the queue; it never
    samples and never writes the store.
    """
    config = config or Config()
    role = ROLES[config.role]
    app = build_flask()
    socketio = build_socketio(app, config, role)
    static = build_static(config)
    store = build_store(config, static.host, role)
    alerts = build_alerts(config, role, socketio)
    silences = build_silences(config, role, alerts, socketio)
    build_alert_history(role, store, alerts, silences)
    gates = access.install(app, config)
    notifier = alerts.notifier_of(static)
    sampler = build_sampling(config, static, [notifier, store.add], server_stats(gates, store),
                             socketio)  # fmt: skip
    fleet, link, tick = build_fleet(config, role, static, sampler, notifier, store, alerts,
                                    socketio)  # fmt: skip
    sampler.observe(tick)
    state = DashboardState(
        config=config,
        static=static,
        sampler=sampler,
        alerts=notifier.engine,
        webhooks=alerts.webhooks,
        notifications=alerts.notifications,
        silences=silences,
        store=store,
        access=gates,
        fleet=fleet,
        link=link,
        lease=tick.lease,
        firehose=build_firehose(config, role, socketio, fleet, link),
    )
    build_evidence(config, state)
    build_web(app, socketio, state)
    return app, socketio


# ---------------------------------------------------------------- the parts


class JsonProvider(DefaultJSONProvider):
    """Flask's jsonify and app.json, written by json_bytes (keys in their order)."""

    sort_keys = False

    def dumps(self, obj: Any, **kwargs: Any) -> str:
        return compact_json(obj)


def build_flask() -> Flask:
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
    return app


def build_socketio(app: Flask, config: Config, role: Role) -> SocketIO:
    managers: dict[str, Any] = {}
    if role.publishes:
        managers["client_manager"] = queue.core_manager(config.message_queue)
    elif role.observes:  # its observer (the fleet) is set by build_fleet
        managers["client_manager"] = queue.ObservingManager(config.message_queue)
    return SocketIO(
        app,
        async_mode=config.async_mode,
        serializer=JsonPacket,
        # Pages send only handshakes and pings; an agent's batch of samples
        # (60 of about 1 KB; its newest with a container table trimmed to fit)
        # stays under this. Anything larger closes that connection.
        max_http_buffer_size=MAX_MESSAGE,
        # Same origin only, unless other origins are listed on purpose; never
        # "*" (the session cookie is a credential).
        cors_allowed_origins=list(config.cors_origins) or None,
        cors_credentials=bool(config.cors_origins),
        logger=False,
        engineio_logger=False,
        **managers,
    )


def host_id_of(hostname: str) -> str:
    """The hub's own id in the fleet: its hostname, as a URL-safe name."""
    return re.sub(r"[^A-Za-z0-9._-]", "-", hostname)[:64].strip("-.") or "local"


def build_static(config: Config) -> StaticData:
    static = StaticData.collect(
        interval=config.interval,
        history_seconds=config.history_seconds,
        version=__version__,
        levels=page_levels(config.alerts),
        host_root=config.host_root,
    )
    return dataclasses.replace(static, host=host_id_of(static.hostname))


def build_store(config: Config, local_id: str, role: Role) -> HistoryStore:
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
    if role.samples:  # a web process only reads it
        store.open()
    return store


@dataclasses.dataclass
class Alerts:
    """Each host's alert engine and notifier, and the channels they send to."""

    config: Config
    emit: Callable[..., Any]  # socketio.emit
    webhooks: WebhookSender
    notifications: Dispatcher | None  # the [notify.NAME] channels, by their routes
    channels: list[Channel]  # what each change is sent to

    def notifier(self, host_id: str, cores: int = 1) -> AlertNotifier:
        settings, interval = self.config.alerts, self.config.interval
        engine = AlertEngine(settings, interval=interval, cores=cores, host=host_id)
        room = f"host:{host_id}"
        return AlertNotifier(engine, lambda e, d: self.emit(e, d, to=room), self.channels,
                             host=host_id)  # fmt: skip

    def notifier_of(self, static: StaticData) -> AlertNotifier:
        return self.notifier(static.host, static.cpu.get("logical") or 1)


def build_alerts(config: Config, role: Role, socketio: SocketIO) -> Alerts:
    webhooks = WebhookSender(
        config.alerts.webhooks,
        timeout=config.alerts.webhook_timeout,
        retries=config.alerts.webhook_retries,
    )
    channels: list[Channel] = [webhooks]
    notifications = None
    if config.notify.channels and role.samples:  # a web process sends nothing
        from server.alerts.channels import open_channels  # Apprise: only where it is used

        notifications = Dispatcher(
            config.notify,
            open_channels(dict(config.notify.channels)),
            group_wait=config.notify_group_wait,
        )
        channels.append(notifications)
        # Maintenance windows and quiet hours (alerts/windows.py): held, not sent.
        windows = holds_of(config.maintenance, config.notify_quiet_hours,
                           config.notify_quiet_weekdays)  # fmt: skip
        if windows is not None:
            notifications.holds.append(windows)
    return Alerts(config, socketio.emit, webhooks, notifications, channels)


def build_alert_history(role: Role, store: HistoryStore, alerts: Alerts,
                        silences: Silences) -> None:  # fmt: skip
    """Each alert change and each step of its notification, in the store
    (history/alert_log.py), where alerts are judged."""
    if not role.samples:
        return
    history = HistoryChannel(store.alert_log)
    alerts.channels.append(history)
    silences.acknowledged_by = history.acknowledged
    if alerts.notifications is not None:
        alerts.notifications.noted = store.alert_log.note


def build_silences(config: Config, role: Role, alerts: Alerts, socketio: SocketIO) -> Silences:
    """Acknowledgements and silences (alerts/silences.py), kept where the dispatcher runs;
    on a web process a view, its changes forwarded to the core through the queue."""
    if role.observes:
        actions = queue.ActionQueue(config.message_queue)
        view = Silences(None)
        view.forward = actions.push
        view.replace(actions.read())
        socketio.server.manager.observers["silences"] = view.replace
        return view
    silences = Silences(config.data_dir)
    publish = queue.ActionQueue(config.message_queue).publish if role.publishes else None

    def changed() -> None:
        snapshot = silences.snapshot()
        socketio.emit("silences", snapshot)
        if publish is not None:
            publish(snapshot)

    silences.changed = changed
    alerts.channels.insert(0, silences)  # a resolution clears its acknowledgement
    if alerts.notifications is not None:
        alerts.notifications.acknowledged = silences.acknowledged
        alerts.notifications.holds.append(silences.hold)
    if role.publishes:
        taking = queue.ActionQueue(config.message_queue)

        def take() -> float:
            action = taking.take(1.0)
            if action is not None:
                silences.apply(action)
            return 0.0

        silences.loop = BackgroundLoop("alert-actions", take, error_wait=2.0)
        assert publish is not None
        publish(silences.snapshot())
    return silences


class _Labelled:
    """The sample source with the host's id in each sample."""

    def __init__(self, source: DynamicData, host_id: str) -> None:
        self.source = source
        self.host_id = host_id

    def sample(self) -> dict[str, Any]:
        sample = self.source.sample()
        sample["host"] = self.host_id
        return sample

    def collector_success(self) -> dict[str, bool]:  # for /metrics
        return self.source.collector_success()


def build_sampling(
    config: Config,
    static: StaticData,
    observers: list[Callable[[dict[str, Any]], None]],
    stats: Callable[[], dict[str, object]],
    socketio: SocketIO,
) -> Sampler:
    room = f"host:{static.host}"
    return Sampler(
        _Labelled(
            DynamicData.configured(config),
            static.host,
        ),
        broadcast=lambda event, data: socketio.emit(event, data, to=room),
        interval=config.interval,
        history_seconds=config.history_seconds,
        server_stats=stats,
        observers=observers,
    )


def server_stats(gates: Access, store: HistoryStore) -> Callable[[], dict[str, object]]:
    """The hub's own cost in each of its samples, and the pages' store banner."""
    own = OwnUsage()
    return lambda: {**own.read(), "clients": gates.caps.connected, "store_error": store.failure}


def build_fleet(
    config: Config,
    role: Role,
    static: StaticData,
    sampler: Sampler,
    notifier: AlertNotifier,
    store: HistoryStore,
    alerts: Alerts,
    socketio: SocketIO,
) -> tuple[Fleet, AgentLink, FleetTick]:
    """The hosts (this one first), the agents' link, and the fleet's chores each tick."""

    def make_host(host_id: str) -> Host:
        return Host(host_id, alerts.notifier(host_id), config.interval, config.history_seconds,
                    clock_warn=config.clock_offset_warn)  # fmt: skip

    local = Host(static.host, notifier, config.interval, config.history_seconds,
                 sampler if role.samples else None)  # fmt: skip
    local.static = static.as_dict()
    fleet = Fleet(local, make_host, lambda event, data, room: socketio.emit(event, data, to=room))
    tokens = AgentTokens(config.data_dir)
    link = AgentLink(fleet, tokens, _publisher(socketio),
                     lambda host, s, ticket: store.add(s, host=host.id, ticket=ticket))  # fmt: skip
    link.store_failure = lambda: store.failure
    names = tokens.names
    if role.observes:  # the core's stream and its mirror are this process's view
        manager = socketio.server.manager
        manager.observer = fleet.observe
        # python-socketio starts the queue's listener with the first client;
        # a web process keeps its view of the stream from the start.
        socketio.server.manager_initialized = True
        manager.initialize()
        fleet.apply_mirror(queue.read_mirror(config.message_queue) or {})
        names = [h for h in fleet.hosts if h != local.id]
        local.preload(store.recent(config.history_seconds))
    for name in names:  # the agents' recent history, for their pages after a restart
        fleet.ensure(name).preload(store.recent(config.history_seconds, host=name))
    if role.samples:  # agents report to the core (Nginx routes them there)
        sampler.preload(store.recent(config.history_seconds))
        socketio.server.register_namespace(link)
    lease = queue.CoreLease(config.message_queue, config.interval) if role.publishes else None
    tick = FleetTick(fleet, tokens, link, socketio.emit, socketio.start_background_task, lease)
    return fleet, link, tick


def _publisher(socketio: SocketIO) -> Callable[[Host, dict[str, Any]], None]:
    """An agent's live sample: to its host's room and its alerts."""

    def publish(host: Host, sample: dict[str, Any]) -> None:
        socketio.emit("metrics", sample, to=f"host:{host.id}")
        if host.static and host.alerts.cores == 1:
            host.alerts.cores = (host.static.get("cpu") or {}).get("logical") or 1
        host.notifier(sample, time.time())  # hold times on the hub's clock, not the agent's

    return publish


def build_firehose(
    config: Config, role: Role, socketio: SocketIO, fleet: Fleet, link: AgentLink
) -> Firehose | None:
    """The live log tails (off with firehose = false, and on web processes, whose
    pages' lines would have to come from the core: not built yet)."""
    if not config.firehose or role.observes:
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


def build_evidence(config: Config, state: DashboardState) -> None:
    """What each notification shows beside the value (alerts/evidence.py)."""
    if state.notifications is not None:
        state.notifications.evidence = Evidence(state.fleet, state.firehose, config.public_url)


def build_web(app: Flask, socketio: SocketIO, state: DashboardState) -> None:
    """Pages, REST, /metrics and the sockets' events, over the parts in `state`."""
    state.fleet.degraded = state.problems  # the pages' banner and /healthz
    state.registry = metrics_export.build_registry(state)
    app.extensions["dashboard"] = state
    app.register_blueprint(api.api)
    app.register_blueprint(metrics_export.metrics_export)
    app.register_blueprint(pages.pages)
    app.register_blueprint(install.agent_files)
    pages.register_errors(app)
    events.register(socketio, state)
