"""What a replay learns (circuity, travel times, error bands, speeds), kept to seed the next."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from geofence.arrival import ArrivalConfig
from geofence.eta_band import ErrorBands
from geofence.eta_models import CircuityModel, TravelTimeModel
from geofence.eta_speeds import SpeedModel


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
    speeds: SpeedModel = field(default_factory=SpeedModel)

    @classmethod
    def fresh(cls, config: ArrivalConfig) -> LearnedModels:
        prior = config.eta.prior_speed_mps
        return cls(
            CircuityModel(),
            TravelTimeModel(prior),
            TravelTimeModel(prior),
            speeds=SpeedModel(prior),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": 1,
            "circuity": self.circuity.to_dict(),
            "travel_times": self.travel_times.to_dict(),
            "routed_travel_times": self.routed_travel_times.to_dict(),
            "error_bands": self.error_bands.to_dict(),
            "routed_error_bands": self.routed_error_bands.to_dict(),
            "speeds": self.speeds.to_dict(),
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
                # ... and files saved before the speed model start it from the prior.
                SpeedModel.from_dict(data["speeds"]) if "speeds" in data else SpeedModel(),
            )
        except KeyError as exc:
            raise ValueError(f"learned models file lacks {exc}") from None
