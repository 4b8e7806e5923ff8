"""The ``doorstep`` command line: serve the hub, mint tokens."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import click

from realtime.auth import Role, mint
from realtime.settings import Settings, SettingsError, load_settings, with_secrets


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
    """Run the hub (HTTP + WebSocket) on the embedded backend."""
    import uvicorn

    from realtime.app import create_app

    settings = _settings(host=host, port=port, data_dir=data_dir)
    try:
        settings, secrets_path = with_secrets(settings, generate=True)
        app = create_app(settings)
    except SettingsError as exc:
        raise click.ClickException(str(exc)) from None
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
    "--role", required=True, type=click.Choice([r.value for r in Role]), help="Token role."
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
        value, _exp = mint(
            settings.secret.get_secret_value(),
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
def eval_arrival(fixes_path: Path, trips_path: Path, out: Path) -> None:
    """Replay traces through the ETA estimator and presence detector; score them.

    Prints ETA error by horizon, check-in delay and false/missed check-ins beside the
    straight-line baseline when TRIPS.json has ground truth (arrived_t/departed_t).
    """
    from geofence import evaluate
    from realtime import arrival_eval as files

    try:
        trips = files.load_trips(trips_path)
        fixes = files.load_fixes(fixes_path)
        total = sum(len(trip_fixes) for trip_fixes in fixes.values())
        with click.progressbar(length=total, label="replaying fixes", file=sys.stderr) as bar:
            result = evaluate.replay(trips, fixes, progress=bar.update)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    out.mkdir(parents=True, exist_ok=True)
    order = [trip.trip_id for trip in trips]
    rows = files.write_predictions(out / "predictions.csv", result.predictions, order)
    events = files.write_events(out / "events.csv", result.events, order)
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
    click.echo(f"{fixes_path}\n{trips_path}")


if __name__ == "__main__":  # pragma: no cover
    main()
