"""``doorstep loadtest``: the load generator against the hub or the bare relay.

The generator lives in ``loadtest/load/`` and is imported inside the command, so
``doorstep serve`` never loads it.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click


@click.command()
@click.option(
    "--technicians",
    default=100,
    show_default=True,
    type=click.IntRange(1, 100_000),
    help="Simulated technicians, each with a booking of its own.",
)
@click.option(
    "--customers",
    default=None,
    type=click.IntRange(0, 100_000),
    help="Customers watching bookings [one per booking].",
)
@click.option(
    "--operators",
    default=2,
    show_default=True,
    type=click.IntRange(0, 1000),
    help="Operators on the console (WS /v1/ws/ops).",
)
@click.option(
    "--rate",
    default=1.0,
    show_default=True,
    type=click.FloatRange(0.01, 50),
    help="Fixes per second per technician.",
)
@click.option(
    "--seconds",
    default=30.0,
    show_default=True,
    type=click.FloatRange(1, 600),
    help="How long the fixes stream (a hard bound).",
)
@click.option(
    "--sos-rate",
    default=2.0,
    show_default=True,
    type=click.FloatRange(0, 6000),
    help="SOS presses per minute across the fleet.",
)
@click.option(
    "--dropout",
    default=0.05,
    show_default=True,
    type=click.FloatRange(0, 1),
    help="Share of technicians that drop for a few seconds, then send a batch.",
)
@click.option(
    "--processes",
    default=2,
    show_default=True,
    type=click.IntRange(1, 64),
    help="Generator processes.",
)
@click.option(
    "--target",
    default="hub",
    show_default=True,
    type=click.Choice(["hub", "hub-redis", "relay"]),
    help="What to load: the Doorstep hub (embedded backend), the hub on Redis"
    " (DOORSTEP_REDIS_URL, a key prefix of its own, deleted afterwards) or the bare relay"
    " (loadtest/relay_baseline.py).",
)
@click.option(
    "--compare",
    is_flag=True,
    help="Hub and relay interleaved in one run (relay, hub, relay, hub ...).",
)
@click.option(
    "--compare-backends",
    is_flag=True,
    help="The hub on the embedded backend and on Redis interleaved in one run"
    " (after the relay with --compare).",
)
@click.option(
    "--rounds",
    default=1,
    show_default=True,
    type=click.IntRange(1, 20),
    help="Runs of each target.",
)
@click.option(
    "--out",
    default="loadtest-report",
    show_default=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Where report.json and report.png go.",
)
@click.option(
    "--url",
    default=None,
    help="An external hub (its platform key in DOORSTEP_PLATFORM_KEY) [start one].",
)
def loadtest(
    technicians: int,
    customers: int | None,
    operators: int,
    rate: float,
    seconds: float,
    sos_rate: float,
    dropout: float,
    processes: int,
    target: str,
    compare: bool,
    compare_backends: bool,
    rounds: int,
    out: Path,
    url: str | None,
) -> None:
    """Load the hub (or the bare relay) with technicians, customers, operators and SOS.

    Unless --url is given, a fresh hub (`doorstep serve`, embedded backend, temporary data
    dir) or relay is started for each run. Writes report.json and report.png into --out.
    """
    from loadtest.load.config import LoadConfig
    from loadtest.load.main import run, summary_lines

    config = LoadConfig(
        technicians=technicians,
        customers=customers,
        operators=operators,
        rate_hz=rate,
        seconds=seconds,
        sos_per_min=sos_rate,
        dropout=dropout,
        processes=processes,
    )
    try:
        result = run(
            config,
            target=target,
            compare=compare,
            compare_backends=compare_backends,
            rounds=rounds,
            url=url,
            out=out,
            command=["doorstep", "loadtest", *sys.argv[2:]],
        )
    except RuntimeError as exc:
        raise click.ClickException(str(exc)) from None
    for line in summary_lines(result):
        click.echo(line)
    click.echo(f"report: {out / 'report.json'}, {out / 'report.png'}")
