"""Fan-out load: N raw Engine.IO v4 WebSocket clients in one asyncio process.

python-socketio's Client takes a thread per client; speaking the protocol
directly over asyncio holds thousands of sockets in one process. Each client
connects, joins namespace "/", answers pings, and records the delay from each
`metrics` sample's ts to its receipt. Prints one JSON line of results.

    python -m bench.loadclient URL[,URL...] N SECONDS [--stall K] [--routes]

Several URLs: the clients are spread over them in turn (web processes, direct).
--stall K: K of the clients stop reading after connecting (slow consumers).
--routes: each client sends its own route cookie (Nginx hashes it to a web process).
Loopback only; bounded in count and time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import resource
import statistics
import time
from typing import Any

import websockets

CONNECT_CONCURRENCY = 200
TS = re.compile(r'"ts":([0-9.]+)')
SEQ = re.compile(r'"seq":([0-9]+)')


class Client:
    def __init__(self, url: str, stall: bool = False, route: str | None = None) -> None:
        self.url = url
        self.route = route
        self.stall = stall
        self.delays: list[float] = []
        self.connected = False
        self.seqs: list[int] = []
        self.error: str | None = None


async def run_client(client: Client, until: float, connected: asyncio.Semaphore) -> None:
    url = client.url
    ws_url = url.replace("http", "ws", 1) + "/socket.io/?EIO=4&transport=websocket"
    headers = {"Cookie": f"dashboard_route={client.route}"} if client.route else None
    try:
        async with connected:
            ws = await asyncio.wait_for(
                websockets.connect(
                    ws_url,
                    max_size=None,
                    open_timeout=30,
                    ping_interval=None,
                    compression=None,
                    # A stalled client stops taking frames off the socket at
                    # once (not after websockets' 16): the server's writes back up.
                    max_queue=1 if client.stall else 16,
                    origin=url,  # type: ignore[arg-type]
                    additional_headers=headers,
                ),
                timeout=60,
            )
            await ws.recv()  # the Engine.IO open packet
            await ws.send("40")
        client.connected = True
        async with ws:
            while time.time() < until:
                if client.stall:
                    await asyncio.sleep(0.5)  # stop reading: the server's buffer for us fills
                    continue
                try:
                    frame = await asyncio.wait_for(
                        ws.recv(), timeout=max(until - time.time(), 0.01)
                    )
                except TimeoutError:
                    break
                received = time.time()
                if frame == "2":
                    await ws.send("3")
                elif isinstance(frame, str) and frame.startswith('42["metrics"'):
                    # Only ts and seq are needed: a regex is far cheaper than
                    # json.loads, and the load client must not be the bottleneck.
                    ts, seq = TS.search(frame), SEQ.search(frame)
                    if ts and seq:
                        client.delays.append(received - float(ts.group(1)))
                        client.seqs.append(int(seq.group(1)))
    except Exception as exc:  # one failed client must not end the run
        client.error = type(exc).__name__


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def main_async(
    urls: list[str], count: int, seconds: float, stall: int, routes: bool = False
) -> dict[str, Any]:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    clients = [
        Client(urls[i % len(urls)], stall=i < stall, route=f"c{i}" if routes else None)
        for i in range(count)
    ]
    gate = asyncio.Semaphore(CONNECT_CONCURRENCY)
    started = time.time()
    # Each client measures for `seconds` after the last one could have connected.
    until = started + seconds + max(10.0, count / 200)
    tasks = [asyncio.create_task(run_client(c, until, gate)) for c in clients]
    await asyncio.gather(*tasks)
    readers = [c for c in clients if not c.stall]
    delays = [d for c in readers for d in c.delays]
    # Expected: every seq of the window all readers were listening, for each reader.
    listening = [c for c in readers if c.seqs]
    expected = delivered = 0
    if listening:
        low = max(c.seqs[0] for c in listening)
        high = min(c.seqs[-1] for c in listening)
        if high >= low:
            expected = (high - low + 1) * len(readers)
            delivered = sum(len({s for s in c.seqs if low <= s <= high}) for c in readers)
    errors: dict[str, int] = {}
    for c in clients:
        if c.error:
            errors[c.error] = errors.get(c.error, 0) + 1
    return {
        "clients": count,
        "stalled": stall,
        "connected": sum(c.connected for c in clients),
        "held": sum(c.connected and c.error is None for c in clients),
        "expected": expected,
        "delivered": delivered,
        "delay_p50_ms": _ms(percentile(delays, 0.50)),
        "delay_p99_ms": _ms(percentile(delays, 0.99)),
        "delay_max_ms": _ms(max(delays) if delays else None),
        "delay_mean_ms": _ms(statistics.fmean(delays) if delays else None),
        "errors": errors,
    }


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("url")
    parser.add_argument("count", type=int)
    parser.add_argument("seconds", type=float)
    parser.add_argument("--stall", type=int, default=0)
    parser.add_argument("--routes", action="store_true")
    args = parser.parse_args()
    urls = args.url.split(",")
    if not all(u.startswith(("http://127.", "http://localhost", "http://[::1]")) for u in urls):
        raise SystemExit("loadclient only targets loopback")
    result = main_async(urls, args.count, args.seconds, args.stall, args.routes)
    print(json.dumps(asyncio.run(result)))


if __name__ == "__main__":
    main()
