"""Simulated agents: N raw Engine.IO v4 WebSockets in one asyncio process, speaking the
agent protocol (namespace /agent, token auth, a `samples` batch a second, acks,
and answers to the hub's `clock` round trips).

Each comes from its own loopback address (127.0.X.Y), as agents on a LAN
would, so the per-address handshake cap applies per agent. Prints one JSON
line: samples sent and acknowledged, and how many agents held on.

    python -m bench.agentload URL TOKENS_FILE SECONDS

TOKENS_FILE has one "name token" per line. Loopback only; bounded in time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import time
from typing import Any

import websockets

from testkit.synthetic import synthetic_sample

CONNECTS_PER_SECOND = 150  # under the hub's handshake cap in all (200 a second)
SETTLE_SECONDS = 5.0  # after the last connect, before acknowledgement latency counts


class Agent:
    def __init__(self, name: str, token: str, index: int) -> None:
        self.name = name
        self.token = token
        self.source = f"127.0.{1 + index // 250}.{1 + index % 250}"
        self.sent = 0
        self.acked = 0
        self.connected = False
        self.error: str | None = None
        self.sent_at: dict[int, float] = {}  # batch id -> when sent
        self.ack_ms: list[float] = []  # each batch's time to its answer, once all are on
        self.steady_from = 0.0  # perf_counter: after the ramp and a settling time


async def run_agent(url: str, agent: Agent, start_at: float, until: float) -> None:
    await asyncio.sleep(max(start_at - time.time(), 0))
    ws_url = url.replace("http", "ws", 1) + "/socket.io/?EIO=4&transport=websocket"
    rng = random.Random(agent.name)
    try:
        async with websockets.connect(
            ws_url,
            open_timeout=30,
            ping_interval=None,
            compression=None,
            origin=url,  # type: ignore[arg-type]
            local_addr=(agent.source, 0),
        ) as ws:
            await ws.recv()  # the Engine.IO open packet
            await ws.send("40/agent," + json.dumps({"token": agent.token}))
            reply = await ws.recv()
            if not str(reply).startswith("40/agent"):
                agent.error = str(reply)[:200]
                return
            agent.connected = True
            static = {"hostname": agent.name, "interval": 1.0, "cpu": {"logical": 2}}
            await ws.send("42/agent," + json.dumps(["static", static]))
            seq = 0
            next_at = time.time() + rng.random()  # agents are not in step
            while time.time() < until:
                timeout = max(min(next_at, until) - time.time(), 0.001)
                try:
                    frame = await asyncio.wait_for(ws.recv(), timeout=timeout)
                except TimeoutError:
                    frame = None
                if frame == "2":
                    await ws.send("3")
                elif isinstance(frame, str) and frame.startswith("43/agent,"):
                    acked(agent, frame)
                elif isinstance(frame, str) and frame.startswith("42/agent,"):
                    call = frame[len("42/agent,") :]
                    ident = call[: call.index("[")]
                    if ident and '"clock"' in call[:20]:  # the hub times a round trip
                        now = {"ts": time.time(), "mono": time.monotonic()}
                        await ws.send(f"43/agent,{ident}" + json.dumps([now]))
                if time.time() >= next_at and time.time() < until:
                    seq += 1
                    sample = synthetic_sample(time.time(), seq, rng)
                    agent.sent_at[seq] = time.perf_counter()
                    await ws.send(f"42/agent,{seq}" + json.dumps(["samples", [sample]]))
                    agent.sent += 1
                    next_at += 1.0
            # The last acks.
            end = time.time() + 2
            while agent.acked < agent.sent and time.time() < end:
                try:
                    frame = await asyncio.wait_for(ws.recv(), timeout=end - time.time())
                except TimeoutError:
                    break
                if isinstance(frame, str) and frame.startswith("43/agent,"):
                    acked(agent, frame)
    except Exception as exc:  # one failed agent must not end the run
        agent.error = f"{type(exc).__name__}: {exc}"[:200]


def acked(agent: Agent, frame: str) -> None:
    """An answer to a batch: counted, and its latency kept."""
    body = frame[len("43/agent,") :]
    ident = body[: body.index("[")] if "[" in body else body
    sent = agent.sent_at.pop(int(ident), None) if ident.isdigit() else None
    if sent is not None and sent >= agent.steady_from:
        agent.ack_ms.append(1000 * (time.perf_counter() - sent))
    if '"error"' not in body:
        agent.acked += 1


async def main_async(url: str, tokens: list[tuple[str, str]], seconds: float) -> dict[str, Any]:
    agents = [Agent(name, token, i) for i, (name, token) in enumerate(tokens)]
    ramp = len(agents) / CONNECTS_PER_SECOND
    start = time.time()
    until = start + ramp + seconds
    # Latency is of the steady state: a thousand connects at once is a load of its own.
    steady_from = time.perf_counter() + ramp + SETTLE_SECONDS
    for agent in agents:
        agent.steady_from = steady_from
    await asyncio.gather(
        *(run_agent(url, a, start + i / CONNECTS_PER_SECOND, until) for i, a in enumerate(agents))
    )
    errors = [a.error for a in agents if a.error]
    latencies = sorted(ms for a in agents for ms in a.ack_ms)
    return {
        "ack_ms_p50": latencies[len(latencies) // 2] if latencies else None,
        "ack_ms_p99": latencies[int(len(latencies) * 0.99)] if latencies else None,
        "agents": len(agents),
        "connected": sum(a.connected for a in agents),
        "sent": sum(a.sent for a in agents),
        "acked": sum(a.acked for a in agents),
        "ramp_seconds": round(ramp, 1),
        "errors": errors[:3],
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("tokens")
    parser.add_argument("seconds", type=float)
    args = parser.parse_args()
    with open(args.tokens, encoding="utf-8") as handle:
        tokens = [tuple(line.split()) for line in handle if line.strip()]
    result = asyncio.run(main_async(args.url, tokens, args.seconds))  # type: ignore[arg-type]
    print(json.dumps(result))


if __name__ == "__main__":
    main()
