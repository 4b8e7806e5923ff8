"""Development commands that drive a running hub: ``doorstep simulate`` and ``replay``.

Simulated technicians stream through the Python SDK (``clients/``); trips come from the
synthetic traces (``loadtest/sim_trips.py``) or a recorded track (``clients/tracks.py``).
Those are imported inside the commands, so ``doorstep serve`` never loads them.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from realtime.cli.common import load, speedup_option
from realtime.settings import SECRETS_FILE, SettingsError, with_secrets

if TYPE_CHECKING:
    from clients.simulator import SimReport, SimTrip


def _platform_key(data_dir: Path | None) -> str:
    """DOORSTEP_PLATFORM_KEY, else the one `serve` generated into the data dir."""
    settings = load(data_dir=data_dir)
    if settings.platform_key is None:
        path = settings.data_dir / SECRETS_FILE
        if not path.exists():
            raise click.ClickException(
                f"no platform key: DOORSTEP_PLATFORM_KEY is not set and {path} does not exist "
                "(point --data-dir at the hub's data dir)"
            )
        try:
            settings, _ = with_secrets(settings, generate=False)
        except SettingsError as exc:
            raise click.ClickException(str(exc)) from None
    if settings.platform_key is None:
        raise click.ClickException(f"no platform key in {settings.data_dir / SECRETS_FILE}")
    return settings.platform_key.get_secret_value()


def _hub_url(hub: str | None) -> str:
    return (hub or f"http://127.0.0.1:{load().port}").rstrip("/")


def _run_trips(hub_url: str, run: Callable[[], Coroutine[Any, Any, SimReport]]) -> SimReport:
    """Run a simulation coroutine; turn what a user can fix into one-line errors."""
    import httpx

    from clients.errors import DoorstepError

    try:
        return asyncio.run(run())
    except httpx.HTTPError as exc:
        raise click.ClickException(f"cannot reach the hub at {hub_url}: {exc}") from None
    except (DoorstepError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None


def _print_report(report: SimReport) -> None:
    click.echo(report.summary())
    for tech in report.technicians:
        if tech.sos_incident:
            click.echo(f"{tech.technician_id}: SOS incident {tech.sos_incident} ({tech.sos_via})")
        for problem in (tech.sos_error, tech.error):
            if problem:
                click.echo(f"{tech.technician_id}: {problem}", err=True)


_HUB_HELP = "The hub's base URL [http://127.0.0.1:DOORSTEP_PORT]."
_KEY_DIR_HELP = "The hub's data dir, for its generated platform key [DOORSTEP_DATA_DIR]."

_key_dir_option = click.option(
    "--data-dir",
    default=None,
    type=click.Path(file_okay=False, path_type=Path),
    help=_KEY_DIR_HELP,
)


@click.command()
@click.option("--hub", default=None, help=_HUB_HELP)
@click.option(
    "--technicians",
    "count",
    default=5,
    show_default=True,
    type=click.IntRange(1, 1000),
    help="How many technicians, each with a booking of its own.",
)
@speedup_option(default=1.0)
@click.option("--seed", default=0, show_default=True, help="Same seed, same trips.")
@click.option(
    "--dropouts/--no-dropouts",
    default=True,
    show_default=True,
    help="Network dead zones on the way: fixes wait in the SDK's offline buffer meanwhile.",
)
@click.option(
    "--sos-rate",
    default=0.0,
    show_default=True,
    type=click.FloatRange(0, 1),
    help="Chance that each technician presses SOS once on the way.",
)
@click.option(
    "--duration",
    default=None,
    type=click.FloatRange(0, min_open=True),
    help="Stop after this many real seconds [when every trip is over].",
)
@_key_dir_option
def simulate(
    hub: str | None,
    count: int,
    speedup: float,
    seed: int,
    dropouts: bool,
    sos_rate: float,
    duration: float | None,
    data_dir: Path | None,
) -> None:
    """Drive simulated technicians to bookings (created here) along road-like routes.

    Lights, jams, GPS noise, tunnels, parking and the visit come from the same synthetic
    trips as simulate-traces, moved around one city centre; each technician streams
    through the Python SDK. Ctrl-C stops early, flushed and reported.
    """
    import secrets

    from clients.sim_runs import planned_within
    from clients.sim_runs import simulate as run_simulation
    from loadtest import sim_trips

    key = _platform_key(data_dir)
    hub_url = _hub_url(hub)
    if dropouts and hub_url.startswith("https:"):
        click.echo("doorstep: dead zones need a plain http hub; simulating without", err=True)
        dropouts = False
    plans = sim_trips.plan_trips(
        count,
        seed,
        run_id=secrets.token_hex(2),
        dead_zones=dropouts,
        sos_rate=sos_rate,
        park_after_s=sim_trips.PARKED_HUB_S * speedup,
    )
    total = planned_within(plans, speedup, duration)

    bar = click.progressbar(length=total, label="fixes sent", file=sys.stderr)

    def ready(trips: list[SimTrip]) -> None:
        ids = ", ".join(t.booking_id or "" for t in trips[:5])
        if len(trips) > 5:
            ids += f" and {len(trips) - 5} more"
        click.echo(f"doorstep: bookings {ids} are en_route; streaming", err=True)
        stack.enter_context(bar)  # shown once the bookings exist, below that line

    with contextlib.ExitStack() as stack:
        report = _run_trips(
            hub_url,
            lambda: run_simulation(
                hub_url,
                key,
                plans,
                speedup=speedup,
                duration_s=duration,
                on_ready=ready,
                on_fix=lambda _: bar.update(1),
            ),
        )
    _print_report(report)


@click.command()
@click.argument("track", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--technician", required=True, help="Stream as this technician id.")
@click.option("--hub", default=None, help=_HUB_HELP)
@speedup_option(default=1.0)
@click.option(
    "--booking", default=None, help="Give this booking to the technician and set it en_route."
)
@_key_dir_option
def replay(
    track: Path,
    technician: str,
    hub: str | None,
    speedup: float,
    booking: str | None,
    data_dir: Path | None,
) -> None:
    """Stream a recorded TRACK (.gpx, or .geojson as the track endpoint returns it).

    Fix times are moved to now (the hub refuses old and future fixes) keeping their spacing;
    a track without times plays at 1 fix per second.
    """
    from clients.sim_runs import replay as run_replay
    from clients.tracks import TrackError, load_track

    try:
        fixes = load_track(track)
    except TrackError as exc:
        raise click.ClickException(str(exc)) from None
    key = _platform_key(data_dir)
    hub_url = _hub_url(hub)
    with click.progressbar(length=len(fixes), label="fixes sent", file=sys.stderr) as bar:
        report = _run_trips(
            hub_url,
            lambda: run_replay(
                hub_url,
                key,
                fixes,
                technician,
                speedup=speedup,
                booking_id=booking,
                on_fix=lambda _: bar.update(1),
            ),
        )
    _print_report(report)
