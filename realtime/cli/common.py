"""What the ``doorstep`` commands share: settings errors as one line, ``--speedup``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from realtime.settings import Settings, SettingsError, load_settings


def load(**overrides: object) -> Settings:
    """The settings with the command line's overrides; a bad setting is a one-line error."""
    try:
        return load_settings(**overrides)
    except SettingsError as exc:
        raise click.ClickException(str(exc)) from None


_SPEEDUP_HELP = (
    "Play X times faster. Fixes keep real time stamps (the hub refuses fixes more than "
    "120 s ahead), so technicians move X times faster; keep it <= 3 to watch arrivals."
)


def speedup_option(default: float) -> Callable[[Any], Any]:
    """``--speedup``, shared by simulate, replay and demo."""
    return click.option(
        "--speedup",
        default=default,
        show_default=True,
        type=click.FloatRange(0, min_open=True),
        help=_SPEEDUP_HELP,
    )
