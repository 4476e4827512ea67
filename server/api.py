"""REST: JSON views of the state the Sampler keeps. Nothing here samples."""

from __future__ import annotations

import math
import time
from typing import Any

from flask import Blueprint, Response, abort, jsonify, request
from flask.typing import ResponseReturnValue

from server.csv_export import history_csv_text
from server.state import current_state as _state

api = Blueprint("api", __name__)


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
    step, samples = _history_query()
    return jsonify({"step": step, "samples": samples})


@api.get("/api/history.csv")
def history_csv() -> ResponseReturnValue:
    step, samples = _history_query()
    return Response(
        history_csv_text(samples, step),
        mimetype="text/csv",
        headers={"Content-Disposition": "attachment; filename=history.csv"},
    )


def _history_query() -> tuple[int, list[dict[str, Any]]]:
    """(step, samples) for ?seconds=N or ?start=&end=[&step=]; 400 on bad input."""
    state = _state()
    args = request.args
    now = time.time()
    if "start" in args or "end" in args:
        if "seconds" in args:
            abort(400, "give either seconds or start/end, not both")
        start = _number("start", args.get("start"), default=None)
        end = _number("end", args.get("end"), default=now)
        if start >= end:
            abort(400, "start must be before end")
        wanted = _number("step", args.get("step"), default=0.0) or None
        step = state.store.pick_step(start, wanted)
        return step, state.store.points(start, end, step)
    seconds = _seconds(args.get("seconds"), default=state.config.history_seconds)
    if "step" in args:
        abort(400, "step goes with start and end")
    if seconds <= state.config.history_seconds:
        return 1, state.sampler.history(seconds)  # the ring, in memory
    start = now - seconds
    step = state.store.pick_step(start)
    return step, state.store.points(start, now, step)


def _number(name: str, raw: str | None, default: float | None) -> float:
    if raw is None or raw == "":
        if default is None:
            abort(400, f"{name} is required")
        return default
    what = "a number of seconds" if name == "step" else "a number of epoch seconds"
    try:
        value = float(raw)
    except ValueError:
        abort(400, f"{name} must be {what}, got {raw!r}")
    if not math.isfinite(value) or value < 0:
        abort(400, f"{name} must be {what}, finite and not negative, got {raw!r}")
    return value


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
