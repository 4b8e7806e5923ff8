"""The production commands: ``doorstep serve`` runs the hub, ``doorstep token`` mints tokens."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import click

from realtime.auth import Keyring, Role, issue
from realtime.cli.common import load
from realtime.settings import SettingsError, with_secrets


@click.command()
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

    settings = load(host=host, port=port, data_dir=data_dir)
    try:
        settings, secrets_path = with_secrets(settings, generate=True)
        logsafety.install(settings)  # before uvicorn logs its first request
        app = create_app(settings, tune_gc=True)
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
        ws=settings.ws_impl,
        ws_max_size=settings.hard_frame_bytes,
        ws_per_message_deflate=settings.ws_per_message_deflate,
        timeout_graceful_shutdown=int(settings.shutdown_grace_s) or 1,
        # JSON logs: uvicorn's loggers keep no handlers of their own and reach the root
        # logger's JSON handler (logsafety.install set it up); text: uvicorn's defaults.
        **({"log_config": None} if settings.log_format == "json" else {}),
    )


@click.command()
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
@click.option("--group", default=None, help="Operators: the group whose cities they watch.")
@click.option(
    "--data-dir",
    default=None,
    type=click.Path(file_okay=False, path_type=Path),
    help="Data dir holding generated secrets [DOORSTEP_DATA_DIR].",
)
def token(
    role: str,
    sub: str,
    booking: str | None,
    ttl: int | None,
    group: str | None,
    data_dir: Path | None,
) -> None:
    """Print a signed token (alone on stdout) using the same settings as `serve`."""
    settings = load(data_dir=data_dir)
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
            group=group,
            now=time.time(),
            ttl_s=ttl or settings.token_ttl_s,
        )
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    sys.stdout.write(value + "\n")
