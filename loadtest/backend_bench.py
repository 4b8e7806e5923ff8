"""Backend benchmark: the same fix stream through a hub on the embedded backend and on Redis.

    python -m loadtest.backend_bench [--technicians 50] [--rate 5] [--seconds 10]
                                     [--burst-fixes 400] [--repeat 1]
                                     [--redis-url redis://127.0.0.1:6379/0] [--no-cross-hub]
                                     [--out loadtest/results/backends.md]

``doorstep serve`` processes are started on loopback, one set after the other, and each gets
the load of ``loadtest/ingest_bench.py`` (its paced and burst phases, imported from there):

1. **embedded**: one hub, fresh data dir (in-process bus, SQLite).
2. **redis**: one hub with ``DOORSTEP_BACKEND=redis`` and a key prefix of its own.
3. **redis, two hubs** (unless ``--no-cross-hub``): hubs A and B on one new prefix; the
   technicians are connected to A and their watchers to B, so every position crosses Redis
   pub/sub.

Reported for each: end-to-end latency (technician send -> customer watcher receive) and, new
here, ack latency (technician send -> ``ack`` that the fix is durably stored), p50/p95/p99, in
the paced phase; and burst fixes/s until the last fix is acknowledged. The figures that
matter are the ratios Redis/embedded, measured in the same round on the same machine; with
``--repeat N`` every configuration runs N times, interleaved, and the report gives medians
(the per-round ratios' median and range), because one round on a shared machine is noisy.
Every Redis key of a run is deleted at its end (by prefix, never FLUSHDB).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import redis
from websockets.asyncio.client import ClientConnection

from loadtest.ingest_bench import (
    PLATFORM_KEY,
    SECRET,
    HubTarget,
    Result,
    burst,
    free_port,
    paced,
    wait_ready,
)

# The one thing taken from the hub's code rather than the wire: deleting a prefix's keys
# exactly as the backend lays them out (SCAN by its patterns, never FLUSHDB).
from realtime.backends.redis import delete_all

EMBEDDED = "embedded"
REDIS = "redis"
CROSS = "redis-cross"
NAMES = {
    EMBEDDED: "embedded (SQLite), one hub",
    REDIS: "Redis, one hub",
    CROSS: "Redis, two hubs (tech on A, watcher on B)",
}


def percentile(values: list[float], p: float) -> float:
    return Result(latencies_ms=values).percentile(p)


class TimedSocket:
    """A technician socket that records send -> ack latency (acks carry the highest durable seq).

    ``paced`` and ``burst`` only ``send``, iterate and ``close`` technician sockets, so this
    stands in for the ``ClientConnection`` during the paced phase.
    """

    def __init__(self, ws: ClientConnection, acks_ms: list[float]) -> None:
        self.ws = ws
        self.acks_ms = acks_ms
        self.unacked: deque[tuple[int, float]] = deque()

    async def send(self, frame: str) -> None:
        self.unacked.append((json.loads(frame)["seq"], time.perf_counter()))
        await self.ws.send(frame)

    async def __aiter__(self) -> AsyncIterator[str | bytes]:
        async for raw in self.ws:
            now = time.perf_counter()
            message = json.loads(raw)
            if message.get("type") == "ack":
                while self.unacked and self.unacked[0][0] <= message.get("seq", -1):
                    self.acks_ms.append((now - self.unacked.popleft()[1]) * 1000)
            yield raw

    async def close(self) -> None:
        await self.ws.close()


class TimedHubTarget(HubTarget):
    """A hub whose technician sockets time their acks while ``timing`` is on (paced phase).

    With ``watch_port``, watchers connect to that second hub (same secret, same Redis).
    """

    def __init__(self, name: str, port: int, watch_port: int | None = None) -> None:
        super().__init__(port)
        self.name = name
        self.acks_ms: list[float] = []
        self.timing = True
        self.watch_hub: HubTarget | None = None
        if watch_port is not None:
            self.watch_hub = HubTarget(watch_port)
            self.watch_hub.tokens = self.tokens  # one secret: the tokens work on both hubs

    async def technician(self, n: int) -> ClientConnection:
        ws = await super().technician(n)
        return TimedSocket(ws, self.acks_ms) if self.timing else ws  # type: ignore[return-value]

    async def watcher(self, n: int) -> ClientConnection:
        if self.watch_hub is not None:
            return await self.watch_hub.watcher(n)
        return await super().watcher(n)


@dataclass
class Run:
    kind: str
    result: Result = field(default_factory=Result)
    acks_ms: list[float] = field(default_factory=list)
    hub_log: list[str] = field(default_factory=list)  # warnings and errors the hubs logged

    @property
    def name(self) -> str:
        return NAMES[self.kind]


def hub_env(kind: str, redis_url: str, prefix: str) -> dict[str, str]:
    env = dict(os.environ)
    for key in [k for k in env if k.startswith("DOORSTEP_")]:
        del env[key]  # only the settings below, whatever the calling shell has
    env.update(
        DOORSTEP_SECRET=SECRET,
        DOORSTEP_PLATFORM_KEY=PLATFORM_KEY,
        DOORSTEP_RATE_PER_S="100000",
        DOORSTEP_RATE_BURST="100000",
    )
    if kind != EMBEDDED:
        env.update(
            DOORSTEP_BACKEND="redis", DOORSTEP_REDIS_URL=redis_url, DOORSTEP_REDIS_PREFIX=prefix
        )
    return env


@asynccontextmanager
async def hub_process(env: dict[str, str], log: list[str]) -> AsyncIterator[int]:
    """One ``doorstep serve`` process on a free port, ready; its stderr goes into ``log``."""
    port = free_port()
    with tempfile.TemporaryDirectory() as data, tempfile.TemporaryFile("w+") as stderr:
        command = [sys.executable, "-m", "realtime.cli", "serve", "--port", str(port)]
        command += ["--data-dir", data, "--log-level", "warning"]
        process = subprocess.Popen(command, env=env, stderr=stderr)
        try:
            await wait_ready(f"http://127.0.0.1:{port}/readyz", process)
            yield port
        finally:
            process.terminate()
            process.wait(timeout=30)
            stderr.seek(0)
            # All but the start-up line ("doorstep: serving on ...").
            log.extend(
                line.rstrip() for line in stderr if line.strip() and " serving on " not in line
            )


async def run_backend(kind: str, args: argparse.Namespace) -> Run:
    run = Run(kind)
    prefix = f"bench-{uuid.uuid4().hex[:12]}"
    env = hub_env(kind, args.redis_url, prefix)
    try:
        async with AsyncExitStack() as stack:
            port = await stack.enter_async_context(hub_process(env, run.hub_log))
            watch_port = None
            if kind == CROSS:
                watch_port = await stack.enter_async_context(hub_process(env, run.hub_log))
            target = TimedHubTarget(run.name, port, watch_port)
            await target.setup(args.technicians)
            count = await paced(target, args.technicians, args.rate, args.seconds, run.result)
            target.timing = False  # burst acks measure queueing, not a write
            await burst(target, args.technicians, args.burst_fixes, count + 1, run.result)
            run.acks_ms = target.acks_ms
    finally:
        if kind != EMBEDDED:
            await delete_all(args.redis_url, prefix)
    return run


def redis_info(url: str) -> dict[str, str]:
    """The server's version and persistence settings: they decide what "durable" means."""
    client = redis.Redis.from_url(url, decode_responses=True)
    try:
        info: dict[str, str] = {"version": client.info("server")["redis_version"]}
        for name in ("appendonly", "appendfsync", "save"):
            info[name] = client.config_get(name).get(name, "?")
    finally:
        client.close()
    return info


def command_line(args: argparse.Namespace) -> str:
    words = ["python -m loadtest.backend_bench"]
    words += [f"--technicians {args.technicians}", f"--rate {args.rate:g}"]
    words += [f"--seconds {args.seconds:g}", f"--burst-fixes {args.burst_fixes}"]
    if args.repeat != 1:
        words.append(f"--repeat {args.repeat}")
    if not args.cross_hub:
        words.append("--no-cross-hub")
    return " ".join(words)


METRICS = (
    ("burst throughput (fixes/s acked)", "throughput"),
    ("end-to-end latency p50", "e2e50"),
    ("end-to-end latency p95", "e2e95"),
    ("end-to-end latency p99", "e2e99"),
    ("ack latency p50", "ack50"),
    ("ack latency p95", "ack95"),
    ("ack latency p99", "ack99"),
)


def figures(run: Run) -> dict[str, float]:
    r = run.result
    values = {"throughput": r.throughput}
    for p in (50, 95, 99):
        values[f"e2e{p}"] = r.percentile(p)
        values[f"ack{p}"] = percentile(run.acks_ms, p)
    return values


def median(values: list[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def report(args: argparse.Namespace, rounds: list[list[Run]], info: dict[str, str]) -> str:
    """``rounds``: one list per repetition, the embedded run first."""
    kinds = [run.kind for run in rounds[0]]
    by_kind = {kind: [next(r for r in runs if r.kind == kind) for runs in rounds] for kind in kinds}
    durable = (
        f"AOF on, `appendfsync {info['appendfsync']}`" if info["appendonly"] == "yes" else "AOF off"
    )
    snapshots = f'RDB snapshots `save "{info["save"]}"`' if info["save"] else "RDB snapshots off"
    repeats = len(rounds)
    lines = [
        "# Backend benchmark: embedded (SQLite) vs Redis",
        "",
        f"Python {platform.python_version()} on {platform.machine()}, {os.cpu_count()} cores"
        f" ({platform.system()} {platform.release()}); Redis {info['version']} on the same"
        " machine, as are the load generator and the hubs.",
        f"Redis persistence (`CONFIG GET`): appendonly `{info['appendonly']}`, appendfsync"
        f' `{info["appendfsync"]}`, save `"{info["save"]}"`, i.e. {durable}, {snapshots}.',
        "",
        f"Command: `{command_line(args)}`",
        "",
        f"Paced: {args.technicians} technicians x {args.rate:g} fixes/s for {args.seconds:g} s,"
        f" one customer watcher each. Burst: {args.technicians} x {args.burst_fixes} fixes"
        f" back to back. {repeats} round(s), each running every configuration once in the"
        " order below; the figures are medians over the rounds.",
        "",
        "| hub | e2e p50 ms | e2e p95 ms | e2e p99 ms | delivered |"
        " ack p50 ms | ack p95 ms | ack p99 ms | burst fixes/s acked |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for kind in kinds:
        runs = by_kind[kind]
        m = {key: median([figures(run)[key] for run in runs]) for _, key in METRICS}
        received = sum(run.result.received for run in runs)
        sent = sum(run.result.sent for run in runs)
        lines.append(
            f"| {NAMES[kind]} | {m['e2e50']:.2f} | {m['e2e95']:.2f} | {m['e2e99']:.2f} |"
            f" {received}/{sent} | {m['ack50']:.2f} | {m['ack95']:.2f} | {m['ack99']:.2f} |"
            f" {m['throughput']:,.0f} |"
        )
    others = kinds[1:]
    lines += [
        "",
        "Ratios against the embedded backend: each computed within one round (same minute,"
        " same machine load), then the median over the rounds, with the lowest and highest"
        " in brackets. Above 1x is more throughput, or more (worse) latency.",
        "",
        "| metric | " + " | ".join(f"{NAMES[kind]} / embedded" for kind in others) + " |",
        "|---|" + "---:|" * len(others),
    ]
    for label, key in METRICS:
        cells = []
        for kind in others:
            ratios = [
                figures(run)[key] / figures(base)[key]
                for run, base in zip(by_kind[kind], by_kind[kinds[0]], strict=True)
                if figures(base)[key]
            ]
            ratios = [value for value in ratios if value == value]  # no NaN (no samples)
            if not ratios:
                cells.append("n/a")
            elif len(ratios) == 1:
                cells.append(f"{ratios[0]:.2f}x")
            else:
                cells.append(f"{median(ratios):.2f}x ({min(ratios):.2f}-{max(ratios):.2f})")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    if repeats > 1:
        lines += [
            "",
            "Every round (burst fixes/s acked; end-to-end p95 ms; ack p95 ms):",
            "",
            "| round | " + " | ".join(NAMES[kind] for kind in kinds) + " |",
            "|---:|" + "---:|" * len(kinds),
        ]
        for number, runs in enumerate(rounds, 1):
            cells = []
            for run in runs:
                f = figures(run)
                cells.append(f"{f['throughput']:,.0f}; {f['e2e95']:.2f}; {f['ack95']:.2f}")
            lines.append(f"| {number} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "What the numbers mean:",
        "",
        "- *End-to-end latency* is technician send -> customer watcher receive, in the paced"
        " phase. On one hub both backends deliver to local watchers in-process (the Redis bus"
        " hands a message to its own subscribers before queueing it for Redis), so the two"
        " one-hub rows differ by the work the Redis backend adds to the hub's event loop:"
        " every bus message is also encoded and PUBLISHed (pipelined) for other hubs, and the"
        " store's writes go through redis-py instead of a SQLite thread. With two hubs every"
        " position goes hub A -> Redis PUBLISH -> hub B, one extra hop and a pipeline on each"
        " side, and two hubs, Redis and the load generator share the same cores.",
        "- *Ack latency* is technician send -> `ack` covering that fix. The hub acks only"
        " after the batched history writer has stored the fix (every"
        " `DOORSTEP_HISTORY_FLUSH_INTERVAL_S`, 50 ms by default, or sooner when"
        " `DOORSTEP_HISTORY_FLUSH_MAX` fixes wait), so it is mostly that interval plus the"
        " write: one SQLite transaction (WAL, `synchronous=FULL`: an fsync per commit) on"
        " the embedded backend; one MULTI/EXEC round trip to Redis wrapping one Lua script"
        " per technician (idempotent append to the history stream, seq set, time index,"
        " head) on Redis.",
        "- *Burst throughput* is fixes/s from the first burst fix sent to the last one acked,"
        " i.e. durably written by the backend's definition of durable. The history writer"
        " then writes up to `DOORSTEP_HISTORY_FLUSH_MAX` fixes at once, so the round trip is"
        " amortised and what counts is the work per fix: a SQLite insert (in the store's"
        " thread), or redis-py encoding the script's arguments on the hub's event loop plus"
        " the script's writes per fix (SADD, XADD, ZADD, HSET) in Redis's single thread."
        " With two hubs, hub A"
        " (which acks) has no local watchers: their fan-out runs on hub B, another process.",
        f"- What \"durable\" means differs: SQLite's commit has reached the disk; Redis's"
        f" write is in the server's memory, and on this server ({durable}, {snapshots}) it"
        " would not survive a Redis restart. With `appendonly yes` and `appendfsync"
        " everysec`, the usual production setting, up to ~1 s of acked fixes can be lost"
        " if the Redis host dies; `appendfsync always` closes that gap at a large cost in"
        " write throughput.",
    ]
    noisy = [(run.name, line) for runs in rounds for run in runs for line in run.hub_log]
    lines += ["", "Hub stderr (warnings and errors) during the runs:", ""]
    if noisy:
        for name, line in noisy[:20]:
            lines.append(f"- {name}: `{line[:200]}`")
        if len(noisy) > 20:
            lines.append(f"- ... {len(noisy) - 20} more lines")
    else:
        lines.append("- none")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description="Doorstep backend benchmark (Redis vs embedded)")
    parser.add_argument("--technicians", type=int, default=50)
    parser.add_argument("--rate", type=float, default=5.0, help="fixes/s per technician (paced)")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--burst-fixes", type=int, default=400)
    parser.add_argument(
        "--repeat", type=int, default=1, help="rounds of every configuration (medians reported)"
    )
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument(
        "--cross-hub",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also run two Redis hubs, technicians on one and watchers on the other",
    )
    parser.add_argument("--out", type=Path, default=Path("loadtest/results/backends.md"))
    args = parser.parse_args(argv)
    info = redis_info(args.redis_url)
    kinds = [EMBEDDED, REDIS] + ([CROSS] if args.cross_hub else [])
    rounds = [[asyncio.run(run_backend(kind, args)) for kind in kinds] for _ in range(args.repeat)]
    text = report(args, rounds, info)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(text)
    return text


if __name__ == "__main__":
    main()
