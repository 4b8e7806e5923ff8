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


if __name__ == "__main__":  # pragma: no cover
    main()
