"""The dashboard page, security headers, and JSON for every error."""

from __future__ import annotations

from flask import Blueprint, Flask, Response, current_app, jsonify, render_template, request
from flask.typing import ResponseReturnValue
from werkzeug.exceptions import HTTPException, InternalServerError

from server.state import current_state

pages = Blueprint("pages", __name__)

# Only the page's own scripts, styles and socket; uPlot sets element styles
# from script (allowed by CSSOM), never inline <style> or <script>.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
    "frame-ancestors 'none'; form-action 'self'"
)


@pages.get("/")
def index() -> ResponseReturnValue:
    return render_template("index.html", static=current_state().static)


def _json_error(exc: HTTPException) -> ResponseReturnValue:
    return jsonify({"error": exc.description or exc.name}), exc.code or 500


def _unexpected(exc: Exception) -> ResponseReturnValue:
    current_app.logger.exception("unhandled error")
    return _json_error(InternalServerError("internal error; see the server log"))


def _security_headers(response: Response) -> Response:
    response.headers.setdefault("Content-Security-Policy", CSP)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "no-referrer")
    response.headers.setdefault("X-Frame-Options", "DENY")
    if request.endpoint != "static":
        # Host facts and history: never kept by a browser or a shared cache.
        response.headers.setdefault("Cache-Control", "no-store")
    return response


def register_errors(app: Flask) -> None:
    app.register_error_handler(HTTPException, _json_error)
    app.register_error_handler(Exception, _unexpected)
    app.after_request(_security_headers)
