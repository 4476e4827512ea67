"""REST: the contract's paths and answers, driven by ticks taken by hand."""

from __future__ import annotations

import base64
import hashlib
import re

from flask.testing import FlaskClient

from server.state import DashboardState
from tests.contract import check_static


def test_page_is_served_with_security_headers(client: FlaskClient, state: DashboardState) -> None:
    response = client.get("/")
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert state.static.hostname in page
    assert "/static/vendor/uplot/uPlot.iife.min.js" in page
    assert "/static/vendor/socket.io/socket.io.min.js" in page
    assert "http://" not in page and "https://" not in page  # nothing from outside
    csp = response.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "connect-src 'self'" in csp
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    # The one inline script runs only because the policy names its hash.
    inline = re.findall(r"<script>(.*?)</script>", page, re.S)
    assert len(inline) == 1 and "Intl" in inline[0]
    digest = base64.b64encode(hashlib.sha256(inline[0].encode()).digest()).decode()
    assert f"script-src 'self' 'sha256-{digest}';" in csp


def test_vendored_files_and_licences_are_served(client: FlaskClient) -> None:
    for path in (
        "vendor/uplot/uPlot.iife.min.js",
        "vendor/socket.io/socket.io.min.js",
        "app.js",
        "style.css",
    ):
        response = client.get("/static/" + path)
        assert response.status_code == 200, path
        assert len(response.data) > 1000
        response.close()
    for path in ("vendor/uplot/LICENSE", "vendor/socket.io/LICENSE"):
        response = client.get("/static/" + path)
        assert b"MIT" in response.data or b"Permission is hereby granted" in response.data
        response.close()


def test_static(client: FlaskClient, state: DashboardState) -> None:
    body = client.get("/api/static").get_json()
    assert body["hostname"] == state.static.hostname
    assert body["interval"] == 1.0
    check_static(body)


def test_metrics_is_503_before_the_first_sample(client: FlaskClient, state: DashboardState) -> None:
    response = client.get("/api/metrics")
    assert response.status_code == 503
    assert response.get_json() == {"error": "no sample has been taken yet"}
    state.sampler.tick()
    body = client.get("/api/metrics").get_json()
    assert body["seq"] == 1
    assert "processes" in body and body["cpu"]["percent"] is not None


def test_history(client: FlaskClient, state: DashboardState) -> None:
    assert client.get("/api/history").get_json() == {"step": 1, "samples": []}
    for _ in range(3):
        state.sampler.tick()
    samples = client.get("/api/history?seconds=60").get_json()["samples"]
    assert [s["seq"] for s in samples] == [1, 2, 3]
    assert all("processes" not in s for s in samples)
    assert samples == sorted(samples, key=lambda s: s["ts"])


def test_history_bad_seconds_is_400(client: FlaskClient) -> None:
    for bad in ("abc", "0", "-1", "1.5", ""):
        response = client.get(f"/api/history?seconds={bad}")
        assert response.status_code == 400, bad
        assert "seconds" in response.get_json()["error"]


def test_healthz(client: FlaskClient, state: DashboardState) -> None:
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.get_json()["status"] == "starting"
    state.sampler.tick()
    response = client.get("/healthz")
    assert response.status_code == 200
    body = response.get_json()
    assert body["status"] == "ok" and 0 <= body["last_sample_age"] < 1


def test_healthz_reports_a_stalled_sampler(client: FlaskClient, state: DashboardState) -> None:
    state.sampler.tick()
    state.sampler._last_tick_at = state.sampler._clock() - 60  # as if it stopped a minute ago
    response = client.get("/healthz")
    assert response.status_code == 503
    body = response.get_json()
    assert body["status"] == "stalled" and body["last_sample_age"] >= 60


def test_unknown_path_and_method_are_json(client: FlaskClient) -> None:
    response = client.get("/api/nope")
    assert response.status_code == 404 and "error" in response.get_json()
    response = client.post("/api/static")
    assert response.status_code == 405 and "error" in response.get_json()


def test_long_history_queries_past_the_cap_get_503_with_retry_after(client: FlaskClient) -> None:
    from server.web import api

    taken = [api._heavy.acquire(blocking=False) for _ in range(api.HEAVY_QUERIES)]
    try:
        assert all(taken)
        answer = client.get("/api/history?seconds=86400")
        assert answer.status_code == 503 and answer.headers["Retry-After"] == "2"
        assert "long history queries" in answer.get_json()["error"]
    finally:
        for _ in taken:
            api._heavy.release()
    assert client.get("/api/history?seconds=86400").status_code == 200


def test_text_answers_are_compressed_when_served_directly(client: FlaskClient) -> None:
    import gzip
    from pathlib import Path

    script = client.get("/static/app.js", headers={"Accept-Encoding": "gzip"})
    assert script.headers["Content-Encoding"] == "gzip"
    assert "Accept-Encoding" in script.headers["Vary"]
    source = (Path(__file__).parent.parent / "server" / "static" / "app.js").read_bytes()
    assert gzip.decompress(script.data) == source
    plain = client.get("/static/app.js", headers={"Accept-Encoding": "identity"})
    assert "Content-Encoding" not in plain.headers


def test_a_long_history_in_columns_is_gzipped_off_the_event_loop(
    client: FlaskClient, state: DashboardState
) -> None:
    import gzip
    import json

    for _ in range(3):
        state.sampler.tick()
    answer = client.get(
        "/api/history?seconds=86400&format=columns", headers={"Accept-Encoding": "gzip"}
    )
    assert answer.status_code == 200 and answer.headers["Content-Encoding"] == "gzip"
    body = json.loads(gzip.decompress(answer.data))
    assert body["format"] == "columns" and body["step"] == 10
