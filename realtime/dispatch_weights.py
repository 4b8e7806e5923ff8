"""How a city trades customer wait against the other things dispatch weighs.

Every weight is in seconds of customer wait, so a ranking's total is one number a person
can read ("the nearest technician was 3 minutes closer, but this one is rated a star
higher, which counts as 2 minutes"), and a city tunes it without knowing the formula.
"""

from __future__ import annotations

import msgspec


class DispatchWeights(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Seconds of customer wait each component is worth (``realtime/dispatch.py``)."""

    # Each second of ETA costs this many seconds (1.0: the ETA itself).
    eta: float = 1.0
    # Each star below 5.0 of the platform's rating.
    rating_per_star_s: float = 120.0
    # History score 0..1 (completion and on-time rate): (1 - score) x this.
    history_s: float = 300.0
    # Each job done today above the city's median (fairness); none below it.
    fairness_per_job_s: float = 90.0
    # Taken off the total of the customer's preferred technician.
    preferred_bonus_s: float = 300.0
    # Batch matching only: each second a booking has already waited is worth this much
    # off its pairs' cost (``dispatch.batch_cost``), so the oldest are served first when
    # there are more bookings than free technicians.
    waited: float = 0.25

    def __post_init__(self) -> None:
        for name in self.__struct_fields__:
            value = getattr(self, name)
            if not (0.0 <= value <= 86_400.0):
                raise ValueError(f"dispatch weight {name} must be within 0..86400, not {value}")


DEFAULT_WEIGHTS = DispatchWeights()
