"""The whole soak in order: start Redis, two hubs and the balancer; set up bookings and
tokens; connect the fleet; stream fixes while the plan's faults fire; let the clients settle;
read back what the hubs stored; run the checks; write report.json and report.png."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

from loadtest.chaos import checks, plan, report
from loadtest.chaos.config import ChaosConfig
from loadtest.chaos.fleet import (
    ChaosTechnician,
    Console,
    Watcher,
    close_all,
    drop,
    press_sos,
)
from loadtest.chaos.procs import Balancer, Hub, PrivateRedis, new_credentials
from loadtest.chaos.records import RssSample, SosRecord, TechRecord
from loadtest.chaos.trips import fix_of, parked_from_s, stamp_origin
from loadtest.load.servers import read_stat
from loadtest.load.setup import booking_id, prepare_hub, technician_id

PROGRESS_EVERY_S = 5.0
_PARALLEL = 8  # HTTP reads in flight after the run


def _say(text: str) -> None:
    print(f"chaos: {text}", file=sys.stderr, flush=True)


class Soak:
    """One soak's processes, clients and records (the runner's state, nothing pure)."""

    def __init__(self, config: ChaosConfig, work: Path) -> None:
        self.config = config
        self.plan = plan.make_plan(config)
        self.work = work
        self.tag = f"chaos{secrets.token_hex(3)}"
        self.redis = PrivateRedis(work / "redis")
        secret, self.key = new_credentials()
        prefix = f"doorstep-chaos-{uuid.uuid4().hex[:10]}"
        self.hubs = [
            Hub(name, work / name, self.redis.url, prefix, secret, self.key)
            for name in ("hub-a", "hub-b")
        ]
        self.balancer = Balancer(self.hubs)
        self.techs: list[ChaosTechnician] = []
        self.consoles: list[Console] = []
        self.watchers: list[Watcher] = []
        self.sos: list[SosRecord] = []
        self.sos_tasks: list[asyncio.Task[None]] = []
        self.rss: list[RssSample] = []
        self.events: list[dict[str, Any]] = []  # faults as they fired, for the report
        self.series: list[dict[str, Any]] = []  # one row a second: acked, connected, hubs up
        self.spawned_at: dict[str, float] = {}
        self.ready_after: list[float] = []
        self.started = 0.0
        self.drops = 0
        self._background: set[asyncio.Task[None]] = set()
        self.operator_token = ""

    # ------------------------------------------------------------------ set-up

    async def start(self) -> None:
        await self.redis.start()
        for hub in self.hubs:
            hub.spawn()
            self.spawned_at[f"{hub.name}#{hub.lives}"] = time.monotonic()
        for hub in self.hubs:
            await hub.wait_ready()
        await self.balancer.start()
        config = self.config
        creds = await prepare_hub(
            self.hubs[0].http, self.key, self.tag, config.technicians, config.operators + 1
        )
        self.operator_token = creds.operators[config.operators]  # the checks' own
        await self._wait_bookings_on(self.hubs[1])
        for n in range(config.technicians):
            record = TechRecord(technician_id(self.tag, n), booking_id(self.tag, n))
            url, route_of = self.balancer.url(n % 2), self.balancer.route_of
            self.techs.append(ChaosTechnician(record, url, creds.technicians[n], route_of))
        for k in range(config.operators):
            hub = 0 if k < config.operators_per_hub else 1
            self.consoles.append(
                Console(f"operator-{k}", self.balancer.url(hub), creds.operators[k])
            )
        for j in range(config.customer_count):
            n = j % config.technicians
            self.watchers.append(
                Watcher(self.balancer.url(j % 2), creds.customers[n], booking_id(self.tag, n))
            )
        for client in self._clients():
            await client.start()
        deadline = time.monotonic() + 30
        for client in self._clients():
            await client.wait_connected(max(0.1, deadline - time.monotonic()))

    async def _wait_bookings_on(self, hub: Hub) -> None:
        """Until the second hub shows the last booking en route (it learns over the bus)."""
        last = booking_id(self.tag, self.config.technicians - 1)
        headers = {"Authorization": f"Bearer {self.key}"}
        async with httpx.AsyncClient(base_url=hub.http, headers=headers, timeout=5) as http:
            for _ in range(100):
                answer = await http.get(f"/v1/bookings/{last}")
                if answer.status_code == 200 and answer.json()["status"] == "en_route":
                    return
                await asyncio.sleep(0.1)
        raise RuntimeError(f"{hub.name} never saw the bookings")

    def _clients(self) -> list[Any]:
        return [*self.techs, *(c.client for c in self.consoles), *(w.client for w in self.watchers)]

    # ------------------------------------------------------------------ the load

    async def stream(self) -> None:
        config = self.config
        self.started = time.monotonic()
        origin = stamp_origin(time.time(), config.seconds, config.time_scale)
        for n, tech in enumerate(self.techs):
            tech.record.parked_from_t = origin + parked_from_s(n)
        faults, cursor = self.plan.faults, 0
        fixes = int(config.seconds * config.rate_hz)
        next_progress = PROGRESS_EVERY_S
        next_sample = 0.0
        last_acked = 0
        for k in range(fixes):
            elapsed = k / config.rate_hz
            await asyncio.sleep(max(0.0, self.started + elapsed - time.monotonic()))
            for n, tech in enumerate(self.techs):
                fix = fix_of(n, k, config.rate_hz, config.time_scale)
                t = origin + fix.offset_s
                seq = tech.send_fix(t, fix.lat, fix.lon, acc=fix.acc, speed=fix.speed)
                tech.record.stamps[seq] = t
            now_s = time.monotonic() - self.started
            due, cursor = plan.due(faults, cursor, now_s)
            for fault in due:
                self._fire(fault, k)
            if now_s >= next_sample:
                last_acked = self._sample(now_s, last_acked)
                next_sample += 1.0
            if now_s >= next_progress:
                self._progress(now_s)
                next_progress += PROGRESS_EVERY_S

    def _fire(self, fault: plan.Fault, k: int) -> None:
        at = round(time.monotonic() - self.started, 2)
        self.events.append({"at_s": at, "kind": fault.kind, "target": fault.target})
        if fault.kind == "kill":
            index = int(fault.target)
            self.balancer.up[index] = False
            self.hubs[index].kill()
            _say(f"{at:.1f} s: kill -9 {self.hubs[index].name}")
        elif fault.kind == "restart":
            self._in_background(self._restart(int(fault.target)))
        elif fault.kind == "redis_stop":
            _say(f"{at:.1f} s: Redis SIGTERM")
            self._in_background(self.redis.stop())
        elif fault.kind == "redis_start":
            self._in_background(self._redis_start())
        elif fault.kind == "drop":
            kind, index = fault.target.split(":")
            client = {
                "technician": lambda i: self.techs[i],
                "customer": lambda i: self.watchers[i].client,
                "operator": lambda i: self.consoles[i].client,
            }[kind](int(index))
            self.drops += drop(client)
        elif fault.kind == "sos":
            n = int(fault.target)
            tech = self.techs[n]
            record = SosRecord(fault.detail, tech.record.technician_id, at)
            self.sos.append(record)
            fix = fix_of(n, k, self.config.rate_hz, self.config.time_scale)
            self.sos_tasks.append(asyncio.create_task(press_sos(tech, record, fix.lat, fix.lon)))

    def _in_background(self, work: Any) -> None:
        task = asyncio.create_task(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _restart(self, index: int) -> None:
        hub = self.hubs[index]
        hub.spawn()
        self.spawned_at[f"{hub.name}#{hub.lives}"] = time.monotonic()
        took = await hub.wait_ready()
        self.ready_after.append(took)
        self.balancer.up[index] = True
        _say(f"{time.monotonic() - self.started:.1f} s: {hub.name} back (ready in {took:.1f} s)")

    async def _redis_start(self) -> None:
        while self.redis.process is not None:  # the stop still under way
            await asyncio.sleep(0.05)
        await self.redis.start()
        _say(f"{time.monotonic() - self.started:.1f} s: Redis started again")

    def _sample(self, now_s: float, last_acked: int) -> int:
        now = time.monotonic()
        for hub in self.hubs:
            if hub.pid is None or not hub.alive:
                continue
            stat = read_stat(hub.pid)
            name = f"{hub.name}#{hub.lives}"
            if stat is not None:
                connections = self.balancer.live.get(name, 0)
                sample = RssSample(name, now - self.spawned_at[name], now_s, stat[1], connections)
                self.rss.append(sample)
        acked = sum(t.stats.acked_seq + 1 for t in self.techs)
        self.series.append(
            {
                "second": round(now_s, 1),
                "acked_per_s": acked - last_acked,
                "technicians_connected": sum(t.connected for t in self.techs),
                "hubs_up": sum(self.balancer.up),
            }
        )
        return acked

    def _progress(self, now_s: float) -> None:
        row = self.series[-1] if self.series else {}
        kills = sum(e["kind"] == "kill" for e in self.events)
        acked = sum(s.incident is not None for s in self.sos)
        _say(
            f"{now_s:5.0f}/{self.config.seconds:g} s: acked {row.get('acked_per_s', 0)}/s,"
            f" technicians connected {row.get('technicians_connected', 0)}/{len(self.techs)},"
            f" hubs up {row.get('hubs_up', 0)}, kills {kills}, drops {self.drops},"
            f" SOS acked {acked}/{len(self.sos)}"
        )

    # ------------------------------------------------------------------ after the load

    async def settle(self) -> None:
        """Both hubs up, every buffered fix acked and every SOS retried to its end (bounded)."""
        while self._background:
            await asyncio.sleep(0.1)
        for index, hub in enumerate(self.hubs):
            if not hub.alive:
                await self._restart(index)
        deadline = time.monotonic() + self.config.settle_s
        await asyncio.gather(*(t.flush(max(0.1, deadline - time.monotonic())) for t in self.techs))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(
                asyncio.gather(*self.sos_tasks, return_exceptions=True),
                max(0.1, deadline - time.monotonic()) + 60,
            )
        for tech in self.techs:
            tech.finish_record()

    async def read_back(self) -> tuple[list[dict[str, Any]], dict[str, Any], dict[str, list[int]]]:
        """Open incidents (operator token), bookings with their events and every track."""
        gate = asyncio.Semaphore(_PARALLEL)
        base = self.hubs[0].http
        bookings: dict[str, Any] = {}
        tracks: dict[str, list[int]] = {}
        platform = {"Authorization": f"Bearer {self.key}"}
        async with httpx.AsyncClient(base_url=base, headers=platform, timeout=30) as http:

            async def one(record: TechRecord) -> None:
                async with gate:
                    answer = await http.get(f"/v1/bookings/{record.booking_id}")
                    answer.raise_for_status()
                    bookings[record.booking_id] = answer.json()
                    answer = await http.get(f"/v1/technicians/{record.technician_id}/track")
                    answer.raise_for_status()
                    tracks[record.technician_id] = answer.json()["properties"]["seqs"]

            await asyncio.gather(*(one(t.record) for t in self.techs))
            ops = {"Authorization": f"Bearer {self.operator_token}"}
            answer = await http.get("/v1/incidents", headers=ops)
            answer.raise_for_status()
            incidents = answer.json()["incidents"]
        return incidents, bookings, tracks

    async def close(self) -> None:
        await close_all(self._clients())
        await self.balancer.close()
        await asyncio.gather(*(hub.stop() for hub in self.hubs), return_exceptions=True)
        await self.redis.stop()


async def soak(config: ChaosConfig, out: Path, command: list[str]) -> dict[str, Any]:
    """Run the soak and write ``report.json`` and ``report.png`` into ``out``."""
    # The SDK warns at every retry it makes ("SOS over HTTP failed; retrying"): the soak
    # causes them on purpose, and its figures count what they led to.
    logging.getLogger("doorstep.clients").setLevel(logging.ERROR)
    with tempfile.TemporaryDirectory(prefix="doorstep-chaos-") as work:
        run = Soak(config, Path(work))
        try:
            _say(f"starting Redis, two hubs, {config.technicians} technicians")
            await run.start()
            _say(f"streaming for {config.seconds:g} s")
            await run.stream()
            _say("load over; settling (buffered fixes, SOS retries)")
            await run.settle()
            incidents, bookings, tracks = await run.read_back()
        except BaseException:
            for hub in run.hubs:
                tail = hub.log_tail()
                if tail:
                    _say(f"{hub.name} log tail:\n{tail}")
            raise
        finally:
            await run.close()
    results = [
        checks.check_sos(run.sos, incidents, [c.record for c in run.consoles]),
        checks.check_checkins([t.record for t in run.techs], bookings),
        checks.check_fixes([t.record for t in run.techs], tracks),
        checks.check_rss(
            run.rss,
            fault_times=[e["at_s"] for e in run.events if e["kind"] not in ("drop", "sos")],
            warmup_s=config.warmup_s,
            settle_s=config.rss_settle_s,
            min_judged_s=config.rss_min_judged_s,
            bound_mib_per_min=config.rss_bound_mib_per_min,
        ),
    ]
    injected = {
        "kills": sum(e["kind"] == "kill" for e in run.events),
        "restarts": sum(e["kind"] == "restart" for e in run.events),
        "redis_restarts": sum(e["kind"] == "redis_start" for e in run.events),
        "client_drops": run.drops,
        "failed_over_connections": run.balancer.failed_over,
        "hub_ready_after_restart_s": [round(s, 2) for s in run.ready_after],
        "sos_pressed": len(run.sos),
        "customer_positions": sum(w.positions for w in run.watchers),
    }
    result = report.build(
        config, command, results, injected, run.events, run.series, run.rss, run.sos
    )
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(result, indent=2) + "\n")
    report.write_png(result, run.rss, out / "report.png")
    return result
