"""REST: JSON views of the state the Sampler keeps. Nothing here samples."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, abort, current_app, jsonify, request
from flask.typing import ResponseReturnValue

from server.state import DashboardState

api = Blueprint("api", __name__)


def _state() -> DashboardState:
    state: DashboardState = current_app.extensions["dashboard"]
    return state


@api.get("/api/static")
def static() -> ResponseReturnValue:
    return jsonify(_state().static.as_dict())


@api.get("/api/metrics")
def metrics() -> ResponseReturnValue:
    latest = _state().sampler.latest
    if latest is None:
        abort(503, "no sample has been taken yet")
    return jsonify(latest)


@api.get("/api/history")
def history() -> ResponseReturnValue:
    state = _state()
    seconds = _seconds(request.args.get("seconds"), default=state.config.history_seconds)
    return jsonify({"samples": state.sampler.history(seconds)})


def _seconds(raw: str | None, default: int) -> int:
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        abort(400, f"seconds must be a whole number of seconds, got {raw!r}")
    if value <= 0:
        abort(400, f"seconds must be positive, got {value}")
    return value


@api.get("/api/alerts")
def alerts() -> ResponseReturnValue:
    return jsonify(_state().alerts.snapshot())


@api.get("/healthz")
def healthz() -> ResponseReturnValue:
    state = _state()
    age = state.sampler.last_sample_age()
    # Stalled: more than three ticks (at least five seconds) without a sample.
    limit = max(3 * state.config.interval, 5.0)
    body: dict[str, Any] = {"last_sample_age": None if age is None else round(age, 3)}
    if age is None:
        body.update(status="starting", error="no sample has been taken yet")
        return jsonify(body), 503
    if age > limit:
        body.update(status="stalled", error=f"no sample for {age:.1f} s")
        return jsonify(body), 503
    body["status"] = "ok"
    return jsonify(body)
