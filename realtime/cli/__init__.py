"""The ``doorstep`` command line: serve the hub, mint tokens, simulate, replay, demo, loadtest.

The one composition root that may reach the development tools (``loadtest/``, the SDK's
simulator in ``clients/``): each command lives in its own module and imports them inside
its function, so ``doorstep serve`` (and ``import realtime.cli``) loads none of them.
"""

from __future__ import annotations

import click

from realtime.cli.demo import demo
from realtime.cli.dev_eval import eval_arrival, simulate_traces
from realtime.cli.dev_loadtest import loadtest
from realtime.cli.dev_simulate import replay, simulate
from realtime.cli.serve import serve, token


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """Doorstep: real-time technician tracking and safety hub.

    Settings come from DOORSTEP_* environment variables (DOORSTEP_SECRET,
    DOORSTEP_PLATFORM_KEY, DOORSTEP_DATA_DIR, DOORSTEP_BACKEND, ...); command-line
    options override them. See docs/operations.md for every setting.
    """


for command in (serve, token, eval_arrival, simulate_traces, simulate, replay, demo, loadtest):
    main.add_command(command)
