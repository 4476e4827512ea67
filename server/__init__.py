"""Live host dashboard: the app factory.

Flask and Socket.IO are imported inside create_app, not at the top:
`python -m server` imports this package before it has read its settings, and
under eventlet the monkey-patching must come before those imports.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

__version__ = "0.2.0"

if TYPE_CHECKING:
    from flask import Flask
    from flask_socketio import SocketIO

    from server.config import Config


def create_app(config: Config | None = None) -> tuple[Flask, SocketIO]:
    """Build the Flask app and its SocketIO; the Sampler is made, not started."""
    from flask import Flask
    from flask_socketio import SocketIO

    from server import api, events, guard, metrics_export, pages
    from server.alerts import AlertEngine
    from server.config import Config
    from server.data import DynamicData, OwnUsage, StaticData
    from server.notify import AlertNotifier
    from server.state import DashboardState
    from server.store import HistoryStore, Retention
    from server.webhooks import WebhookSender
    from server.worker import Sampler

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
    gate = guard.Gate(config)

    def server_stats() -> dict[str, object]:
        return {**own.read(), "clients": gate.connected}

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
        gate=gate,
    )
    app.extensions["dashboard"] = state
    app.extensions["dashboard_registry"] = metrics_export.build_registry(state)
    app.register_blueprint(api.api)
    app.register_blueprint(metrics_export.metrics_export)
    app.register_blueprint(pages.pages)
    pages.register_errors(app)
    guard.install(app, config, gate)
    events.register(socketio, state)
    return app, socketio
