"""The ETA oracle bound: scored like the evaluation, every horizon, walking predicted exactly."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest

from loadtest import eta_bound
from loadtest.arrival.eta_score import HORIZONS_S
from loadtest.eta_bound import (
    FIT_SCORED,
    ORACLES,
    BandCurve,
    Bound,
    all_rows,
    bound,
    fit_bands,
    fit_oracles,
    format_markdown,
    log_edges,
    main,
    trace_rows,
)
from loadtest.traces import Trace, generate, generate_trip

TRIPS, SEED = 12, 5


@pytest.fixture(scope="module")
def traces() -> list[Trace]:
    return generate(TRIPS, seed=SEED)


@pytest.fixture(scope="module")
def result(traces: list[Trace]) -> Bound:
    return bound(traces, SEED)


def test_the_horizons_are_the_evaluations():
    assert eta_bound.HORIZONS_S == HORIZONS_S


def test_every_horizon_is_scored_with_finite_positive_ratios(result: Bound):
    assert [s.label for s in result.horizons] == ["0-2 min", "2-5 min", "5-10 min", "10-20 min"]
    for score in result.horizons:
        assert score.fixes > 100
        assert score.baseline_mae > 0
        for oracle in ORACLES:
            ratio = score.ratio(oracle)
            assert math.isfinite(ratio) and ratio > 0, (score.label, oracle)
    # Knowing the route and every street's speed beats the straight line far out.
    assert result.horizons[-1].ratio("free-flow") < 0.7


def test_the_phase_oracle_predicts_walking_almost_exactly(result: Bound):
    walks = [s for s in result.phases["0-2 min"] if s.label == "walk"]
    assert walks and walks[0].fixes > 0
    assert walks[0].oracle_mae["phase"] < 5.0
    shares = sum(s.share for s in result.phases["0-2 min"])
    assert shares == pytest.approx(1.0)


def test_the_kind_table_covers_the_visit_kinds(result: Bound):
    labels = [s.label for s in result.kinds["0-2 min"]]
    for kind in ("normal", "park_walk", "overshoot"):
        assert f"{kind}: all" in labels
    alls = [s for s in result.kinds["0-2 min"] if s.label.endswith(": all")]
    assert sum(s.fixes for s in alls) == result.horizons[0].fixes


def test_rows_are_every_second_fix_before_the_arrival_and_none_for_a_drive_past():
    assert trace_rows(generate_trip(0, seed=SEED, kind="drive_past")) == []
    trace = generate_trip(0, seed=SEED, kind="park_walk")
    rows = trace_rows(trace)
    before = [f for f in trace.fixes if f.t <= trace.truth.arrived_t]
    assert len(rows) == math.ceil(len(before) / 2)
    assert all(r.horizon_s >= 0 for r in rows)
    assert {r.phase for r in rows} >= {"drive", "car", "walk"}
    assert all(r.sat_s > 0 for r in rows if r.phase == "car")


def test_band_curves_are_medians_per_band_linear_between_them():
    edges = log_edges(10.0, 1000.0)
    assert edges[:2] == [0.0, 10.0] and edges[-1] > 1000.0
    curve = fit_bands([(0.0, 5.0), (0.0, 7.0), (0.0, 100.0), (500.0, 60.0)], edges)
    assert curve == BandCurve((0.0, 500.0), (7.0, 60.0))
    assert curve(-1.0) == 7.0 and curve(250.0) == pytest.approx(33.5) and curve(9e9) == 60.0


def test_fitting_on_the_scored_rows_only_is_labelled(traces: list[Trace]):
    text = format_markdown(bound(traces, SEED, fit=FIT_SCORED))
    assert "selects on the outcome" in text
    with pytest.raises(ValueError, match="fit must be"):
        bound(traces, SEED, fit="everything")


def test_out_writes_the_markdown_it_prints(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    out = tmp_path / "bound.md"
    assert main(["--trips", str(TRIPS), "--seed", str(SEED), "--out", str(out)]) == 0
    text = out.read_text()
    assert text == capsys.readouterr().out
    assert "CHEAT" in text and "in-sample" in text
    rows = [line for line in text.splitlines() if re.match(r"\| \d+-\d+ min \|", line)]
    assert len(rows) == len(HORIZONS_S)  # only the horizon table has horizon rows
    for line in rows:
        ratios = [float(x) for x in re.findall(r"\| (\d+\.\d\d) ", line)]
        assert len(ratios) == len(ORACLES) and all(r > 0 for r in ratios), line
    assert "## 0-2 min before arrival, by true phase" in text
    assert "## 2-5 min before arrival, by trip kind and phase" in text


def test_the_kind_oracle_is_the_phase_oracle_fitted_on_that_kind_alone():
    kinds = ("normal", "park_walk", "overshoot")
    traces = [generate_trip(i, seed=SEED, kind=k) for i, k in enumerate(kinds * 2)]
    rows = all_rows(traces)
    mixed = fit_oracles(rows)
    for kind in kinds:
        mine = [r for r in rows if r.kind == kind]
        alone = fit_oracles(mine)["phase"]
        assert mine and all(mixed["kind"](r) == alone(r) for r in mine)
    # ...which is not what the phase oracle fitted on every kind predicts.
    assert any(mixed["kind"](r) != mixed["phase"](r) for r in rows)
