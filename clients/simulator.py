"""Simulated technicians: play ready-made trips through the SDK's TechnicianClient.

The simulator knows nothing about roads or GPS noise. It gets each trip as fixes with their
offsets in *trip time* (``loadtest/sim_trips.py`` builds them from the synthetic traces in
``loadtest/traces.py``; ``doorstep replay`` from a recorded track) and plays them the way a
phone would: each fix goes to ``TechnicianClient.send_fix`` when its moment comes, so the
hub sees the SDK's real traffic (acks, batches after a reconnect, SOS over socket or HTTP).

Time. ``speedup`` compresses the waiting, not the clock: the fix at trip offset ``o`` is
sent ``o / speedup`` seconds after the start *and stamped with that real moment*. Stamping
it with trip time instead (one second apart while sent a tenth of a second apart) would
run ahead of the real clock, and the hub refuses fixes more than ``max_future_skew_s``
(120 s) in the future. So at ``speedup`` 10 the technician covers ten seconds of road per
real second: speeds, ETAs and dwell times all shrink tenfold, and the reported ``speed`` is
scaled too, so that it agrees with the positions (dropped above the protocol's 150 m/s).
The hub treats moves faster than 60 m/s as GPS jumps, so above ~3x its arrival logic sees
glitches; use 1-3x to watch arrivals, more to exercise the plumbing.

Dead zones. A phone in a tunnel keeps its GPS fixes but cannot reach the hub. Each
simulated phone with dead zones talks to the hub through its own local TCP relay
(``NetworkLink``); during a dead zone the relay drops every connection and refuses new
ones, so the SDK's offline buffer fills and is resent when the link returns, exactly as on
a phone. The relay forwards bytes, so it cannot carry TLS to an ``https`` hub (the
certificate names the hub, not 127.0.0.1): dead zones need a plain ``http`` hub.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple
from urllib.parse import urlsplit, urlunsplit

from clients._connection import Backoff
from clients.errors import DoorstepError
from clients.technician import MAX_SPEED_MS, TechnicianClient
from realtime import protocol as wire

log = logging.getLogger("doorstep.clients.simulator")


class PlannedFix(NamedTuple):
    """One fix of a trip: ``offset_s`` after the trip's first fix (trip time), and what the
    phone reports. ``speed`` is the real speed in m/s; the simulator scales it."""

    offset_s: float
    lat: float
    lon: float
    acc: float | None = None
    speed: float | None = None
    heading: float | None = None


@dataclass(frozen=True)
class SimTrip:
    """What one simulated technician does: stream ``fixes`` with ``token``.

    ``dead_zones`` are (start, end) offsets in trip time during which the phone has no
    network; ``sos_at_s`` is when it presses SOS (at its latest position), if ever.
    """

    technician_id: str
    token: str
    fixes: Sequence[PlannedFix]
    booking_id: str | None = None
    dead_zones: Sequence[tuple[float, float]] = ()
    sos_at_s: float | None = None

    @property
    def duration_s(self) -> float:
        """Trip time from the first fix to the last."""
        return self.fixes[-1].offset_s if self.fixes else 0.0


@dataclass
class TechnicianReport:
    """How one simulated technician's run went (live while it runs, final after)."""

    technician_id: str
    booking_id: str | None
    planned: int
    sent: int = 0  # fixes handed to the SDK
    skipped: int = 0  # planned fixes the protocol cannot carry (out of range)
    acked_seq: int = -1  # highest seq the hub has stored
    unacked: int = 0  # still in the SDK's buffer when the run ended
    dropped: int = 0  # lost to a full offline buffer
    rejected: int = 0  # refused by the hub as invalid
    dead_zones: int = 0  # dead zones entered
    buffered_in_dead_zones: int = 0  # fixes that were waiting in the buffer when one ended
    connections: int = 0  # WebSocket connections opened (1 + reconnects)
    sos_incident: str | None = None  # the incident an SOS press raised
    sos_via: str | None = None  # "socket" or "http"
    sos_error: str | None = None  # why an SOS press was not delivered
    checks_answered: int = 0  # "are you OK?" prompts answered
    finished: bool = False  # every planned fix was sent
    error: str | None = None  # why the technician stopped early (a refused token, ...)


@dataclass
class SimReport:
    technicians: list[TechnicianReport]
    elapsed_s: float = 0.0

    @property
    def sent(self) -> int:
        return sum(r.sent for r in self.technicians)

    @property
    def unacked(self) -> int:
        return sum(r.unacked for r in self.technicians)

    @property
    def incidents(self) -> list[str]:
        return [r.sos_incident for r in self.technicians if r.sos_incident]

    def summary(self) -> str:
        """One line for a terminal."""
        lost = sum(r.dropped + r.rejected for r in self.technicians)
        parts = [
            f"{len(self.technicians)} technicians",
            f"{self.sent} fixes sent",
            f"{self.sent - self.unacked - lost} stored",
        ]
        if self.unacked:
            parts.append(f"{self.unacked} unacknowledged")
        if lost:
            parts.append(f"{lost} dropped or refused")
        zones = sum(r.dead_zones for r in self.technicians)
        if zones:
            parts.append(f"{zones} dead zones")
        if self.incidents:
            parts.append(f"{len(self.incidents)} SOS incidents")
        failed = sum(1 for r in self.technicians if r.sos_error)
        if failed:
            parts.append(f"{failed} SOS not delivered")
        errors = sum(1 for r in self.technicians if r.error)
        if errors:
            parts.append(f"{errors} technicians stopped by errors")
        return ", ".join(parts) + f" in {self.elapsed_s:.1f} s"


def simulated_backoff() -> Backoff:
    """Reconnect quickly: a sped-up dead zone lasts a fraction of a second, and a phone
    still waiting out a 30 s backoff cap long after it would have been back online would
    hide what the simulation is meant to show."""
    return Backoff(base_s=0.1, cap_s=2.0)


class Simulator:
    """Plays ``trips`` against the hub at ``base_url``, all starting together.

    ``on_fix(report)`` is called after every planned fix, sent or skipped (a progress
    display).
    """

    def __init__(
        self,
        base_url: str,
        trips: Sequence[SimTrip],
        *,
        speedup: float = 1.0,
        on_fix: Callable[[TechnicianReport], None] | None = None,
        flush_timeout_s: float = 10.0,
        backoff: Callable[[], Backoff] = simulated_backoff,
    ) -> None:
        if not speedup > 0:
            raise ValueError(f"speedup must be positive, not {speedup}")
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https"):
            raise ValueError(f"the hub URL must be http(s)://..., not {base_url!r}")
        if parts.scheme == "https" and any(trip.dead_zones for trip in trips):
            raise ValueError(
                "dead zones are simulated with a local TCP relay, which cannot carry TLS "
                "to an https hub: run without them (--no-dropouts)"
            )
        self.base_url = base_url.rstrip("/")
        self.trips = list(trips)
        self.speedup = speedup
        self.on_fix = on_fix
        # Bounded: at the end (or on Ctrl-C) a technician stuck in a dead zone must not
        # keep the whole run waiting for acks that cannot come.
        self.flush_timeout_s = flush_timeout_s
        self._backoff = backoff
        self._stop = asyncio.Event()
        self.technicians: list[SimulatedTechnician] = []

    async def run(self, duration_s: float | None = None) -> SimReport:
        """Play every trip to its end, for ``duration_s`` real seconds, or until ``stop()``;
        then flush (bounded by ``flush_timeout_s``) and report.

        Cancelling it stops the trips the same way, with a flush of at most 2 s.
        """
        loop = asyncio.get_running_loop()
        started = loop.time()
        # One shared origin: trip offset o is sent at start_mono + o/speedup and stamped
        # start_epoch + o/speedup, the real moment it is sent.
        start_mono, start_epoch = started, time.time()
        self.technicians = [SimulatedTechnician(self, trip, self._backoff()) for trip in self.trips]
        tasks = [
            asyncio.create_task(tech.drive(start_mono, start_epoch), name=f"sim:{tech.id}")
            for tech in self.technicians
        ]
        stopped = asyncio.ensure_future(self._stop.wait())
        flush_s = self.flush_timeout_s
        try:
            if tasks:
                all_done = asyncio.gather(*tasks, return_exceptions=True)
                await asyncio.wait(
                    {all_done, stopped}, timeout=duration_s, return_when=asyncio.FIRST_COMPLETED
                )
        except asyncio.CancelledError:
            flush_s = min(flush_s, 2.0)
            raise
        finally:
            stopped.cancel()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await asyncio.gather(
                *(tech.finish(flush_s) for tech in self.technicians), return_exceptions=True
            )
        return SimReport([t.report for t in self.technicians], loop.time() - started)

    def stop(self) -> None:
        """End ``run`` early (as its duration would): stop sending, flush, report."""
        self._stop.set()


class SimulatedTechnician:
    """One phone: a TechnicianClient, optionally behind a NetworkLink, playing one trip."""

    def __init__(self, simulator: Simulator, trip: SimTrip, backoff: Backoff) -> None:
        self.sim = simulator
        self.trip = trip
        self.id = trip.technician_id
        self.report = TechnicianReport(trip.technician_id, trip.booking_id, len(trip.fixes))
        self.link: NetworkLink | None = None
        base_url = simulator.base_url
        ws_base_url = None
        if trip.dead_zones:
            parts = urlsplit(base_url)
            self.link = NetworkLink(parts.hostname or "127.0.0.1", parts.port or 80)
            base_url = urlunsplit(("http", self.link.address, parts.path, "", ""))
            ws_base_url = urlunsplit(("ws", self.link.address, parts.path, "", ""))
        self.client = TechnicianClient(
            base_url, trip.token, ws_base_url=ws_base_url, backoff=backoff
        )
        self.client.add_listener(self._on_event)
        self._sos_task: asyncio.Task[None] | None = None
        self._last: PlannedFix | None = None

    async def drive(self, start_mono: float, start_epoch: float) -> None:
        """Play the trip; a failure ends this technician only, and is in its report."""
        try:
            await self._drive(start_mono, start_epoch)
        except Exception as exc:
            log.exception("simulated technician %s failed", self.id)
            self.report.error = f"{type(exc).__name__}: {exc}"

    async def _drive(self, start_mono: float, start_epoch: float) -> None:
        """Send every fix at its moment; enter and leave dead zones; press SOS."""
        if self.link is not None:
            await self.link.start()
        await self.client.start()
        speedup = self.sim.speedup
        for offset, kind, payload in self._timeline():
            delay = start_mono + offset / speedup - asyncio.get_running_loop().time()
            if delay > 0:
                await asyncio.sleep(delay)
            if self.client.failure is not None:
                self.report.error = f"{type(self.client.failure).__name__}: {self.client.failure}"
                return
            if kind == "fix":
                self._send(payload, start_epoch + offset / speedup)
            elif kind == "cut" and self.link is not None:
                self.report.dead_zones += 1
                self.link.cut()
            elif kind == "restore" and self.link is not None:
                self.report.buffered_in_dead_zones += len(self.client.buffer)
                self.link.restore()
            elif kind == "sos":
                self._sos_task = asyncio.create_task(self._press_sos())
        self.report.finished = True
        # Let the last fixes reach the hub while the other technicians are still driving.
        await self.client.flush(timeout=self.sim.flush_timeout_s)

    def _timeline(self) -> list[tuple[float, str, Any]]:
        """Fixes, dead-zone edges and the SOS press, in trip-time order."""
        events: list[tuple[float, int, str, Any]] = [
            (fix.offset_s, 1, "fix", fix) for fix in self.trip.fixes
        ]
        for start, end in self.trip.dead_zones:
            events += [(start, 0, "cut", None), (end, 0, "restore", None)]
        if self.trip.sos_at_s is not None:
            events.append((self.trip.sos_at_s, 2, "sos", None))  # after a fix at that moment
        events.sort(key=lambda e: (e[0], e[1]))
        return [(offset, kind, payload) for offset, _, kind, payload in events]

    def _send(self, fix: PlannedFix, t: float) -> None:
        speed = None if fix.speed is None else fix.speed * self.sim.speedup
        if speed is not None and speed > MAX_SPEED_MS:
            speed = None  # faster than any phone reports: leave it out rather than lie
        try:
            self.client.send_fix(t, fix.lat, fix.lon, acc=fix.acc, speed=speed, heading=fix.heading)
        except ValueError as exc:  # a replayed file's nonsense (acc of 1e6 m, ...)
            log.warning("%s: skipping a fix the protocol cannot carry: %s", self.id, exc)
            self.report.skipped += 1
        else:
            self._last = fix
            self.report.sent += 1
        if self.sim.on_fix is not None:
            self.sim.on_fix(self.report)

    async def _press_sos(self) -> None:
        last = self._last
        try:
            receipt = await self.client.sos(
                note="simulated SOS press",
                lat=None if last is None else last.lat,
                lon=None if last is None else last.lon,
            )
        except (DoorstepError, ValueError) as exc:
            self.report.sos_error = f"{type(exc).__name__}: {exc}"
            return
        self.report.sos_incident = receipt.incident
        self.report.sos_via = receipt.via

    async def _on_event(self, event: Any) -> None:
        # A simulated technician is always fine: answering keeps the watchdog from raising
        # an incident for a visit that runs over (a replayed trip knows nothing of it).
        if isinstance(event, wire.CheckPrompt):
            with contextlib.suppress(DoorstepError, TimeoutError):
                await self.client.answer_check(event.id)
                self.report.checks_answered += 1

    async def finish(self, flush_timeout_s: float) -> None:
        """Wait (bounded) for acks and a pending SOS, then close the client and the link."""
        if self.link is not None:
            self.link.restore()  # a run that ended inside a dead zone still gets to flush
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._settle(), flush_timeout_s)
        finally:
            if self._sos_task is not None and not self._sos_task.done():
                self._sos_task.cancel()
                self.report.sos_error = self.report.sos_error or "run ended before the SOS ack"
            stats = self.client.stats
            self.report.acked_seq = stats.acked_seq
            self.report.unacked = stats.buffered
            self.report.dropped = stats.dropped
            self.report.rejected = stats.rejected
            self.report.connections = self.client.socket.connections
            await self.client.close()
            if self.link is not None:
                await self.link.close()

    async def _settle(self) -> None:
        if self.client.failure is None:
            await self.client.flush()
        if self._sos_task is not None:
            await asyncio.shield(self._sos_task)


class NetworkLink:
    """A local TCP relay in front of the hub: one phone's network connection.

    ``cut()`` is a dead zone: every open connection is dropped at once (both ends see a
    reset, as when a phone loses its radio) and new ones are refused until ``restore()``.
    """

    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self.upstream_host = upstream_host
        self.upstream_port = upstream_port
        # Bound now, listening from start(): the client that uses the link needs its
        # address when it is built.
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.bind(("127.0.0.1", 0))
        self.port: int = self._sock.getsockname()[1]
        self.up = True
        self._server: asyncio.Server | None = None
        self._transports: set[asyncio.BaseTransport] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, sock=self._sock)

    def cut(self) -> None:
        self.up = False
        for transport in list(self._transports):
            transport.abort()
        self._transports.clear()

    def restore(self) -> None:
        self.up = True

    async def close(self) -> None:
        self.cut()
        if self._server is None:
            self._sock.close()
        else:
            self._server.close()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self.up:
            writer.transport.abort()  # no network: the connection fails at once
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(
                self.upstream_host, self.upstream_port
            )
        except OSError:
            writer.transport.abort()
            return
        # Checked again: the link may have been cut while the upstream connection opened,
        # and nothing else would drop this pair.
        if not self.up:
            writer.transport.abort()
            up_writer.transport.abort()
            return
        self._transports.update((writer.transport, up_writer.transport))
        for source, sink in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.create_task(self._pump(source, sink))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _pump(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        try:
            while data := await source.read(65536):
                sink.write(data)
                await sink.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            self._transports.discard(sink.transport)
            with contextlib.suppress(Exception):
                sink.close()
