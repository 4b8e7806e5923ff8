"""Ingest benchmark: GPS fixes through a real hub to real watchers, against a bare relay.

    python -m loadtest.ingest_bench [--technicians 50] [--rate 5] [--seconds 10]
                                    [--burst-fixes 400] [--out loadtest/results/ingest.md]

Two servers are started as separate processes on loopback, one after the other: the bare
relay of ``loadtest/relay_baseline.py`` (baseline) and ``doorstep serve`` (embedded
backend, fresh data dir). Each gets the same load from this process:

* **paced**: N technicians send one fix every 1/rate s for S seconds; one watcher per
  technician. Reported: end-to-end latency (technician send -> watcher receive) p50/p95/p99.
* **burst**: each technician sends ``burst-fixes`` fixes back to back. Reported: fixes/s
  until the last one is acknowledged as stored (hub) or delivered (relay).

The figures that matter are the hub/relay ratios: both run on the same machine in the same
run, so the noise of a shared machine mostly cancels. Results go to ``--out``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from websockets.asyncio.client import ClientConnection, connect

SECRET = "bench-secret-" + "x" * 32
PLATFORM_KEY = "bench-platform-key"


@dataclass
class Result:
    latencies_ms: list[float] = field(default_factory=list)
    sent: int = 0
    received: int = 0
    burst_fixes: int = 0
    burst_seconds: float = 0.0

    def percentile(self, p: float) -> float:
        if not self.latencies_ms:
            return float("nan")
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]

    @property
    def throughput(self) -> float:
        return self.burst_fixes / self.burst_seconds if self.burst_seconds else 0.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def wait_ready(url: str, process: subprocess.Popen[bytes]) -> None:
    async with httpx.AsyncClient() as http:
        for _ in range(300):
            if process.poll() is not None:
                raise RuntimeError(f"server exited with {process.returncode}")
            with contextlib.suppress(httpx.TransportError):
                await http.get(url, timeout=1)
                return
            await asyncio.sleep(0.1)
    raise RuntimeError("server did not start")


def fix_frame(seq: int) -> str:
    return json.dumps(
        {"type": "location", "seq": seq, "t": time.time(), "lat": 52.5 + seq * 1e-5, "lon": 13.4}
    )


class Target:
    """How to reach one server: the technician and watcher sockets of technician ``n``."""

    name = ""

    async def setup(self, technicians: int) -> None: ...

    async def technician(self, n: int) -> ClientConnection: ...

    async def watcher(self, n: int) -> ClientConnection: ...

    def is_position(self, message: dict) -> bool:
        return message.get("type") in ("location", "position")

    def is_final_ack(self, message: dict, seq: int) -> bool:
        return False


class RelayTarget(Target):
    name = "bare relay (baseline)"

    def __init__(self, port: int) -> None:
        self.base = f"ws://127.0.0.1:{port}"

    async def technician(self, n: int) -> ClientConnection:
        return await connect(f"{self.base}/tech/t{n}")

    async def watcher(self, n: int) -> ClientConnection:
        return await connect(f"{self.base}/watch/t{n}")


class HubTarget(Target):
    name = "doorstep hub (embedded)"

    def __init__(self, port: int) -> None:
        self.http = f"http://127.0.0.1:{port}"
        self.base = f"ws://127.0.0.1:{port}"
        self.tokens: dict[str, str] = {}

    async def setup(self, technicians: int) -> None:
        headers = {"Authorization": f"Bearer {PLATFORM_KEY}"}
        async with httpx.AsyncClient(base_url=self.http, headers=headers, timeout=30) as http:
            for n in range(technicians):
                booking = {
                    "id": f"bench-{n}",
                    "customer_id": f"c{n}",
                    "technician_id": f"t{n}",
                    "destination": {"lat": 52.52, "lon": 13.405},
                }
                (await http.post("/v1/bookings", json=booking)).raise_for_status()
                # Customers see positions only while the booking is the current visit.
                (await http.post(f"/v1/bookings/bench-{n}/en_route")).raise_for_status()
                for role, sub, extra in (
                    ("technician", f"t{n}", {}),
                    ("customer", f"c{n}", {"booking": f"bench-{n}"}),
                ):
                    answer = await http.post("/v1/tokens", json={"role": role, "sub": sub, **extra})
                    answer.raise_for_status()
                    self.tokens[sub] = answer.json()["token"]

    async def technician(self, n: int) -> ClientConnection:
        ws = await connect(f"{self.base}/v1/ws/technician?token={self.tokens[f't{n}']}")
        await ws.recv()  # the resume ack
        return ws

    async def watcher(self, n: int) -> ClientConnection:
        ws = await connect(f"{self.base}/v1/ws/bookings/bench-{n}?token={self.tokens[f'c{n}']}")
        await ws.recv()  # the snapshot
        return ws

    def is_final_ack(self, message: dict, seq: int) -> bool:
        return message.get("type") == "ack" and message.get("seq", -1) >= seq


async def paced(target: Target, technicians: int, rate: float, seconds: float, result: Result):
    sent_at: dict[tuple[int, int], float] = {}
    techs = [await target.technician(n) for n in range(technicians)]
    watchers = [await target.watcher(n) for n in range(technicians)]
    count = int(rate * seconds)

    async def read(n: int) -> None:
        with contextlib.suppress(Exception):
            async for raw in watchers[n]:
                message = json.loads(raw)
                if target.is_position(message):
                    started = sent_at.pop((n, message["seq"]), None)
                    if started is not None:
                        result.latencies_ms.append((time.perf_counter() - started) * 1000)
                        result.received += 1

    async def drain(ws: ClientConnection) -> None:
        with contextlib.suppress(Exception):
            async for _ in ws:
                pass

    async def send(n: int) -> None:
        await asyncio.sleep(n / technicians / rate)  # spread the technicians over one period
        for seq in range(1, count + 1):
            sent_at[(n, seq)] = time.perf_counter()
            await techs[n].send(fix_frame(seq))
            result.sent += 1
            await asyncio.sleep(1 / rate)

    readers = [asyncio.create_task(read(n)) for n in range(technicians)]
    readers += [asyncio.create_task(drain(ws)) for ws in techs]
    await asyncio.gather(*(send(n) for n in range(technicians)))
    await asyncio.sleep(1.0)
    for task in readers:
        task.cancel()
    for ws in techs + watchers:
        await ws.close()
    return count


async def burst(target: Target, technicians: int, fixes: int, first_seq: int, result: Result):
    techs = [await target.technician(n) for n in range(technicians)]
    watchers = [await target.watcher(n) for n in range(technicians)]
    last = first_seq + fixes - 1
    hub_acks = isinstance(target, HubTarget)

    async def finish(n: int) -> None:
        # The hub is done when the last fix is acked (stored); the relay when it is delivered.
        source = techs[n] if hub_acks else watchers[n]
        async for raw in source:
            message = json.loads(raw)
            if target.is_final_ack(message, last) or (not hub_acks and message.get("seq") == last):
                return

    async def send(n: int) -> None:
        for seq in range(first_seq, last + 1):
            await techs[n].send(fix_frame(seq))

    async def drain(ws: ClientConnection) -> None:
        with contextlib.suppress(Exception):
            async for _ in ws:
                pass

    drains = [asyncio.create_task(drain(ws)) for ws in (watchers if hub_acks else [])]
    started = time.perf_counter()
    waiters = [asyncio.create_task(finish(n)) for n in range(technicians)]
    await asyncio.gather(*(send(n) for n in range(technicians)))
    await asyncio.wait_for(asyncio.gather(*waiters), timeout=120)
    result.burst_seconds = time.perf_counter() - started
    result.burst_fixes = technicians * fixes
    for task in drains:
        task.cancel()
    for ws in techs + watchers:
        await ws.close()


async def run_target(kind: str, args: argparse.Namespace) -> tuple[str, Result]:
    port = free_port()
    env = dict(os.environ)
    with tempfile.TemporaryDirectory() as data:
        if kind == "relay":
            command = [sys.executable, "-m", "loadtest.relay_baseline", "--port", str(port)]
            target: Target = RelayTarget(port)
            ready = f"http://127.0.0.1:{port}/"
        else:
            command = [sys.executable, "-m", "realtime.cli", "serve", "--port", str(port)]
            command += ["--data-dir", data, "--log-level", "warning"]
            env.update(
                DOORSTEP_SECRET=SECRET,
                DOORSTEP_PLATFORM_KEY=PLATFORM_KEY,
                DOORSTEP_RATE_PER_S="100000",
                DOORSTEP_RATE_BURST="100000",
            )
            target = HubTarget(port)
            ready = f"http://127.0.0.1:{port}/readyz"
        process = subprocess.Popen(command, env=env)
        try:
            await wait_ready(ready, process)
            await target.setup(args.technicians)
            result = Result()
            count = await paced(target, args.technicians, args.rate, args.seconds, result)
            await burst(target, args.technicians, args.burst_fixes, count + 1, result)
        finally:
            process.terminate()
            process.wait(timeout=30)
    return target.name, result


def report(args: argparse.Namespace, results: list[tuple[str, Result]]) -> str:
    base = results[0][1]
    lines = [
        "# Ingest benchmark: technician -> hub -> watcher",
        "",
        f"Python {platform.python_version()} on {platform.machine()}, {os.cpu_count()} cores,"
        " load generator and server on the same machine.",
        f"Paced: {args.technicians} technicians x {args.rate:g} fixes/s for {args.seconds:g} s,"
        f" one watcher each. Burst: {args.technicians} x {args.burst_fixes} fixes back to back.",
        "",
        "| server | p50 ms | p95 ms | p99 ms | delivered | burst fixes/s | throughput vs relay |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, r in results:
        delivered = f"{r.received}/{r.sent}"
        ratio = r.throughput / base.throughput if base.throughput else float("nan")
        lines.append(
            f"| {name} | {r.percentile(50):.2f} | {r.percentile(95):.2f} |"
            f" {r.percentile(99):.2f} | {delivered} | {r.throughput:,.0f} | {ratio:.2f}x |"
        )
    hub = results[1][1]
    lines += [
        "",
        f"Hub p95 latency is {hub.percentile(95) / base.percentile(95):.2f}x the relay's;"
        " the hub's burst figure counts fixes durably stored and acknowledged,"
        " the relay's only fixes delivered; under a burst the hub conflates positions for"
        " watchers that fall behind (latest wins), the relay forwards every frame.",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description="Doorstep ingest benchmark (hub vs bare relay)")
    parser.add_argument("--technicians", type=int, default=50)
    parser.add_argument("--rate", type=float, default=5.0, help="fixes/s per technician (paced)")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--burst-fixes", type=int, default=400)
    parser.add_argument("--out", type=Path, default=Path("loadtest/results/ingest.md"))
    args = parser.parse_args()
    results = [asyncio.run(run_target("relay", args)), asyncio.run(run_target("hub", args))]
    text = report(args, results)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
