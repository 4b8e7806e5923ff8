"""``doorstep loadtest``: the load generator against the hub or the bare relay.

The generator lives in ``loadtest/load/`` and is imported inside the command, so
``doorstep serve`` never loads it.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from loadtest.chaos.config import ChaosConfig


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
    default=None,
    type=click.FloatRange(1, 3600),
    help="How long the fixes stream (a hard bound) [30; --chaos: 600; at most 600 without].",
)
@click.option(
    "--sos-rate",
    default=None,
    type=click.FloatRange(0, 6000),
    help="SOS presses per minute across the fleet [2; --chaos: 6].",
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
    "--server",
    default="uvicorn",
    show_default=True,
    type=click.Choice(["uvicorn", "granian"]),
    help="What serves a hub started here: doorstep serve (uvicorn), or granian"
    " (loadtest/granian_app.py, one worker) to compare the servers.",
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
@click.option(
    "--chaos",
    is_flag=True,
    help="The chaos soak: two hubs on a private Redis, hubs killed (-9) and restarted,"
    " Redis restarted once, clients dropped; then the checks (exit 1 if one fails).",
)
@click.option(
    "--kill-every",
    default=120.0,
    show_default=True,
    type=click.FloatRange(5, 3600),
    help="--chaos: mean seconds between kill -9s of a random hub.",
)
@click.option(
    "--drop-every",
    default=180.0,
    show_default=True,
    type=click.FloatRange(1, 36000),
    help="--chaos: mean seconds between forced drops of each client.",
)
@click.option(
    "--operators-per-hub",
    default=2,
    show_default=True,
    type=click.IntRange(1, 100),
    help="--chaos: operator consoles connected through each hub's balancer port.",
)
@click.option(
    "--time-scale",
    default=1.0,
    show_default=True,
    type=click.FloatRange(1, 20),
    help="--chaos: trip seconds per real second (fixes stamped in the past; 1: real time).",
)
@click.option(
    "--warmup",
    default=120.0,
    show_default=True,
    type=click.FloatRange(0, 3600),
    help="--chaos: seconds of each hub process's life not judged for RSS growth.",
)
@click.option(
    "--rss-bound",
    default=1.0,
    show_default=True,
    type=click.FloatRange(0),
    help="--chaos: the RSS slope after warm-up that fails the soak (MiB per minute).",
)
@click.option(
    "--seed", default=0, show_default=True, type=int, help="--chaos: the fault schedule's seed."
)
def loadtest(
    technicians: int,
    customers: int | None,
    operators: int,
    rate: float,
    seconds: float | None,
    sos_rate: float | None,
    dropout: float,
    processes: int,
    target: str,
    compare: bool,
    compare_backends: bool,
    server: str,
    rounds: int,
    out: Path,
    url: str | None,
    chaos: bool,
    kill_every: float,
    drop_every: float,
    operators_per_hub: int,
    time_scale: float,
    warmup: float,
    rss_bound: float,
    seed: int,
) -> None:
    """Load the hub (or the bare relay) with technicians, customers, operators and SOS.

    Unless --url is given, a fresh hub (`doorstep serve`, embedded backend, temporary data
    dir) or relay is started for each run. Writes report.json and report.png into --out.

    With --chaos: the soak of two hubs on Redis under faults (see --kill-every and the other
    --chaos options; --operators, --processes, --target, --compare, --rounds, --url and
    --dropout do not apply).
    """
    if chaos:
        from loadtest.chaos.config import ChaosConfig

        chaos_config = ChaosConfig(
            seconds=600.0 if seconds is None else seconds,
            technicians=technicians,
            customers=customers,
            operators_per_hub=operators_per_hub,
            rate_hz=rate,
            sos_per_min=6.0 if sos_rate is None else sos_rate,
            kill_every_s=kill_every,
            drop_every_s=drop_every,
            time_scale=time_scale,
            warmup_s=warmup,
            rss_bound_mib_per_min=rss_bound,
            seed=seed,
        )
        _run_chaos(chaos_config, out)
        return
    if seconds is not None and seconds > 600:
        raise click.BadParameter("at most 600 s without --chaos", param_hint="--seconds")
    from loadtest.load.config import LoadConfig
    from loadtest.load.main import run, summary_lines

    config = LoadConfig(
        technicians=technicians,
        customers=customers,
        operators=operators,
        rate_hz=rate,
        seconds=30.0 if seconds is None else seconds,
        sos_per_min=2.0 if sos_rate is None else sos_rate,
        dropout=dropout,
        processes=processes,
        server=server,
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


def _run_chaos(config: ChaosConfig, out: Path) -> None:
    """The soak, its summary, and exit 1 when a check failed."""
    import asyncio

    from loadtest.chaos.report import summary_lines
    from loadtest.chaos.run import soak

    try:
        result = asyncio.run(soak(config, out, ["doorstep", "loadtest", *sys.argv[2:]]))
    except RuntimeError as exc:
        raise click.ClickException(str(exc)) from None
    for line in summary_lines(result):
        click.echo(line)
    click.echo(f"report: {out / 'report.json'}, {out / 'report.png'}")
    if not result["passed"]:
        raise SystemExit(1)
