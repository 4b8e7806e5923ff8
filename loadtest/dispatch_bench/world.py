"""The simulated city and day the dispatch benchmark replays: pure and seeded.

A square city (``city_km`` a side, 10 km by default) in plain kilometres, and a day in plain
seconds since its midnight (08:00 is 28,800): no map, no time zone, so a day is the same on
every machine and a test can build one by hand.

Travel (``TravelModel``): straight-line distance x a circuity x 1 / the speed of the hour
the trip starts in. The circuity (how much longer the road is than the straight line) is
drawn once per pair of places, 1.3-1.5 by default, from a hash of the seed and the two
places, so the same trip costs the same whichever policy sends a technician on it. Speed
is 30 km/h, 18 km/h in the rush hours (07-09 and 16-19); a trip keeps the speed of the hour
it starts in (a 10-minute trip rarely crosses an hour, and a simple rule is easy to check).

What the policies see (``World.eta_seen_s``): the true travel time x a noise factor within
1 +- ``eta_noise`` (15 % by default), drawn once per (booking, technician) from the same
kind of hash. Every policy sees the same error for the same pair, and none of them sees the
truth, which is what the simulation then drives.
"""

from __future__ import annotations

import hashlib
import math

import msgspec
import numpy as np

HOUR_S = 3600.0
SKILLS = ("cleaning", "plumbing", "electrical", "massage", "cooking")
# Three overlapping shifts that cover 08:00-20:00, handed out in turn.
SHIFTS_H = ((8, 16), (10, 18), (12, 20))
# Bookings arrive 08:00-19:00; relative rate by hour: a morning peak (people who want the
# plumber before work or lunch) and an after-work peak.
ARRIVAL_WEIGHTS_BY_HOUR = {
    8: 1.0,
    9: 1.6,
    10: 1.6,
    11: 1.1,
    12: 0.8,
    13: 0.8,
    14: 0.8,
    15: 1.0,
    16: 1.3,
    17: 1.6,
    18: 1.3,
}
DURATIONS_MIN = tuple(range(30, 121, 5))
RATING_RANGE = (3.5, 5.0)


class Point(msgspec.Struct, frozen=True):
    x_km: float
    y_km: float

    def distance_km(self, other: Point) -> float:
        return math.hypot(self.x_km - other.x_km, self.y_km - other.y_km)


class TravelModel(msgspec.Struct, frozen=True):
    """How long the road from one place to another is and how long driving it takes."""

    seed: int
    circuity_min: float = 1.3
    circuity_max: float = 1.5
    free_kmh: float = 30.0
    rush_kmh: float = 18.0
    rush_hours: frozenset[int] = frozenset({7, 8, 16, 17, 18})

    def __post_init__(self) -> None:
        if not (1.0 <= self.circuity_min <= self.circuity_max):
            raise ValueError(
                f"circuity must satisfy 1 <= min <= max, not {self.circuity_min}..."
                f"{self.circuity_max}"
            )
        if self.free_kmh <= 0 or self.rush_kmh <= 0:
            raise ValueError(f"speeds must be > 0, not {self.free_kmh} and {self.rush_kmh}")

    def circuity(self, a: Point, b: Point) -> float:
        # Ordered, so A to B and B to A are the same road.
        key = sorted([_place_key(a), _place_key(b)])
        span = self.circuity_max - self.circuity_min
        return self.circuity_min + span * unit_hash(self.seed, "circuity", *key)

    def road_km(self, a: Point, b: Point) -> float:
        return a.distance_km(b) * self.circuity(a, b)

    def speed_kmh(self, t: float) -> float:
        hour = int(t // HOUR_S) % 24
        return self.rush_kmh if hour in self.rush_hours else self.free_kmh

    def travel_s(self, a: Point, b: Point, depart_t: float) -> float:
        return self.road_km(a, b) / self.speed_kmh(depart_t) * HOUR_S


class Technician(msgspec.Struct, frozen=True):
    id: str
    home: Point
    skills: frozenset[str]
    rating: float
    shift_start_t: float
    shift_end_t: float  # exclusive: at this second the technician is off shift

    def on_shift(self, t: float) -> bool:
        return self.shift_start_t <= t < self.shift_end_t


class Booking(msgspec.Struct, frozen=True):
    id: str
    request_t: float
    location: Point
    skill: str
    duration_s: float


class World(msgspec.Struct, frozen=True):
    """One simulated day: who works, what is booked, and how the city's roads behave."""

    seed: int
    technicians: tuple[Technician, ...]
    bookings: tuple[Booking, ...]  # by request time
    travel: TravelModel
    eta_noise: float = 0.15
    # Nothing is dispatched at or after this second; what still waits is unserved.
    day_end_t: float = 20 * HOUR_S

    def __post_init__(self) -> None:
        if not (0.0 <= self.eta_noise < 1.0):
            raise ValueError(f"eta_noise must be within 0..1, not {self.eta_noise}")
        for kind, items in (("technician", self.technicians), ("booking", self.bookings)):
            ids = [item.id for item in items]
            if len(set(ids)) != len(ids):
                raise ValueError(f"{kind} ids must be unique")
        times = [b.request_t for b in self.bookings]
        if times != sorted(times):
            raise ValueError("bookings must be in request order")

    def eta_seen_s(self, booking: Booking, technician_id: str, origin: Point, now: float) -> float:
        """The ETA a policy is shown: the true travel time with this pair's fixed error."""
        noise = 2.0 * unit_hash(self.seed, "eta", booking.id, technician_id) - 1.0
        return self.travel.travel_s(origin, booking.location, now) * (1.0 + self.eta_noise * noise)


class WorldSpec(msgspec.Struct, frozen=True):
    """The knobs of a generated day (defaults: the benchmark's)."""

    technicians: int = 40
    bookings: float = 300.0  # expected bookings a day (Poisson)
    city_km: float = 10.0
    eta_noise: float = 0.15

    def __post_init__(self) -> None:
        if self.technicians < 1 or self.bookings <= 0 or self.city_km <= 0:
            raise ValueError(
                "a day needs >= 1 technician, an expected booking count > 0 and a city > 0 km, "
                f"not {self.technicians}, {self.bookings}, {self.city_km}"
            )


def make_world(spec: WorldSpec, seed: int) -> World:
    """A day drawn from ``seed``: the same seed gives the same day, to the bit."""
    rng = np.random.default_rng(seed)

    def point() -> Point:
        x, y = rng.uniform(0.0, spec.city_km, 2)
        return Point(float(x), float(y))

    technicians = []
    for i in range(spec.technicians):
        start_h, end_h = SHIFTS_H[i % len(SHIFTS_H)]
        count = int(rng.integers(2, 4))
        skills = frozenset(str(s) for s in rng.choice(SKILLS, size=count, replace=False))
        technicians.append(
            Technician(
                id=f"t{i:03d}",
                home=point(),
                skills=skills,
                rating=round(float(rng.uniform(*RATING_RANGE)), 1),
                shift_start_t=start_h * HOUR_S,
                shift_end_t=end_h * HOUR_S,
            )
        )
    # A Poisson process whose rate is constant within each hour: a Poisson count per hour,
    # each arrival uniform within it.
    total_weight = sum(ARRIVAL_WEIGHTS_BY_HOUR.values())
    times: list[float] = []
    for hour, weight in ARRIVAL_WEIGHTS_BY_HOUR.items():
        count = int(rng.poisson(spec.bookings * weight / total_weight))
        times += [float(t) for t in rng.uniform(hour * HOUR_S, (hour + 1) * HOUR_S, count)]
    times.sort()
    bookings = tuple(
        Booking(
            id=f"b{i:04d}",
            request_t=t,
            location=point(),
            skill=str(rng.choice(SKILLS)),
            duration_s=60.0 * float(rng.choice(DURATIONS_MIN)),
        )
        for i, t in enumerate(times)
    )
    return World(
        seed=seed,
        technicians=tuple(technicians),
        bookings=bookings,
        travel=TravelModel(seed=seed),
        eta_noise=spec.eta_noise,
    )


def unit_hash(seed: int, *parts: object) -> float:
    """A number in [0, 1) fixed by its arguments: a draw no policy's order can change."""
    text = ":".join([str(seed), *(str(p) for p in parts)])
    digest = hashlib.blake2b(text.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2.0**64


def _place_key(p: Point) -> str:
    # A metre is finer than any two places of the simulation are apart.
    return f"{p.x_km:.3f},{p.y_km:.3f}"
