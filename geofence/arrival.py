"""One booking's arrival, composed from the pure parts: ETA while away, presence throughout.

``ArrivalTracker`` is what the hub keeps per active booking. Fed the technician's fixes in
time order, it answers the customer's two questions — when will they be here (``eta``),
are they here (``events``) — and says when the ETA first drops under the "arriving"
threshold. On check-in it also summarises the trip (where it started, how far was driven,
how long the streets on the way took) so the learned models can learn from it.
Pure: no I/O, no clock.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from geofence.eta import Eta, EtaConfig, EtaEstimator, RouteProvider
from geofence.eta_band import SAMPLE_EVERY_S, ErrorBands
from geofence.eta_models import TravelTimeModel
from geofence.eta_speeds import SpeedModel, TrackPoint
from geofence.fences import Fence
from geofence.geo import distance_m
from geofence.model import Fix
from geofence.presence import PresenceConfig, PresenceDetector, PresenceEvent, PresenceState

# Faster than this between two fixes is a GPS jump, not driving: not counted as distance.
MAX_PLAUSIBLE_SPEED_MS = 60.0
# Well above GPS jitter, well below a city block: the polyline through anchors this far
# apart follows the streets without adding the noise.
ANCHOR_STEP_M = 80.0
# One track point per this much driving for the speed model: several fixes long, so jitter
# and Doppler integrate within a segment, and short against its ~1.5 km cells, so the
# segment's midpoint is in the cell it was driven through.
TRACK_STEP_M = 250.0


@dataclass(frozen=True)
class ArrivalConfig:
    # "Arriving" when the ETA first drops under this: long enough for the customer to get
    # to the door, short enough that it is not announced from across town.
    arriving_threshold_s: float = 180.0
    presence: PresenceConfig = field(default_factory=PresenceConfig)
    eta: EtaConfig = field(default_factory=EtaConfig)


@dataclass(frozen=True)
class TripSummary:
    """A completed approach, for the learned models: start point and distance driven (the
    circuity model); when the fence was crossed and, before that, (t, metres left to the
    fence, state) at the first estimate in each band of distance and state (the travel time
    model: ``TravelTimeModel.observe(samples, arrived_t)``) and (t, ETA shown) every
    ``SAMPLE_EVERY_S`` (``ErrorBands.observe(eta_samples, arrived_t)``); a point every
    ``TRACK_STEP_M`` driven (the speed model: ``SpeedModel.tally(track)``)."""

    origin_lat: float
    origin_lon: float
    driven_m: float
    arrived_t: float | None = None
    samples: tuple[tuple[float, float, str], ...] = ()
    eta_samples: tuple[tuple[float, float], ...] = ()
    track: tuple[TrackPoint, ...] = ()


@dataclass(frozen=True)
class ArrivalUpdate:
    eta: Eta | None = None
    events: tuple[PresenceEvent, ...] = ()
    approaching: bool = False
    trip: TripSummary | None = None
    # Stopped inside the fence long enough for a check-in, but the detector waits for the
    # move indoors (a queue by the door looks the same): the customer sees "at your door".
    at_door: bool = False


class ArrivalTracker:
    def __init__(
        self,
        dest_lat: float,
        dest_lon: float,
        fence: Fence,
        provider: RouteProvider,
        config: ArrivalConfig | None = None,
        *,
        inside: bool = False,
        approached: bool = False,
        travel_times: TravelTimeModel | None = None,
        error_bands: ErrorBands | None = None,
        speeds: SpeedModel | None = None,
    ) -> None:
        self.dest_lat = dest_lat
        self.dest_lon = dest_lon
        self.config = config or ArrivalConfig()
        self.provider = provider
        state = PresenceState.INSIDE if inside else PresenceState.OUTSIDE
        self.fence = fence
        self.presence = PresenceDetector(fence, self.config.presence, state)
        self.estimator = EtaEstimator(
            dest_lat, dest_lon, self.config.eta, travel_times, error_bands, speeds
        )
        self.travel_times = travel_times
        self.error_bands = error_bands
        self.speeds = speeds
        # First (t, metres to the fence, state) per band and state: what the trip teaches.
        self._samples: dict[tuple[str, int], tuple[float, float, str]] = {}
        # (t, ETA shown) every SAMPLE_EVERY_S: what the trip teaches about the ETA's error.
        self._eta_samples: list[tuple[float, float]] = []
        # A point every TRACK_STEP_M driven: what the trip teaches about the streets' speed.
        self._track: list[TrackPoint] = []
        self.checked_in = inside
        self.approached = approached or inside
        self.last_eta: Eta | None = None
        self._origin: Fix | None = None
        self._previous: Fix | None = None
        self._driven_m = 0.0

    def update(self, fix: Fix, route_distance_m: float | None = None) -> ArrivalUpdate:
        """Feed one fix; ``route_distance_m`` overrides the provider (e.g. a routing engine)."""
        self._measure(fix)
        events = tuple(self.presence.update(fix))
        trip = None
        for event in events:
            if event.kind == "check_in" and not self.checked_in:
                self.checked_in = True
                self.last_eta = None
                if self._origin is not None:
                    trip = TripSummary(
                        self._origin.lat,
                        self._origin.lon,
                        self._driven_m,
                        event.t,
                        tuple(sorted(self._samples.values())),
                        tuple(self._eta_samples),
                        tuple(self._track),
                    )
                # A later approach (after a check-out) starts afresh.
                self._samples.clear()
                self._eta_samples.clear()
                self._track.clear()
            elif event.kind == "check_out":
                self.checked_in = False
        if self.checked_in or self.presence.state is PresenceState.INSIDE:
            return ArrivalUpdate(events=events, trip=trip)
        if route_distance_m is None:
            route_distance_m = self.provider.route_distance_m(
                fix.lat, fix.lon, self.dest_lat, self.dest_lon
            )
        # The arrival is stamped at the fence edge, not at the door: the route's last metres
        # inside the fence are not part of the wait (a 75 m circle is ~10 s of driving).
        centre = distance_m(fix.lat, fix.lon, self.dest_lat, self.dest_lon)
        margin = max(0.0, centre - max(0.0, self.fence.signed_distance_m(fix.lat, fix.lon)))
        eta = self.estimator.update(fix, route_distance_m, margin)
        self.last_eta = eta
        if self.travel_times is not None:
            to_go, state = self.estimator.to_go_m, self.estimator.state
            self._samples.setdefault((state, self.travel_times.band(to_go)), (fix.t, to_go, state))
        last = self._eta_samples[-1][0] if self._eta_samples else None
        if self.error_bands is not None and (last is None or fix.t - last >= SAMPLE_EVERY_S):
            self._eta_samples.append((fix.t, eta.seconds))
        if self.speeds is not None:
            self._extend_track(fix)
        approaching = False
        if not self.approached and eta.seconds <= self.config.arriving_threshold_s:
            self.approached = approaching = True
        return ArrivalUpdate(
            eta=eta,
            events=events,
            approaching=approaching,
            trip=trip,
            at_door=self.presence.pending_arrival,
        )

    def _extend_track(self, fix: Fix) -> None:
        """A track point when the estimator has counted TRACK_STEP_M more driving.

        Its distance and driving clock, not the raw fixes: jitter is not driving, and a stop
        longer than a long red light (an errand, a break) is not slow streets. Nothing before
        the technician first moves: waiting at the last job is not travel either.
        """
        estimator = self.estimator
        travelled = estimator.travelled_m
        if estimator.last_fix is not fix or travelled <= 0:
            return  # an outlier, or not moved yet
        if self._track and travelled - self._track[-1].travelled_m < TRACK_STEP_M:
            return
        self._track.append(
            TrackPoint(fix.t, fix.lat, fix.lon, travelled, estimator.driving_s(fix.t))
        )

    def _measure(self, fix: Fix) -> None:
        """Distance driven, measured between anchors at least ANCHOR_STEP_M apart.

        Summing every 1 Hz fix would add the GPS jitter (5-15 m a fix) to the distance and
        teach the circuity model that every trip is twice as long as it was.
        """
        if self._origin is None:
            self._origin = self._previous = fix
            return
        anchor = self._previous
        assert anchor is not None
        if fix.t <= anchor.t:
            return
        step = distance_m(anchor.lat, anchor.lon, fix.lat, fix.lon)
        if step < ANCHOR_STEP_M:
            return
        if step / (fix.t - anchor.t) > MAX_PLAUSIBLE_SPEED_MS:
            return  # a jump: keep measuring from the last good anchor
        self._driven_m += step
        self._previous = fix
