"""The dashboard page, security headers, and JSON for every error."""

from __future__ import annotations

import base64
import hashlib
import re
import secrets

from flask import (
    Blueprint,
    Flask,
    Response,
    abort,
    current_app,
    jsonify,
    render_template,
    request,
    url_for,
)
from flask.typing import ResponseReturnValue
from werkzeug.exceptions import HTTPException, InternalServerError

from server import series
from server.blocking import Busy
from server.fleet.hosts import Host
from server.fleet.install import can_add_hosts
from server.history import alert_log
from server.state import current_state
from server.wire import html_safe_json

pages = Blueprint("pages", __name__)
ROUTE_COOKIE = "dashboard_route"

# The one inline script, first in each page's head: the renderer's first Intl
# use (ICU's set-up, 15-20 ms) made while the stylesheets are on their way,
# not in uPlot's script on the charts' path. The calls uPlot makes at load.
INTL_WARM_UP = (
    "new Intl.NumberFormat(navigator.language);new Intl.DateTimeFormat().resolvedOptions()"
)
_DIGEST = hashlib.sha256(INTL_WARM_UP.encode()).digest()
INTL_WARM_UP_HASH = "sha256-" + base64.b64encode(_DIGEST).decode()

# Only the page's own scripts, styles and socket, and the warm-up by its hash
# (the Nginx sites repeat this policy: tests/test_deploy.py keeps them equal);
# uPlot sets element styles from script (allowed by CSSOM), never inline <style>.
CSP = (
    f"default-src 'self'; script-src 'self' '{INTL_WARM_UP_HASH}'; style-src 'self'; "
    "img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
    "frame-ancestors 'none'; form-action 'self'"
)


@pages.app_context_processor
def _inline_scripts() -> dict[str, str]:
    return {"intl_warm_up": INTL_WARM_UP}


@pages.get("/")
def index() -> ResponseReturnValue:
    """The fleet once the hub knows more than one host (or as fleet_view says), else the host."""
    state = current_state()
    view = state.config.fleet_view
    if view == "fleet" or (view == "auto" and len(state.fleet.hosts) > 1):
        return _routed(
            render_template(
                "fleet.html",
                interval=state.config.interval,
                kiosk=_kiosk(),
                cycle=_cycle(),
                firehose=state.firehose is not None,
                can_add_hosts=can_add_hosts() and not _kiosk(),
            )
        )
    return _host_page(state.fleet.local, own=True)


def _routed(body: str) -> Response:
    """A page, with the route cookie that Nginx hashes to pick a web process.

    Behind several web processes, a Socket.IO session on the polling
    transport must reach the same one each time: the cookie (random, no
    meaning of its own) keeps a browser on one, and spreads browsers over all.
    """
    response = Response(body, mimetype="text/html")
    if ROUTE_COOKIE not in request.cookies:
        response.set_cookie(
            ROUTE_COOKIE,
            secrets.token_hex(8),
            max_age=30 * 86400,
            httponly=True,
            samesite="Lax",
            secure=request.is_secure,  # over HTTPS (behind a TLS proxy too), never in clear
        )
    return response


@pages.get("/host/<host_id>")
def host_page(host_id: str) -> ResponseReturnValue:
    host = current_state().fleet.get(host_id)
    if host is None:
        abort(404, "no such host in this fleet")
    return _host_page(host, own=False)


def _host_page(host: Host, own: bool) -> ResponseReturnValue:
    state = current_state()
    return _routed(
        render_template(
            "index.html",
            static=host.static or {"hostname": host.id, "interval": state.config.interval},
            host_id="" if own else host.id,  # "": the page of old, the hub's own host
            history_url=url_for("api.history", host_id=None if own else host.id),
            alert_history_url=url_for("api.alert_history", host_id=None if own else host.id),
            alert_events=alert_log.EVENTS,
            fleet=len(state.fleet.hosts) > 1,
            version=state.static.version,
            latest=host.latest,
            alerts=host.alerts.snapshot()["active"],
            # The history in the page, of the charted series only: the charts are
            # full at first paint, and the socket sends only what came after (auth `since`).
            history=(
                html_safe_json(host.columns(metrics=series.CHARTED))
                if host.latest is not None
                else None
            ),
            charts=series.CHARTS,
            kiosk=_kiosk(),
            firehose=state.firehose is not None,
            store_error=state.store.failure,
            clock_note=None if own else host.clock_note(),
            # The hub's own page too: a fleet of one is where the second host is added.
            can_add_hosts=own and can_add_hosts() and not _kiosk(),
        )
    )


def _kiosk() -> bool:
    """`?kiosk=1`: wall mode (no controls, larger type, one screen, kept awake)."""
    return request.args.get("kiosk") == "1"


def _cycle() -> int:
    """`?cycle=N`: seconds between hosts in the fleet's wall mode (3 to 3600, else 15)."""
    raw = request.args.get("cycle", "")
    return int(raw) if raw.isdigit() and 3 <= int(raw) <= 3600 else 15


@pages.app_template_filter("card_id")
def card_id(mount: str) -> str:
    """A disk card's id suffix; app.js makes the same from the mount."""
    return re.sub(r"[^a-zA-Z0-9]", "_", mount)


def _json_error(exc: HTTPException) -> ResponseReturnValue:
    return jsonify({"error": exc.description or exc.name}), exc.code or 500


def _busy(exc: Busy) -> ResponseReturnValue:
    """A bounded pool with no slot in time (password checks, long history queries)."""
    return jsonify({"error": f"the server is {exc}; try again shortly"}), 503, {"Retry-After": "2"}


def _unexpected(exc: Exception) -> ResponseReturnValue:
    current_app.logger.exception("unhandled error")
    return _json_error(InternalServerError("internal error; see the server log"))


def _security_headers(response: Response) -> Response:
    response.headers.setdefault("Content-Security-Policy", CSP)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    # same-origin, not no-referrer: with no-referrer a browser sends `Origin: null`
    # on the page's own form posts, and the login's Origin check needs the real one.
    response.headers.setdefault("Referrer-Policy", "same-origin")
    response.headers.setdefault("X-Frame-Options", "DENY")
    if request.endpoint != "static":
        # Host facts and history: never kept by a browser or a shared cache.
        response.headers.setdefault("Cache-Control", "no-store")
    return response


def register_errors(app: Flask) -> None:
    app.register_error_handler(HTTPException, _json_error)
    app.register_error_handler(Busy, _busy)
    app.register_error_handler(Exception, _unexpected)
    app.after_request(_security_headers)
