"""`doorstep simulate-traces` and `doorstep eval-arrival` as another team would run them."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

DOORSTEP = [sys.executable, "-m", "realtime.cli"]


def run(*args: str | Path) -> subprocess.CompletedProcess:
    return subprocess.run([*DOORSTEP, *map(str, args)], capture_output=True, text=True, timeout=120)


def rows(path: Path) -> list[list[str]]:
    with path.open(newline="") as f:
        return list(csv.reader(f))


@pytest.fixture(scope="module")
def traces(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("traces")
    result = run("simulate-traces", "--trips", "4", "--seed", "7", "--out", out)
    assert result.returncode == 0, result.stderr
    assert (out / "fixes.jsonl").exists() and (out / "trips.json").exists()
    return out


def test_simulated_traces_are_in_the_documented_formats(traces: Path):
    trips = json.loads((traces / "trips.json").read_text())
    assert len(trips) == 4
    assert {"trip_id", "destination", "geofence_radius_m", "arrived_t"} <= set(trips[0])
    first = json.loads((traces / "fixes.jsonl").open().readline())
    assert {"trip_id", "t", "lat", "lon"} <= set(first)


def test_eval_arrival_writes_predictions_and_events_and_prints_the_metrics(
    traces: Path, tmp_path: Path
):
    out = tmp_path / "eval"
    result = run(
        "eval-arrival",
        "--fixes", traces / "fixes.jsonl",
        "--trips", traces / "trips.json",
        "--out", out,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    trips = json.loads((traces / "trips.json").read_text())
    predictions = rows(out / "predictions.csv")
    assert predictions[0] == ["trip_id", "t", "eta_s", "low_s", "high_s"]
    assert {row[0] for row in predictions[1:]} == {trip["trip_id"] for trip in trips}
    assert all(float(row[2]) >= 0 for row in predictions[1:])
    # The range shown beside each ETA holds the ETA itself.
    assert all(float(row[3]) <= float(row[2]) <= float(row[4]) for row in predictions[1:])
    events = rows(out / "events.csv")
    assert events[0] == ["trip_id", "event", "t"]
    assert {row[1] for row in events[1:]} <= {"check_in", "check_out"}
    visits = [trip for trip in trips if trip["arrived_t"] is not None]
    checked_in = {row[0] for row in events[1:] if row[1] == "check_in"}
    assert {trip["trip_id"] for trip in visits} <= checked_in
    # predictions stop at the check-in
    for trip in visits:
        first_in = min(float(r[2]) for r in events[1:] if r[0] == trip["trip_id"])
        last_eta = max(float(r[1]) for r in predictions[1:] if r[0] == trip["trip_id"])
        assert last_eta < first_in + 600
    for label in ("0-2 min", "2-5 min", "5-10 min", "10-20 min", "MAE baseline"):
        assert label in result.stdout
    for label in ("range held", "within 20 %"):
        assert label in result.stdout
    for label in ("missed check-ins", "false check-ins", "false check-outs", "check-in delay"):
        assert label in result.stdout
    assert (out / "metrics.md").read_text() == result.stdout


def test_without_ground_truth_it_writes_the_csvs_and_prints_no_metrics(
    traces: Path, tmp_path: Path
):
    trips = json.loads((traces / "trips.json").read_text())
    bare = [{"trip_id": t["trip_id"], "destination": t["destination"]} for t in trips]
    trips_path = tmp_path / "trips.json"
    trips_path.write_text(json.dumps(bare))
    out = tmp_path / "eval"
    result = run(
        "eval-arrival", "--fixes", traces / "fixes.jsonl", "--trips", trips_path, "--out", out
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    assert "no ground truth" in result.stderr
    assert len(rows(out / "predictions.csv")) > 1 and len(rows(out / "events.csv")) > 1
    assert not (out / "metrics.md").exists()


def test_bad_input_is_one_clear_error(traces: Path, tmp_path: Path):
    fixes = tmp_path / "fixes.jsonl"
    fixes.write_text('{"trip_id": "ghost", "t": 1, "lat": 1, "lon": 2}\n')
    result = run(
        "eval-arrival", "--fixes", fixes, "--trips", traces / "trips.json", "--out", tmp_path
    )
    assert result.returncode == 1 and "ghost" in result.stderr
    fixes.write_text('{"trip_id": "x", "t": 1, "lat": 1}\n')
    result = run(
        "eval-arrival", "--fixes", fixes, "--trips", traces / "trips.json", "--out", tmp_path
    )
    assert result.returncode == 1 and f"{fixes}:1" in result.stderr


def test_what_a_run_learned_is_saved_and_starts_the_next_run(traces: Path, tmp_path: Path):
    args = ["--fixes", traces / "fixes.jsonl", "--trips", traces / "trips.json"]
    first = run("eval-arrival", *args, "--out", tmp_path / "first")
    assert first.returncode == 0, first.stderr
    models = tmp_path / "first" / "models.json"
    saved = json.loads(models.read_text())
    assert saved["version"] == 1 and saved["circuity"]["global"][0] >= 1
    warm = run("eval-arrival", *args, "--out", tmp_path / "warm", "--models", models)
    assert warm.returncode == 0, warm.stderr
    fresh_etas = [row[2] for row in rows(tmp_path / "first" / "predictions.csv")]
    warm_etas = [row[2] for row in rows(tmp_path / "warm" / "predictions.csv")]
    assert len(warm_etas) == len(fresh_etas) and warm_etas != fresh_etas
    # the warm run learned the same trips once more on top of the first run's
    again = json.loads((tmp_path / "warm" / "models.json").read_text())
    assert again["circuity"]["global"][0] == 2 * saved["circuity"]["global"][0]
    # ... and so did the speeds by area and hour (trips counted per cell and hour)
    trip_cells = [
        sum(v for field, v in learned["speeds"]["counters"].items() if field.endswith("|n"))
        for learned in (saved, again)
    ]
    assert trip_cells[0] > 0 and trip_cells[1] == 2 * trip_cells[0]


def test_a_models_file_that_is_not_one_is_a_clear_error(traces: Path, tmp_path: Path):
    bad = tmp_path / "models.json"
    bad.write_text('{"version": 1, "circuity": {}}')
    result = run(
        "eval-arrival", "--fixes", traces / "fixes.jsonl", "--trips", traces / "trips.json",
        "--out", tmp_path / "out", "--models", bad,
    )  # fmt: skip
    assert result.returncode == 1
    assert str(bad) in result.stderr and "circuity" in result.stderr
