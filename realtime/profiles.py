"""Technician profiles the platform sends (skills for dispatch, a display name).

Stored as documents (namespace ``technicians``), mirrored in memory on every hub and
re-read when another hub announces a change.
"""

from __future__ import annotations

import msgspec

from realtime.backends.base import Store
from realtime.cluster import Entity
from realtime.ports import Announce
from realtime.shifts import Shift

PROFILES = "technicians"


class TechnicianProfile(msgspec.Struct, frozen=True, omit_defaults=True):
    """What the platform tells the hub about a technician (for dispatch)."""

    skills: tuple[str, ...] = ()
    name: str | None = None
    # The platform's rating, 0-5 (None: unrated, dispatch's neutral value).
    rating: float | None = None
    # The city they work in (None: the default city).
    city: str | None = None
    # Working windows in the city's local time; none: always on shift (as before shifts).
    shifts: tuple[Shift, ...] = ()


_profile_decoder = msgspec.json.Decoder(TechnicianProfile)


class Profiles:
    def __init__(self, store: Store, announce: Announce) -> None:
        self.store = store
        self.announce = announce
        self._profiles: dict[str, TechnicianProfile] = {}

    async def load(self) -> None:
        self._profiles = {
            key: _profile_decoder.decode(raw)
            for key, raw in (await self.store.list_documents(PROFILES)).items()
        }

    async def refresh(self, technician_id: str) -> None:
        raw = await self.store.get_document(PROFILES, technician_id)
        if raw is None:
            self._profiles.pop(technician_id, None)
        else:
            self._profiles[technician_id] = _profile_decoder.decode(raw)

    def get(self, technician_id: str) -> TechnicianProfile | None:
        return self._profiles.get(technician_id)

    def name_of(self, technician_id: str) -> str | None:
        profile = self._profiles.get(technician_id)
        return profile.name if profile is not None else None

    async def put(self, technician_id: str, profile: TechnicianProfile) -> None:
        await self.store.put_document(PROFILES, technician_id, msgspec.json.encode(profile))
        self._profiles[technician_id] = profile
        await self.announce(Entity.PROFILE, technician_id)
