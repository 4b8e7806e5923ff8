"""Development commands of the arrival evaluation: ``eval-arrival``, ``simulate-traces``.

The harness lives in ``loadtest/arrival/`` and the trace generator in ``loadtest/traces.py``;
both are imported inside the commands, so ``doorstep serve`` never loads them.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from loadtest.traces import Trace


@click.command("eval-arrival")
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
    --osrm-url a second ETA column uses the routing engine's distances. predictions.csv has
    trip_id,t,eta_s,low_s,high_s (the range shown with the ETA; metrics.md scores how often
    it held), plus eta_routed_s,routed_low_s,routed_high_s with a routing engine.
    OUT/models.json keeps what was learned, for --models.
    """
    from loadtest.arrival import files
    from loadtest.arrival.replay import replay
    from loadtest.arrival.report import format_markdown
    from loadtest.arrival.routed import RoutedDistances
    from loadtest.arrival.score import score

    routes = None
    try:
        trips = files.load_trips(trips_path)
        fixes = files.load_fixes(fixes_path)
        learned = files.load_models(models_path) if models_path else None
        total = sum(len(trip_fixes) for trip_fixes in fixes.values())
        if osrm_url:
            routes = RoutedDistances(osrm_url, osrm_timeout_s, osrm_refresh_s)
        with click.progressbar(length=total, label="replaying fixes", file=sys.stderr) as bar:
            result = replay(
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
    table = format_markdown(score(trips, result))
    (out / "metrics.md").write_text(table, encoding="utf-8")
    click.echo(table, nl=False)


@click.command("simulate-traces")
@click.option("--trips", "count", default=200, show_default=True, help="Number of trips.")
@click.option("--seed", default=0, show_default=True, help="Same seed, same traces.")
@click.option(
    "--out",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Directory for fixes.jsonl and trips.json (with ground truth).",
)
@click.option(
    "--engine",
    type=click.Choice(["own", "sumo"]),
    default="own",
    show_default=True,
    help="own: Doorstep's kinematic generator (fast). sumo: the SUMO traffic simulator on a "
    "real street network with background traffic (pip install -e '.[sumo]').",
)
@click.option(
    "--network",
    default="berlin",
    show_default=True,
    help="With --engine sumo: berlin (tuning) or braunschweig (held out).",
)
def simulate_traces(count: int, seed: int, out: Path, engine: str, network: str) -> None:
    """Write trips (driving, parking, walking in, visit, leaving) for eval-arrival."""
    from loadtest.arrival.files import write_traces

    if count < 1:
        raise click.UsageError("--trips must be at least 1")
    if engine == "sumo":
        traces = _sumo_traces(count, seed, out, network)
    else:
        from loadtest.traces import generate_trip

        with click.progressbar(range(count), label="simulating trips", file=sys.stderr) as bar:
            traces = [generate_trip(index, seed) for index in bar]
    fixes_path, trips_path = write_traces(out, traces)
    click.echo(f"{fixes_path}\n{trips_path}\n{out / 'roads.json'}")


def _sumo_traces(count: int, seed: int, out: Path, network: str) -> list[Trace]:
    from loadtest.sumo.home import SumoMissing
    from loadtest.sumo.networks import network as find_network
    from loadtest.sumo.trips import generate

    try:
        chosen = find_network(network)
        with click.progressbar(length=count, label="SUMO trips", file=sys.stderr) as bar:
            traces, dropped = generate(chosen, count, seed, out / "sumo", progress=bar.update)
    except (SumoMissing, ValueError, FileNotFoundError) as exc:
        raise click.ClickException(str(exc)) from None
    if dropped:
        click.echo(
            f"doorstep: {len(dropped)} SUMO trips dropped (teleported out of a gridlock, or "
            f"no usable visit): {', '.join(dropped)}",
            err=True,
        )
    return traces
