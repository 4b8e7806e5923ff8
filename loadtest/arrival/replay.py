"""The arrival replay: traces through the hub's arrival logic, the baselines beside it.

``replay`` drives exactly what the hub runs per booking (``ArrivalTracker``: the presence
detector and the ETA estimator over ``StraightLineProvider``), with one ``CircuityModel``
that learns from each completed approach the moment it is checked in, like the hub does;
so do the travel times, the error bands and the speeds by area and hour (``SpeedModel``:
the hub adds the trip's tally to its own model and to the store's counters; one hub's
replay has no other hub's counters to merge).
Fixes of all trips are merged into one time order first, so a trip only ever benefits from
trips that had finished before it: no peeking at the future through the learned model.

Beside it, in the same pass, the two baselines: the straight-line/constant-speed ETA
(``baseline_eta_s``) and a raw fence test for presence (inside on any fix inside the
circle, outside on any fix outside it), which is what a detector without hysteresis, dwell
or accuracy handling does.

Scoring the output is ``loadtest.arrival.score``, the tables ``loadtest.arrival.report``,
the files ``loadtest.arrival.files``. Pure: no I/O, no clock.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

from geofence.arrival import ArrivalConfig, ArrivalTracker, TripSummary
from geofence.eta import StraightLineProvider, baseline_eta_s
from geofence.eta_models import CircuityModel, TravelTimeModel
from geofence.fences import CircleFence
from geofence.model import Fix
from loadtest.arrival.learned import LearnedModels
from loadtest.arrival.spec import TripSpec


@dataclass(frozen=True)
class Prediction:
    """The ETA shown at fix time ``t`` (before check-in) and the baseline's for that fix.

    ``routed_s``: the same tracker's ETA when the route distance comes from a routing engine
    (``replay(..., route_distance=...)``); None without one. ``band``/``routed_band``: the
    (low, high) seconds of the uncertainty band shown with each.
    """

    trip_id: str
    t: float
    eta_s: float
    baseline_s: float
    routed_s: float | None = None
    band: tuple[float, float] | None = None
    routed_band: tuple[float, float] | None = None


@dataclass(frozen=True)
class Event:
    trip_id: str
    kind: str  # check_in | check_out
    t: float  # when it happened, as the detector stamps it
    decided_t: float  # when the detector knew
    cause: str = ""


@dataclass
class Replay:
    predictions: list[Prediction] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    naive_events: list[Event] = field(default_factory=list)  # the raw fence test
    last_t: dict[str, float] = field(default_factory=dict)  # last fix of each trip
    fixes: int = 0
    learned_trips: int = 0
    circuity: CircuityModel | None = None
    travel_times: TravelTimeModel | None = None
    routed_travel_times: TravelTimeModel | None = None
    learned: LearnedModels | None = None  # everything learned by the end, to save


@dataclass
class _Live:
    """Replay state of one trip."""

    spec: TripSpec
    tracker: ArrivalTracker
    fence: CircleFence
    routed: ArrivalTracker | None = None  # the same, fed a routing engine's distances
    checked_in: bool = False  # first check-in seen: no more predictions
    naive_inside: bool = False


RouteDistance = Callable[[TripSpec, Fix], "float | None"]
"""A routing engine as the replay sees it: road metres from the fix to the trip's destination,
or None when it has no answer (the tracker then falls back to its provider, as the hub does)."""


def replay(
    trips: Sequence[TripSpec],
    fixes: Mapping[str, Sequence[Fix]],
    config: ArrivalConfig | None = None,
    circuity: CircuityModel | None = None,
    progress: Callable[[int], None] | None = None,
    route_distance: RouteDistance | None = None,
    learned: LearnedModels | None = None,
) -> Replay:
    """Run every trip's fixes, all trips merged in time order, through the arrival logic.

    ``progress`` is called with the number of fixes done since the last call (for a bar).
    With ``route_distance``, a second tracker per trip gets the routing engine's distance
    for each fix (what the hub does with ``DOORSTEP_OSRM_URL``), scored beside the first.
    ``learned``: start from models learned on earlier trips (a hub that has been running)
    instead of from the priors (a new deployment); they keep learning during the replay.
    """
    by_id = {spec.trip_id: spec for spec in trips}
    unknown = sorted(set(fixes) - set(by_id))
    if unknown:
        raise ValueError(f"fixes for trips not in the trips file: {', '.join(unknown[:5])}")
    config = config or ArrivalConfig()
    start = learned or LearnedModels.fresh(config)
    model = circuity or start.circuity
    provider = StraightLineProvider(model)
    # One travel time model per distance source: the distances they are learned on differ.
    times, routed_times = start.travel_times, start.routed_travel_times
    bands, routed_bands = start.error_bands, start.routed_error_bands
    speeds = start.speeds
    live: dict[str, _Live] = {}
    for spec in trips:
        fence = CircleFence(spec.dest_lat, spec.dest_lon, spec.radius_m)
        dest = (spec.dest_lat, spec.dest_lon)
        tracker = ArrivalTracker(
            *dest, fence, provider, config, travel_times=times, error_bands=bands, speeds=speeds
        )
        routed = None
        if route_distance is not None:
            routed = ArrivalTracker(
                *dest,
                fence,
                provider,
                config,
                travel_times=routed_times,
                error_bands=routed_bands,
                speeds=speeds,
            )
        live[spec.trip_id] = _Live(spec, tracker, fence, routed)
    out = Replay(circuity=model, travel_times=times)
    out.learned = LearnedModels(model, times, routed_times, bands, routed_bands, speeds)
    if route_distance is not None:
        out.routed_travel_times = routed_times
    done = 0
    for trip_id, fix in _merged(fixes):
        _step(live[trip_id], fix, model, out, route_distance)
        done += 1
        if progress is not None and done == 5000:
            progress(done)
            done = 0
    if progress is not None and done:
        progress(done)
    return out


def _merged(fixes: Mapping[str, Sequence[Fix]]) -> Iterator[tuple[str, Fix]]:
    """All fixes in time order (ties: trip order), each trip's own fixes sorted by time."""
    streams = [_stream(order, trip_id, f) for order, (trip_id, f) in enumerate(fixes.items())]
    for _t, _order, trip_id, fix in heapq.merge(*streams):
        yield trip_id, fix


def _stream(
    order: int, trip_id: str, fixes: Sequence[Fix]
) -> Iterator[tuple[float, int, str, Fix]]:
    # heapq.merge only compares the heads of different streams, whose ``order`` differs:
    # equal times never fall through to comparing Fix objects (which have no ordering).
    for fix in sorted(fixes, key=lambda f: f.t):
        yield fix.t, order, trip_id, fix


def _step(
    trip: _Live, fix: Fix, model: CircuityModel, out: Replay, route: RouteDistance | None
) -> None:
    spec = trip.spec
    out.fixes += 1
    out.last_t[spec.trip_id] = fix.t
    update = trip.tracker.update(fix)
    routed_s = routed_band = None
    if trip.routed is not None and route is not None and not trip.checked_in:
        # Same detector, same fixes: only the distance differs. Its own events and trip
        # summary duplicate the first tracker's and are not counted twice.
        routed = trip.routed.update(fix, route(spec, fix))
        if routed.eta is not None:
            routed_s, routed_band = routed.eta.seconds, (routed.eta.low_s, routed.eta.high_s)
        if routed.trip is not None:
            _learn_times(trip.routed, routed.trip)
    if update.eta is not None and not trip.checked_in:
        baseline = baseline_eta_s(fix.lat, fix.lon, spec.dest_lat, spec.dest_lon)
        eta = update.eta
        out.predictions.append(
            Prediction(
                spec.trip_id,
                fix.t,
                eta.seconds,
                baseline,
                routed_s,
                band=(eta.low_s, eta.high_s),
                routed_band=routed_band,
            )
        )
    for event in update.events:
        trip.checked_in = trip.checked_in or event.kind == "check_in"
        out.events.append(Event(spec.trip_id, event.kind, event.t, event.decided_t, event.cause))
    if update.trip is not None:
        # What the hub does on check-in: the approach just completed teaches the model.
        summary = update.trip
        learned = model.observe(
            summary.origin_lat, summary.origin_lon, spec.dest_lat, spec.dest_lon, summary.driven_m
        )
        out.learned_trips += int(learned)
        _learn_times(trip.tracker, summary)
        if trip.tracker.speeds is not None:
            # Once per approach, from this tracker: the routed one drove the same streets.
            trip.tracker.speeds.add(trip.tracker.speeds.tally(summary.track))
    inside = trip.fence.signed_distance_m(fix.lat, fix.lon) < 0
    if inside is not trip.naive_inside:
        trip.naive_inside = inside
        kind = "check_in" if inside else "check_out"
        out.naive_events.append(Event(spec.trip_id, kind, fix.t, fix.t, "raw fence test"))


def _learn_times(tracker: ArrivalTracker, summary: TripSummary) -> None:
    """What the hub learns from a completed approach besides circuity: travel times and
    the ETA's error bands."""
    if summary.arrived_t is None:
        return
    if tracker.travel_times is not None:
        tracker.travel_times.observe(summary.samples, summary.arrived_t)
    if tracker.error_bands is not None:
        tracker.error_bands.observe(summary.eta_samples, summary.arrived_t)
