"""Arrival accuracy: replay traces through the hub's arrival logic and score it against truth.

``replay`` drives exactly what the hub runs per booking (``ArrivalTracker``: the presence
detector and the ETA estimator over ``StraightLineProvider``), with one ``CircuityModel``
that learns from each completed approach the moment it is checked in, like the hub does.
Fixes of all trips are merged into one time order first, so a trip only ever benefits from
trips that had finished before it: no peeking at the future through the learned model.

Beside it, in the same pass, the two baselines: the straight-line/constant-speed ETA
(``baseline_eta_s``) and a raw fence test for presence (inside on any fix inside the
circle, outside on any fix outside it), which is what a detector without hysteresis, dwell
or accuracy handling does.

``score`` turns the output into the metrics of the issue, and ``format_markdown`` into the
table for the README. Pure: no I/O, no clock. Reading and writing files is the CLI's job.
"""

from __future__ import annotations

import heapq
import math
import statistics
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from geofence.arrival import ArrivalConfig, ArrivalTracker, TripSummary
from geofence.eta import CircuityModel, StraightLineProvider, TravelTimeModel, baseline_eta_s
from geofence.eta_band import ErrorBands
from geofence.fences import DEFAULT_RADIUS_M, CircleFence
from geofence.model import Fix

# Time-to-arrival buckets of the issue, seconds: 0-2, 2-5, 5-10, 10-20 minutes.
HORIZONS_S: tuple[tuple[float, float], ...] = ((0, 120), (120, 300), (300, 600), (600, 1200))
# "Within 20 % of the truth": |eta - truth| <= 0.2 x truth.
WITHIN = 0.2
# The fence edge is fuzzy by the GPS error (a 15 m error is 10 s of walking): a check-in
# stamped up to this long before the true crossing is the same arrival, not a false one; so
# is a check-out stamped this long before the true departure.
EARLY_TOLERANCE_S = 60.0
# A check-out can only be missed if the trace goes on this long after the true departure
# (the detector rightly waits a couple of minutes before ending a visit).
CHECKOUT_GRACE_S = 300.0


# --- input -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class TripSpec:
    """One TRIPS.json entry. ``has_truth``: the entry says whether and when a visit happened.

    ``"arrived_t": null`` is truth ("never arrived": a drive-past); a missing ``arrived_t``
    means the truth is unknown and the trip is replayed but not scored.
    """

    trip_id: str
    dest_lat: float
    dest_lon: float
    radius_m: float = DEFAULT_RADIUS_M
    has_truth: bool = False
    arrived_t: float | None = None
    departed_t: float | None = None
    kind: str | None = None
    tags: tuple[str, ...] = ()

    @property
    def visit(self) -> bool:
        return self.has_truth and self.arrived_t is not None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TripSpec:
        """Parse and check one entry; ValueError names the trip and the field."""
        trip_id = str(data.get("trip_id", ""))
        try:
            dest = data["destination"]
            spec = cls(
                trip_id=trip_id,
                dest_lat=_finite(dest["lat"]),
                dest_lon=_finite(dest["lon"]),
                radius_m=_finite(data.get("geofence_radius_m") or DEFAULT_RADIUS_M),
                has_truth="arrived_t" in data,
                arrived_t=_optional(data.get("arrived_t")),
                departed_t=_optional(data.get("departed_t")),
                kind=None if data.get("kind") is None else str(data["kind"]),
                tags=tuple(str(tag) for tag in data.get("tags") or ()),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"trip {trip_id or '?'}: bad or missing field {exc}") from None
        if not trip_id:
            raise ValueError("a trip has no trip_id")
        if not (-90 <= spec.dest_lat <= 90 and -180 <= spec.dest_lon <= 180):
            raise ValueError(f"trip {trip_id}: destination out of range")
        if spec.radius_m <= 0:
            raise ValueError(f"trip {trip_id}: geofence_radius_m must be positive")
        return spec


def fix_from_dict(data: Mapping[str, Any]) -> tuple[str, Fix]:
    """One FIXES.jsonl record as (trip_id, Fix); ValueError says what is wrong."""
    try:
        trip_id = str(data["trip_id"])
        fix = Fix(
            t=_finite(data["t"]),
            lat=_finite(data["lat"]),
            lon=_finite(data["lon"]),
            acc=_optional(data.get("acc")),
            speed=_optional(data.get("speed")),
            heading=_optional(data.get("heading")),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"bad or missing field {exc}") from None
    return trip_id, fix


def _finite(value: Any) -> float:
    if isinstance(value, bool):
        raise TypeError("boolean")
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(f"not finite: {value!r}")
    return number


def _optional(value: Any) -> float | None:
    return None if value is None else _finite(value)


# --- replay ----------------------------------------------------------------------------------


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


@dataclass
class LearnedModels:
    """What the arrival logic learns from completed approaches, as a hub accumulates it.

    Saved after a replay (``to_dict``) and given to the next one, it scores the estimator
    as it runs in a hub that has seen earlier trips, not only as a new deployment does.
    The travel time model and the ETA's error bands are kept per distance source (straight
    line x circuity, routing engine): the distances they are learned on, and the errors of
    the ETAs made from them, differ.
    """

    circuity: CircuityModel
    travel_times: TravelTimeModel
    routed_travel_times: TravelTimeModel
    error_bands: ErrorBands = field(default_factory=ErrorBands)
    routed_error_bands: ErrorBands = field(default_factory=ErrorBands)

    @classmethod
    def fresh(cls, config: ArrivalConfig) -> LearnedModels:
        prior = config.eta.prior_speed_mps
        return cls(CircuityModel(), TravelTimeModel(prior), TravelTimeModel(prior))

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": 1,
            "circuity": self.circuity.to_dict(),
            "travel_times": self.travel_times.to_dict(),
            "routed_travel_times": self.routed_travel_times.to_dict(),
            "error_bands": self.error_bands.to_dict(),
            "routed_error_bands": self.routed_error_bands.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: Any) -> LearnedModels:
        """Rebuild from ``to_dict``; ValueError naming what is wrong otherwise."""
        if not isinstance(data, dict) or data.get("version") != 1:
            raise ValueError("not a version 1 learned models file")
        try:
            return cls(
                CircuityModel.from_dict(data["circuity"]),
                TravelTimeModel.from_dict(data["travel_times"]),
                TravelTimeModel.from_dict(data["routed_travel_times"]),
                # Files saved before the error bands existed start them afresh.
                *(
                    ErrorBands.from_dict(data[key]) if key in data else ErrorBands()
                    for key in ("error_bands", "routed_error_bands")
                ),
            )
        except KeyError as exc:
            raise ValueError(f"learned models file lacks {exc}") from None


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
    live: dict[str, _Live] = {}
    for spec in trips:
        fence = CircleFence(spec.dest_lat, spec.dest_lon, spec.radius_m)
        dest = (spec.dest_lat, spec.dest_lon)
        tracker = ArrivalTracker(
            *dest, fence, provider, config, travel_times=times, error_bands=bands
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
            )
        live[spec.trip_id] = _Live(spec, tracker, fence, routed)
    out = Replay(circuity=model, travel_times=times)
    out.learned = LearnedModels(model, times, routed_times, bands, routed_bands)
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


# --- scoring ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class HorizonScore:
    """ETA errors for fixes whose true time to arrival lies in [lo_s, hi_s)."""

    lo_s: float
    hi_s: float
    n: int
    mae_s: float
    baseline_mae_s: float
    within: float  # share of predictions within WITHIN of the truth
    baseline_within: float
    # Ours with a routing engine's distances (nan when the replay had none).
    routed_mae_s: float = math.nan
    routed_within: float = math.nan
    # Share of predictions whose band held the true time to arrival, and the band's median
    # width (nan where the predictions carried no band).
    in_band: float = math.nan
    band_width_s: float = math.nan
    routed_in_band: float = math.nan
    routed_band_width_s: float = math.nan

    @property
    def ratio(self) -> float:
        return self.mae_s / self.baseline_mae_s if self.baseline_mae_s else math.nan

    @property
    def routed_ratio(self) -> float:
        return self.routed_mae_s / self.baseline_mae_s if self.baseline_mae_s else math.nan


@dataclass(frozen=True)
class TripVerdict:
    """How one detector did on one scored trip."""

    trip_id: str
    false_check_ins: tuple[Event, ...] = ()
    repeat_check_ins: int = 0  # of the false ones, those repeating a visit's check-in
    premature: bool = False  # the visit's check-in was decided before the visit began
    false_check_outs: tuple[Event, ...] = ()
    check_in: Event | None = None
    check_out: Event | None = None
    missed_check_in: bool = False
    missed_check_out: bool = False

    @property
    def ok(self) -> bool:
        return not (
            self.false_check_ins
            or self.false_check_outs
            or self.missed_check_in
            or self.missed_check_out
        )


@dataclass(frozen=True)
class PresenceScore:
    visits: int
    no_visits: int
    check_ins: int  # visits whose check-in was found
    false_check_ins: int
    no_visit_check_ins: int  # of them, on trips without a visit (drive-pasts)
    premature_check_ins: int  # of them, decided before the visit and still in at its start
    repeat_check_ins: int  # of them, a second check-in within one visit: flapping
    false_check_outs: int
    missed_check_ins: int
    missed_check_outs: int
    checkin_delay_s: tuple[float, float]  # median, p95 of |decided_t - arrived_t|
    checkin_stamp_s: tuple[float, float]  # median, p95 of |t - arrived_t|
    checkout_delay_s: tuple[float, float]  # median, p95 of |decided_t - departed_t|


@dataclass(frozen=True)
class CaseScore:
    """One kind of trip or one tag: how many, presence failures, ETA error over 0-20 min."""

    case: str
    trips: int
    failed_trips: int
    naive_failed_trips: int
    n: int
    mae_s: float
    baseline_mae_s: float
    routed_mae_s: float = math.nan


@dataclass(frozen=True)
class Report:
    trips: int
    scored_trips: int
    fixes: int
    predictions: int
    horizons: tuple[HorizonScore, ...]
    overall: HorizonScore
    ours: PresenceScore
    naive: PresenceScore
    cases: tuple[CaseScore, ...]
    verdicts: tuple[TripVerdict, ...]  # our detector, one per scored trip
    naive_verdicts: tuple[TripVerdict, ...]
    specs: Mapping[str, TripSpec]
    learned_trips: int
    circuity: float | None  # the learned global factor at the end
    routed: bool = False  # the replay had a routing engine: routed_* columns are filled

    @property
    def failures(self) -> list[TripVerdict]:
        return [v for v in self.verdicts if not v.ok]


def score(trips: Sequence[TripSpec], result: Replay) -> Report:
    """The issue's metrics, for our logic and the baselines, over trips that have truth."""
    specs = {spec.trip_id: spec for spec in trips}
    scored = [spec for spec in trips if spec.has_truth]
    verdicts = _verdicts(scored, result.events, result.last_t)
    naive = _verdicts(scored, result.naive_events, result.last_t)
    samples = list(_eta_samples(specs, result.predictions))
    horizons = tuple(_horizon(lo, hi, samples) for lo, hi in HORIZONS_S)
    overall = _horizon(HORIZONS_S[0][0], HORIZONS_S[-1][1], samples)
    circuity = None
    if result.circuity is not None and result.learned_trips:
        circuity = float(result.circuity.to_dict()["global"][1])  # mean of what was observed
    return Report(
        trips=len(trips),
        scored_trips=len(scored),
        fixes=result.fixes,
        predictions=len(result.predictions),
        horizons=horizons,
        overall=overall,
        ours=_presence(scored, verdicts),
        naive=_presence(scored, naive),
        cases=tuple(_cases(scored, verdicts, naive, samples)),
        verdicts=tuple(verdicts),
        naive_verdicts=tuple(naive),
        specs=specs,
        learned_trips=result.learned_trips,
        circuity=circuity,
        routed=result.routed_travel_times is not None,
    )


def judge(spec: TripSpec, events: Sequence[Event], last_t: float | None = None) -> TripVerdict:
    """Match one trip's events against its truth.

    A check-in belongs to the visit if it is stamped or decided inside it (from
    EARLY_TOLERANCE_S before the true arrival to the true departure): a detector that
    decides while the technician is at the door has found the visit, even if it stamps it
    at an earlier drive-by (that shows in the timestamp error). Failing that, a check-in
    decided earlier and not undone by a check-out before the arrival covers the visit but
    told the customer "arrived" too soon: it is premature, so false, but the visit is not
    missed. Every other check-in is false: on a trip without a visit, away from the visit,
    or again within it (flapping). A check-out is false if it says the technician left
    while they were inside.
    """
    ins = sorted((e for e in events if e.kind == "check_in"), key=lambda e: e.decided_t)
    outs = sorted((e for e in events if e.kind == "check_out"), key=lambda e: e.decided_t)
    if not spec.visit:
        return TripVerdict(spec.trip_id, false_check_ins=tuple(ins))
    arrived = spec.arrived_t
    assert arrived is not None
    departed = spec.departed_t if spec.departed_t is not None else math.inf
    start = arrived - EARLY_TOLERANCE_S
    matched = next(
        (e for e in ins if start <= e.t <= departed or start <= e.decided_t <= departed), None
    )
    premature = False
    if matched is None:
        before = [e for e in ins if e.decided_t < start]
        if before and not any(before[-1].decided_t < o.decided_t <= arrived for o in outs):
            matched, premature = before[-1], True
    false_ins = tuple(e for e in ins if e is not matched or premature)
    repeats = sum(
        1
        for e in false_ins
        if matched is not None and e is not matched and matched.t < e.t <= departed
    )
    false_outs = tuple(e for e in outs if arrived <= e.t < departed - EARLY_TOLERANCE_S)
    check_out = next((e for e in outs if e.t >= departed - EARLY_TOLERANCE_S), None)
    can_miss_out = (
        spec.departed_t is not None
        and last_t is not None
        and last_t >= spec.departed_t + CHECKOUT_GRACE_S
    )
    return TripVerdict(
        spec.trip_id,
        false_check_ins=false_ins,
        repeat_check_ins=repeats,
        premature=premature,
        false_check_outs=false_outs,
        check_in=matched,
        check_out=check_out,
        missed_check_in=matched is None,
        missed_check_out=can_miss_out and check_out is None,
    )


def _verdicts(
    scored: Sequence[TripSpec], events: Iterable[Event], last_t: Mapping[str, float]
) -> list[TripVerdict]:
    by_trip: dict[str, list[Event]] = {}
    for event in events:
        by_trip.setdefault(event.trip_id, []).append(event)
    return [judge(spec, by_trip.get(spec.trip_id, []), last_t.get(spec.trip_id)) for spec in scored]


def _presence(scored: Sequence[TripSpec], verdicts: Sequence[TripVerdict]) -> PresenceScore:
    specs = {spec.trip_id: spec for spec in scored}
    delays, stamps, out_delays = [], [], []
    for v in verdicts:
        spec = specs[v.trip_id]
        if v.check_in is not None and spec.arrived_t is not None:
            delays.append(abs(v.check_in.decided_t - spec.arrived_t))
            stamps.append(abs(v.check_in.t - spec.arrived_t))
        if v.check_out is not None and spec.departed_t is not None:
            out_delays.append(abs(v.check_out.decided_t - spec.departed_t))
    visits = sum(1 for spec in scored if spec.visit)
    return PresenceScore(
        visits=visits,
        no_visits=len(scored) - visits,
        check_ins=sum(1 for v in verdicts if v.check_in is not None),
        false_check_ins=sum(len(v.false_check_ins) for v in verdicts),
        no_visit_check_ins=sum(
            len(v.false_check_ins) for v in verdicts if not specs[v.trip_id].visit
        ),
        premature_check_ins=sum(1 for v in verdicts if v.premature),
        repeat_check_ins=sum(v.repeat_check_ins for v in verdicts),
        false_check_outs=sum(len(v.false_check_outs) for v in verdicts),
        missed_check_ins=sum(1 for v in verdicts if v.missed_check_in),
        missed_check_outs=sum(1 for v in verdicts if v.missed_check_out),
        checkin_delay_s=_median_p95(delays),
        checkin_stamp_s=_median_p95(stamps),
        checkout_delay_s=_median_p95(out_delays),
    )


def _median_p95(values: Sequence[float]) -> tuple[float, float]:
    if not values:
        return math.nan, math.nan
    ordered = sorted(values)
    # Nearest-rank p95: an observed value, never an interpolation past the worst trips.
    p95 = ordered[max(math.ceil(0.95 * len(ordered)) - 1, 0)]
    return statistics.median(ordered), p95


@dataclass(frozen=True, slots=True)
class _Sample:
    trip_id: str
    horizon_s: float
    error_s: float
    baseline_error_s: float
    routed_error_s: float | None = None
    band: tuple[float, float] | None = None
    routed_band: tuple[float, float] | None = None


def _eta_samples(
    specs: Mapping[str, TripSpec], predictions: Iterable[Prediction]
) -> Iterator[_Sample]:
    """Predictions of trips with a true arrival, made before it: (horizon, errors)."""
    for p in predictions:
        spec = specs.get(p.trip_id)
        if spec is None or not spec.visit or spec.arrived_t is None:
            continue
        horizon = spec.arrived_t - p.t
        if horizon >= 0:
            routed = None if p.routed_s is None else p.routed_s - horizon
            yield _Sample(
                p.trip_id,
                horizon,
                p.eta_s - horizon,
                p.baseline_s - horizon,
                routed,
                p.band,
                p.routed_band,
            )


def _horizon(lo: float, hi: float, samples: Sequence[_Sample]) -> HorizonScore:
    chosen = [s for s in samples if lo <= s.horizon_s < hi]
    if not chosen:
        return HorizonScore(lo, hi, 0, math.nan, math.nan, math.nan, math.nan)
    n = len(chosen)
    routed = [(s.routed_error_s, s.horizon_s) for s in chosen if s.routed_error_s is not None]
    complete = len(routed) == n
    return HorizonScore(
        lo_s=lo,
        hi_s=hi,
        n=n,
        mae_s=sum(abs(s.error_s) for s in chosen) / n,
        baseline_mae_s=sum(abs(s.baseline_error_s) for s in chosen) / n,
        within=sum(1 for s in chosen if abs(s.error_s) <= WITHIN * s.horizon_s) / n,
        baseline_within=sum(1 for s in chosen if abs(s.baseline_error_s) <= WITHIN * s.horizon_s)
        / n,
        routed_mae_s=sum(abs(e) for e, _ in routed) / n if complete else math.nan,
        routed_within=sum(1 for e, h in routed if abs(e) <= WITHIN * h) / n
        if complete
        else math.nan,
        **_band_scores(chosen),
    )


def _band_scores(chosen: Sequence[_Sample]) -> dict[str, float]:
    """How often the band held the truth, and how wide it was (median), ours and routed."""
    out: dict[str, float] = {}
    for prefix, bands in (
        ("", [(s.band, s.horizon_s) for s in chosen]),
        ("routed_", [(s.routed_band, s.horizon_s) for s in chosen]),
    ):
        known = [(band, h) for band, h in bands if band is not None]
        if known and len(known) == len(bands):
            out[f"{prefix}in_band"] = sum(lo <= h <= hi for (lo, hi), h in known) / len(known)
            out[f"{prefix}band_width_s"] = statistics.median(hi - lo for (lo, hi), _ in known)
    return out


def _cases(
    scored: Sequence[TripSpec],
    verdicts: Sequence[TripVerdict],
    naive: Sequence[TripVerdict],
    samples: Sequence[_Sample],
) -> Iterator[CaseScore]:
    """Per kind of trip and per tag, so a failure can be traced to the situation causing it."""
    cases: dict[str, list[int]] = {}
    for i, spec in enumerate(scored):
        names = ([f"kind:{spec.kind}"] if spec.kind else []) + list(spec.tags)
        for name in names:
            cases.setdefault(name, []).append(i)
    by_trip: dict[str, list[_Sample]] = {}
    lo, hi = HORIZONS_S[0][0], HORIZONS_S[-1][1]
    for s in samples:
        if lo <= s.horizon_s < hi:
            by_trip.setdefault(s.trip_id, []).append(s)
    for name in sorted(cases, key=lambda c: (not c.startswith("kind:"), c)):
        members = cases[name]
        chosen = [s for i in members for s in by_trip.get(scored[i].trip_id, [])]
        n = len(chosen)
        routed = [abs(s.routed_error_s) for s in chosen if s.routed_error_s is not None]
        yield CaseScore(
            case=name,
            trips=len(members),
            failed_trips=sum(1 for i in members if not verdicts[i].ok),
            naive_failed_trips=sum(1 for i in members if not naive[i].ok),
            n=n,
            mae_s=sum(abs(s.error_s) for s in chosen) / n if n else math.nan,
            baseline_mae_s=sum(abs(s.baseline_error_s) for s in chosen) / n if n else math.nan,
            routed_mae_s=sum(routed) / n if n and len(routed) == n else math.nan,
        )


# --- report ----------------------------------------------------------------------------------


def format_markdown(report: Report, title: str = "Arrival accuracy") -> str:
    """The results as Markdown tables: ETA by horizon, presence, cases, failing trips."""
    lines = [f"## {title}", ""]
    no_visit = report.ours.no_visits
    lines += [
        f"{report.trips} trips ({report.scored_trips} with ground truth: {report.ours.visits} "
        f"visits, {no_visit} without a visit), {report.fixes:,} fixes, "
        f"{report.predictions:,} ETA predictions. Circuity and travel times learned online "
        f"from {report.learned_trips} completed approaches"
        + (f" (global circuity {report.circuity:.2f})." if report.circuity else "."),
        "",
    ]
    lines += _eta_table(report)
    band = _band_table(report)
    if band:
        lines += ["", *band]
    lines += ["", *_presence_table(report), ""]
    lines += _case_table(report)
    failures = _failure_lines(report)
    if failures:
        lines += ["", "Trips where our detector failed:", "", *failures]
    return "\n".join(lines) + "\n"


def _horizon_rows(report: Report) -> Iterator[tuple[str, HorizonScore]]:
    """Each horizon with its table label, then the overall row in bold."""
    for h in (*report.horizons, report.overall):
        label = f"{h.lo_s / 60:g}-{h.hi_s / 60:g} min"
        yield (f"**all {label}**" if h is report.overall else label), h


def _eta_table(report: Report) -> list[str]:
    if report.routed:
        return _routed_eta_table(report)
    lines = [
        "| ETA, time to arrival | fixes | MAE ours | MAE baseline | ours / baseline "
        "| within 20 % ours | within 20 % baseline |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for label, h in _horizon_rows(report):
        lines.append(
            f"| {label} | {h.n:,} | {_s(h.mae_s)} | {_s(h.baseline_mae_s)} | {_ratio(h.ratio)} "
            f"| {_pct(h.within)} | {_pct(h.baseline_within)} |"
        )
    return lines


def _routed_eta_table(report: Report) -> list[str]:
    lines = [
        "| ETA, time to arrival | fixes | MAE baseline | MAE ours, no routing engine "
        "| ours / baseline | MAE ours, with routing engine | ours / baseline "
        "| within 20 %: baseline / ours / ours routed |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for label, h in _horizon_rows(report):
        lines.append(
            f"| {label} | {h.n:,} | {_s(h.baseline_mae_s)} | {_s(h.mae_s)} | {_ratio(h.ratio)} "
            f"| {_s(h.routed_mae_s)} | {_ratio(h.routed_ratio)} "
            f"| {_pct(h.baseline_within)} / {_pct(h.within)} / {_pct(h.routed_within)} |"
        )
    return lines


def _band_table(report: Report) -> list[str]:
    """How honest the band shown with the ETA is: how often the arrival fell inside it."""
    if all(math.isnan(h.in_band) for _, h in _horizon_rows(report)):
        return []
    routed = report.routed
    lines = [
        "| ETA band (low..high), time to arrival | arrival inside the band, ours "
        "| band width, median |"
        + (" arrival inside, routed | band width, routed |" if routed else ""),
        "|---|---:|---:|" + ("---:|---:|" if routed else ""),
    ]
    for label, h in _horizon_rows(report):
        line = f"| {label} | {_pct(h.in_band)} | {_s(h.band_width_s)} |"
        if routed:
            line += f" {_pct(h.routed_in_band)} | {_s(h.routed_band_width_s)} |"
        lines.append(line)
    return lines


def _presence_table(report: Report) -> list[str]:
    ours, naive = report.ours, report.naive
    rows = [
        (
            "visits checked in",
            f"{ours.check_ins}/{ours.visits}",
            f"{naive.check_ins}/{naive.visits}",
        ),
        ("missed check-ins", str(ours.missed_check_ins), str(naive.missed_check_ins)),
        ("false check-ins", str(ours.false_check_ins), str(naive.false_check_ins)),
        (
            "... on trips without a visit (drive-pasts)",
            str(ours.no_visit_check_ins),
            str(naive.no_visit_check_ins),
        ),
        (
            "... premature: decided > 1 min before the true arrival, held into the visit",
            str(ours.premature_check_ins),
            str(naive.premature_check_ins),
        ),
        (
            "... away from the visit (before it and undone, or after it)",
            str(_away(ours)),
            str(_away(naive)),
        ),
        (
            "... repeats within a visit (flapping)",
            str(ours.repeat_check_ins),
            str(naive.repeat_check_ins),
        ),
        (
            "false check-outs (while inside)",
            str(ours.false_check_outs),
            str(naive.false_check_outs),
        ),
        ("missed check-outs", str(ours.missed_check_outs), str(naive.missed_check_outs)),
        (
            "check-in delay, median / p95 (decided - true arrival)",
            _pair(ours.checkin_delay_s),
            _pair(naive.checkin_delay_s),
        ),
        (
            "check-in timestamp error, median / p95 (stamped - true arrival)",
            _pair(ours.checkin_stamp_s),
            _pair(naive.checkin_stamp_s),
        ),
        (
            "check-out delay, median / p95 (decided - true departure)",
            _pair(ours.checkout_delay_s),
            _pair(naive.checkout_delay_s),
        ),
    ]
    lines = ["| presence | ours | baseline (raw fence test) |", "|---|---:|---:|"]
    lines += [f"| {name} | {a} | {b} |" for name, a, b in rows]
    return lines


def _away(score: PresenceScore) -> int:
    named = score.no_visit_check_ins + score.premature_check_ins + score.repeat_check_ins
    return score.false_check_ins - named


def _case_table(report: Report) -> list[str]:
    routed = report.routed
    lines = [
        "| case | trips | presence failures ours | presence failures baseline "
        "| ETA MAE 0-20 min ours | baseline |" + (" ours, routed |" if routed else ""),
        "|---|---:|---:|---:|---:|---:|" + ("---:|" if routed else ""),
    ]
    for c in report.cases:
        lines.append(
            f"| {c.case} | {c.trips} | {c.failed_trips} | {c.naive_failed_trips} "
            f"| {_s(c.mae_s)} | {_s(c.baseline_mae_s)} |"
            + (f" {_s(c.routed_mae_s)} |" if routed else "")
        )
    return lines


def _failure_lines(report: Report) -> list[str]:
    lines = []
    for v in report.failures:
        spec = report.specs[v.trip_id]
        what = []
        for e in v.false_check_ins:
            label = "premature check-in" if v.premature and e is v.check_in else "false check-in"
            what.append(f"{label} {_when(e, spec.arrived_t)}")
        what += [f"false check-out {_when(e, spec.arrived_t)}" for e in v.false_check_outs]
        if v.missed_check_in:
            what.append("missed check-in")
        if v.missed_check_out:
            what.append("missed check-out")
        tags = ", ".join(spec.tags) or "-"
        lines.append(f"- `{v.trip_id}` ({spec.kind or '?'}; {tags}): {'; '.join(what)}")
    return lines


def _when(event: Event, arrived: float | None) -> str:
    if arrived is None:
        return f"stamped t={event.t:.0f}, decided {event.decided_t - event.t:.0f} s later"
    return (
        f"stamped {event.t - arrived:+.0f} s, decided {event.decided_t - arrived:+.0f} s "
        "from the true arrival"
    )


def _s(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:,.0f} s"


def _pct(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{100 * value:.0f} %"


def _ratio(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:.2f}"


def _pair(values: tuple[float, float]) -> str:
    return f"{_s(values[0])} / {_s(values[1])}"
