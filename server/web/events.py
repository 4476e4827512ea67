"""Socket.IO handlers for pages: greet each with what its view shows, then join its room.

A host page (the default: the hub's own host, or `auth: {"host": id}`) gets
that host's `static`, `history` and `alerts`, then its room's `metrics`. The
fleet page (`auth: {"view": "fleet"}`) gets `fleet` tiles once a second.
"""

from __future__ import annotations

import logging
import math
from typing import Any

from flask import request, session
from flask_socketio import ConnectionRefusedError, SocketIO, emit, join_room

from server.blocking import Busy
from server.history.ring import HistoryRing
from server.ratelimit import TokenBucket
from server.state import DashboardState

log = logging.getLogger("dashboard.events")


def register(socketio: SocketIO, state: DashboardState) -> None:
    login = state.access.login
    caps = state.access.caps
    # Socket ids by login session, so that a logout closes that login's streams.
    by_session: dict[str, set[str]] = {}

    def close_streams(session_id: str) -> None:
        for sid in by_session.pop(session_id, set()):
            socketio.server.disconnect(sid, namespace="/")

    login.sessions.on_end.append(close_streams)

    @socketio.on("connect")
    def on_connect(auth: object = None) -> None:
        address = request.remote_addr or "?"
        # Raises ConnectionRefusedError: the client gets a connect_error saying why.
        try:
            user = login.user(request)
        except Busy as exc:
            raise ConnectionRefusedError(f"the server is {exc}; try again shortly") from None
        caps.admit(address, authorized=user is not None)
        session_id = session.get("sid")
        if isinstance(session_id, str):
            by_session.setdefault(session_id, set()).add(request.sid)  # type: ignore[attr-defined]
        # DEBUG: with thousands of pages a line each would be the log's bulk;
        # the count is in the footer and in /metrics.
        log.debug("client %s connected (%d connected)", request.remote_addr, state.clients)
        view = auth if isinstance(auth, dict) else {}
        sid: str = request.sid  # type: ignore[attr-defined]
        if view.get("view") == "fleet":
            emit("fleet", state.fleet.summary(sparks=True), ignore_queue=True)
            join_room("fleet")
            state.fleet.viewers.add(sid)
            return
        wanted = view.get("host", state.fleet.local.id)
        host = state.fleet.get(wanted) if isinstance(wanted, str) else None
        if host is None:
            caps.release(address)
            raise ConnectionRefusedError("no such host in this fleet")
        static = host.static or {"host": host.id, "hostname": host.id}
        columns = view.get("format") == "columns"
        # A page that has history up to `since` (in its HTML, or from before a
        # reconnect) is sent only what came after.
        since = view.get("since")
        if not (isinstance(since, int | float) and not isinstance(since, bool)
                and math.isfinite(since)):  # fmt: skip
            since = None

        def greet(ring: HistoryRing, latest: dict[str, Any] | None) -> None:
            # ignore_queue: one addressee, on this process; on a message queue
            # it would otherwise travel through Redis to every process.
            emit("static", static, ignore_queue=True)
            if columns:
                # The same history in a seventh of the bytes; `latest` whole, for the cards.
                answer = {**ring.columns(after=since), "latest": latest}
                if since is not None:
                    answer["since"] = since  # to append, not to replace
                emit("history", answer, ignore_queue=True)
            else:
                emit("history", {"samples": ring.rows(latest=latest)}, ignore_queue=True)
            snapshot: dict[str, Any] = dict(host.alerts.snapshot())
            if state.silences is not None:  # its acknowledgements, every silence
                snapshot.update(state.silences.snapshot(host.id))
            emit("alerts", snapshot, ignore_queue=True)
            join_room(f"host:{host.id}")

        # Under the host's publish lock: no `metrics` can slip in before `history`.
        host.greet(greet)

    firehose = state.firehose
    # Subscriptions a page may send: a burst, then one every two seconds.
    firehose_rate = TokenBucket(burst=20, rate=0.5)

    @socketio.on("firehose_subscribe")
    def on_firehose_subscribe(data: object = None) -> dict[str, object]:
        """{"host": id (none: the hub's own), "sources": [names] (none: all)}."""
        sid: str = request.sid  # type: ignore[attr-defined]
        if firehose is None:
            return {"error": "the firehose is off on this server"}
        user = login.user(request)
        if user is None:  # a session that ended since the socket opened
            return {"error": "authentication required: log in first"}
        if not firehose_rate.take(sid):
            return {"error": "too many subscriptions: slow down"}
        wanted = data if isinstance(data, dict) else {}
        host = wanted.get("host") or state.fleet.local.id
        if not isinstance(host, str) or len(host) > 64:
            return {"error": "host must be a host id"}
        problem = firehose.subscribe(sid, user, host, wanted.get("sources"))
        return {"error": problem} if problem else {"ok": True, "host": host}

    @socketio.on("firehose_unsubscribe")
    def on_firehose_unsubscribe(data: object = None) -> None:
        if firehose is not None:
            host = data.get("host") if isinstance(data, dict) else None
            firehose.unsubscribe(request.sid, host if isinstance(host, str) else None)  # type: ignore[attr-defined]

    @socketio.on("disconnect")
    def on_disconnect(reason: object = None) -> None:
        if firehose is not None:
            firehose.unsubscribe(request.sid)  # type: ignore[attr-defined]
        caps.release(request.remote_addr or "?")
        state.fleet.viewers.discard(request.sid)  # type: ignore[attr-defined]
        session_id = session.get("sid")
        if isinstance(session_id, str) and session_id in by_session:
            by_session[session_id].discard(request.sid)  # type: ignore[attr-defined]
            if not by_session[session_id]:
                del by_session[session_id]
        log.debug("client %s disconnected (%d connected)", request.remote_addr, state.clients)
