"""The app factory: builds the Flask app, its SocketIO and the state they share."""

from __future__ import annotations

from flask import Flask
from flask_socketio import SocketIO

from server import __version__, access, api, events, metrics_export, pages
from server.alerts.notify import AlertNotifier
from server.alerts.rules import AlertEngine
from server.alerts.settings import page_levels
from server.alerts.webhooks import WebhookSender
from server.config import Config
from server.data import DynamicData, OwnUsage, StaticData
from server.state import DashboardState
from server.store import HistoryStore, Retention
from server.worker import Sampler


def create_app(config: Config | None = None) -> tuple[Flask, SocketIO]:
    """Build the Flask app and its SocketIO; the Sampler is made, not started."""
    config = config or Config()
    app = Flask(__name__)
    app.json.sort_keys = False  # type: ignore[attr-defined]
    socketio = SocketIO(
        app,
        async_mode=config.async_mode,
        # Clients only ever send handshakes and pings: refuse anything large.
        max_http_buffer_size=64 * 1024,
        # Same origin only, unless other origins are listed on purpose; never
        # "*" (the session cookie is a credential).
        cors_allowed_origins=list(config.cors_origins) or None,
        cors_credentials=bool(config.cors_origins),
        logger=False,
        engineio_logger=False,
    )

    def broadcast(event: str, data: object) -> None:
        socketio.emit(event, data)

    static = StaticData.collect(
        interval=config.interval,
        history_seconds=config.history_seconds,
        version=__version__,
        levels=page_levels(config.alerts),
    )
    alerts = AlertEngine(
        config.alerts, interval=config.interval, cores=static.cpu.get("logical") or 1
    )
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
    )
    store.open()
    own = OwnUsage()
    gates = access.install(app, config)

    def server_stats() -> dict[str, object]:
        return {**own.read(), "clients": gates.caps.connected}

    sampler = Sampler(
        DynamicData(top_processes=config.top_processes),
        broadcast=broadcast,
        interval=config.interval,
        history_seconds=config.history_seconds,
        server_stats=server_stats,
        observers=[AlertNotifier(alerts, broadcast, webhooks), store.add],
    )
    sampler.preload(store.recent(config.history_seconds))
    state = DashboardState(
        config=config,
        static=static,
        sampler=sampler,
        alerts=alerts,
        webhooks=webhooks,
        store=store,
        access=gates,
    )
    state.registry = metrics_export.build_registry(state)
    app.extensions["dashboard"] = state
    app.register_blueprint(api.api)
    app.register_blueprint(metrics_export.metrics_export)
    app.register_blueprint(pages.pages)
    pages.register_errors(app)
    events.register(socketio, state)
    return app, socketio
