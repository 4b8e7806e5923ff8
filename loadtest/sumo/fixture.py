"""The small SUMO trip set committed for the test suite (which runs without the SUMO wheel).

One trip of each kind on the tuning network, with 10-12 minute visits so the files stay
small; the suite replays them through a real hub (``tests/realtime/test_arrival_sumo_e2e.py``).
Regenerate with ``python -m loadtest.sumo.fixture tests/data/sumo`` (needs
``pip install -e '.[sumo]'``); the same seed gives the same trips.
"""

from __future__ import annotations

import argparse
import gzip
import shutil
import tempfile
from pathlib import Path

from loadtest.arrival.files import write_traces
from loadtest.sumo.networks import TUNE, network
from loadtest.sumo.trips import generate

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
    plain, trips_path = write_traces(out, traces)
    (out / "roads.json").unlink()  # the routing engine stand-in is not replayed here
    fixes_path = out / "fixes.jsonl.gz"
    with plain.open("rb") as source, gzip.open(fixes_path, "wb") as packed:
        shutil.copyfileobj(source, packed)
    plain.unlink()
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
