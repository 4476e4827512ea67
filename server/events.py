"""Socket.IO handlers: greet each new client with `static`, then `history`."""

from __future__ import annotations

import logging

from flask import request
from flask_socketio import SocketIO, emit

from server.state import DashboardState

log = logging.getLogger("dashboard.events")


def register(socketio: SocketIO, state: DashboardState) -> None:
    login = state.access.login
    caps = state.access.caps

    @socketio.on("connect")
    def on_connect(auth: object = None) -> None:
        address = request.remote_addr or "?"
        # Raises ConnectionRefusedError: the client gets a connect_error saying why.
        caps.admit(address, authorized=login.user(request) is not None)
        # DEBUG: with thousands of pages a line each would be the log's bulk;
        # the count is in the footer and in /metrics.
        log.debug("client %s connected (%d connected)", request.remote_addr, state.clients)
        static = state.static.as_dict()

        def greet(history: list[dict[str, object]]) -> None:
            emit("static", static)
            emit("history", {"samples": history})
            emit("alerts", state.alerts.snapshot())

        # Under the sampler's lock: no `metrics` can slip in before `history`.
        state.sampler.send_history(greet)

    @socketio.on("disconnect")
    def on_disconnect(reason: object = None) -> None:
        caps.release(request.remote_addr or "?")
        log.debug("client %s disconnected (%d connected)", request.remote_addr, state.clients)
