"""The ETA's learned circuity model: starts at the prior, learns each area, survives a restart.

(The travel time model is exercised with the routed replay, ``tests/loadtest/test_route_eval.py``.)
"""

from __future__ import annotations

import json
import math
import random

import pytest

from geofence.eta_models import CIRCUITY_PRIOR, CircuityModel
from geofence.geo import destination_point

BERLIN = (52.50, 13.40)
MUNICH = (48.14, 11.58)


def trip(origin: tuple[float, float], straight_m: float, factor: float, bearing: float = 60):
    dest = destination_point(*origin, bearing, straight_m)
    return (*origin, *dest, straight_m * factor)


def test_circuity_starts_at_the_prior_and_one_trip_moves_it_a_little():
    model = CircuityModel()
    assert model.factor(*BERLIN) == pytest.approx(CIRCUITY_PRIOR)
    assert model.observe(*trip(BERLIN, 3000, 2.0))
    assert CIRCUITY_PRIOR < model.factor(*BERLIN) < CIRCUITY_PRIOR + 0.15


def test_circuity_learns_each_areas_factor_over_trips():
    model = CircuityModel()
    rng = random.Random(3)
    for _ in range(60):
        model.observe(*trip(BERLIN, rng.uniform(1000, 3000), rng.gauss(1.7, 0.05)))
        model.observe(*trip(MUNICH, rng.uniform(1000, 3000), rng.gauss(1.15, 0.05)))
    assert model.factor(*BERLIN) == pytest.approx(1.7, abs=0.1)
    assert model.factor(*MUNICH) == pytest.approx(1.15, abs=0.1)
    # An area nobody has driven to yet gets the fleet-wide factor, not the fixed prior.
    assert model.factor(40.0, -3.7) == pytest.approx((1.7 + 1.15) / 2, abs=0.1)


@pytest.mark.parametrize(
    "absurd",
    [
        trip(BERLIN, 200, 1.5),  # too short to say anything about the streets
        trip(BERLIN, 3000, 0.8),  # shorter than the straight line: bad bookkeeping
        trip(BERLIN, 3000, 5.0),  # a detour, not the street network
        (*BERLIN, *MUNICH, math.nan),
    ],
)
def test_circuity_ignores_absurd_trips(absurd):
    model = CircuityModel()
    assert not model.observe(*absurd)
    assert model.factor(*BERLIN) == CIRCUITY_PRIOR
    assert model.to_dict() == CircuityModel().to_dict()


def test_circuity_round_trips_through_json():
    model = CircuityModel()
    for k in range(10):
        model.observe(*trip(BERLIN, 2000 + 100 * k, 1.5 + 0.02 * k))
        model.observe(*trip(MUNICH, 2000, 1.2))
    restored = CircuityModel.from_dict(json.loads(json.dumps(model.to_dict())))
    for place in (BERLIN, MUNICH, (40.0, -3.7)):
        assert restored.factor(*place) == model.factor(*place)
    assert restored.to_dict() == model.to_dict()


@pytest.mark.parametrize("garbage", [{}, {"version": 2}, {"version": 1, "prior": 1.3}, []])
def test_circuity_from_dict_rejects_garbage(garbage):
    with pytest.raises(ValueError):
        CircuityModel.from_dict(garbage)
