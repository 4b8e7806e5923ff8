"""Where SUMO is: the ``eclipse-sumo`` wheel's SUMO_HOME, binaries and Python tools.

Imported only by the SUMO harness, so the hub and the fast tests never need the 148 MB
wheel (``pip install -e '.[sumo]'``).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

INSTALL_HINT = "SUMO is not installed: pip install -e '.[sumo]' (the eclipse-sumo wheel)"


class SumoMissing(RuntimeError):
    """SUMO or its tools are not installed."""


def sumo_home() -> Path:
    """SUMO_HOME of the installed wheel (or of the environment variable)."""
    try:
        import sumo  # type: ignore[import-untyped]
    except ImportError:
        env = os.environ.get("SUMO_HOME")
        if env and Path(env, "tools").is_dir():
            return Path(env)
        raise SumoMissing(INSTALL_HINT) from None
    return Path(sumo.SUMO_HOME)


def binary(name: str = "sumo") -> Path:
    path = sumo_home() / "bin" / name
    if not path.exists():
        raise SumoMissing(f"{path} is missing; {INSTALL_HINT}")
    return path


def tools() -> Path:
    """SUMO's tools directory, put on ``sys.path`` so ``traci`` and ``sumolib`` import."""
    path = sumo_home() / "tools"
    if str(path) not in sys.path:
        sys.path.append(str(path))
    return path
