"""Presence detector: check-in/check-out specified by seeded synthetic traces.

A ``Trip`` moves a true position along straight legs and emits one fix a second, displaced
by GPS-like noise: the reported accuracy is a 68 % radius, and the error is correlated over
~30 s (a phone's position wanders, it does not jump independently each second), which is
what makes naive detectors flap indoors. Noisy scenarios run over ten seeds.
"""

from __future__ import annotations

import math
import random
import re
from dataclasses import replace

import pytest

from geofence.fences import CircleFence, Fence
from geofence.geo import bearing_deg, destination_point, distance_m
from geofence.model import Fix
from geofence.presence import (
    PresenceConfig,
    PresenceDetector,
    PresenceEvent,
    PresenceState,
    Side,
)

DEST = (59.9139, 10.7522)
FENCE = CircleFence(*DEST)  # 75 m
SEEDS = range(10)
OUTDOOR = (5.0, 15.0)  # accuracy range on the street, m
INDOOR = (20.0, 50.0)  # accuracy range inside a house
WALK = 1.3  # m/s
DRIVE = 10.0  # m/s
# How far a measured edge crossing may be from the true one: noise, not the detector. Driving,
# 5 s is 50 m; walking, 20 s is 26 m, about four sigma of a 15 m-accuracy fix.
DRIVE_SLACK_S, WALK_SLACK_S = 5.0, 20.0

Acc = float | tuple[float, float]  # a fixed accuracy, or a range to draw each fix's from


def near(bearing: float, metres: float) -> tuple[float, float]:
    """A point ``metres`` from the destination along ``bearing``."""
    return destination_point(*DEST, bearing, metres)


class Trip:
    """A technician's movements as 1 Hz fixes with seeded, correlated, accuracy-sized noise."""

    NOISE_TAU_S = 30.0

    def __init__(self, seed: int, start: tuple[float, float], t: float = 1_700_000_000.0) -> None:
        self.rng = random.Random(seed)
        self.lat, self.lon = start
        self.t = t
        self.fixes: list[Fix] = []
        self.truth: list[tuple[float, float, float]] = []  # (t, lat, lon)
        self._z = (self.rng.gauss(0, 1), self.rng.gauss(0, 1))  # unit-variance error state
        self._z_t = t

    def go_to(self, dest: tuple[float, float], speed: float, acc: Acc = OUTDOOR) -> Trip:
        metres = distance_m(self.lat, self.lon, *dest)
        bearing = bearing_deg(self.lat, self.lon, *dest)
        steps = max(1, math.ceil(metres / speed))
        for _ in range(steps):
            self.lat, self.lon = destination_point(self.lat, self.lon, bearing, metres / steps)
            self._emit(acc, speed)
        return self

    def stay(self, seconds: float, acc: Acc = INDOOR) -> Trip:
        for _ in range(round(seconds)):
            self._emit(acc, 0.0)
        return self

    def silence(self, seconds: float, then_at: tuple[float, float] | None = None) -> Trip:
        """A dead zone: no fixes, and perhaps the technician was elsewhere when it ended."""
        self.t += seconds
        if then_at is not None:
            self.lat, self.lon = then_at
        return self

    def glitch(self, metres: float, bearing: float = 45.0, acc: float = 10.0) -> Trip:
        """One fix ``metres`` from the truth, confidently reported (as real glitches are)."""
        self.t += 1.0
        self.fixes.append(Fix(self.t, *destination_point(self.lat, self.lon, bearing, metres), acc))
        return self

    def _emit(self, acc: Acc, speed: float) -> None:
        self.t += 1.0
        a = self.rng.uniform(*acc) if isinstance(acc, tuple) else acc
        rho = math.exp(-(self.t - self._z_t) / self.NOISE_TAU_S)
        fresh = math.sqrt(1.0 - rho * rho)
        self._z = tuple(rho * z + fresh * self.rng.gauss(0, 1) for z in self._z)
        self._z_t = self.t
        sigma = a / 1.51  # per-axis sigma whose 2-D 68 % radius is a
        east, north = sigma * self._z[0], sigma * self._z[1]
        lat, lon = destination_point(
            self.lat, self.lon, math.degrees(math.atan2(east, north)), math.hypot(east, north)
        )
        reported = max(0.0, speed + self.rng.gauss(0, 0.3))
        self.fixes.append(Fix(self.t, lat, lon, acc=a, speed=reported))
        self.truth.append((self.t, self.lat, self.lon))


def detect(
    fixes: list[Fix], state: PresenceState = PresenceState.OUTSIDE, fence: Fence = FENCE
) -> tuple[PresenceDetector, list[PresenceEvent]]:
    detector = PresenceDetector(fence, state=state)
    return detector, [event for fix in fixes for event in detector.update(fix)]


def kinds(events: list[PresenceEvent]) -> list[str]:
    return [event.kind for event in events]


def true_crossing(trip: Trip, inside: bool, after: float = -math.inf) -> float:
    """When the true position first crossed the fence edge into ``inside``, after ``after``."""
    return next(
        t
        for t, lat, lon in trip.truth
        if t > after and (FENCE.signed_distance_m(lat, lon) < 0) is inside
    )


def streak_start(fixes: list[Fix], inside: bool, until: float) -> float:
    """First fix of the last unbroken run of measured fixes on ``inside``'s side up to ``until``."""
    start = None
    for fix in fixes:
        if fix.t > until:
            break
        on_side = (FENCE.signed_distance_m(fix.lat, fix.lon) < 0) is inside
        start = (start or fix.t) if on_side else None
    assert start is not None
    return start


def visit(seed: int, minutes: float = 5) -> Trip:
    """Drive in from 1.5 km north and stay indoors at the destination."""
    return Trip(seed, near(0, 1500)).go_to(DEST, DRIVE).stay(minutes * 60)


def leave(trip: Trip) -> Trip:
    """Walk out to the van 30 m past the fence edge and drive off east."""
    return trip.go_to(near(90, 105), WALK).go_to(near(90, 3000), DRIVE)


# --- arriving ------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", SEEDS)
def test_drive_in_and_stop_checks_in_once_at_the_arrival(seed: int) -> None:
    trip = visit(seed)
    _, events = detect(trip.fixes)
    assert kinds(events) == ["check_in"]
    assert abs(events[0].t - true_crossing(trip, inside=True)) <= DRIVE_SLACK_S
    assert events[0].decided_t - events[0].t >= 60


@pytest.mark.parametrize("seed", SEEDS)
def test_parking_60_m_away_and_walking_in_checks_in_when_the_walk_enters_the_fence(
    seed: int,
) -> None:
    parking = near(270, 75 + 60)
    trip = Trip(seed, near(270, 1500)).go_to(parking, DRIVE).stay(120, OUTDOOR)
    walk_start = trip.t
    trip.go_to(DEST, WALK).stay(300)
    _, events = detect(trip.fixes)
    assert kinds(events) == ["check_in"]
    assert events[0].t > walk_start + 30  # not while parked, nor on the first steps
    assert abs(events[0].t - true_crossing(trip, inside=True)) <= WALK_SLACK_S


@pytest.mark.parametrize("seed", SEEDS)
def test_driving_past_without_stopping_does_not_check_in(seed: int) -> None:
    trip = Trip(seed, near(0, 1500)).go_to(DEST, DRIVE).go_to(near(180, 1500), DRIVE)
    assert detect(trip.fixes)[1] == []
    # Without the phone's speed only the dwell tells the pass from a stop: 15 s is not 60.
    assert detect([replace(fix, speed=None) for fix in trip.fixes])[1] == []


@pytest.mark.parametrize("seed", SEEDS)
def test_queueing_past_the_door_in_a_jam_does_not_check_in(seed: int) -> None:
    # The hold-out's false check-in (trip-3-0091): stopped 80 s just inside the edge, crept
    # 45 m on, 100 s at a red light by the door, pulled away slowly, drove on. Inside over
    # three minutes, standing most of it; but never 120 s without the vehicle rolling.
    trip = Trip(seed, near(0, 1500)).go_to(near(0, FENCE.radius_m - 5), DRIVE)
    trip.stay(80, OUTDOOR).go_to(near(0, 25), 4.5).stay(100, OUTDOOR)
    trip.go_to(near(180, 5), 2.5).go_to(near(180, 1500), DRIVE)
    assert detect(trip.fixes)[1] == []


def test_driving_through_a_large_fence_does_not_check_in_until_the_vehicle_stops() -> None:
    # 1200 m of fence at 12 m/s is 100 s inside: the dwell alone would check in.
    estate = CircleFence(*DEST, radius_m=600)
    trip = Trip(1, near(0, 1500)).go_to(near(180, 1500), 12.0)
    assert detect(trip.fixes, fence=estate)[1] == []
    # Stopping in the van (no move indoors): the long dwell, since a queue looks the same.
    long_dwell = PresenceConfig().dwell_in_long_s
    stopping = Trip(1, near(0, 1500)).go_to(DEST, 12.0).stay(long_dwell + 10, OUTDOOR)
    events = detect(stopping.fixes, fence=estate)[1]
    assert kinds(events) == ["check_in"]
    stopped_t = stopping.t - long_dwell - 10
    assert events[0].t < stopped_t  # back-dated to the fence edge, not the stop
    assert events[0].decided_t >= stopped_t + long_dwell - 1


def test_arrival_time_is_the_first_fix_inside_not_the_decision_time() -> None:
    trip = visit(seed=3)
    _, events = detect(trip.fixes)
    (check_in,) = events
    assert check_in.t == streak_start(trip.fixes, inside=True, until=check_in.decided_t)
    assert check_in.decided_t >= check_in.t + 60


@pytest.mark.parametrize("offset", [-30.0, 30.0])
def test_40_m_accuracy_fix_30_m_from_the_edge_is_unknown(offset: float) -> None:
    fix = Fix(0.0, *near(0, FENCE.radius_m + offset), acc=40.0)
    assert PresenceDetector(FENCE).side(fix) is Side.UNKNOWN


@pytest.mark.parametrize(
    ("offset", "acc", "side"),
    [
        (-30.0, 10.0, Side.INSIDE),
        (-30.0, 40.0, Side.UNKNOWN),  # the accuracy circle reaches past the edge
        (30.0, 5.0, Side.UNKNOWN),  # sharp, but in the hysteresis band
        (70.0, 10.0, Side.OUTSIDE),  # beyond edge + 50 m by more than its accuracy
        (70.0, 40.0, Side.UNKNOWN),  # beyond edge + 50 m, but not by its accuracy
        (-60.0, None, Side.INSIDE),  # no accuracy: taken as 25 m
        (-20.0, None, Side.UNKNOWN),
    ],
)
def test_side_of_a_fix_allows_for_its_accuracy_and_the_hysteresis_band(
    offset: float, acc: float | None, side: Side
) -> None:
    fix = Fix(0.0, *near(0, FENCE.radius_m + offset), acc=acc)
    assert PresenceDetector(FENCE).side(fix) is side


@pytest.mark.parametrize(("acc", "expected"), [(40.0, []), (10.0, ["check_in"])])
def test_ten_minutes_of_fixes_30_m_inside_the_edge_check_in_only_if_accurate(
    acc: float, expected: list[str]
) -> None:
    spot = near(0, FENCE.radius_m - 30)
    fixes = [Fix(float(t), *spot, acc=acc, speed=0.0) for t in range(600)]
    assert kinds(detect(fixes)[1]) == expected


@pytest.mark.parametrize(("acc", "expected"), [(40.0, []), (10.0, ["check_out"])])
def test_ten_minutes_of_fixes_70_m_past_the_edge_check_out_only_if_accurate(
    acc: float, expected: list[str]
) -> None:
    spot = near(0, FENCE.radius_m + 70)
    fixes = [Fix(float(t), *spot, acc=acc, speed=0.0) for t in range(600)]
    assert kinds(detect(fixes, state=PresenceState.INSIDE)[1]) == expected


# --- staying -------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", SEEDS)
def test_thirty_minutes_stationary_at_40_m_accuracy_checks_in_once_and_never_out(
    seed: int,
) -> None:
    trip = Trip(seed, DEST).stay(1800, acc=40.0)
    detector, events = detect(trip.fixes)
    assert kinds(events) == ["check_in"]
    assert detector.state is PresenceState.INSIDE


@pytest.mark.parametrize("seed", SEEDS)
def test_thirty_minute_visit_indoors_does_not_flap(seed: int) -> None:
    _, events = detect(visit(seed, minutes=30).fixes)
    assert kinds(events) == ["check_in"]


@pytest.mark.parametrize("seed", SEEDS)
def test_fetching_tools_from_a_van_just_outside_the_fence_does_not_check_out(seed: int) -> None:
    van = near(90, FENCE.radius_m + 30)
    trip = Trip(seed, near(90, 1500)).go_to(van, DRIVE).go_to(DEST, WALK).stay(300)
    trip.go_to(van, WALK).stay(300, OUTDOOR).go_to(DEST, WALK).stay(300)
    _, events = detect(trip.fixes)
    assert kinds(events) == ["check_in"]


@pytest.mark.parametrize("seed", SEEDS)
def test_outlier_fix_during_visit_does_not_check_out(seed: int) -> None:
    trip = visit(seed).glitch(600).stay(300)
    _, events = detect(trip.fixes)
    assert kinds(events) == ["check_in"]


@pytest.mark.parametrize("every", [1, 15])
def test_isolated_outliers_do_not_add_up_to_a_check_out(every: int) -> None:
    # Standing in the hysteresis band at poor accuracy: every real fix is UNKNOWN, so only
    # the glitches (600 m off, one in three fixes) say anything. At 1 Hz they are too fast
    # to be real; at one fix per 15 s only the next fix, back where it was, gives them away.
    spot, far = near(0, FENCE.radius_m + 45), near(0, FENCE.radius_m + 645)
    fixes = [
        Fix(float(i * every), *(far if i % 3 == 1 else spot), acc=10.0 if i % 3 == 1 else 30.0)
        for i in range(3600 // every)
    ]
    detector, events = detect(fixes, state=PresenceState.INSIDE)
    assert events == []
    assert detector.state is PresenceState.INSIDE


# --- leaving -------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", SEEDS)
def test_leaving_after_the_visit_checks_out_at_the_first_fix_outside(seed: int) -> None:
    trip = leave(visit(seed, minutes=10))
    _, events = detect(trip.fixes)
    assert kinds(events) == ["check_in", "check_out"]
    check_out = events[1]
    assert check_out.t == streak_start(trip.fixes, inside=False, until=check_out.decided_t)
    assert (
        abs(check_out.t - true_crossing(trip, inside=False, after=events[0].decided_t))
        <= WALK_SLACK_S
    )
    # Driving off is certain well before the 180 s dwell: decided within a minute.
    assert check_out.decided_t - check_out.t <= 60
    assert "driving away" in check_out.cause


@pytest.mark.parametrize("seed", SEEDS)
def test_driving_off_back_past_the_house_checks_out_when_the_technician_walked_out(
    seed: int,
) -> None:
    # The hold-out's missed check-out (trip-2-0091): the van is parked before the house,
    # 70 m past the edge; after the visit the technician walks out to it, sits a minute and
    # drives on along the street, past the house again. The pass is not a return.
    van = near(90, FENCE.radius_m + 70)
    trip = Trip(seed, near(90, 1500)).go_to(van, DRIVE).go_to(DEST, WALK).stay(600)
    leaving = trip.t
    trip.go_to(van, WALK).stay(60, OUTDOOR)
    trip.go_to(near(270, FENCE.radius_m + 60), 6.0).go_to(near(270, 3000), DRIVE)
    _, events = detect(trip.fixes)
    assert kinds(events) == ["check_in", "check_out"]
    walked_out = true_crossing(trip, inside=False, after=leaving)
    assert abs(events[1].t - walked_out) <= WALK_SLACK_S


@pytest.mark.parametrize("seed", SEEDS)
def test_moving_the_van_round_the_block_into_the_drive_does_not_check_out(seed: int) -> None:
    # Rolling through the fence does not end a check-out run, but stopping inside does.
    van = near(90, FENCE.radius_m + 70)
    trip = Trip(seed, near(90, 1500)).go_to(van, DRIVE).go_to(DEST, WALK).stay(600)
    trip.go_to(van, WALK).stay(60, OUTDOOR).go_to(near(270, FENCE.radius_m + 60), 6.0)
    trip.go_to(near(270, FENCE.radius_m + 20), 6.0).go_to(near(270, 30), 3.0)
    trip.stay(300, OUTDOOR).go_to(DEST, WALK).stay(600)
    _, events = detect(trip.fixes)
    assert kinds(events) == ["check_in"]


@pytest.mark.parametrize("seed", SEEDS)
def test_twenty_minute_dropout_during_visit_does_not_check_out_and_leaving_afterwards_does(
    seed: int,
) -> None:
    trip = visit(seed).silence(20 * 60)
    back = trip.t
    trip.stay(300)
    leaving = trip.t
    _, events = detect(leave(trip).fixes)
    assert kinds(events) == ["check_in", "check_out"]
    assert events[1].t > leaving
    assert all(event.decided_t < back or event.decided_t > leaving for event in events)


@pytest.mark.parametrize("seed", SEEDS)
def test_leaving_during_a_dropout_checks_out_at_the_first_fix_after_it(seed: int) -> None:
    trip = visit(seed).silence(20 * 60, then_at=near(90, 3000))
    first_after = trip.t + 1
    trip.go_to(near(90, 5000), DRIVE)
    _, events = detect(trip.fixes)
    assert kinds(events) == ["check_in", "check_out"]
    assert events[1].t == first_after
    assert "without fixes" in events[1].cause


def test_departure_is_not_back_dated_across_a_dead_zone() -> None:
    # The last fix before the silence strays past the edge (indoors, 40 m accuracy): that is
    # noise, not the departure, which happened somewhere in the 20 minutes after it.
    indoors = [Fix(float(t), *DEST, acc=30.0) for t in range(300)]
    stray = Fix(300.0, *near(0, FENCE.radius_m + 10), acc=40.0)
    away = [Fix(1500.0 + t, *near(90, 3000 + 10 * t), acc=8.0) for t in range(200)]
    _, events = detect([*indoors, stray, *away], state=PresenceState.INSIDE)
    assert kinds(events) == ["check_out"]
    assert events[0].t == 1500.0
    assert "after 1200 s without fixes" in events[0].cause


# --- restarts, ordering, audit -------------------------------------------------------------


@pytest.mark.parametrize("seed", SEEDS)
def test_restart_inside_does_not_check_in_again_and_checks_out_on_leaving(seed: int) -> None:
    trip = leave(Trip(seed, DEST).stay(300))
    detector = PresenceDetector(FENCE, state=PresenceState.INSIDE)
    assert detector.state is PresenceState.INSIDE
    events = [event for fix in trip.fixes for event in detector.update(fix)]
    assert kinds(events) == ["check_out"]
    assert detector.state is PresenceState.OUTSIDE


def test_fix_older_than_the_last_one_is_ignored() -> None:
    trip = Trip(7, DEST).stay(300)
    detector, _ = detect(trip.fixes, state=PresenceState.INSIDE)
    # Five minutes of fixes 2 km away, stamped before the ones already seen (a stale batch).
    stale = [Fix(trip.fixes[0].t - 400 + i, *near(0, 2000), acc=5.0) for i in range(300)]
    assert [event for fix in stale for event in detector.update(fix)] == []
    assert detector.update(trip.fixes[-1]) == []  # a repeat is not newer either
    assert detector.state is PresenceState.INSIDE


def test_event_cause_says_how_long_how_many_fixes_and_how_accurate() -> None:
    _, events = detect(leave(visit(seed=5)).fixes)
    check_in, check_out = events
    assert re.fullmatch(
        r"inside fence for \d+ s \(\d+ fixes, acc<=\d+ m\), moved indoors", check_in.cause
    )
    assert re.fullmatch(
        r"outside fence\+50 m for \d+ s \(\d+ fixes, acc<=\d+ m\), "
        r"driving away \(\d+ m beyond the fence\)",
        check_out.cause,
    )


def test_config_defaults_put_the_exit_boundary_beyond_the_entry_boundary() -> None:
    config = PresenceConfig()
    assert config.exit_margin_m > -config.entry_margin_m
    assert config.dwell_out_s > config.dwell_in_s


def test_scattered_sure_fixes_between_long_unknown_stretches_do_not_check_out() -> None:
    """A dozing indoor phone: a sure-outside fix every 100 s, unknown ones in between."""
    detector = PresenceDetector(FENCE, state=PresenceState.INSIDE)
    far = destination_point(*DEST, 90.0, 200.0)  # sure outside at 10 m accuracy
    edge = destination_point(*DEST, 90.0, 90.0)  # 15 m past the edge at 40 m: unknown
    events = []
    t = 1000.0
    for _ in range(8):  # 800 s, far longer than the check-out dwell
        events += detector.update(Fix(t, *far, acc=10.0))
        for step in range(1, 10):
            events += detector.update(Fix(t + step * 10, *edge, acc=40.0))
        t += 100.0
    assert events == []
    # Witnessed continuously, the same place is a departure.
    for step in range(25):
        events += detector.update(Fix(t + step * 10, *far, acc=10.0))
    assert [e.kind for e in events] == ["check_out"]


# --- issue 14: queues by the door, and driving off ------------------------------------------


def queue_by_the_door(seed: int, seconds: float = 240.0) -> Trip:
    """Drive in and queue 20-40 m from the house: standing, creeping 5 m at 0.5-1.5 m/s."""
    trip = Trip(seed, near(0, 1500)).go_to(near(0, 40), DRIVE)
    rng = random.Random(seed)
    start = trip.t
    while trip.t - start < seconds:
        trip.stay(rng.uniform(10, 40), OUTDOOR)
        trip.go_to(near(0, max(40 - (trip.t - start) / 12, 20)), rng.uniform(0.5, 1.5))
    return trip


def without(fixes: list[Fix], field: str) -> list[Fix]:
    return [replace(fix, **{field: None}) for fix in fixes]


@pytest.mark.parametrize("seed", SEEDS)
def test_queued_by_the_door_for_four_minutes_then_driving_on_does_not_check_in(seed: int) -> None:
    trip = queue_by_the_door(seed).go_to(near(180, 20), 4.0).go_to(near(180, 1500), DRIVE)
    detector = PresenceDetector(FENCE)
    events, pending = [], False
    for fix in trip.fixes:
        events += detector.update(fix)
        pending = pending or detector.pending_arrival
    assert events == []
    assert pending  # meanwhile the customer could be told "at your door"
    assert not detector.pending_arrival
    # A phone that reports no speed or no accuracy is no easier to fool.
    assert detect(without(trip.fixes, "speed"))[1] == []
    assert detect(without(trip.fixes, "acc"))[1] == []


@pytest.mark.parametrize("seed", SEEDS)
def test_queued_then_parked_and_walked_in_checks_in_at_the_real_arrival(seed: int) -> None:
    trip = queue_by_the_door(seed).stay(30, OUTDOOR).go_to(DEST, WALK).stay(600)
    _, events = detect(trip.fixes)
    assert kinds(events) == ["check_in"]
    assert abs(events[0].t - true_crossing(trip, inside=True)) <= DRIVE_SLACK_S
    assert events[0].cause.endswith("moved indoors")
    # No accuracy reported: nothing shows the move indoors, so it takes the long dwell,
    # still stamped at the crossing.
    _, events = detect(without(trip.fixes, "acc"))
    assert kinds(events) == ["check_in"]
    assert abs(events[0].t - true_crossing(trip, inside=True)) <= DRIVE_SLACK_S
    assert events[0].decided_t - events[0].t >= PresenceConfig().dwell_in_long_s


@pytest.mark.parametrize("seed", SEEDS)
def test_drives_off_checked_out_within_60_s_even_without_reported_speed(seed: int) -> None:
    trip = leave(visit(seed, minutes=10))
    for fixes in (trip.fixes, without(trip.fixes, "speed")):
        _, events = detect(fixes)
        assert kinds(events) == ["check_in", "check_out"]
        crossing = true_crossing(trip, inside=False, after=events[0].decided_t)
        assert events[1].decided_t - crossing <= 60
        assert abs(events[1].t - crossing) <= WALK_SLACK_S


@pytest.mark.parametrize("seed", SEEDS)
def test_sitting_two_minutes_in_a_van_150_m_away_does_not_check_out(seed: int) -> None:
    van = near(90, 150)
    trip = visit(seed, minutes=10).go_to(van, WALK).stay(120, OUTDOOR).go_to(DEST, WALK)
    trip.stay(600)
    assert kinds(detect(trip.fixes)[1]) == ["check_in"]


@pytest.mark.parametrize("seed", SEEDS)
def test_two_outliers_in_a_row_during_the_visit_do_not_check_out(seed: int) -> None:
    trip = visit(seed, minutes=10).glitch(400).glitch(400).glitch(420).stay(600)
    assert kinds(detect(trip.fixes)[1]) == ["check_in"]


def test_a_detector_started_with_the_technician_parked_judges_indoors_by_accuracy_alone() -> None:
    # A hub restarted (or a failover) while the technician is at the door: no road fix to
    # compare with, so only an accuracy no phone has in the open counts as indoors.
    indoors = Trip(1, DEST).stay(400, 30.0)
    (event,) = detect(indoors.fixes)[1]
    assert event.decided_t - event.t < 130 and event.cause.endswith("moved indoors")
    outdoors = Trip(1, DEST).stay(400, 12.0)
    (event,) = detect(outdoors.fixes)[1]
    assert event.decided_t - event.t >= PresenceConfig().dwell_in_long_s


@pytest.mark.parametrize("seed", SEEDS)
def test_driving_past_then_parking_just_outside_stamps_the_walk_in_not_the_drive_past(
    seed: int,
) -> None:
    # Through the fence past the house, park 30 m past its edge (in the undecided band),
    # sit a minute, walk in: the arrival is the walk's crossing.
    van = near(180, FENCE.radius_m + 30)
    trip = Trip(seed, near(0, 1500)).go_to(near(0, 30), DRIVE).go_to(van, 6.0)
    trip.stay(60, OUTDOOR).go_to(DEST, WALK).stay(600)
    _, events = detect(trip.fixes)
    assert kinds(events) == ["check_in"]
    walked_in = true_crossing(trip, inside=True, after=trip.fixes[0].t + 200)
    assert abs(events[0].t - walked_in) <= WALK_SLACK_S


@pytest.mark.parametrize("seed", SEEDS)
def test_coarse_fixes_after_a_tunnel_by_the_door_are_not_the_move_indoors(seed: int) -> None:
    # Out of a tunnel into a queue by the door: the phone's first five fixes are coarse
    # (three times its accuracy), then sharp again; four minutes queued, then on.
    trip = Trip(seed, near(0, 1500)).go_to(near(0, 300), DRIVE).silence(60, near(0, 40))
    for _ in range(5):
        trip.stay(1, 35.0)
    trip.stay(235, OUTDOOR).go_to(near(180, 1500), DRIVE)
    assert detect(trip.fixes)[1] == []


@pytest.mark.parametrize("seed", SEEDS)
def test_a_van_circling_the_block_by_the_house_is_checked_out_within_60_s(seed: int) -> None:
    # The tuning set's missed check-out (sumo-berlin-7000-0039): the van drives off past
    # the house twice, round a block 20-40 m past the fence edge, inside the exit band the
    # whole time, before it leaves. Rolling past the edge is in a vehicle, not on foot.
    edge = FENCE.radius_m
    trip = visit(seed, minutes=10)
    leaving = trip.t
    for _ in range(2):
        trip.go_to(near(90, edge + 35), 11.0).stay(4, OUTDOOR)
        trip.go_to(near(0, edge + 30), 6.0).go_to(near(270, edge + 30), 11.0)
        trip.go_to(near(180, edge + 35), 6.0).go_to(DEST, 11.0)
    trip.go_to(near(90, edge + 40), 11.0).go_to(near(90, edge + 45), 4.0)
    _, events = detect(trip.fixes)
    assert kinds(events) == ["check_in", "check_out"]
    crossing = true_crossing(trip, inside=False, after=leaving)
    assert events[1].decided_t - crossing <= 60
    assert abs(events[1].t - crossing) <= DRIVE_SLACK_S


@pytest.mark.parametrize("seed", SEEDS)
def test_moving_the_van_to_park_just_past_the_edge_does_not_check_out(seed: int) -> None:
    # Rolling fixes past the edge count as outside only while they roll: the van moved
    # 20 m past the edge and parked there, its parked fixes are undecided, and the
    # technician walks back in.
    edge = FENCE.radius_m
    trip = visit(seed, minutes=10).go_to(near(90, edge - 20), WALK).stay(20, OUTDOOR)
    trip.go_to(near(90, edge + 20), 6.0).stay(240, OUTDOOR).go_to(DEST, WALK).stay(600)
    assert kinds(detect(trip.fixes)[1]) == ["check_in"]
