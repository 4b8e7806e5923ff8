"""The demo behind ``doorstep demo``: a hub, a small simulated fleet and the links, one process.

What a newcomer types first, so it needs nothing else: the hub runs on its embedded
default (uvicorn on 127.0.0.1, SQLite in a temporary data dir, generated secrets), the
bookings are created around one city centre through the platform API, and the simulated
technicians (``clients/simulator.py``) stream over real WebSockets from the same event loop.
The links are printed as soon as the bookings exist, a second or two after start, and the
technicians are already moving by then.

To keep the show short, technicians start ~2 km from the door (already on the way), the
trip plays at 2x (the simulator's docstring says what a speedup does to time stamps), and
visits are cut to 5 minutes of trip time: a booking goes from "on the way" through
"arriving" and "arrived" to "done" in about ten minutes (seed 0: 8 to 14 minutes).
Afterwards each technician stays parked at the next job, still reporting, so the hub sees
it leave for long enough to check it out.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from urllib.parse import urlencode

import uvicorn

from clients.platform import PlatformClient
from clients.sim_runs import book_trips, stop_on_signals
from clients.simulator import SimReport, SimTrip, Simulator
from loadtest.sim_trips import DEFAULT_CENTRE, PARKED_HUB_S, plan_trips
from realtime.app import create_app
from realtime.settings import Settings

DEMO_SPEEDUP = 2.0  # under the hub's 60 m/s plausibility limit even at arterial speeds
START_WITHIN_M = 2000.0
MAX_VISIT_S = 300.0
SPREAD_M = 2500.0


class DemoError(Exception):
    """The demo could not start (the port is taken, the hub did not come up)."""


@dataclass(frozen=True)
class DemoLinks:
    console: str
    tracking: list[tuple[str, str]]  # (booking id, tracking page URL)
    technician: tuple[str, str]  # (technician id, technician app URL)

    def lines(self) -> list[str]:
        out = ["operator console (every technician, SOS queue):", f"  {self.console}", ""]
        out.append("customer tracking pages (one per booking):")
        out += [f"  {booking}: {url}" for booking, url in self.tracking]
        technician, url = self.technician
        out += [
            "",
            f"technician app for {technician} (not simulated: share your location, or",
            "press and hold SOS to see the console's alarm):",
            f"  {url}",
        ]
        return out


class _Server(uvicorn.Server):
    """uvicorn without its own Ctrl-C handling: the demo stops the simulated technicians
    before the hub, so that they do not spend their last seconds reconnecting to nothing."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def run_demo(
    settings: Settings,
    *,
    technicians: int = 5,
    duration_s: float | None = None,
    speedup: float = DEMO_SPEEDUP,
    seed: int = 0,
    echo: Callable[[str], None] = print,
) -> SimReport | None:
    """Serve, book, simulate and print the links; return on Ctrl-C or after ``duration_s``."""
    assert settings.secret is not None and settings.platform_key is not None
    sock = _listen(settings.host, settings.port)
    port = sock.getsockname()[1]
    base = f"http://{settings.host}:{port}"
    app = create_app(settings)
    server = _Server(
        uvicorn.Config(
            app,
            log_level="warning",
            ws_max_size=settings.hard_frame_bytes,
            timeout_graceful_shutdown=1,
            lifespan="on",
        )
    )
    serving = asyncio.create_task(server.serve(sockets=[sock]), name="demo hub")
    stop = asyncio.Event()
    simulator: Simulator | None = None
    simulation: asyncio.Task[SimReport] | None = None
    with stop_on_signals(stop.set):
        try:
            await _started(server, serving)
            trips, links = await _book(
                base, settings.platform_key.get_secret_value(), technicians, speedup, seed
            )
            simulator = Simulator(base, trips, speedup=speedup, flush_timeout_s=2.0)
            simulation = asyncio.create_task(simulator.run(), name="demo technicians")
            echo(
                f"Doorstep demo: hub on {base} (data in {settings.data_dir}), "
                f"{len(trips)} technicians driving at {speedup:g}x"
            )
            echo("")
            for line in links.lines():
                echo(line)
            echo("")
            echo("Open a link in a browser. Ctrl-C stops the demo.")
            simulation.add_done_callback(
                lambda _: stop.is_set() or echo("demo: every trip has been played; still serving")
            )
            waiters = [asyncio.ensure_future(stop.wait()), serving]
            await asyncio.wait(waiters, timeout=duration_s, return_when=asyncio.FIRST_COMPLETED)
            waiters[0].cancel()
        finally:
            stop.set()
            report = await _stop_simulation(simulator, simulation)
            server.should_exit = True
            with contextlib.suppress(Exception):
                await serving
    if report is not None:
        echo(f"demo stopped: {report.summary()}")
    return report


def _listen(host: str, port: int) -> socket.socket:
    """Bind first, so that a taken port is a clear message before anything else starts."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise DemoError(
            f"cannot listen on {host}:{port} ({exc.strerror}): is `doorstep serve` running? "
            "pick another port with --port (0: any free one)"
        ) from None
    return sock


async def _started(server: uvicorn.Server, serving: asyncio.Task[None]) -> None:
    for _ in range(1000):
        if server.started:
            return
        if serving.done():
            break
        await asyncio.sleep(0.01)
    error = serving.exception() if serving.done() else None
    raise DemoError(f"the hub did not start: {error or 'timed out'}")


async def _book(
    base: str, platform_key: str, count: int, speedup: float, seed: int
) -> tuple[list[SimTrip], DemoLinks]:
    run_id = secrets.token_hex(2)  # ids differ per run, so a kept --data-dir never collides
    plans = plan_trips(
        count,
        seed,
        run_id=run_id,
        centre=DEFAULT_CENTRE,
        spread_m=SPREAD_M,
        dead_zones=False,
        start_within_m=START_WITHIN_M,
        max_visit_s=MAX_VISIT_S,
        park_after_s=PARKED_HUB_S * speedup,
    )
    async with PlatformClient(base, platform_key) as platform:
        trips = await book_trips(platform, plans, speedup=speedup)
        tracking = []
        for plan in plans:
            token = await platform.token("customer", plan.customer_id, booking=plan.booking_id)
            query = urlencode({"booking": plan.booking_id, "token": token})
            tracking.append((plan.booking_id, f"{base}/track?{query}"))
        operator = await platform.token("operator", f"op-{run_id}")
        # One more technician, with a booking but no simulation, for the person at the
        # keyboard: a simulated technician's page would fight the simulator over its seqs.
        you = f"t-{run_id}-you"
        await platform.create_booking(
            id=f"b-{run_id}-you",
            customer_id=f"c-{run_id}-you",
            technician_id=you,
            destination={"lat": DEFAULT_CENTRE[0], "lon": DEFAULT_CENTRE[1]},
        )
        tech = await platform.token("technician", you)
    links = DemoLinks(
        console=f"{base}/console?{urlencode({'token': operator})}",
        tracking=tracking,
        technician=(you, f"{base}/tech?{urlencode({'token': tech})}"),
    )
    return trips, links


async def _stop_simulation(
    simulator: Simulator | None, simulation: asyncio.Task[SimReport] | None
) -> SimReport | None:
    if simulator is None or simulation is None:
        return None
    simulator.stop()
    try:
        return await simulation
    except Exception:  # the run's own failure: reported by the task, not fatal to shutdown
        return None
