"""/v1/technicians/{id}: a technician's profile (skills, name), their live state, and their
audited location history (``/track``, docs/privacy.md)."""

from __future__ import annotations

import math
from typing import Annotated, Any

import geojson
import msgspec
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from realtime.auth import Role
from realtime.bookings_desk import NotFound
from realtime.history_score import history_score, jobs_today
from realtime.http.common import (
    BOOKING_ADMINS,
    ApiError,
    Identifier,
    authenticate,
    checked_identifier,
    handles_errors,
    hub_of,
    read_body,
)
from realtime.privacy import AccessEntry, WindowRefused, track_window
from realtime.profiles import TechnicianProfile
from realtime.protocol import ErrorCode
from realtime.shifts import Shift


class ProfileIn(msgspec.Struct, forbid_unknown_fields=True):
    skills: list[Identifier] = []
    name: Annotated[str, msgspec.Meta(max_length=200)] | None = None
    # The platform's rating of the technician, 0-5.
    rating: Annotated[float, msgspec.Meta(ge=0.0, le=5.0)] | None = None
    city: Identifier | None = None
    # Working windows in the city's local time (realtime/shifts.py); a week of split
    # shifts fits comfortably in 50.
    shifts: Annotated[list[Shift], msgspec.Meta(max_length=50)] = []


@handles_errors
async def put_technician(request: Request) -> Response:
    authenticate(request, {Role.PLATFORM})
    body: ProfileIn = await read_body(request, ProfileIn)
    technician_id = checked_identifier(request.path_params["technician_id"])
    hub = hub_of(request)
    profile = TechnicianProfile(
        skills=tuple(sorted(set(body.skills))),
        name=body.name,
        rating=body.rating,
        city=await hub.cities.require_fresh(body.city),
        shifts=tuple(body.shifts),
    )
    await hub.profiles.put(technician_id, profile)
    return JSONResponse({"id": technician_id, **msgspec.to_builtins(profile)})


@handles_errors
async def get_technician(request: Request) -> Response:
    authenticate(request, BOOKING_ADMINS)
    hub = hub_of(request)
    technician_id = request.path_params["technician_id"]
    await hub.fleet.look_around([technician_id])
    profile = hub.profiles.get(technician_id)
    position = hub.fleet.last_position(technician_id)
    if profile is None and position is None:
        raise NotFound(f"technician {technician_id} is unknown")
    profile = profile or TechnicianProfile()
    records = await hub.visits.records(technician_id)
    zone = hub.cities.of(profile.city).zone()
    return JSONResponse(
        {
            "id": technician_id,
            **msgspec.to_builtins(profile),
            "online": hub.fleet.is_online(technician_id),
            "position": msgspec.to_builtins(position),
            "bookings": [b.id for b in hub.bookings.active_bookings_of(technician_id)],
            # Doorstep's own record (the visit ledger): what dispatch's history_s weighs.
            "history": {
                **msgspec.to_builtins(history_score(records)),
                "jobs_today": jobs_today(records, hub.clock(), zone),
            },
        }
    )


def time_param(request: Request, name: str, default: float | None) -> float | None:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ApiError(422, ErrorCode.INVALID_FIELD, f"{name} must be Unix seconds") from None
    if not math.isfinite(value):
        raise ApiError(422, ErrorCode.OUT_OF_RANGE, f"{name} must be finite")
    return value


@handles_errors
async def technician_track(request: Request) -> Response:
    """A technician's track: the last 24 h by default, at most 7 days per request unless an
    incident of the technician covers the range (docs/privacy.md); every read is audited."""
    principal = authenticate(request, BOOKING_ADMINS)
    hub = hub_of(request)
    technician_id = request.path_params["technician_id"]
    settings = hub.settings
    now = hub.clock()
    window_args: dict[str, Any] = {
        "now": now,
        "t_from": time_param(request, "from", None),
        "t_to": time_param(request, "to", None),
        "default_s": settings.track_default_window_s,
        "max_s": settings.track_max_window_s,
        "future_skew_s": settings.max_future_skew_s,
        "margin_s": settings.track_incident_margin_s,
    }
    try:
        window = track_window(**window_args)
    except WindowRefused:
        # Longer than a request may cover: allowed only for the review of an incident of
        # this technician (read only now, as long reads are rare).
        incidents = [
            i
            for i in await hub.store.incidents_about(technician_id)
            if i.technician_id == technician_id
        ]
        try:
            window = track_window(**window_args, incidents=incidents)
        except WindowRefused as exc:
            raise ApiError(422, ErrorCode.OUT_OF_RANGE, str(exc)) from None
    t_from, t_to = window.t_from, window.t_to
    detail: dict[str, Any] = {"from": t_from, "to": t_to}
    if window.incident_id is not None:
        detail["incident"] = window.incident_id
    # Audited before the read: if the audit cannot be written, nothing is shown.
    await hub.store.append_access(
        AccessEntry(
            t=now,
            actor=principal.actor,
            action="track_read",
            subject=technician_id,
            role="technician",
            detail=detail,
        )
    )
    cap = hub.settings.track_max_points
    fixes = await hub.store.track(technician_id, t_from, t_to, cap + 1)
    truncated = len(fixes) > cap
    fixes = fixes[:cap]
    coordinates = [(f.lon, f.lat) for f in fixes]
    if len(coordinates) >= 2:
        geometry: Any = geojson.LineString(coordinates)
    elif coordinates:
        geometry = geojson.Point(coordinates[0])
    else:
        geometry = None
    feature = geojson.Feature(
        geometry=geometry,
        properties={
            "technician_id": technician_id,
            "from": t_from,
            "to": t_to,
            "count": len(fixes),
            "truncated": truncated,
            "times": [f.t for f in fixes],
            "seqs": [f.seq for f in fixes],
            "accuracies": [f.acc for f in fixes],
        },
    )
    return JSONResponse(feature, media_type="application/geo+json")
