"""``doorstep demo``: a hub with simulated technicians and the links to watch them.

The command only; the demo itself (``demo_run``: uvicorn, the SDK, the trip planner) is
imported when it runs, so ``doorstep serve`` never loads it.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import click

from realtime.cli.common import load, speedup_option
from realtime.settings import SettingsError, with_secrets


@click.command()
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
@speedup_option(default=2.0)
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

    from realtime.cli.demo_run import DemoError, run_demo

    with contextlib.ExitStack() as stack:
        if data_dir is None:
            data_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="doorstep-")))
        settings = load(host="127.0.0.1", port=port, data_dir=data_dir, backend="embedded")
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
