"""The small SUMO trip set committed for the test suite (which runs without the SUMO wheel).

One trip of each kind on the tuning network, with 10-12 minute visits so the files stay
small; the suite replays them through a real hub (``tests/realtime/test_arrival_sumo_e2e.py``).
Regenerate with ``python -m loadtest.sumo.fixture tests/data/sumo`` (needs
``pip install -e '.[sumo]'``); the same seed gives the same trips.
"""

from __future__ import annotations

import argparse
import gzip
import json
import tempfile
from pathlib import Path

from loadtest.sumo.networks import TUNE, network
from loadtest.sumo.trips import generate
from loadtest.traces import fix_to_dict

KINDS = ("normal", "park_walk", "queue_past", "overshoot", "drive_past", "queue_past")
SEED = 41
VISIT_S = (600.0, 720.0)


def write_fixture(out: Path, seed: int = SEED) -> tuple[Path, Path]:
    """fixes.jsonl.gz and trips.json of the committed set, in ``out``."""
    with tempfile.TemporaryDirectory() as work:
        traces, dropped = generate(
            network(TUNE), len(KINDS), seed, Path(work), kinds=KINDS, visit_s=VISIT_S
        )
    if dropped:
        raise RuntimeError(f"SUMO dropped {dropped}: choose another seed")
    out.mkdir(parents=True, exist_ok=True)
    fixes_path, trips_path = out / "fixes.jsonl.gz", out / "trips.json"
    with gzip.open(fixes_path, "wt", encoding="utf-8") as fixes:
        for trace in traces:
            for fix in trace.fixes:
                fixes.write(json.dumps(fix_to_dict(trace.truth.trip_id, fix)) + "\n")
    trips = [trace.truth.to_dict() for trace in traces]
    trips_path.write_text(json.dumps(trips, indent=1) + "\n", encoding="utf-8")
    return fixes_path, trips_path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--seed", type=int, default=SEED)
    args = parser.parse_args()
    for path in write_fixture(args.out, args.seed):
        print(path)


if __name__ == "__main__":
    main()
