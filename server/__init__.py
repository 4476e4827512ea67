"""Live host dashboard: the app factory.

Flask and Socket.IO are imported inside create_app, not at the top:
`python -m server` imports this package before it has read its settings, and
under eventlet the monkey-patching must come before those imports.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

__version__ = "0.1.0"

if TYPE_CHECKING:
    from flask import Flask
    from flask_socketio import SocketIO

    from server.config import Config


def create_app(config: Config | None = None) -> tuple[Flask, SocketIO]:
    """Build the Flask app and its SocketIO; the Sampler is made, not started."""
    from flask import Flask
    from flask_socketio import SocketIO

    from server import api, events, pages
    from server.config import Config
    from server.data import DynamicData, StaticData
    from server.state import DashboardState
    from server.worker import Sampler

    config = config or Config()
    app = Flask(__name__)
    app.json.sort_keys = False  # type: ignore[attr-defined]
    socketio = SocketIO(
        app,
        async_mode=config.async_mode,
        # Clients only ever send handshakes and pings: refuse anything large.
        max_http_buffer_size=64 * 1024,
        logger=False,
        engineio_logger=False,
    )
    sampler = Sampler(
        DynamicData(top_processes=config.top_processes),
        broadcast=lambda event, data: socketio.emit(event, data),
        interval=config.interval,
        history_seconds=config.history_seconds,
    )
    state = DashboardState(
        config=config,
        static=StaticData.collect(
            interval=config.interval,
            history_seconds=config.history_seconds,
            version=__version__,
        ),
        sampler=sampler,
    )
    app.extensions["dashboard"] = state
    app.register_blueprint(api.api)
    app.register_blueprint(pages.pages)
    pages.register_errors(app)
    events.register(socketio, state)
    return app, socketio
