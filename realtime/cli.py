"""The ``doorstep`` command line: serve the hub, mint tokens, simulate, replay, demo."""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from realtime.auth import Keyring, Role, issue
from realtime.settings import (
    SECRETS_FILE,
    Settings,
    SettingsError,
    load_settings,
    with_secrets,
)

if TYPE_CHECKING:
    from clients.simulator import SimReport, SimTrip


def _settings(**overrides: object) -> Settings:
    try:
        return load_settings(**overrides)
    except SettingsError as exc:
        raise click.ClickException(str(exc)) from None


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """Doorstep: real-time technician tracking and safety hub.

    Settings come from DOORSTEP_* environment variables (DOORSTEP_SECRET,
    DOORSTEP_PLATFORM_KEY, DOORSTEP_DATA_DIR, DOORSTEP_BACKEND, ...); command-line
    options override them. See docs/operations.md for every setting.
    """


@main.command()
@click.option("--host", default=None, help="Interface to listen on [DOORSTEP_HOST, 127.0.0.1].")
@click.option("--port", default=None, type=int, help="TCP port [DOORSTEP_PORT, 8765].")
@click.option(
    "--data-dir",
    default=None,
    type=click.Path(file_okay=False, path_type=Path),
    help="SQLite database and generated secrets [DOORSTEP_DATA_DIR, ./doorstep-data].",
)
@click.option("--log-level", default="info", show_default=True, help="uvicorn log level.")
def serve(host: str | None, port: int | None, data_dir: Path | None, log_level: str) -> None:
    """Run the hub (HTTP + WebSocket) on the backend DOORSTEP_BACKEND selects (embedded)."""
    import uvicorn

    from realtime import logsafety
    from realtime.app import create_app

    settings = _settings(host=host, port=port, data_dir=data_dir)
    try:
        settings, secrets_path = with_secrets(settings, generate=True)
        logsafety.install(settings)  # before uvicorn logs its first request
        app = create_app(settings)
    except SettingsError as exc:
        raise click.ClickException(str(exc)) from None
    if settings.backend != "redis":
        from realtime.backends.sqlite import data_dir_holder

        # One process per data dir: refused here in one line (the store's lock at start
        # refuses too, but inside the server's startup, with a traceback).
        in_use = data_dir_holder(settings.data_dir)
        if in_use is not None:
            raise click.ClickException(in_use)
    if secrets_path is not None:
        click.echo(f"doorstep: secret and platform key are in {secrets_path}", err=True)
    click.echo(
        f"doorstep: serving on http://{settings.host}:{settings.port} "
        f"(data in {settings.data_dir.resolve()})",
        err=True,
    )
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        log_level=log_level,
        ws_max_size=settings.hard_frame_bytes,
        timeout_graceful_shutdown=int(settings.shutdown_grace_s) or 1,
    )


@main.command()
@click.option(
    "--role",
    required=True,
    # No platform tokens: the platform authenticates with its API key.
    type=click.Choice([r.value for r in Role if r is not Role.PLATFORM]),
    help="Token role.",
)
@click.option("--sub", required=True, help="Subject: the technician, customer or operator id.")
@click.option("--booking", default=None, help="Booking id (required for customers).")
@click.option("--ttl", default=None, type=int, help="Lifetime in seconds [DOORSTEP_TOKEN_TTL_S].")
@click.option(
    "--data-dir",
    default=None,
    type=click.Path(file_okay=False, path_type=Path),
    help="Data dir holding generated secrets [DOORSTEP_DATA_DIR].",
)
def token(role: str, sub: str, booking: str | None, ttl: int | None, data_dir: Path | None) -> None:
    """Print a signed token (alone on stdout) using the same settings as `serve`."""
    settings = _settings(data_dir=data_dir)
    try:
        settings, _ = with_secrets(settings, generate=False)
    except SettingsError as exc:
        raise click.ClickException(str(exc)) from None
    assert settings.secret is not None
    try:
        keyring = Keyring(
            settings.secret.get_secret_value(),
            issuer=settings.token_issuer,
            audience=settings.token_audience,
        )
        value, _exp, _jti = issue(
            keyring,
            role=Role(role),
            sub=sub,
            booking=booking,
            now=time.time(),
            ttl_s=ttl or settings.token_ttl_s,
        )
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    sys.stdout.write(value + "\n")


@main.command("eval-arrival")
@click.option(
    "--fixes",
    "fixes_path",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="FIXES.jsonl: one {trip_id, t, lat, lon, acc?, speed?, heading?} per line.",
)
@click.option(
    "--trips",
    "trips_path",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="TRIPS.json: [{trip_id, destination: {lat, lon}, geofence_radius_m?, arrived_t?, "
    "departed_t?}].",
)
@click.option(
    "--out",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Directory for predictions.csv, events.csv (and metrics.md with ground truth).",
)
@click.option(
    "--models",
    "models_path",
    default=None,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Start from what an earlier run learned (its OUT/models.json), as a hub that has "
    "seen earlier trips does; without it the models start from their priors.",
)
@click.option(
    "--osrm-url",
    default=None,
    help="Also score the ETA with route distances from this OSRM-compatible server, through "
    "the hub's routing code (e.g. loadtest/osrm_sim.py serving simulate-traces' roads.json).",
)
@click.option(
    "--osrm-timeout-s",
    default=1.0,
    show_default=True,
    type=click.FloatRange(min=0, min_open=True),
    help="Per-request deadline, as DOORSTEP_OSRM_TIMEOUT_S.",
)
@click.option(
    "--osrm-refresh-s",
    default=60.0,
    show_default=True,
    type=click.FloatRange(min=5),
    help="Ask again after this long per trip, as DOORSTEP_OSRM_REFRESH_S.",
)
def eval_arrival(
    fixes_path: Path,
    trips_path: Path,
    out: Path,
    models_path: Path | None,
    osrm_url: str | None,
    osrm_timeout_s: float,
    osrm_refresh_s: float,
) -> None:
    """Replay traces through the ETA estimator and presence detector; score them.

    Prints ETA error by horizon, check-in delay and false/missed check-ins beside the
    straight-line baseline when TRIPS.json has ground truth (arrived_t/departed_t). With
    --osrm-url a second ETA column uses the routing engine's distances; predictions.csv
    then has an eta_routed_s column. OUT/models.json keeps what was learned, for --models.
    """
    from geofence import evaluate
    from realtime import arrival_eval as files

    routes = None
    try:
        trips = files.load_trips(trips_path)
        fixes = files.load_fixes(fixes_path)
        learned = files.load_models(models_path) if models_path else None
        total = sum(len(trip_fixes) for trip_fixes in fixes.values())
        if osrm_url:
            routes = files.RoutedDistances(osrm_url, osrm_timeout_s, osrm_refresh_s)
        with click.progressbar(length=total, label="replaying fixes", file=sys.stderr) as bar:
            result = evaluate.replay(
                trips, fixes, progress=bar.update, route_distance=routes, learned=learned
            )
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        if routes is not None:
            routes.close()
    if routes is not None:
        click.echo(
            f"doorstep: {routes.calls} routing requests to {osrm_url}, "
            f"{routes.failures} failed (default provider used instead)",
            err=True,
        )
        if routes.calls and routes.failures == routes.calls:
            raise click.ClickException(f"the routing engine at {osrm_url} never answered")
    out.mkdir(parents=True, exist_ok=True)
    order = [trip.trip_id for trip in trips]
    rows = files.write_predictions(out / "predictions.csv", result.predictions, order)
    events = files.write_events(out / "events.csv", result.events, order)
    if result.learned is not None:
        files.write_models(out / "models.json", result.learned)
    click.echo(f"doorstep: {rows} predictions, {events} events written to {out}", err=True)
    if not any(trip.has_truth for trip in trips):
        click.echo("doorstep: no ground truth (arrived_t) in the trips file: no metrics", err=True)
        return
    table = evaluate.format_markdown(evaluate.score(trips, result))
    (out / "metrics.md").write_text(table, encoding="utf-8")
    click.echo(table, nl=False)


@main.command("simulate-traces")
@click.option("--trips", "count", default=200, show_default=True, help="Number of trips.")
@click.option("--seed", default=0, show_default=True, help="Same seed, same traces.")
@click.option(
    "--out",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Directory for fixes.jsonl and trips.json (with ground truth).",
)
def simulate_traces(count: int, seed: int, out: Path) -> None:
    """Write synthetic trips (driving, parking, walking in, visit, leaving) for eval-arrival."""
    from geofence.traces import generate_trip
    from realtime.arrival_eval import write_traces

    if count < 1:
        raise click.UsageError("--trips must be at least 1")
    with click.progressbar(range(count), label="simulating trips", file=sys.stderr) as indices:
        traces = [generate_trip(index, seed) for index in indices]
    fixes_path, trips_path = write_traces(out, traces)
    click.echo(f"{fixes_path}\n{trips_path}\n{out / 'roads.json'}")


# ------------------------------------------------------------------ simulator, replay, demo


def _platform_key(data_dir: Path | None) -> str:
    """DOORSTEP_PLATFORM_KEY, else the one `serve` generated into the data dir."""
    settings = _settings(data_dir=data_dir)
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
    return (hub or f"http://127.0.0.1:{_settings().port}").rstrip("/")


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
_SPEEDUP_HELP = (
    "Play X times faster. Fixes keep real time stamps (the hub refuses fixes more than "
    "120 s ahead), so technicians move X times faster; keep it <= 3 to watch arrivals."
)
_KEY_DIR_HELP = "The hub's data dir, for its generated platform key [DOORSTEP_DATA_DIR]."


def _speedup_option(default: float) -> Callable[[Any], Any]:
    """``--speedup``, shared by simulate, replay and demo."""
    return click.option(
        "--speedup",
        default=default,
        show_default=True,
        type=click.FloatRange(0, min_open=True),
        help=_SPEEDUP_HELP,
    )


_key_dir_option = click.option(
    "--data-dir",
    default=None,
    type=click.Path(file_okay=False, path_type=Path),
    help=_KEY_DIR_HELP,
)


@main.command()
@click.option("--hub", default=None, help=_HUB_HELP)
@click.option(
    "--technicians",
    "count",
    default=5,
    show_default=True,
    type=click.IntRange(1, 1000),
    help="How many technicians, each with a booking of its own.",
)
@_speedup_option(default=1.0)
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

    from realtime import simulation

    key = _platform_key(data_dir)
    hub_url = _hub_url(hub)
    if dropouts and hub_url.startswith("https:"):
        click.echo("doorstep: dead zones need a plain http hub; simulating without", err=True)
        dropouts = False
    plans = simulation.plan_trips(
        count,
        seed,
        run_id=secrets.token_hex(2),
        dead_zones=dropouts,
        sos_rate=sos_rate,
        park_after_s=simulation.PARKED_HUB_S * speedup,
    )
    total = simulation.planned_within(plans, speedup, duration)

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
            lambda: simulation.simulate(
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


@main.command()
@click.argument("track", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--technician", required=True, help="Stream as this technician id.")
@click.option("--hub", default=None, help=_HUB_HELP)
@_speedup_option(default=1.0)
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
    from realtime import simulation

    try:
        fixes = simulation.load_track(track)
    except simulation.TrackError as exc:
        raise click.ClickException(str(exc)) from None
    key = _platform_key(data_dir)
    hub_url = _hub_url(hub)
    with click.progressbar(length=len(fixes), label="fixes sent", file=sys.stderr) as bar:
        report = _run_trips(
            hub_url,
            lambda: simulation.replay(
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


@main.command()
@click.option(
    "--port",
    default=8765,
    show_default=True,
    type=click.IntRange(0, 65535),
    help="Port on 127.0.0.1 (0: any free one).",
)
@click.option(
    "--technicians",
    default=5,
    show_default=True,
    type=click.IntRange(1, 50),
    help="How many simulated technicians, each with a booking of its own.",
)
@click.option(
    "--duration",
    default=None,
    type=click.FloatRange(0, min_open=True),
    help="Stop after this many seconds [at Ctrl-C].",
)
@_speedup_option(default=2.0)
@click.option("--seed", default=0, show_default=True, help="Same seed, same trips.")
@click.option(
    "--data-dir",
    default=None,
    type=click.Path(file_okay=False, path_type=Path),
    help="Keep the demo's database and secrets here [a temporary dir, deleted at exit].",
)
def demo(
    port: int,
    technicians: int,
    duration: float | None,
    speedup: float,
    seed: int,
    data_dir: Path | None,
) -> None:
    """Start a hub with simulated technicians and print the links to watch them."""
    import tempfile

    from realtime.demo import DemoError, run_demo

    with contextlib.ExitStack() as stack:
        if data_dir is None:
            data_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="doorstep-")))
        settings = _settings(host="127.0.0.1", port=port, data_dir=data_dir, backend="embedded")
        try:
            settings, _ = with_secrets(settings, generate=True)
            from realtime import logsafety

            logsafety.install(settings)
            asyncio.run(
                run_demo(
                    settings,
                    technicians=technicians,
                    duration_s=duration,
                    speedup=speedup,
                    seed=seed,
                    echo=click.echo,
                )
            )
        except (DemoError, SettingsError) as exc:
            raise click.ClickException(str(exc)) from None
        except KeyboardInterrupt:  # before the demo's own Ctrl-C handling was in place
            click.echo("demo stopped", err=True)


if __name__ == "__main__":  # pragma: no cover
    main()
