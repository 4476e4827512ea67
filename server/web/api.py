"""REST: JSON views of the state the hub keeps. Nothing here samples.

The paths without a host (/api/static, ...) mean the hub's own host, as
before the fleet; /api/hosts/<id>/... mean that host.
"""

from __future__ import annotations

import dataclasses
import gzip
import math
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import redis
from flask import Blueprint, Response, abort, jsonify, request
from flask.typing import ResponseReturnValue

from server.access.login import foreign_origin
from server.access.refused import log_refusal
from server.alerts.rules import OK
from server.alerts.silences import Refused, Silences
from server.blocking import Busy, run_blocking
from server.fleet.hosts import Host
from server.history import alert_log
from server.history.columns import FORMATS
from server.history.csv_export import history_csv_text
from server.history.store import MAX_COLUMN_POINTS
from server.sampling.containers import NAME_LENGTH as CONTAINER_NAME_LENGTH
from server.state import current_state as _state
from server.wire import compact_json, json_bytes

api = Blueprint("api", __name__)


def _host(host_id: str | None) -> Host:
    fleet = _state().fleet
    host = fleet.local if host_id is None else fleet.get(host_id)
    if host is None:
        abort(404, "no such host in this fleet")
    return host


@api.get("/api/hosts")
def hosts() -> ResponseReturnValue:
    """Every host, worst first: id, name, state, last sample age, its agent's version,
    and its tile."""
    fleet = _state().fleet
    tiles = fleet.summary()["hosts"]
    known = list(fleet.hosts.values())
    offsets = {h.id: h.clock.offset for h in known}
    agents = {h.id: h.agent_version for h in known if h is not fleet.local}
    return jsonify(
        {
            "hosts": [
                {
                    "id": t["id"],
                    "name": t["name"],
                    "state": t["state"],
                    "last_sample_age": t["age"],
                    "clock_offset": _rounded(offsets.get(t["id"]), 3),
                    # Its agent's version (null: the hub's own host, or not said yet),
                    # and whether it is older than this hub's.
                    "agent_version": agents.get(t["id"]),
                    "agent_outdated": "agent_note" in t,
                    "summary": t,
                }
                for t in tiles
            ]
        }
    )


def _rounded(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


@api.get("/api/static")
@api.get("/api/hosts/<host_id>/static")
def static(host_id: str | None = None) -> ResponseReturnValue:
    host = _host(host_id)
    if host.static is None:
        abort(503, "this host has not reported its facts yet")
    return jsonify(host.static)


@api.get("/api/metrics")
@api.get("/api/hosts/<host_id>/metrics")
def metrics(host_id: str | None = None) -> ResponseReturnValue:
    latest = _host(host_id).latest
    if latest is None:
        abort(503, "no sample has been taken yet")
    return jsonify(latest)


# Longer ranges than the ring are read from disk in batches and streamed; a
# few at once, the rest get 503: a flood of 7-day queries must not starve the 1 Hz.
HEAVY_QUERIES = 4
MAX_SECONDS = 10 * 366 * 86400
_heavy = threading.BoundedSemaphore(HEAVY_QUERIES)


@api.get("/api/history")
@api.get("/api/hosts/<host_id>/history")
def history(host_id: str | None = None) -> ResponseReturnValue:
    host = _host(host_id)
    form = request.args.get("format", "rows")
    if form not in FORMATS:
        abort(400, f"format must be one of {', '.join(FORMATS)}, got {form[:30]!r}")
    query = _history_query(host)
    if form == "columns":
        return _history_columns(host, query)
    if isinstance(query, int):
        return jsonify({"step": 1, "samples": host.history(query)})

    def body(step: int, batches: Iterator[list[dict[str, Any]]]) -> Iterator[str]:
        yield f'{{"step": {step}, "samples": ['
        first = True
        for batch in batches:
            text = run_blocking(_json_items, batch)
            if text:
                yield text if first else "," + text
                first = False
        yield "]}"

    return _stream(query, body, "application/json")


def _history_columns(host: Host, query: int | _StoreQuery) -> ResponseReturnValue:
    """The column form (server/history/columns.py): the ring's, or the store's built
    in a pool thread."""
    if isinstance(query, int):
        return jsonify(host.columns(query))
    _take_heavy()
    try:
        answer = _state().store.columns(query.start, query.end, query.step, host=query.host)
    finally:
        _heavy.release()
    if answer is None:
        abort(400, f"more than {MAX_COLUMN_POINTS} points: ask a larger step, or format=rows")
    return _json_off_loop(answer)


def _json_off_loop(answer: dict[str, Any]) -> Response:
    """A big answer encoded (orjson: 10,000 points in 5 ms, not 40) and gzipped in a
    pool thread, not on the event loop; flask-compress leaves it as it is."""
    gzipped = request.accept_encodings["gzip"] > 0

    def encode() -> bytes:
        body = json_bytes(answer)
        return gzip.compress(body, compresslevel=5) if gzipped else body

    response = Response(run_blocking(encode), mimetype="application/json")
    if gzipped:
        response.headers["Content-Encoding"] = "gzip"
        response.vary.add("Accept-Encoding")
    return response


@api.get("/api/containers/<name>/history")
@api.get("/api/hosts/<host_id>/containers/<name>/history")
def container_history(name: str, host_id: str | None = None) -> ResponseReturnValue:
    """One container's CPU and memory from the store's tiers (10 s, then 1 min
    points): `seconds`, or `start`/`end`, and `step` as for a host's history.
    A container removed keeps its history until it ages out."""
    host = _host(host_id)
    if not 0 < len(name) <= CONTAINER_NAME_LENGTH:
        abort(400, f"a container's name is 1-{CONTAINER_NAME_LENGTH} characters")
    args = request.args
    now = time.time()
    if "start" in args or "end" in args:
        start = _number("start", args.get("start"), default=None)
        end = _number("end", args.get("end"), default=now)
    else:
        start = now - _seconds(args.get("seconds"), default=3600)
        end = now
    if start >= end:
        abort(400, "start must be before end")
    step = _number("step", args.get("step"), default=0.0) or None
    _take_heavy()
    try:
        answer = _state().store.container_columns(host.id, name, start, end, step)
    finally:
        _heavy.release()
    if answer is None:
        abort(400, f"more than {MAX_COLUMN_POINTS} points: ask a larger step")
    return _json_off_loop(answer)


@api.get("/api/history.csv")
@api.get("/api/hosts/<host_id>/history.csv")
def history_csv(host_id: str | None = None) -> ResponseReturnValue:
    host = _host(host_id)
    query = _history_query(host)

    def body(step: int, batches: Iterator[list[dict[str, Any]]]) -> Iterator[str]:
        yield history_csv_text([], step)
        for batch in batches:
            yield run_blocking(history_csv_text, batch, step, False)

    headers = {"Content-Disposition": "attachment; filename=history.csv"}
    if isinstance(query, int):
        return Response(
            history_csv_text(host.history(query), 1), mimetype="text/csv", headers=headers
        )
    return _stream(query, body, "text/csv", headers)


def _json_items(samples: list[dict[str, Any]]) -> str:
    return ",".join(compact_json(s) for s in samples)


@dataclasses.dataclass
class _StoreQuery:
    host: str
    start: float
    end: float
    step: int


def _stream(
    query: _StoreQuery,
    body: Callable[[int, Iterator[list[dict[str, Any]]]], Iterator[str]],
    mimetype: str,
    headers: dict[str, str] | None = None,
) -> ResponseReturnValue:
    _take_heavy()
    store = _state().store

    def released() -> Iterator[str]:
        try:
            points = store.iter_points(query.start, query.end, query.step, host=query.host)
            yield from body(query.step, points)
        finally:
            _heavy.release()  # also when the client goes away mid-answer

    return Response(released(), mimetype=mimetype, headers=headers)


def _take_heavy() -> None:
    """One of the HEAVY_QUERIES slots, or Busy (503); the caller releases it."""
    if not _heavy.acquire(blocking=False):
        raise Busy(f"busy: {HEAVY_QUERIES} long history queries are running")


def _history_query(host: Host) -> int | _StoreQuery:
    """Seconds of the ring (in memory, 1 s apart), or a query for the store; 400 on
    bad input."""
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
        return _StoreQuery(host.id, start, end, state.store.pick_step(start, wanted))
    seconds = _seconds(args.get("seconds"), default=state.config.history_seconds)
    wanted = _number("step", args.get("step"), default=0.0) or None
    if seconds <= state.config.history_seconds and (wanted or 1) <= 1:
        return seconds  # the ring, in memory
    start = now - seconds
    return _StoreQuery(host.id, start, now, state.store.pick_step(start, wanted))


def _number(name: str, raw: str | None, default: float | None) -> float:
    if raw is None or raw == "":
        if default is None:
            abort(400, f"{name} is required")
        return default
    what = "a number of seconds" if name == "step" else "a number of epoch seconds"
    try:
        value = float(raw)
    except ValueError:
        abort(400, f"{name} must be {what}, got {raw[:30]!r}")
    if not math.isfinite(value) or not 0 <= value <= 1e11:
        abort(400, f"{name} must be {what}, finite and not negative, got {raw[:30]!r}")
    return value


def _seconds(raw: str | None, default: int) -> int:
    if raw is None:
        return default
    try:
        value = int(raw[:30])  # more digits than that is no number of seconds
    except ValueError:
        abort(400, f"seconds must be a whole number of seconds, got {raw[:30]!r}")
    if not 0 < value <= MAX_SECONDS:
        abort(400, f"seconds must be from 1 to {MAX_SECONDS}, got {raw[:30]!r}")
    return value


@api.get("/api/alerts")
@api.get("/api/hosts/<host_id>/alerts")
def alerts(host_id: str | None = None) -> ResponseReturnValue:
    host = _host(host_id)
    snapshot: dict[str, Any] = dict(host.alerts.snapshot())
    silences = _state().silences
    if silences is not None:  # `acknowledged` (this host's) and `silences` (every one)
        snapshot.update(silences.snapshot(host.id))
    return jsonify(snapshot)


@api.get("/api/alerts/history")
@api.get("/api/hosts/<host_id>/alerts/history")
def alert_history(host_id: str | None = None) -> ResponseReturnValue:
    """A host's alert events (history/alert_log.py), newest first: `start`, `end` (epoch
    seconds; the last 24 h by default), `rule` (a rule or its family), `event`,
    `format` json or csv. At most 5,000 events; one of the heavy queries' slots."""
    host = _host(host_id)
    args = request.args
    end = _number("end", args.get("end"), default=time.time())
    start = _number("start", args.get("start"), default=end - 86400)
    if start >= end:
        abort(400, "start must be before end")
    rule, event, form = args.get("rule", ""), args.get("event", ""), args.get("format", "json")
    if len(rule) > 200:
        abort(400, "rule must be at most 200 characters")
    if event and event not in alert_log.EVENTS:
        abort(400, f"event must be one of {', '.join(alert_log.EVENTS)}, got {event[:30]!r}")
    if form not in ("json", "csv"):
        abort(400, f"format must be json or csv, got {form[:30]!r}")
    _take_heavy()
    try:
        events = _state().store.alert_events(host.id, start, end, rule, event)
    finally:
        _heavy.release()
    if form == "csv":
        headers = {"Content-Disposition": "attachment; filename=alert-history.csv"}
        return Response(alert_log.as_csv(events), mimetype="text/csv", headers=headers)
    return jsonify({"host": host.id, "start": start, "end": end, "events": events,
                    "complete": len(events) < alert_log.MAX_ANSWER})  # fmt: skip


# ---- acknowledgements and silences (server/alerts/silences.py): state-changing calls,
# behind the login as every path is, and refused from a page of another origin as the
# login and logout are; their body JSON, which a cross-site form cannot send.

MAX_BODY = 16 * 1024


def _silences() -> Silences:
    silences = _state().silences
    if silences is None:
        abort(503, "acknowledgements and silences are not kept by this process")
    return silences


def _made(change: Callable[[], Any], status: int) -> ResponseReturnValue:
    """A change: made here, or on a web process passed to the core (202: the core makes
    it; every page hears of it through the `silences` event)."""
    forwarded = _state().config.role == "web"
    try:
        answer = change()
    except Refused as exc:
        abort(400, str(exc))
    except redis.RedisError as exc:
        abort(503, f"the message queue cannot take the change to the core now: {exc}")
    return jsonify(answer), 202 if forwarded else status


def _changing() -> tuple[Silences, str, dict[str, Any]]:
    """The store, the user making a change, and the request's JSON object; else 4xx."""
    if foreign_origin():
        log_refusal(request.remote_addr or "?", f"{request.method} {request.path!r} from "
                    f"another origin {request.headers.get('Origin')!r}")  # fmt: skip
        abort(403, "cross-origin request refused")
    silences = _silences()
    user = _state().access.login.user(request) or "anonymous"
    if request.method == "DELETE":
        return silences, user, {}
    if (request.content_length or 0) > MAX_BODY:
        abort(413, f"the body must be at most {MAX_BODY} bytes")
    body = request.get_json(silent=True) if request.is_json else None
    if not isinstance(body, dict):
        abort(400, "the body must be a JSON object (Content-Type: application/json)")
    return silences, user, body


@api.post("/api/alerts/ack")
def acknowledge() -> ResponseReturnValue:
    """{host (none: the hub's own), rule}: a firing alert acknowledged by the user."""
    silences, user, body = _changing()
    host_id, rule = body.get("host"), body.get("rule")
    if host_id is not None and not isinstance(host_id, str):
        abort(400, "host must be a host id")
    if not isinstance(rule, str) or not 0 < len(rule) <= 200:
        abort(400, "rule must be the name of a firing alert")
    host = _state().fleet.local if host_id is None else _state().fleet.get(host_id[:64])
    if host is None:
        abort(404, "no such host in this fleet")
    firing = host.alerts.active.get(rule)
    if firing is None or firing.get("level") == OK:
        abort(404, f"no alert {rule[:60]!r} is firing on host {host.id}")
    return _made(lambda: silences.acknowledge(host.id, rule, user), 200)


@api.get("/api/silences")
def silences_list() -> ResponseReturnValue:
    return jsonify({"silences": _silences().active()})


@api.post("/api/silences")
def silence_add() -> ResponseReturnValue:
    """{hosts?, rules?, kinds?, minutes | ends_at, reason}: a silence by the user."""
    silences, user, body = _changing()
    return _made(lambda: silences.add(body, user), 201)


@api.delete("/api/silences/<silence_id>")
def silence_delete(silence_id: str) -> ResponseReturnValue:
    silences, user, _body = _changing()
    wanted = silence_id[:64]

    def delete() -> dict[str, str]:
        if not silences.delete(wanted, user):
            abort(404, "no such silence (it may have ended)")
        return {"deleted": wanted}

    return _made(delete, 200)


@api.get("/healthz")
def healthz() -> ResponseReturnValue:
    state = _state()
    age = state.fleet.local.last_sample_age()  # a web process: the core's latest it relayed
    # Stalled: more than three ticks (at least five seconds) without a sample.
    limit = max(3 * state.config.interval, 5.0)
    body: dict[str, Any] = {"last_sample_age": None if age is None else round(age, 3)}
    if age is None:
        body.update(status="starting", error="no sample has been taken yet")
        return jsonify(body), 503
    if age > limit:
        body.update(status="stalled", error=f"no sample for {age:.1f} s")
        return jsonify(body), 503
    # Degraded: the page goes on from memory, but something is not kept. 200:
    # the process serves; the reason says what an operator must fix.
    problems = state.fleet.degraded()
    body["status"] = "degraded" if problems else "ok"
    if problems:
        body["degraded"] = problems
    return jsonify(body)
