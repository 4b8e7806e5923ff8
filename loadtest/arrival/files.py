"""Files for ``doorstep eval-arrival`` and ``doorstep simulate-traces``: the I/O shell.

The evaluation itself is pure (``loadtest/arrival/``); this module only reads FIXES.jsonl
and TRIPS.json and writes the CSVs, so other teams can score their own traces with the
same code. Formats (times Unix seconds, WGS84 degrees, metres):

- FIXES.jsonl: one fix per line, ``{"trip_id", "t", "lat", "lon", "acc"?, "speed"?,
  "heading"?}``, in time order within each trip (trips may interleave).
- TRIPS.json: a list of ``{"trip_id", "destination": {"lat", "lon"}, "geofence_radius_m"?,
  "arrived_t"?, "departed_t"?}``. ``"arrived_t": null`` says "never arrived" (a drive-past);
  without the key the trip has no ground truth and is not scored. Extra keys ``kind`` and
  ``tags`` (strings) group trips in the breakdown table.
- predictions.csv ``trip_id,t,eta_s,low_s,high_s``: one row per fix before the trip's
  check-in; ``low_s``/``high_s`` the range shown with the ETA (the arrival expected
  between ``t + low_s`` and ``t + high_s``). With a routing engine also ``eta_routed_s``
  (and its range, ``routed_low_s,routed_high_s``).
- events.csv ``trip_id,event,t``: ``check_in``/``check_out`` as stamped by the detector.
- models.json: what the arrival logic learned by the end of the replay (circuity, travel
  times and error bands per distance source, speeds by area and hour); ``--models``
  starts a later replay from it.
- roads.json (written by ``simulate-traces``, read by ``loadtest/osrm_sim.py``): per trip
  ``{"trip_id", "destination": {"lat", "lon"}, "route": [[lat, lon], ...]}``, the streets a
  routing engine would route it over (``loadtest/roads.py``).
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from pathlib import Path

from geofence.model import Fix
from loadtest.arrival.learned import LearnedModels
from loadtest.arrival.replay import Event, Prediction
from loadtest.arrival.spec import TripSpec, fix_from_dict
from loadtest.roads import road_entry
from loadtest.traces import Trace, fix_to_dict


class InputError(ValueError):
    """A trips or fixes file that cannot be evaluated; the message names file and place."""


def load_trips(path: Path) -> list[TripSpec]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{path}: {exc}") from None
    if not isinstance(data, list):
        raise InputError(f"{path}: expected a JSON list of trips")
    specs: list[TripSpec] = []
    seen: set[str] = set()
    for i, entry in enumerate(data):
        if not isinstance(entry, dict):
            raise InputError(f"{path}: entry {i} is not an object")
        try:
            spec = TripSpec.from_dict(entry)
        except ValueError as exc:
            raise InputError(f"{path}: entry {i}: {exc}") from None
        if spec.trip_id in seen:
            raise InputError(f"{path}: trip {spec.trip_id} appears twice")
        seen.add(spec.trip_id)
        specs.append(spec)
    return specs


def load_fixes(path: Path) -> dict[str, list[Fix]]:
    """Fixes grouped by trip, in file order (the evaluation sorts each trip by time)."""
    fixes: dict[str, list[Fix]] = {}
    try:
        with path.open(encoding="utf-8") as lines:
            for number, line in enumerate(lines, 1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                    if not isinstance(record, dict):
                        raise ValueError("not a JSON object")
                    trip_id, fix = fix_from_dict(record)
                except ValueError as exc:  # JSONDecodeError is a ValueError
                    raise InputError(f"{path}:{number}: {exc}") from None
                fixes.setdefault(trip_id, []).append(fix)
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: {exc}") from None
    return fixes


def load_models(path: Path) -> LearnedModels:
    try:
        return LearnedModels.from_dict(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, ValueError) as exc:
        raise InputError(f"{path}: {exc}") from None


def write_models(path: Path, models: LearnedModels) -> None:
    path.write_text(json.dumps(models.to_dict()), encoding="utf-8")


def write_predictions(path: Path, predictions: Sequence[Prediction], order: list[str]) -> int:
    """predictions.csv, trip by trip (in TRIPS.json order), each in time order."""
    rank = {trip_id: i for i, trip_id in enumerate(order)}
    rows = sorted(predictions, key=lambda p: (rank.get(p.trip_id, len(rank)), p.t))
    with path.open("w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        routed = any(p.routed_s is not None for p in rows)
        routed_columns = ["eta_routed_s", "routed_low_s", "routed_high_s"] if routed else []
        writer.writerow(["trip_id", "t", "eta_s", "low_s", "high_s", *routed_columns])
        for p in rows:
            extra = [] if not routed else [_s(p.routed_s), *_range(p.routed_band)]
            writer.writerow([p.trip_id, f"{p.t:.3f}", f"{p.eta_s:.1f}", *_range(p.band), *extra])
    return len(rows)


def _s(value: float | None) -> str:
    return "" if value is None else f"{value:.1f}"


def _range(band: tuple[float, float] | None) -> list[str]:
    return ["", ""] if band is None else [_s(band[0]), _s(band[1])]


def write_events(path: Path, events: Sequence[Event], order: list[str]) -> int:
    rank = {trip_id: i for i, trip_id in enumerate(order)}
    rows = sorted(events, key=lambda e: (rank.get(e.trip_id, len(rank)), e.t))
    with path.open("w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        writer.writerow(["trip_id", "event", "t"])
        writer.writerows([e.trip_id, e.kind, f"{e.t:.3f}"] for e in rows)
    return len(rows)


def write_traces(directory: Path, traces: Sequence[Trace]) -> tuple[Path, Path]:
    """fixes.jsonl and trips.json (with ground truth) for ``eval-arrival``; roads.json."""
    directory.mkdir(parents=True, exist_ok=True)
    fixes_path, trips_path = directory / "fixes.jsonl", directory / "trips.json"
    roads = [
        road_entry(t.truth.trip_id, {"lat": t.truth.dest_lat, "lon": t.truth.dest_lon}, t.route)
        for t in traces
        if len(t.route) >= 2
    ]
    (directory / "roads.json").write_text(json.dumps(roads) + "\n", encoding="utf-8")
    with fixes_path.open("w", encoding="utf-8") as out:
        for trace in traces:
            for fix in trace.fixes:
                out.write(json.dumps(fix_to_dict(trace.truth.trip_id, fix)) + "\n")
    trips = [trace.truth.to_dict() for trace in traces]
    trips_path.write_text(json.dumps(trips, indent=1) + "\n", encoding="utf-8")
    return fixes_path, trips_path
