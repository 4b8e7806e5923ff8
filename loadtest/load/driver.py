"""One run against one target, and the order of runs: start the server, set up, hand each
generator process its slice, watch the run once a second, collect what the processes saw."""

from __future__ import annotations

import asyncio
import multiprocessing
import queue
import secrets
import sys
import time
from typing import Any

import httpx

from loadtest.load import worker
from loadtest.load.config import LoadConfig, slices
from loadtest.load.measured import RunData, Sample
from loadtest.load.servers import Server, read_stat, started
from loadtest.load.setup import Credentials, prepare_hub
from loadtest.load.stats import percentile, prometheus_values

HUB_METRICS = (
    "doorstep_fixes_accepted_total",
    "doorstep_queue_drops_total",
    "doorstep_frames_rejected_total",
    "doorstep_gc_pause_seconds",
)
READY_TIMEOUT_S = 120.0
DRAIN_S = 3.0


def order(
    target: str, compare: bool, rounds: int, compare_backends: bool = False
) -> list[tuple[str, int]]:
    """The runs in order: with ``compare``, the relay first and then the target, interleaved
    round by round; with ``compare_backends``, the hub on the embedded backend and on Redis
    (after the relay, when both are asked for)."""
    kinds = ["relay"] if compare else []
    if compare_backends:
        kinds += ["hub", "hub-redis"]
    elif not compare or target != "relay":
        kinds.append(target)
    return [(kind, r) for r in range(1, rounds + 1) for kind in kinds]


def _sample(server: Server, http: httpx.Client | None) -> Sample:
    stat = read_stat(server.pid) if server.pid else None
    sample = Sample(time.time(), stat[0] if stat else None, stat[1] if stat else None)
    if http is not None:
        try:
            text = http.get(f"{server.http}/metrics").text
            sample.metrics = prometheus_values(text, HUB_METRICS)
        except httpx.HTTPError:
            pass
    return sample


def _split(creds: Credentials | None, part: Any) -> Credentials | None:
    if creds is None:
        return None
    return Credentials(
        technicians={n: creds.technicians[n] for n in part.technicians},
        customers={n: creds.customers[n] for n in set(part.customers)},
        operators={j: creds.operators[j] for j in part.operators},
    )


def run_once(config: LoadConfig, target: str, round_no: int, url: str | None) -> RunData:
    """One target, one round: a fresh server (unless ``url``), the load, the measurements."""
    hub = target != "relay"
    data = RunData(target, round_no, started_here=not (hub and url))
    tag = f"lt{round_no}{target[0]}{secrets.token_hex(3)}"
    with started(target, url if hub else None, server=config.server) as server:
        creds = None
        if hub:
            assert server.platform_key is not None
            creds = asyncio.run(
                prepare_hub(
                    server.http, server.platform_key, tag, config.technicians, config.operators
                )
            )
        time.sleep(0.5)  # let the set-up's allocations settle before the idle reading
        idle = read_stat(server.pid) if server.pid else None
        data.rss_idle = idle[1] if idle else None
        context = multiprocessing.get_context("spawn")
        outbox = context.Queue()
        go = context.Event()
        start_at = context.Value("d", 0.0)
        parts = slices(config, tag)
        processes = []
        for i, part in enumerate(parts):
            plan = worker.WorkerPlan(
                index=i,
                kind=target,
                ws_base=server.ws,
                run_tag=tag,
                rate_hz=config.rate_hz,
                seconds=config.seconds,
                total_technicians=config.technicians,
                part=part,
                creds=_split(creds, part),
                drain_s=DRAIN_S,
            )
            process = context.Process(target=worker.run, args=(plan, outbox, go, start_at))
            process.start()
            processes.append(process)
        try:
            _watch(data, config, server, processes, outbox, go, start_at)
        finally:
            for process in processes:
                process.join(timeout=10)
                if process.is_alive():
                    process.terminate()
                    process.join()
    return data


def _watch(
    data: RunData,
    config: LoadConfig,
    server: Server,
    processes: list[Any],
    outbox: Any,
    go: Any,
    start_at: Any,
) -> None:
    """Wait until every process is connected, start them together, sample once a second."""
    ready: set[int] = set()
    deadline = time.time() + READY_TIMEOUT_S
    while len(ready) < len(processes):
        try:
            kind, index, value = outbox.get(timeout=max(0.1, deadline - time.time()))
        except queue.Empty:
            raise RuntimeError("the generator processes did not connect in time") from None
        if kind == "crashed":
            raise RuntimeError(f"generator process {index} failed: {value}")
        if kind == "ready":
            ready.add(index)
            data.sockets += value
    connected = read_stat(server.pid) if server.pid else None
    data.rss_connected = connected[1] if connected else None
    http = httpx.Client(timeout=2) if server.kind != "relay" else None
    data.start = time.time() + 0.3
    start_at.value = data.start
    data.samples.append(_sample(server, http))
    go.set()
    end = data.start + config.seconds + DRAIN_S + 30
    counts: dict[int, dict[str, int]] = {}
    latencies: list[float] = []
    results: dict[int, dict[str, Any]] = {}
    tick = 1
    while len(results) < len(processes):
        if time.time() > end:
            data.problems.append("some generator processes did not finish in time")
            break
        try:
            kind, index, value, *rest = outbox.get(timeout=0.05)
        except queue.Empty:
            kind = ""
        if kind == "progress":
            counts[index] = value
            latencies.extend(rest[0])
        elif kind == "result":
            results[index] = value
        elif kind == "crashed":
            data.problems.append(f"generator process {index} failed: {value}")
            break
        if time.time() >= data.start + tick:
            data.samples.append(_sample(server, http))
            _progress(data, tick, counts, latencies)
            tick += 1
    data.samples.append(_sample(server, http))
    if http is not None:
        http.close()
    data.results = [results[i] for i in sorted(results)]


def _progress(
    data: RunData, second: int, counts: dict[int, dict[str, int]], lat: list[float]
) -> None:
    total = {
        k: sum(c.get(k, 0) for c in counts.values())
        for k in ("sent", "delivered", "acked", "failures")
    }
    p50 = percentile(lat, 50)
    acked = f"{total['acked']}" if data.target != "relay" else "n/a"
    median = "-" if p50 is None else f"{p50:.1f} ms"
    print(
        f"loadtest {data.target} round {data.round} {second:3d}s: sent {total['sent']}"
        f" delivered {total['delivered']} acked {acked} p50 {median}"
        f" failures {total['failures']}",
        file=sys.stderr,
        flush=True,
    )
