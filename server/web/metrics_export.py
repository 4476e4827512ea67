"""GET /metrics: the latest sample and the sampler's health for Prometheus.

Names follow node_exporter where the value is the same thing (node_load1,
node_memory_MemTotal_bytes, node_filesystem_size_bytes, ...); the rest are
dashboard_*, with units in the names. Percentages become 0-1 ratios, as
Prometheus prefers. Rates are exported as measured over the last tick.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import Any

from flask import Blueprint, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

from server.alerts.rules import CRITICAL, WARNING
from server.series import PERCENT, SERIES, Series, lookup
from server.state import DashboardState, current_state

metrics_export = Blueprint("metrics_export", __name__)
log = logging.getLogger("dashboard.metrics")


def _ratio(percent: float | None) -> float | None:
    return None if percent is None else percent / 100.0


class _Families:
    """Collects metric families, leaving out values that are null."""

    def __init__(self) -> None:
        self.families: dict[str, GaugeMetricFamily | CounterMetricFamily] = {}
        self.base: dict[str, str] = {}  # labels on every metric added (the host)

    def gauge(
        self, name: str, doc: str, value: float | None, labels: dict[str, str] | None = None
    ) -> None:
        self._add(GaugeMetricFamily, name, doc, value, labels or {})

    def counter(
        self, name: str, doc: str, value: float | None, labels: dict[str, str] | None = None
    ) -> None:
        self._add(CounterMetricFamily, name, doc, value, labels or {})

    def merge(self, other: _Families) -> None:
        """Another set's samples, family by family."""
        for name, family in other.families.items():
            mine = self.families.get(name)
            if mine is None:
                self.families[name] = family
            else:
                mine.samples.extend(family.samples)

    def _add(
        self,
        kind: type[GaugeMetricFamily] | type[CounterMetricFamily],
        name: str,
        doc: str,
        value: float | None,
        labels: dict[str, str],
    ) -> None:
        labels = {**self.base, **{k: str(v or "") for k, v in labels.items()}}
        family = self.families.get(name)
        if family is None:
            family = self.families[name] = kind(name, doc, labels=sorted(labels))
        if value is not None:
            family.add_metric([labels[k] for k in sorted(labels)], float(value))


def _exported(series: Series, value: Any) -> float | None:
    return _ratio(value) if series.unit == PERCENT else value


def _sample_families(f: _Families, sample: dict[str, Any]) -> None:
    g = f.gauge
    for series in SERIES:  # the declared series, scalar ones first
        if series.prometheus and not series.per_disk:
            g(series.prometheus, series.description, _exported(series, series.value(sample)))
    cpu = sample.get("cpu") or {}
    for core, percent in enumerate(cpu.get("per_core") or []):
        g(
            "dashboard_cpu_core_usage_ratio",
            "CPU busy share per core, last tick.",
            _ratio(percent),
            {"core": str(core)},
        )
    memory = sample.get("memory") or {}
    g("node_memory_MemTotal_bytes", "Memory size in bytes.", memory.get("total"))
    g("node_memory_MemAvailable_bytes", "Memory available in bytes.", memory.get("available"))
    swap = sample.get("swap") or {}
    g("node_memory_SwapTotal_bytes", "Swap size in bytes.", swap.get("total"))
    g("dashboard_swap_used_bytes", "Swap used in bytes.", swap.get("used"))
    for disk in sample.get("disks") or []:
        labels = {"mountpoint": disk["mount"], "device": disk["device"], "fstype": disk["fstype"]}
        g("node_filesystem_size_bytes", "Filesystem size in bytes.", disk.get("total"), labels)
        g(
            "node_filesystem_avail_bytes",
            "Filesystem space available to non-root users in bytes.",
            disk.get("free"),
            labels,
        )
        g(
            "dashboard_filesystem_used_bytes",
            "Filesystem space used in bytes.",
            disk.get("used"),
            labels,
        )
        for series in SERIES:  # declared for "/", exported for every disk
            if series.prometheus and series.per_disk:
                assert series.path is not None
                value = lookup(sample, ("disks", disk["mount"], *series.path[2:]))
                g(series.prometheus, series.description, _exported(series, value), labels)
    load = sample.get("load") or [None, None, None]
    for minutes, value in zip((5, 15), load[1:], strict=True):
        g(f"node_load{minutes}", f"{minutes}m load average.", value)
    g("dashboard_uptime_seconds", "Seconds since boot.", sample.get("uptime"))
    # Keyed by rank alone: with pid and name as labels every new process
    # would make new series for ever (Prometheus' cardinality trap). Names are
    # on the page and in /api/metrics; per-process series are process-exporter's.
    for rank, proc in enumerate(sample.get("processes") or [], start=1):
        labels = {"rank": str(rank)}
        g(
            "dashboard_top_process_cpu_usage_ratio",
            "CPU share of the busiest processes.",
            _ratio(proc.get("cpu_percent")),
            labels,
        )
        g(
            "dashboard_top_process_memory_usage_ratio",
            "Memory share of the busiest processes.",
            _ratio(proc.get("memory_percent")),
            labels,
        )

    _container_families(f, sample.get("containers"))
    _unit_families(f, sample.get("services"))
    _sensor_families(f, sample.get("sensors"))
    _gpu_families(f, sample.get("gpus"))
    _disk_health_families(f, sample.get("disk_health"))


# Per container: labelled by name (and Compose project), never by id, which churns.
CONTAINER_GAUGES = (
    ("dashboard_container_cpu_usage_ratio", "CPU share of the machine, last tick.", "cpu_percent"),
    ("dashboard_container_memory_used_bytes", "Memory in use, less droppable cache.",
     "memory_used"),
    ("dashboard_container_memory_limit_bytes", "Memory limit of its own.", "memory_limit"),
    ("dashboard_container_pids", "Processes and threads in it.", "pids"),
    ("dashboard_container_network_receive_bytes_per_second", "Bytes received a second.",
     "rx_bps"),
    ("dashboard_container_network_transmit_bytes_per_second", "Bytes sent a second.", "tx_bps"),
    ("dashboard_container_disk_read_bytes_per_second", "Bytes read a second.", "read_bps"),
    ("dashboard_container_disk_written_bytes_per_second", "Bytes written a second.",
     "write_bps"),
    ("dashboard_container_restarts", "Restarts counted by the engine.", "restarts"),
)  # fmt: skip


def _container_families(f: _Families, containers: Any) -> None:
    if not isinstance(containers, dict):
        return
    for state in ("running", "unhealthy", "stopped"):
        f.gauge("dashboard_containers", "Containers of the host by state.",
                containers.get(state), {"state": state})  # fmt: skip
    for item in containers.get("items") or []:
        labels = {"container": item["name"], "project": item.get("project") or ""}
        for name, doc, key in CONTAINER_GAUGES:
            value = item.get(key)
            f.gauge(name, doc, _ratio(value) if key == "cpu_percent" else value, labels)
        f.gauge("dashboard_container_running", "1 while it runs.",
                float(item.get("state") == "running"), labels)  # fmt: skip
        if item.get("health") is not None:
            f.gauge("dashboard_container_healthy", "1 while its health check passes.",
                    float(item["health"] == "healthy"), labels)  # fmt: skip
        f.gauge("dashboard_container_exit_code", "Its last exit code.", item.get("exit_code"),
                labels)  # fmt: skip


# systemd's units (server/sampling/services.py): the counts by state, and per unit a
# sample lists (at most 100: those not ok, and those systemd restarted) labelled by its
# name, in systemd's own alphabet.
UNIT_STATES = ("failed", "restarting", "activating", "ok")


def _unit_families(f: _Families, services: Any) -> None:
    if not isinstance(services, dict):
        return
    for state in UNIT_STATES:
        f.gauge("dashboard_systemd_units", "systemd's units by state (ok: all the others).",
                services.get(state), {"state": state})  # fmt: skip
    seen: set[str] = set()
    for item in services.get("units") or []:
        if item["name"] in seen:
            continue  # one series a unit, whatever an agent sends
        seen.add(item["name"])
        labels = {"unit": item["name"]}
        f.gauge("dashboard_systemd_unit_failed", "1 while the unit has failed.",
                float(item.get("state") == "failed"), labels)  # fmt: skip
        f.counter("dashboard_systemd_unit_restarts", "Times systemd restarted the unit since "
                  "it was last started by hand (NRestarts).", item.get("restarts"),
                  labels)  # fmt: skip


# Per sensor: labelled by its chip and label (unique on a host, at most 32 + 16 of them).
TEMPERATURE_GAUGES = (
    ("dashboard_sensor_temperature_celsius", "Temperature of each sensor.", "current"),
    ("dashboard_sensor_temperature_high_celsius", "The sensor's own high level, where it "
     "gives one.", "high"),
    ("dashboard_sensor_temperature_critical_celsius", "The sensor's own critical level, "
     "where it gives one.", "critical"),
)  # fmt: skip


def _sensor_families(f: _Families, sensors: Any) -> None:
    if not isinstance(sensors, dict):
        return
    for item in sensors.get("temperatures") or []:
        labels = {"sensor": item["sensor"], "label": item["label"]}
        for name, doc, key in TEMPERATURE_GAUGES:
            f.gauge(name, doc, item.get(key), labels)
    for item in sensors.get("fans") or []:
        f.gauge("dashboard_fan_rpm", "Fan speed, revolutions a minute.", item.get("rpm"),
                {"sensor": item["sensor"], "label": item["label"]})  # fmt: skip
    battery = sensors.get("battery")
    if isinstance(battery, dict):
        f.gauge("dashboard_battery_ratio", "Battery charge, 0-1.", _ratio(battery.get("percent")))
        plugged = battery.get("plugged")
        f.gauge("dashboard_battery_plugged", "1 while on mains power.",
                None if plugged is None else float(plugged))  # fmt: skip
        f.gauge("dashboard_battery_seconds_left", "Seconds of charge left, on battery.",
                battery.get("seconds_left"))  # fmt: skip


# Per GPU: labelled by its index and name (at most 16).
GPU_GAUGES = (
    ("dashboard_gpu_memory_used_bytes", "GPU memory in use.", "memory_used"),
    ("dashboard_gpu_memory_total_bytes", "GPU memory size.", "memory_total"),
    ("dashboard_gpu_temperature_celsius", "GPU temperature.", "temperature"),
    ("dashboard_gpu_power_watts", "Power the GPU draws.", "power"),
)


def _gpu_families(f: _Families, gpus: Any) -> None:
    for item in gpus if isinstance(gpus, list) else []:
        labels = {"gpu": str(item["index"]), "name": item["name"]}
        f.gauge("dashboard_gpu_utilization_ratio", "Share of time the GPU was busy, 0-1.",
                _ratio(item.get("utilization_percent")), labels)  # fmt: skip
        for name, doc, key in GPU_GAUGES:
            f.gauge(name, doc, item.get(key), labels)
        suspended = item.get("suspended")
        f.gauge("dashboard_gpu_suspended", "1 while the kernel has put the GPU to sleep.",
                None if suspended is None else float(suspended), labels)  # fmt: skip


# Per drive (server/sampling/smart.py): labelled by its device and model (at most 32
# drives), never by its serial number, which would name the physical drive.
DISK_HEALTH_GAUGES = (
    ("dashboard_disk_temperature_celsius", "Drive temperature, as S.M.A.R.T. gives it.",
     "temperature"),
    ("dashboard_disk_reallocated_sectors", "Sectors the drive has reallocated (ATA attribute "
     "5; SCSI's grown defect list).", "reallocated"),
    ("dashboard_disk_pending_sectors", "Sectors waiting to be reallocated (ATA attribute 197).",
     "pending"),
    ("dashboard_disk_uncorrectable_sectors", "Sectors found uncorrectable offline (ATA "
     "attribute 198).", "uncorrectable"),
    ("dashboard_disk_media_errors", "Unrecovered data integrity errors (NVMe).",
     "media_errors"),
)  # fmt: skip


def _disk_health_families(f: _Families, drives: Any) -> None:
    for item in drives if isinstance(drives, list) else []:
        labels = {"device": item["device"], "model": item.get("model") or ""}
        supported = item.get("supported")
        f.gauge("dashboard_disk_smart_supported", "1 where the drive gives S.M.A.R.T. figures.",
                None if supported is None else float(supported), labels)  # fmt: skip
        health = item.get("health")
        f.gauge("dashboard_disk_smart_healthy", "1 while the drive's overall S.M.A.R.T. "
                "assessment passes, 0 once it fails.",
                None if health is None else float(health == "passed"), labels)  # fmt: skip
        for name, doc, key in DISK_HEALTH_GAUGES:
            f.gauge(name, doc, item.get(key), labels)
        f.gauge("dashboard_disk_wear_ratio", "Share of the drive's rated endurance used "
                "(NVMe percentage used; may pass 1).", _ratio(item.get("wear_percent")),
                labels)  # fmt: skip
        hours = item.get("power_on_hours")
        f.gauge("dashboard_disk_power_on_seconds", "Time the drive has been powered on.",
                None if hours is None else hours * 3600, labels)  # fmt: skip


class DashboardCollector(Collector):
    """Reads the state the Sampler keeps, at scrape time; never samples."""

    def __init__(self, state: DashboardState) -> None:
        self.state = state

    def collect(self) -> Iterator[Metric]:
        state = self.state
        sampler = state.sampler
        samples = _Families()
        skipped: list[str] = []
        for host in list(state.fleet.hosts.values()):
            latest = host.latest
            samples.base = {"host": host.id}
            samples.gauge(
                "dashboard_host_state",
                "1 for the state each host of the fleet is in.",
                1,
                {"state": host.state},
            )
            samples.gauge(
                "dashboard_host_clock_offset_seconds",
                "The host's clock minus the hub's, measured over its link (agents only).",
                host.clock.offset,
            )
            if latest is None:
                continue
            # One host's sample is read into a scratch set first: should it fail
            # (a shape the checks missed), only that host's families are left out.
            own = _Families()
            own.base = samples.base
            try:
                _sample_families(own, latest)
            except Exception:
                skipped.append(host.id)
                continue
            samples.merge(own)
        yield from samples.families.values()
        if skipped:
            log.warning("/metrics left out hosts whose latest sample it could not read: %s",
                        ", ".join(skipped[:10]))  # fmt: skip
        f = _Families()
        f.gauge("node_boot_time_seconds", "Boot time, epoch seconds.", state.static.boot_time)
        f.gauge(
            "dashboard_build_info",
            "Version and host.",
            1,
            {"version": state.static.version, "hostname": state.static.hostname},
        )
        f.counter("dashboard_sampler_ticks", "Ticks taken since start.", sampler.ticks)
        f.counter("dashboard_sampler_errors", "Ticks that failed since start.", sampler.errors)
        f.gauge(
            "dashboard_sampler_tick_duration_seconds",
            "Duration of the last tick: sample, encode and send.",
            sampler.last_tick_seconds,
        )
        f.gauge(
            "dashboard_sampler_last_sample_age_seconds",
            "Seconds since the last sample.",
            sampler.last_sample_age(),
        )
        f.gauge("dashboard_sampler_interval_seconds", "Seconds between samples.", sampler.interval)
        for collector, success in _collector_success(state).items():
            f.gauge(
                "dashboard_collector_success",
                "1 while the collector reads this host, 0 while it cannot (see the log).",
                float(success),
                {"collector": collector},
            )
        f.gauge("dashboard_socketio_clients", "Connected Socket.IO clients.", state.clients)
        levels = [a["level"] for a in state.alerts.active.values()]
        for level in (WARNING, CRITICAL):
            f.gauge(
                "dashboard_alerts_active",
                "Active alerts by level.",
                levels.count(level),
                {"level": level},
            )
        store = state.store
        f.gauge(
            "dashboard_history_store_writable",
            "1 while the history store commits, 0 while the disk refuses (see the log).",
            None if state.config.role == "web" else float(store.failure is None),
        )
        f.counter(
            "dashboard_history_store_write_failures",
            "Commits that failed (disk full, I/O error, read-only, locked, a bug).",
            store.write_failures,
        )
        f.gauge("dashboard_history_store_pending_samples", "Samples not yet committed.",
                store.pending)  # fmt: skip
        f.counter("dashboard_history_store_dropped_samples",
                  "Samples given up: past the memory bound while the disk refused, or unstorable.",
                  store.dropped)  # fmt: skip
        f.counter("dashboard_alert_history_dropped_events",
                  "Alert history events given up: past the memory bound while the disk refused.",
                  store.alert_log.dropped)  # fmt: skip
        for name, (at, _allowed) in state.loops().items():
            f.gauge(
                "dashboard_loop_last_run_age_seconds",
                "Seconds since each background loop last went round.",
                None if at is None else time.monotonic() - at,
                {"loop": name},
            )
        for (host_id, reason), count in sorted(state.link.refused.items()):
            f.counter(
                "dashboard_agent_batches_refused",
                "Agents' batches refused, by host and reason.",
                count,
                {"host": host_id, "reason": reason},
            )
        for outcome, count in state.webhooks.stats().items():
            f.counter(
                "dashboard_webhook_deliveries",
                "Webhook deliveries by outcome.",
                count,
                {"outcome": outcome},
            )
        _notify_families(f, state)
        yield from f.families.values()


def _notify_families(f: _Families, state: DashboardState) -> None:
    """Firings held back, and each [notify.NAME] channel: its messages by outcome, and
    whether it delivers."""
    if state.notifications is None:
        return
    f.counter("dashboard_notify_held",
              "Firings held back from the channels: by their host's host_down, a silence, "
              "a maintenance window or quiet hours.", state.notifications.inhibited)  # fmt: skip
    for channel, stats in state.notifications.stats().items():
        for outcome in ("delivered", "failed", "dropped"):
            f.counter(
                "dashboard_notify_messages",
                "Messages to each notification channel, by outcome.",
                stats[outcome],
                {"channel": channel, "outcome": outcome},
            )
        f.gauge(
            "dashboard_notify_channel_up",
            "1 while the channel delivers, 0 from a message it failed to the next it sends.",
            stats["up"],
            {"channel": channel},
        )


def _collector_success(state: DashboardState) -> dict[str, bool]:
    """This host's collectors' success flags (DynamicData.collector_success()); none on a
    web process, which does not sample."""
    read = getattr(state.sampler.source, "collector_success", None)  # tests' sources lack it
    if state.config.role == "web" or read is None:
        return {}
    found: dict[str, bool] = read()
    return found


def build_registry(state: DashboardState) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(DashboardCollector(state))
    # process_cpu_seconds_total, process_resident_memory_bytes, ... of this server.
    ProcessCollector(registry=registry)
    return registry


@metrics_export.get("/metrics")
def metrics() -> Response:
    # content_type, not mimetype: Flask would add a second charset to it.
    return Response(generate_latest(current_state().registry), content_type=CONTENT_TYPE_LATEST)
