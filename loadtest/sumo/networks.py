"""The street networks the SUMO trips run on: real OpenStreetMap extracts in the wheel.

Chosen before any tuning, and fixed here so that results name them: one network to tune
the detector and the ETA on, one held out and run once after the choices were made.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from loadtest.sumo.home import sumo_home


@dataclass(frozen=True)
class Network:
    name: str
    path: str  # under SUMO_HOME
    role: str  # "tune" or "holdout"
    place: str
    # Background cars per second entering the network: enough for queues at lights and
    # behind a blocked lane, not so many that the grid locks up (SUMO would teleport cars).
    traffic_per_s: float

    def file(self) -> Path:
        path = sumo_home() / self.path
        if not path.exists():
            raise FileNotFoundError(f"{path}: this eclipse-sumo wheel does not ship it")
        return path


NETWORKS: dict[str, Network] = {
    network.name: network
    for network in (
        # 2.6 x 3.3 km of south-east Berlin (Adlershof), 740 drivable edges, 21 lights.
        Network("berlin", "tools/game/DRT/osm.net.xml", "tune", "Berlin-Adlershof", 0.9),
        # 1.6 x 2.1 km of Braunschweig's centre, mostly residential streets.
        Network("braunschweig", "tools/game/bs3d/bs.net.xml", "holdout", "Braunschweig", 0.5),
    )
}
TUNE = "berlin"
HOLDOUT = "braunschweig"


def network(name: str) -> Network:
    try:
        return NETWORKS[name]
    except KeyError:
        raise ValueError(f"unknown network {name!r}; expected one of {sorted(NETWORKS)}") from None
