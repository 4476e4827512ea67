"""`make bench`: our cost against Glances and psutil, fan-out, connect cost, store.

Prints a table (figure, median, min-max over the runs, target) and writes
the figures to bench/results/<time>.json. Everything runs on loopback and
each step is bounded in time. `--quick` shortens every step, for a trial.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import platform
import random
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
import requests

from bench import glances
from bench.cost import ProcessMeter, psutil_floor_tick, sampler_tick
from server.app import host_id_of
from server.data import DynamicData
from server.fleet.tokens import token_hash
from server.history.ring import history_view
from server.history.store import HistoryStore
from testkit.serverproc import ROOT, ServerProcess
from testkit.sioclient import RecordingClient, open_socket
from testkit.synthetic import fill, like_this_host

RESULTS = ROOT / "bench" / "results"
Row = dict[str, Any]


def runs(count: int, measure: Callable[[], float]) -> list[float]:
    return [measure() for _ in range(count)]


def summary(values: list[float]) -> dict[str, float]:
    return {
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
        "runs": len(values),
    }


ACK_BEFORE = "5f95a77"  # the last commit that answered a batch on arrival


class Bench:
    def __init__(
        self, quick: bool, workdir: Path, skip_glances: bool, baseline: str = "16fa3cf"
    ) -> None:
        self.baseline = baseline
        self.quick = quick
        self.workdir = workdir
        self.skip_glances = skip_glances
        self.rows: list[Row] = []
        # A CPU reading is in 10 ms ticks: 30 s make one tick 0.03 % (of ~0.25 %).
        self.idle_seconds = 30.0 if quick else 60.0
        self.repeat = 3

    def add(
        self,
        section: str,
        figure: str,
        values: list[float],
        unit: str,
        target: str = "",
        extra: dict[str, Any] | None = None,
    ) -> Row:
        row = {
            "section": section,
            "figure": figure,
            "unit": unit,
            "target": target,
            **summary(values),
            **(extra or {}),
        }
        self.rows.append(row)
        print(
            f"  {figure:<55} {fmt(row['median'])} {unit} "
            f"[{fmt(row['min'])}-{fmt(row['max'])}] {target}",
            flush=True,
        )
        return row

    def tree_at(self, revision: str, name: str) -> Path:
        """This repository as it was at `revision`, unpacked in the work folder: the peer
        a figure is measured against in the same run."""
        tree = self.workdir / name
        tree.mkdir()
        archive = subprocess.run(
            ["git", "archive", revision], cwd=ROOT, capture_output=True, check=True
        ).stdout
        subprocess.run(["tar", "x"], cwd=tree, input=archive, check=True)
        return tree

    def server(self, *args: str, data_dir: Path | None = None) -> ServerProcess:
        logs = Path(tempfile.mkdtemp(dir=self.workdir)) / "logs"
        proc = ServerProcess(logs, *args)
        if data_dir is not None:
            proc.args += ["--data-dir", str(data_dir)]
        return proc.start()

    # 12. containers
    def containers_cost(self) -> None:
        """The server's cost with 0, 20 and 100 running containers on a dockerd of its own,
        and Glances' (its containers plugin, docker-py) on the same containers."""
        print("12. Containers: the sampler's cost as containers run", flush=True)
        from testkit.docker import IMAGE, Docker

        tools = [shutil.which(n) or f"/usr/sbin/{n}" for n in ("dockerd", "docker", "busybox")]
        docker = Docker(*tools).start()
        glances_binary = None
        if not self.skip_glances:
            glances_binary = glances.install(ROOT / "bench" / ".glances-venv", "web,containers")
        ours: dict[int, list[tuple[float, float]]] = {}
        try:
            running = 0
            for count in (0, 20, 50, 100):
                while running < count:
                    docker.run(f"idle-{running}", IMAGE, "sleep", "1000000")
                    running += 1
                if count == 50:  # the page's budgets with a full Containers panel
                    self.page_with_containers(docker.socket, count)
                    continue
                # 0 and 100 make the figure "added by 100 containers", a difference of
                # two small numbers: each the median of `repeat` windows, not one.
                windows = self.repeat if count in (0, 100) else 1
                server = self.server("--containers", docker.socket)
                try:
                    time.sleep(5)  # the list read, the first ticks
                    meter = ProcessMeter(server.proc.pid)  # type: ignore[union-attr]
                    seconds = self.idle_seconds / 2 if windows > 1 else self.idle_seconds
                    ours[count] = [meter.measure(seconds) for _ in range(windows)]
                finally:
                    server.stop()
                self.add("containers", f"server CPU, {count} containers",
                         [c for c, _ in ours[count]], "%")  # fmt: skip
                self.add("containers", f"server RSS, {count} containers",
                         [r for _, r in ours[count]], "MiB")  # fmt: skip
                if glances_binary is not None:
                    engine = {"DOCKER_HOST": f"unix://{docker.socket}"}
                    cpu, rss, _size = glances.measure(glances_binary, self.idle_seconds, engine)
                    self.add("containers", f"Glances -w CPU, {count} containers", [cpu], "%")
                    self.add("containers", f"Glances -w RSS, {count} containers", [rss], "MiB")
                    if count:
                        mine = statistics.median(c for c, _ in ours[count])
                        self.add("containers", f"ratio CPU ours / Glances, {count} containers",
                                 [mine / cpu], "x", "target <= 0.25")  # fmt: skip
            added = statistics.median(c for c, _ in ours[100]) - statistics.median(
                c for c, _ in ours[0]
            )
            self.add("containers", "CPU added by 100 containers (% of one core)",
                     [added], "%", "target <= 0.5")  # fmt: skip
            cpu, rss = self.agent_with_containers(docker.socket)
            self.add("containers", "agent CPU, 100 containers", [cpu], "%")
            self.add("containers", "agent RSS, 100 containers", [rss], "MiB", "target <= 40 MiB")
        finally:
            docker.stop()

    def page_with_containers(self, socket_path: str, count: int) -> None:
        """Navigation to full charts, and each live update's main-thread time, with
        `count` containers in the page's panel (the same budgets as section 5), each load
        after one of the same page without containers (`containers = "off"`): the ratio
        of the two is the cost of the panel, whatever the machine's pace that day."""
        data = self.full_history(f"containers-page-{count}")
        bare_data = self.full_history("containers-page-none")
        server = self.server("--async-mode", "eventlet", "--containers", socket_path,
                             data_dir=data)  # fmt: skip
        bare = self.server("--async-mode", "eventlet", "--containers", "off", data_dir=bare_data)
        try:
            time.sleep(3)  # the list read: the panel full from the first render
            name, without = f"page with {count} containers", "page without containers"
            times = self.charts_full_ms(server.url, "containers", name, {without: bare.url})
            page, bare_page = times.get(name), times.get(without)
            if page and bare_page:
                self.add("containers", f"{name}: navigation to full charts", page, "ms",
                         "target <= 150 ms")  # fmt: skip
                self.add("containers", f"{without}: navigation to full charts", bare_page,
                         "ms", "target <= 150 ms")  # fmt: skip
                self.add("containers", f"ratio page load {count} containers / none",
                         [statistics.median(page) / statistics.median(bare_page)], "x",
                         "target <= 1.15")  # fmt: skip
        finally:
            server.stop()
            bare.stop()

    def agent_with_containers(self, socket_path: str) -> tuple[float, float]:
        """A real agent reading the containers at `socket_path`, reporting to a hub."""
        from server.fleet.tokens import AgentTokens

        data = Path(tempfile.mkdtemp(dir=self.workdir)) / "data"
        token = AgentTokens(str(data)).add("bench-agent")
        hub = self.server(data_dir=data)
        logs = Path(tempfile.mkdtemp(dir=self.workdir))
        agent = subprocess.Popen(
            [sys.executable, "-m", "server", "agent", "--hub-url", hub.url, "--containers",
             socket_path, "--log-dir", str(logs), "--data-dir", str(logs)],
            cwd=ROOT, env={**os.environ, "DASHBOARD_HUB_TOKEN": token},
        )  # fmt: skip
        try:
            time.sleep(5)
            return ProcessMeter(agent.pid).measure(self.idle_seconds)
        finally:
            agent.terminate()
            agent.wait(10)
            hub.stop()

    # 1. sampler cost
    def sampler_cost(self) -> None:
        print("1. Sampler cost (CPU time per tick)", flush=True)
        ticks = 100 if self.quick else 300
        ours = runs(self.repeat, lambda: sampler_tick(ticks))
        floor = runs(self.repeat, lambda: psutil_floor_tick(ticks))
        self.add(
            "sampler", "full sample + one JSON encode, per tick", [v * 1e6 for v in ours], "µs"
        )
        self.add("sampler", "as % of one core at 1 Hz", [v * 100 for v in ours], "%")
        self.add(
            "sampler", "psutil floor (same calls, bare), per tick", [v * 1e6 for v in floor], "µs"
        )
        self.add(
            "sampler",
            "ratio ours / psutil floor",
            [a / b for a, b in zip(ours, floor, strict=True)],
            "x",
        )

    # 1b. what the hostile-LAN protections cost at idle, against the code before them
    def protections_cost(self) -> None:
        print(
            f"1b. Protections: idle CPU over {self.idle_seconds:.0f} s, 1 logged-in page, "
            f"this tree against {self.baseline}",
            flush=True,
        )
        import base64

        from werkzeug.security import generate_password_hash

        old = self.tree_at(self.baseline, "baseline")
        password = "bench password 1"
        config = self.workdir / "protected.toml"
        config.write_text(f'password_hash = "{generate_password_hash(password)}"\n')
        auth = "Basic " + base64.b64encode(f"ops:{password}".encode()).decode()
        cpu: dict[str, list[float]] = {"old": [], "new": []}
        for _ in range(self.repeat):
            for name, tree in (("old", old), ("new", ROOT)):
                logs = Path(tempfile.mkdtemp(dir=self.workdir)) / "logs"
                server = ServerProcess(logs, "--config", str(config), cwd=tree).start()
                client = RecordingClient()
                try:
                    client.connect(server.url, headers={"Authorization": auth})
                    # A scraper too: /metrics with Basic every 5 s, as Prometheus would.
                    meter = ProcessMeter(server.proc.pid)  # type: ignore[union-attr]
                    meter.start()
                    ends = time.monotonic() + self.idle_seconds
                    while time.monotonic() < ends:
                        requests.get(
                            server.url + "/metrics", headers={"Authorization": auth}, timeout=5
                        )
                        time.sleep(5)
                    cpu[name].append(meter.stop()[0])
                finally:
                    client.close()
                    server.stop()
        self.add("protections", f"server CPU before ({self.baseline})", cpu["old"], "%")
        self.add("protections", "server CPU with the protections", cpu["new"], "%")
        self.add(
            "protections",
            "ratio with / before",
            [a / b for a, b in zip(cpu["new"], cpu["old"], strict=True)],
            "x",
            "target <= 1 (within today's CPU)",
        )

    # 2 and 3. idle cost and bytes per update, against Glances
    def idle_cost(self) -> None:
        print(f"2. Idle cost over {self.idle_seconds:.0f} s at 1 Hz", flush=True)
        results: dict[str, list[tuple[float, float]]] = {"0": [], "1": [], "glances": []}
        for _ in range(self.repeat):
            server = self.server("--async-mode", "eventlet")
            try:
                meter = ProcessMeter(server.proc.pid)  # type: ignore[union-attr]
                results["0"].append(meter.measure(self.idle_seconds))
                client = RecordingClient()
                client.connect(server.url)
                try:
                    results["1"].append(meter.measure(self.idle_seconds))
                finally:
                    client.close()
            finally:
                server.stop()
        self.add("idle", "server CPU, 0 clients", [c for c, _ in results["0"]], "%")
        self.add("idle", "server RSS, 0 clients", [r for _, r in results["0"]], "MiB")
        self.add("idle", "server CPU, 1 client", [c for c, _ in results["1"]], "%")
        self.add("idle", "server RSS, 1 client", [r for _, r in results["1"]], "MiB")
        frame = self.frame_bytes()
        self.add(
            "wire", "one `metrics` frame on the WebSocket", [frame], "bytes", "target <= 1536 bytes"
        )
        if self.skip_glances:
            print("  (Glances skipped)")
            return
        binary = glances.install(ROOT / "bench" / ".glances-venv")
        sizes: list[tuple[int, int]] = []
        for _ in range(self.repeat):
            cpu, rss, size = glances.measure(binary, self.idle_seconds)
            results["glances"].append((cpu, rss))
            sizes.append(size)
        g_cpu = [c for c, _ in results["glances"]]
        g_rss = [r for _, r in results["glances"]]
        self.add("idle", "Glances -w CPU, polled like its web UI (1 Hz)", g_cpu, "%")
        self.add("idle", "Glances -w RSS", g_rss, "MiB")
        self.add(
            "idle",
            "ratio CPU ours / Glances (1 client)",
            [a / b for a, b in zip([c for c, _ in results["1"]], g_cpu, strict=True)],
            "x",
            "target <= 0.125",
        )
        self.add(
            "idle",
            "ratio RSS ours / Glances (1 client)",
            [a / b for a, b in zip([r for _, r in results["1"]], g_rss, strict=True)],
            "x",
            "target < 1",
        )
        self.add(
            "wire",
            "Glances bytes per refresh (/api/4/all + /all/views)",
            [float(s[0]) for s in sizes],
            "bytes",
        )
        self.add(
            "wire",
            "  the same, gzip-encoded as its UI receives it",
            [float(s[1]) for s in sizes],
            "bytes",
        )

    def frame_bytes(self) -> float:
        server = self.server("--async-mode", "eventlet")
        try:
            ws = open_socket(server.url)
            while True:
                frame = ws.recv()
                if isinstance(frame, str) and frame.startswith('42["metrics"'):
                    ws.close()
                    return float(len(frame.encode()))
        finally:
            server.stop()

    # 4. fan-out
    def fan_out(self) -> None:
        counts = [100, 1000] if self.quick else [100, 1000, 5000, 10000]
        seconds = 10 if self.quick else 20
        for mode in ("eventlet", "threading"):
            print(f"4. Fan-out under {mode}, {seconds} s per step", flush=True)
            for count in counts:
                if mode == "threading" and count > 1000:
                    print(f"  {count} clients: skipped under threading (two OS threads per socket)")
                    continue
                figures = [self.fan_out_once(mode, count, seconds) for _ in range(self.repeat)]
                held = [f["held"] for f in figures]
                ratio = [
                    100 * f["delivered"] / f["expected"] if f["expected"] else 0.0 for f in figures
                ]
                target = "target >= 99.9 %" if count == 5000 else ""
                self.add("fanout", f"{mode} N={count}: connections held", held, "")
                self.add("fanout", f"{mode} N={count}: updates delivered", ratio, "%", target)
                for q in ("p50", "p99", "max"):
                    values = [f[f"delay_{q}_ms"] or 0.0 for f in figures]
                    tgt = "target p99 < 250 ms" if q == "p99" and count == 5000 else ""
                    self.add("fanout", f"{mode} N={count}: delay {q}", values, "ms", tgt)
                self.add(
                    "fanout", f"{mode} N={count}: server CPU", [f["cpu"] for f in figures], "%"
                )
                self.add(
                    "fanout", f"{mode} N={count}: server RSS", [f["rss"] for f in figures], "MiB"
                )
                self.add(
                    "fanout",
                    f"{mode} N={count}: RSS per client",
                    [f["rss_per_client"] for f in figures],
                    "KiB",
                )
                if min(ratio) < 50:
                    print(f"  {mode} stops holding at N={count}; not going higher")
                    break

    def fan_out_once(self, mode: str, count: int, seconds: float) -> dict[str, Any]:
        # Every load client comes from 127.0.0.1: lift the per-address cap.
        server = self.server(
            "--async-mode",
            mode,
            "--max-connections-per-ip",
            "1000000",
            "--max-connections",
            "1000000",
        )
        try:
            meter = ProcessMeter(server.proc.pid)  # type: ignore[union-attr]
            base_rss = meter.rss_mib()
            meter.start()
            load = subprocess.run(
                [sys.executable, "-m", "bench.loadclient", server.url, str(count), str(seconds)],
                capture_output=True,
                text=True,
                cwd=ROOT,
                timeout=seconds + 240,
                check=False,
            )
            cpu, rss = meter.stop()
            figures: dict[str, Any] = json.loads(load.stdout.strip().splitlines()[-1])
            figures.update(
                cpu=cpu, rss=rss, rss_per_client=max(rss - base_rss, 0) * 1024 / max(count, 1)
            )
            return figures
        finally:
            server.stop()

    # 6. the fleet: a hub with simulated agents, and a real agent's own cost
    def fleet_cost(self) -> None:
        counts = [100, 500] if self.quick else [100, 500, 1000]
        seconds = 20 if self.quick else 40
        print(f"6. Fleet: a hub and N simulated agents at 1 Hz, {seconds} s each", flush=True)
        for count in counts:
            f = self.fleet_once(count, seconds)
            self.add("fleet", f"N={count}: samples acknowledged", [f["acked_ratio"]], "%",
                     "target: nothing dropped")  # fmt: skip
            self.add("fleet", f"N={count}: hub CPU", [f["cpu"]], "%",
                     "target: 1,000 agents inside one core" if count == 1000 else "")  # fmt: skip
            self.add("fleet", f"N={count}: hub CPU per agent sample", [f["us_per_sample"]], "µs")
            self.add("fleet", f"N={count}: hub RSS", [f["rss"]], "MiB")
            self.add("fleet", f"N={count}: agent to page delay p99", [f["delay_p99_ms"]], "ms",
                     "target < 500 ms")  # fmt: skip
            self.add("fleet", f"N={count}: fleet page bytes per host per second",
                     [f["fleet_bytes_per_host"]], "B", "target <= 150")  # fmt: skip
        self.agent_cost()

    # 6b. acknowledgement latency: answered on arrival (before) or after the commit (now)
    def ack_latency(self) -> None:
        before = ACK_BEFORE
        seconds = 20 if self.quick else 40
        print(
            f"6b. Acknowledgement latency: a hub and N simulated agents at 1 Hz, {seconds} s, "
            f"this tree against {before} (acknowledged on arrival, before its commit)",
            flush=True,
        )
        old = self.tree_at(before, "ack-before")
        for count in (100, 1000):
            for label, tree in ((f"before ({before})", old), ("after", ROOT)):
                f = self.fleet_once(count, seconds, tree=tree)
                self.add("ack", f"N={count} {label}: ack p50", [f["ack_ms_p50"]], "ms")
                self.add("ack", f"N={count} {label}: ack p99", [f["ack_ms_p99"]], "ms")
                self.add("ack", f"N={count} {label}: samples acknowledged", [f["acked_ratio"]],
                         "%")  # fmt: skip
                self.add("ack", f"N={count} {label}: hub CPU", [f["cpu"]], "%")

    # 6c. the check of every sample an agent sends: the declaration against the old checks
    def check_cost(self) -> None:
        import importlib.util
        import random as random_module

        from server.fleet.hub import sample_problem
        from testkit.synthetic import synthetic_sample

        print(f"6c. Sample check: per sample, this tree against {ACK_BEFORE}", flush=True)
        source = subprocess.run(
            ["git", "show", f"{ACK_BEFORE}:server/fleet/hub.py"],
            cwd=ROOT, capture_output=True, check=True, text=True,
        ).stdout  # fmt: skip
        spec = importlib.util.spec_from_loader("hub_before", loader=None)
        assert spec is not None
        before = importlib.util.module_from_spec(spec)
        exec(compile(source, "hub_before.py", "exec"), before.__dict__)
        rng = random_module.Random(1)
        now = time.time()
        samples = [synthetic_sample(now - i, i + 1, rng) for i in range(1000)]
        for sample in samples:  # as an agent sends them: 5 processes
            sample["processes"] = [
                {"pid": p, "name": f"proc-{p}", "cpu_percent": 1.5, "memory_percent": 0.4}
                for p in range(5)
            ]
        old_check: Callable[[Any, float], str | None] = before.sample_problem
        checks: dict[str, Callable[[Any], str | None]] = {
            "before": lambda s: old_check(s, now),
            "after": lambda s: sample_problem(s, now),
        }
        results: dict[str, list[float]] = {"before": [], "after": []}
        for _ in range(self.repeat * 3):
            for name, check in checks.items():  # interleaved: the same machine state
                started = time.perf_counter()
                for sample in samples:
                    assert check(sample) is None
                results[name].append((time.perf_counter() - started) / len(samples) * 1e6)
        self.add("check", f"per sample, before ({ACK_BEFORE})", results["before"], "µs")
        self.add("check", "per sample, after (the declaration)", results["after"], "µs")

    def fleet_once(self, count: int, seconds: float, tree: Path = ROOT) -> dict[str, Any]:
        import socketio

        from server.fleet.tokens import AgentTokens

        data = Path(tempfile.mkdtemp(dir=self.workdir)) / "data"
        tokens = AgentTokens(str(data))
        lines = []
        for i in range(count):
            name = f"sim-{i:04d}"
            token = f"bench-token-{i:04d}-" + "x" * 24
            tokens._names[name] = {"hash": token_hash(token), "added": 0}
            lines.append(f"{name} {token}")
        tokens._write()
        token_file = data / "tokens.txt"
        token_file.write_text("\n".join(lines) + "\n")
        logs = Path(tempfile.mkdtemp(dir=self.workdir)) / "logs"
        server = ServerProcess(logs, "--async-mode", "eventlet", "--data-dir", str(data), cwd=tree)
        server.start()
        ramp = count / 150
        load = subprocess.Popen(
            [sys.executable, "-m", "bench.agentload", server.url, str(token_file),
             str(seconds + 5)],
            cwd=ROOT, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            time.sleep(ramp + 5)  # every agent connected and sending
            delays: list[float] = []
            page = socketio.Client()
            page.on("metrics", lambda d: delays.append(time.time() - d["ts"]))
            page.connect(server.url, auth={"host": "sim-0000"}, transports=["websocket"])
            fleet_bytes: list[int] = []
            wall = socketio.Client()
            wall.on(
                "fleet", lambda d: fleet_bytes.append(len(json.dumps(d, separators=(",", ":"))))
            )
            wall.connect(server.url, auth={"view": "fleet"}, transports=["websocket"])
            meter = ProcessMeter(server.proc.pid)  # type: ignore[union-attr]
            meter.start()
            time.sleep(seconds - 5)
            cpu, rss = meter.stop()
            page.disconnect()
            wall.disconnect()
            out, _ = load.communicate(timeout=seconds + ramp + 120)
            result = json.loads(out.strip().splitlines()[-1])
        finally:
            if load.poll() is None:
                load.kill()
            server.stop()
        if result["errors"]:
            print(f"  agent errors: {result['errors']}")
        window = seconds - 5
        hosts = count + 1
        return {
            "acked_ratio": 100 * result["acked"] / max(result["sent"], 1),
            "cpu": cpu,
            "us_per_sample": cpu / 100 * window / max(count * window, 1) * 1e6,
            "rss": rss,
            "delay_p99_ms": 1000 * statistics.quantiles(delays, n=100)[98]
            if len(delays) > 2
            else 0.0,
            "fleet_bytes_per_host": statistics.median(fleet_bytes) / hosts if fleet_bytes else 0.0,
            "ack_ms_p50": result.get("ack_ms_p50"),
            "ack_ms_p99": result.get("ack_ms_p99"),
        }

    def agent_cost(self) -> None:
        """A real agent on this host, against today's single-host server sampling alone."""
        from server.fleet.tokens import AgentTokens

        data = Path(tempfile.mkdtemp(dir=self.workdir)) / "data"
        token = AgentTokens(str(data)).add("bench-agent")
        hub = self.server("--async-mode", "eventlet", data_dir=data)
        agent_cpu, agent_rss, single_cpu, single_rss = [], [], [], []
        try:
            for _ in range(self.repeat):
                logs = Path(tempfile.mkdtemp(dir=self.workdir))
                agent = subprocess.Popen(
                    [sys.executable, "-m", "server", "agent", "--hub-url", hub.url,
                     "--log-dir", str(logs), "--data-dir", str(logs)],
                    cwd=ROOT, env={**os.environ, "DASHBOARD_HUB_TOKEN": token},
                )  # fmt: skip
                try:
                    time.sleep(5)
                    c, r = ProcessMeter(agent.pid).measure(self.idle_seconds)
                    agent_cpu.append(c)
                    agent_rss.append(r)
                finally:
                    agent.terminate()
                    agent.wait(10)
                single = self.server("--async-mode", "eventlet")
                try:
                    time.sleep(5)
                    c, r = ProcessMeter(single.proc.pid).measure(self.idle_seconds)  # type: ignore[union-attr]
                    single_cpu.append(c)
                    single_rss.append(r)
                finally:
                    single.stop()
        finally:
            hub.stop()
        self.add("fleet", "agent CPU (sampler and link)", agent_cpu, "%")
        self.add("fleet", "single-host server CPU, no page", single_cpu, "%")
        self.add("fleet", "ratio agent / single-host server",
                 [a / b for a, b in zip(agent_cpu, single_cpu, strict=True)], "x",
                 "target <= 1.2")  # fmt: skip
        self.add("fleet", "agent RSS", agent_rss, "MiB", "target <= 40 MiB")

    # 7. more than one process: a core and web processes on Redis, against one process
    def scale_out(self) -> None:
        counts = [1000, 5000] if self.quick else [1000, 5000, 10000]
        seconds = 10 if self.quick else 20
        print(
            f"7. Scale-out: fan-out with web processes on Redis, {seconds} s per step", flush=True
        )
        p99: dict[tuple[str, int], float] = {}
        for setup in ("one process", "core + 1 web", "core + 2 webs", "core + 2 webs via Nginx"):
            for count in counts:
                f = self.scale_out_once(setup, count, seconds)
                ratio = 100 * f["delivered"] / f["expected"] if f["expected"] else 0.0
                target = {5000: "target >= 99.9 %, p99 < 250 ms", 10000: "target p99 < 500 ms"}
                self.add("scaleout", f"{setup}, N={count}: delivered", [ratio], "%",
                         target.get(count, ""))  # fmt: skip
                self.add("scaleout", f"{setup}, N={count}: delay p99",
                         [f["delay_p99_ms"] or 0.0], "ms")  # fmt: skip
                self.add("scaleout", f"{setup}, N={count}: CPU per client per broadcast",
                         [f["us_per_send"]], "µs")  # fmt: skip
                p99[setup, count] = f["delay_p99_ms"] or 0.0
        for count in counts:
            one = p99.get(("one process", count)) or 1.0
            self.add("scaleout", f"N={count}: p99 ratio 2 webs : 1 process",
                     [p99[("core + 2 webs", count)] / one], "x")  # fmt: skip

    def scale_out_once(self, setup: str, count: int, seconds: float) -> dict[str, Any]:
        from testkit.deploytools import SITE_TEMPLATE, NginxProcess, checkout_site, render_epp
        from testkit.redisproc import RedisProcess
        from testkit.serverproc import free_port

        lifted = ["--max-connections-per-ip", "1000000", "--max-connections", "1000000"]
        work = Path(tempfile.mkdtemp(dir=self.workdir))
        processes: list[ServerProcess] = []
        redis = nginx = None
        try:
            if setup == "one process":
                processes.append(self.server("--async-mode", "eventlet", *lifted))
                urls = [processes[0].url]
            else:
                redis = RedisProcess("/usr/bin/redis-server", work / "redis").start()
                webs = 1 if "1 web" in setup else 2
                base = free_port()
                queue = ["--message-queue", redis.url, "--data-dir", str(work / "data"), *lifted]
                via = ["--proxy-hops", "1", "--allow-anonymous", "true"] if "Nginx" in setup else []
                processes.append(
                    ServerProcess(work / "core", "--role", "core", *queue, *via, port=base).start()
                )
                for i in range(1, webs + 1):
                    processes.append(ServerProcess(
                        work / f"web{i}", "--role", "web", *queue, *via, port=base + i
                    ).start())  # fmt: skip
                urls = [p.url for p in processes[1:]]
                if "Nginx" in setup:
                    port = free_port()
                    values = checkout_site(f"127.0.0.1:{port}", base, "127.0.0.1", web_workers=webs)
                    site = render_epp("/usr/bin/puppet", SITE_TEMPLATE, values)
                    # Past Nginx's own per-address and worker connection limits, for the load.
                    site = site.replace("limit_conn dashboard_per_ip 32;", "")
                    nginx = NginxProcess(
                        "/usr/sbin/nginx", work / "nginx", site, port, worker_connections=25_000
                    )
                    urls = [f"http://127.0.0.1:{port}"]
            meters = [ProcessMeter(p.proc.pid) for p in processes]  # type: ignore[union-attr]
            for meter in meters:
                meter.start()
            load = subprocess.run(
                [sys.executable, "-m", "bench.loadclient", ",".join(urls), str(count),
                 str(seconds), *(["--routes"] if nginx else [])],
                capture_output=True, text=True, cwd=ROOT, timeout=seconds + 300, check=False,
            )  # fmt: skip
            cpu = sum(meter.stop()[0] for meter in meters)
            figures: dict[str, Any] = json.loads(load.stdout.strip().splitlines()[-1])
        finally:
            if nginx is not None:
                nginx.stop()
            for process in processes:
                process.stop()
            if redis is not None:
                redis.kill()
        # CPU seconds a second, over clients times broadcasts a second (1 Hz).
        figures["us_per_send"] = cpu / 100 / max(count, 1) * 1e6
        return figures

    # 5. connect cost
    def connect_cost(self) -> None:
        print("5. Connect cost with a full history (900 samples)", flush=True)
        data = self.full_history("connect-data")
        server = self.server("--async-mode", "eventlet", data_dir=data)
        try:
            for form in ("rows", "columns"):
                times, sizes = [], []
                got = 0
                for _ in range(self.repeat * 3):
                    started = time.perf_counter()
                    ws = open_socket(server.url, auth={"format": form})
                    while True:
                        frame = ws.recv()
                        if isinstance(frame, str) and frame.startswith('42["history"'):
                            times.append((time.perf_counter() - started) * 1000)
                            sizes.append(float(len(frame.encode())))
                            payload = json.loads(frame[2:])[1]
                            got = len(payload.get("ts") or payload.get("samples") or [])
                            break
                    ws.close()
                self.add(
                    "connect", f"connect to `static` + `history` in {form} ({got} samples)",
                    times, "ms",
                )  # fmt: skip
                self.add(
                    "connect", f"`history` payload in {form}", [s / 1024 for s in sizes], "KiB",
                    "target <= 120 KB" if form == "columns" else "",
                )  # fmt: skip
            page = self.charts_full_ms(server.url).get("page")
            if page:
                self.add(
                    "connect",
                    "page: navigation start to full charts (Chromium)",
                    page,
                    "ms",
                    "target <= 150 ms",
                )
        finally:
            server.stop()

    def full_history(self, name: str) -> Path:
        """A data directory whose store holds this machine's last 900 samples."""
        data = self.workdir / name
        clock = [time.time() - 900]
        store = HistoryStore(
            str(data / "history.sqlite3"), clock=lambda: clock[0], local_host=LOCAL_HOST
        )
        store.open()
        # This machine's own shape (disks, totals), moving values: a real history of it.
        source = DynamicData()
        source.sample()
        base = {**history_view(source.sample()), "host": LOCAL_HOST}
        rng = random.Random(1)
        for i in range(900):
            store.add(like_this_host(base, clock[0] + i, i + 1, rng))
        clock[0] += 900
        store.flush()
        store.stop()
        return data

    def charts_full_ms(
        self,
        url: str,
        section: str = "connect",
        name: str = "page",
        others: dict[str, str] | None = None,
    ) -> dict[str, list[float]]:
        """Navigation start to full charts on `url`'s page (`name`), each load a fresh
        browser, and the main-thread time of its live updates after. `others` (name ->
        url): pages loaded in turn with it, one load of each after the other, so that
        what the machine does meanwhile falls on all of them; their times by name."""
        from testkit.chromium import Chromium, find_chromium

        binary = find_chromium()
        if binary is None:
            print("  (no chromium: page timing skipped)")
            return {}
        pages = {name: url, **(others or {})}
        results: dict[str, list[float]] = {name: [] for name in pages}
        updates: dict[str, list[float]] = {name: [] for name in pages}
        # A page load on two shared cores varies by ±25 %: the median of many
        # (each a fresh browser and profile, so nothing is cached) is the figure.
        # Load 0 is not counted: the first browser started in a run reads its
        # binary from disk, where a user's browser is running already.
        loads = 9 if self.quick else 15
        for load in range(1 + loads + self.repeat):
            for page_name, page_url in pages.items():
                time.sleep(1)  # the last browser's processes gone: one load at a time
                browser = Chromium(binary)
                try:
                    browser.navigate(page_url + "/")
                    browser.wait_for(
                        # 900 less the seconds the server took to start (a gap in its history)
                        "window.__dashboardPlots && "
                        "window.__dashboardPlots.cpu.data[0].length >= 880",
                        timeout=30,
                    )
                    if 1 <= load <= loads:
                        # performance.now() counts from the navigation's start.
                        at = float(browser.evaluate("window.__chartsFullAt || 0"))
                        results[page_name].append(at)
                    elif load > loads:
                        time.sleep(6)  # a few live updates on full charts
                        shown = browser.evaluate("window.__updateMs")
                        updates[page_name] += [float(v) for v in shown]
                finally:
                    browser.close()
        for page_name, times in updates.items():
            if times:
                self.add(
                    section, f"{page_name}: main-thread time per live update (900 points)",
                    times, "ms", "target <= 2 ms",
                )  # fmt: skip
        return {page_name: [r for r in times if r > 0] for page_name, times in results.items()}

    # firehose
    def firehose_cost(self) -> None:
        seconds = 10 if self.quick else 30
        print(
            f"9. Firehose: the server's CPU with one page watching a log, {seconds} s", flush=True
        )
        import socketio

        work = Path(tempfile.mkdtemp(dir=self.workdir))
        log = work / "app.log"
        log.write_text("")
        config = work / "dashboard.toml"
        config.write_text(f'firehose_lines_per_second = 5000\n[log_sources]\nbench = "{log}"\n')
        server = self.server("--async-mode", "eventlet", "--config", str(config))
        page = socketio.Client()
        got = [0]
        page.on("firehose", lambda batch: got.__setitem__(0, got[0] + len(batch["lines"])))
        try:
            page.connect(server.url, transports=["websocket"], wait_timeout=10)
            page.call("firehose_subscribe", {"sources": ["bench"]}, timeout=10)
            meter = ProcessMeter(server.proc.pid)  # type: ignore[union-attr]
            baseline = None
            for rate in (0, 100, 1000):
                got[0] = 0
                line = "2026-11-24 10:00:00,000 INFO app: request served in 12 ms user=ops"
                meter.start()
                started = time.monotonic()
                written = 0
                with open(log, "a") as handle:
                    while (elapsed := time.monotonic() - started) < seconds:
                        due = int(elapsed * rate)
                        if due > written:
                            handle.write((line + "\n") * (due - written))
                            handle.flush()
                            written = due
                        time.sleep(0.01)
                time.sleep(1)  # the last lines reach the page
                cpu, _ = meter.stop()
                baseline = cpu if baseline is None else baseline
                self.add("firehose", f"server CPU, a page watching, {rate} lines/s", [cpu], "%")
                if rate:
                    self.add("firehose", f"  lines delivered at {rate} lines/s",
                             [100 * got[0] / max(written, 1)], "%")  # fmt: skip
                    self.add("firehose", f"  the firehose's share at {rate} lines/s",
                             [cpu - baseline], "% of a core",
                             "target <= 2 %" if rate == 1000 else "")  # fmt: skip
        finally:
            page.disconnect()
            server.stop()

    # store
    def store_cost(self) -> None:
        print("6. History store, pre-filled with 7 days", flush=True)
        data = self.workdir / "store-data"
        now = time.time()
        clock = [now - 7 * 86400]
        store = HistoryStore(
            str(data / "history.sqlite3"), clock=lambda: clock[0], local_host=LOCAL_HOST
        )
        store.open()
        seconds = 86400 if self.quick else 7 * 86400
        fill(store, clock, seconds, now - seconds, batch=600)
        per_sample = []
        for _ in range(self.repeat):
            started = time.process_time()
            fill(store, clock, 600, clock[0], batch=2, seed=random.randrange(1000))
            per_sample.append((time.process_time() - started) / 600 * 1e6)
        store.stop()
        self.add("store", "write cost per sample (batches of 2)", per_sample, "µs CPU")
        size = sum(p.stat().st_size for p in data.iterdir())
        self.add("store", "database size after 7 days", [size / 1024 / 1024], "MiB", "bound 16 MiB")
        server = self.server("--async-mode", "eventlet", data_dir=data)
        try:
            spans = (("15 min", 900), ("24 h", 86400), ("7 d", 7 * 86400))
            for (label, span), form in itertools.product(spans, ("rows", "columns")):
                latencies = []
                for _ in range(self.repeat * 3):
                    started = time.perf_counter()
                    response = requests.get(
                        server.url + f"/api/history?seconds={span}&format={form}", timeout=30
                    )
                    response.raise_for_status()
                    latencies.append((time.perf_counter() - started) * 1000)
                body = response.json()
                points = len(body.get("ts") or body.get("samples") or [])
                self.add(
                    "store", f"/api/history {label} in {form} ({points} points)", latencies, "ms",
                )  # fmt: skip
            # As the page asks: columns, about a point per pixel of a wide chart.
            for label, span in spans:
                latencies = []
                for _ in range(self.repeat * 3):
                    started = time.perf_counter()
                    response = requests.get(
                        server.url + f"/api/history?seconds={span}&format=columns"
                        f"&step={math.ceil(span / 1000)}",
                        timeout=30,
                    )
                    response.raise_for_status()
                    latencies.append((time.perf_counter() - started) * 1000)
                points = len(response.json()["ts"])
                self.add(
                    "store", f"/api/history {label} as the page asks ({points} points)",
                    latencies, "ms", "target <= 50 ms",
                )  # fmt: skip
        finally:
            server.stop()


# The server's own host id: the rows the bench stores must be its rows.
LOCAL_HOST = host_id_of(socket.gethostname())


def fmt(value: float) -> str:
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.3g}"


def machine() -> dict[str, Any]:
    return {
        "cpu": platform.processor() or platform.machine(),
        "cores": psutil.cpu_count(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
        "system": f"{platform.system()} {platform.release()}",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="shorter steps, for a trial run")
    parser.add_argument(
        "--only",
        choices=[
            "sampler",
            "protections",
            "idle",
            "fanout",
            "connect",
            "store",
            "fleet",
            "ack",
            "check",
            "scaleout",
            "firehose",
            "containers",
        ],
        action="append",
        help="run only these sections",
    )
    parser.add_argument("--skip-glances", action="store_true")
    parser.add_argument(
        "--baseline",
        default="16fa3cf",
        help="git revision the protections are measured against (default: the last before them)",
    )
    args = parser.parse_args()
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    sections = args.only or [
        "sampler", "protections", "idle", "fanout", "connect", "store", "fleet", "ack",
        "check", "scaleout", "firehose", "containers",
    ]  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="dashboard-bench-") as tmp:
        bench = Bench(args.quick, Path(tmp), args.skip_glances, args.baseline)
        started = time.time()
        steps = {
            "sampler": bench.sampler_cost,
            "protections": bench.protections_cost,
            "idle": bench.idle_cost,
            "fanout": bench.fan_out,
            "connect": bench.connect_cost,
            "store": bench.store_cost,
            "fleet": bench.fleet_cost,
            "ack": bench.ack_latency,
            "check": bench.check_cost,
            "scaleout": bench.scale_out,
            "firehose": bench.firehose_cost,
            "containers": bench.containers_cost,
        }
        for name in sections:
            steps[name]()
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / time.strftime("%Y%m%d-%H%M%S.json")
    out.write_text(
        json.dumps(
            {
                "machine": machine(),
                "quick": args.quick,
                "seconds": round(time.time() - started),
                "rows": bench.rows,
            },
            indent=1,
        )
    )
    (RESULTS / "latest.md").write_text(markdown(bench.rows, machine()))
    print(f"\nwrote {out} and {RESULTS / 'latest.md'}")
    os.sync()


def markdown(rows: list[Row], host: dict[str, Any]) -> str:
    lines = [
        f"Machine: {host['cores']} cores ({host['cpu']}), {host['memory_gib']} GiB, "
        f"{host['system']}, Python {host['python']}.",
        "",
        "| figure | median | min-max | target |",
        "| --- | --- | --- | --- |",
    ]
    for row in rows:
        unit = f" {row['unit']}" if row["unit"] else ""
        lines.append(
            f"| {row['figure'].strip()} | {fmt(row['median'])}{unit} | "
            f"{fmt(row['min'])}-{fmt(row['max'])} | {row['target']} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
