"""GET /metrics: Prometheus text that parses and carries the sampled values."""

from __future__ import annotations

from typing import Any

import psutil
import pytest
from flask.testing import FlaskClient
from prometheus_client.parser import text_string_to_metric_families

from server.state import DashboardState


def scrape(client: FlaskClient) -> dict[str, list[tuple[dict[str, str], float]]]:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.content_type.startswith("text/plain; version=")
    found: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(response.get_data(as_text=True)):
        for s in family.samples:
            found.setdefault(s.name, []).append((s.labels, s.value))
    return found


def one(found: dict[str, list[tuple[dict[str, str], float]]], name: str) -> float:
    values = found[name]
    assert len(values) == 1, values
    return values[0][1]


def test_metrics_carry_the_latest_sample(client: FlaskClient, state: DashboardState) -> None:
    state.sampler.tick()
    sample = state.sampler.tick()
    found = scrape(client)
    assert one(found, "dashboard_cpu_usage_ratio") == sample["cpu"]["percent"] / 100
    cores = found["dashboard_cpu_core_usage_ratio"]
    assert len(cores) == len(sample["cpu"]["per_core"])
    assert one(found, "node_memory_MemTotal_bytes") == sample["memory"]["total"]
    assert one(found, "node_memory_MemAvailable_bytes") == sample["memory"]["available"]
    assert one(found, "node_load1") == sample["load"][0]
    root = next(d for d in sample["disks"] if d["mount"] == "/")
    sizes = {labels["mountpoint"]: v for labels, v in found["node_filesystem_size_bytes"]}
    assert sizes["/"] == root["total"]
    assert one(found, "dashboard_network_receive_bytes_per_second") == sample["net"]["rx_bps"]
    assert one(found, "dashboard_disk_written_bytes_per_second") == sample["disk_io"]["write_bps"]
    assert len(found["dashboard_top_process_cpu_usage_ratio"]) == len(sample["processes"])
    # The sampler's own health.
    assert one(found, "dashboard_sampler_ticks_total") == 2
    assert one(found, "dashboard_sampler_errors_total") == 0
    assert 0 < one(found, "dashboard_sampler_tick_duration_seconds") < 5
    assert one(found, "dashboard_socketio_clients") == 0
    assert one(found, "dashboard_sampler_interval_seconds") == 1.0
    assert {labels["level"] for labels, _ in found["dashboard_alerts_active"]} == {
        "warning",
        "critical",
    }
    assert one(found, "process_resident_memory_bytes") > 10_000_000
    assert one(found, "node_boot_time_seconds") == state.static.boot_time


def test_each_collector_says_whether_it_reads(
    client: FlaskClient, state: DashboardState, monkeypatch: pytest.MonkeyPatch
) -> None:
    state.sampler.tick()
    found = {labels["collector"]: v for labels, v in scrape(client)["dashboard_collector_success"]}
    assert {"cpu", "memory", "disks", "net", "processes"} <= set(found)
    assert set(found.values()) == {1.0}

    def fail() -> Any:
        raise psutil.AccessDenied(pid=1, name="x")

    monkeypatch.setattr(psutil, "swap_memory", fail)
    state.sampler.tick()
    found = {labels["collector"]: v for labels, v in scrape(client)["dashboard_collector_success"]}
    assert found.pop("swap") == 0.0 and set(found.values()) == {1.0}


def test_metrics_before_the_first_sample_has_health_only(client: FlaskClient) -> None:
    found = scrape(client)
    assert "dashboard_cpu_usage_ratio" not in found
    assert one(found, "dashboard_sampler_ticks_total") == 0


def test_null_values_are_left_out(client: FlaskClient, state: DashboardState) -> None:
    sample = state.sampler.tick()
    sample["memory"] = None
    sample["cpu"]["percent"] = None
    found = scrape(client)
    assert "node_memory_MemTotal_bytes" not in found
    assert "dashboard_cpu_usage_ratio" not in found
    assert "node_load1" in found


def test_sample_carries_the_servers_own_cost(state: DashboardState) -> None:
    state.sampler.tick()
    own = state.sampler.tick()["server"]
    assert own["rss"] > 10_000_000
    assert own["cpu_percent"] is not None and own["cpu_percent"] >= 0
    assert own["tick_ms"] > 0 and own["clients"] == 0 and own["ticks"] == 1
    assert all("server" not in s for s in state.sampler.history())


def test_the_content_type_has_each_parameter_once(client: FlaskClient) -> None:
    header = client.get("/metrics").headers["Content-Type"]
    media_type, *parameters = [part.strip() for part in header.split(";")]
    names = [p.partition("=")[0].lower() for p in parameters]
    assert media_type == "text/plain"
    assert len(names) == len(set(names)), header  # a strict parser refuses repeats
    assert set(names) == {"version", "charset"}


def test_process_series_stay_bounded_as_processes_come_and_go(
    client: FlaskClient, state: DashboardState
) -> None:
    seen: set[tuple[str, tuple[tuple[str, str], ...]]] = set()
    for scrape_number in range(6):
        sample = state.sampler.tick()
        # Other processes each time, as on a busy machine: new pids, new names.
        sample["processes"] = [
            {"pid": 1000 * scrape_number + i, "name": f"job-{scrape_number}-{i}",
             "cpu_percent": 1.0, "memory_percent": 0.5}
            for i in range(5)
        ]  # fmt: skip
        for name, samples in scrape(client).items():
            if "top_process" in name:
                seen.update((name, tuple(sorted(labels.items()))) for labels, _ in samples)
    # Two families, five ranks each: the same ten series whatever ran.
    assert len(seen) == 10, sorted(seen)
    assert all(dict(labels).keys() == {"host", "rank"} for _, labels in seen)


# Kept on purpose in node_exporter's spelling, so its dashboards and rules
# work unchanged; docs/metrics.md lists them. promtool flags their camelCase.
NODE_EXPORTER_NAMES = {
    "node_memory_MemTotal_bytes",
    "node_memory_MemAvailable_bytes",
    "node_memory_SwapTotal_bytes",
}


def test_promtool_finds_nothing_but_the_node_exporter_names(
    client: FlaskClient, state: DashboardState
) -> None:
    import subprocess
    from pathlib import Path

    from testkit.system import require_binary

    promtool = require_binary("promtool")
    state.sampler.tick()
    state.sampler.tick()
    text = client.get("/metrics").get_data(as_text=True)
    check = subprocess.run(
        [promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=30
    )
    problems = [line for line in (check.stdout + check.stderr).splitlines() if line.strip()]
    flagged = {line.split()[0] for line in problems}
    assert flagged <= NODE_EXPORTER_NAMES, problems
    page = (Path(__file__).parent.parent / "docs" / "metrics.md").read_text()
    assert all(name in page for name in NODE_EXPORTER_NAMES)
