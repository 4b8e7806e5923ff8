"""Choose a network's background traffic by a rule, never by the detector's scores.

A hold-out network must be run once, after the choices; its traffic rate therefore has to
come from the simulator alone. The rule: the densest rate on a fixed ladder at which SUMO,
running the background traffic by itself for an hour, teleports fewer than 2 % of the cars
it inserted (a teleport is SUMO breaking a gridlock; a trip that teleports is dropped).

``python -m loadtest.sumo.calibrate --network braunschweig`` prints the ladder and the
choice; the choice is then written into ``networks.py`` before the hold-out run.
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from loadtest.sumo.networks import network
from loadtest.sumo.run import background_trips, sumo_command

# Cars per second entering the network, densest first.
LADDER = (0.9, 0.7, 0.5, 0.35, 0.25, 0.18, 0.12)
MAX_TELEPORT_SHARE = 0.02
PROBE_S = 3600.0


@dataclass(frozen=True)
class Probe:
    rate_per_s: float
    inserted: int
    teleports: int

    @property
    def share(self) -> float:
        return self.teleports / self.inserted if self.inserted else 1.0

    @property
    def passes(self) -> bool:
        return self.share < MAX_TELEPORT_SHARE


def choose(probes: Sequence[Probe]) -> Probe | None:
    """The densest passing probe, or None when none passes."""
    passing = [p for p in probes if p.passes]
    return max(passing, key=lambda p: p.rate_per_s) if passing else None


def parse_statistics(xml_text: str) -> tuple[int, int]:
    """(inserted, teleports) from SUMO's ``--statistic-output`` file."""
    root = ET.fromstring(xml_text)
    vehicles = root.find("vehicles")
    teleports = root.find("teleports")
    if vehicles is None or teleports is None:
        raise ValueError("SUMO statistics without <vehicles> or <teleports>")
    return int(vehicles.get("inserted", "0")), int(teleports.get("total", "0"))


def probe(net_file: Path, rate_per_s: float, seed: int, workdir: Path) -> Probe:
    """Run the background traffic alone for ``PROBE_S`` and count what SUMO teleported."""
    workdir.mkdir(parents=True, exist_ok=True)
    trips = background_trips(net_file, workdir, seed, rate_per_s, PROBE_S)
    stats = workdir / "statistics.xml"
    cmd = [
        *sumo_command(net_file, [trips], seed=seed, end_s=PROBE_S),
        "--statistic-output",
        str(stats),
    ]
    subprocess.run(cmd, check=True, capture_output=True)
    inserted, teleports = parse_statistics(stats.read_text(encoding="utf-8"))
    return Probe(rate_per_s, inserted, teleports)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--network", required=True)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    net_file = network(args.network).file()
    probes: list[Probe] = []
    with tempfile.TemporaryDirectory(prefix="doorstep-calibrate-") as tmp:
        for rate in LADDER:
            result = probe(net_file, rate, args.seed, Path(tmp, f"rate-{rate}"))
            probes.append(result)
            verdict = "passes" if result.passes else "fails"
            print(
                f"{rate:5.2f} cars/s: {result.teleports:4d} teleports of {result.inserted:5d} "
                f"inserted ({result.share:6.1%}) {verdict}",
                flush=True,
            )
    chosen = choose(probes)
    if chosen is None:
        print(f"no rate on the ladder teleports under {MAX_TELEPORT_SHARE:.0%}")
        return 1
    print(f"chosen: {chosen.rate_per_s} cars/s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
