"""``doorstep serve`` loads no development tool: the CLI imports them inside the commands."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

CHECK = """
import sys
import click
import realtime.cli
{step}
tools = sorted(
    name for name in sys.modules if name.split(".")[0] in ("loadtest", "clients")
)
print(",".join(tools))
"""

RESOLVE_SERVE = """
ctx = click.Context(realtime.cli.main)
serve = realtime.cli.main.get_command(ctx, "serve")
serve.make_context("serve", ["--port", "1", "--log-level", "warning"], parent=ctx)
"""


@pytest.mark.parametrize("step", ["", RESOLVE_SERVE], ids=["import", "resolve serve"])
def test_the_cli_and_its_serve_command_load_no_loadtest_and_no_clients(step: str) -> None:
    done = subprocess.run(
        [sys.executable, "-c", CHECK.format(step=step)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        check=True,
    )
    assert done.stdout.strip() == "", f"loaded by `doorstep serve`: {done.stdout.strip()}"


def test_every_command_is_still_registered() -> None:
    from realtime.cli import main

    assert sorted(main.commands) == [
        "demo",
        "eval-arrival",
        "loadtest",
        "replay",
        "serve",
        "simulate",
        "simulate-traces",
        "token",
    ]
