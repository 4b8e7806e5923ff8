"""The street networks the SUMO trips run on: real OpenStreetMap extracts in the wheel.

Chosen before any tuning, and fixed here so that results name them: one network to tune
the detector and the ETA on, one held out and run once after the choices were made.
"""

from __future__ import annotations

import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from loadtest.sumo.home import binary, sumo_home


@dataclass(frozen=True)
class Network:
    name: str
    path: str  # under SUMO_HOME
    role: str  # "tune" or "holdout"
    place: str
    # Background cars per second entering the network: enough for queues at lights and
    # behind a blocked lane, not so many that the grid locks up (SUMO would teleport cars).
    traffic_per_s: float
    # The network ships with a game's traffic lights (a player switches them; each green
    # holds 1000 s, so SUMO teleports whoever waits): rebuild SUMO's default signal plans.
    game_lights: bool = False

    def shipped(self) -> Path:
        path = sumo_home() / self.path
        if not path.exists():
            raise FileNotFoundError(f"{path}: this eclipse-sumo wheel does not ship it")
        return path

    def file(self) -> Path:
        """The network SUMO runs: the shipped one, or a copy with ordinary signal plans."""
        shipped = self.shipped()
        if not self.game_lights:
            return shipped
        rebuilt = Path(tempfile.gettempdir(), "doorstep-sumo", f"{self.name}-lights.net.xml")
        if not rebuilt.exists() or rebuilt.stat().st_mtime < shipped.stat().st_mtime:
            rebuilt.parent.mkdir(parents=True, exist_ok=True)
            partial = rebuilt.with_suffix(".partial.xml")
            subprocess.run(
                [str(binary("netconvert")), "-s", str(shipped), "--tls.rebuild", "true",
                 "--no-warnings", "true", "-o", str(partial)],
                check=True,
                capture_output=True,
            )  # fmt: skip
            partial.replace(rebuilt)
        return rebuilt


NETWORKS: dict[str, Network] = {
    network.name: network
    for network in (
        # 2.6 x 3.3 km of south-east Berlin (Adlershof), 740 drivable edges, 21 lights.
        Network("berlin", "tools/game/DRT/osm.net.xml", "tune", "Berlin-Adlershof", 0.9),
        # 1.6 x 2.1 km of Braunschweig's centre, mostly residential streets. Its rate is
        # the rule's choice (calibrate.py), made from SUMO's teleports before the run.
        Network(
            "braunschweig",
            "tools/game/bs3d/bs.net.xml",
            "holdout",
            "Braunschweig",
            0.5,
            game_lights=True,
        ),
    )
}
TUNE = "berlin"
HOLDOUT = "braunschweig"


def network(name: str) -> Network:
    try:
        return NETWORKS[name]
    except KeyError:
        raise ValueError(f"unknown network {name!r}; expected one of {sorted(NETWORKS)}") from None
