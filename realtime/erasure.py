"""Erasure of a person's data on request (``DELETE /v1/people/{role}/{id}/data``).

What goes: the technician's location history and last position (store, roster, this hub's
memory), the person's emergency contacts, the technician's profile name, and the personal
fields of the person's closed bookings (redacted in place, ``realtime.privacy``). What stays,
and the answer says so with the reason: open bookings and open incidents (a visit or an
emergency in progress needs them), and closed incidents (safety records, deleted by the
retention job after ``retention_incidents_s``). Every step is idempotent, so a request
that failed half-way is simply repeated. The erasure is audited (who, when, counts), never
with the erased data.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import msgspec

from realtime.backends.base import Store
from realtime.backends.roster import Roster
from realtime.cluster import Entity
from realtime.fleet import Fleet
from realtime.ports import Announce, Clock
from realtime.privacy import AccessEntry, involves, redact_booking
from realtime.profiles import Profiles
from realtime.quotes import QuoteDesk
from realtime.safety import CONTACTS, contacts_key
from realtime.visit_ledger import VisitLedger


@dataclass
class Erasure:
    """What one erasure did: counts by kind, and what it kept with the reason."""

    erased: dict[str, int] = field(default_factory=dict)
    kept: list[dict[str, Any]] = field(default_factory=list)


class Eraser:
    """``DELETE /v1/people/{role}/{id}/data``: the store, the roster, every hub's memory."""

    def __init__(
        self,
        *,
        store: Store,
        roster: Roster,
        fleet: Fleet,
        profiles: Profiles,
        visits: VisitLedger | None = None,
        quotes: QuoteDesk | None = None,
        announce: Announce,
        clock: Clock,
    ) -> None:
        self.store = store
        self.roster = roster
        self.fleet = fleet
        self.profiles = profiles
        self.visits = visits
        self.quotes = quotes
        self.announce = announce
        self.clock = clock

    async def erase(self, role: str, person_id: str, actor: str) -> Erasure:
        """Erase what may go of one person now; audit it. ``role`` is technician or customer."""
        return await _erase_person(self, role, person_id, actor)

    async def erase_position(self, technician_id: str) -> None:
        """Forget the technician's last position here and on every other hub."""
        self.fleet.forget_position(technician_id)
        await self.announce(Entity.POSITION_ERASED, technician_id)


async def _erase_person(desk: Eraser, role: str, person_id: str, actor: str) -> Erasure:
    now = desk.clock()
    result = Erasure()
    erased = result.erased
    if role == "technician":
        erased["location_fixes"] = await desk.store.erase_fixes(person_id)
        erased["last_position"] = int(await desk.roster.forget(person_id))
        # After the roster: another hub told to forget must not read the position back.
        await desk.erase_position(person_id)
        profile = desk.profiles.get(person_id)
        erased["profile_name"] = 0
        if profile is not None and profile.name is not None:
            await desk.profiles.put(person_id, msgspec.structs.replace(profile, name=None))
            erased["profile_name"] = 1
        # Their record of visits (dispatch's history score): nobody dispatches them any more.
        forgot = desk.visits is not None and await desk.visits.forget(person_id)
        erased["visit_history"] = int(forgot)
        # Quotes priced from where they were (a quote's origin is their position).
        erased["quotes"] = (
            0 if desk.quotes is None else await desk.quotes.forget_technician(person_id)
        )
    erased["emergency_contacts"] = int(
        await desk.store.delete_document(CONTACTS, contacts_key(role, person_id))
    )
    redacted = 0
    for booking in await desk.store.bookings_of(role, person_id):
        if not booking.final:
            result.kept.append(
                {
                    "kind": "booking",
                    "id": booking.id,
                    "status": booking.status.value,
                    "reason": "open: the visit needs its address until it is closed; "
                    "ask again once it is closed",
                }
            )
        elif booking.redacted_t is None:
            # A closed booking takes no further transition: nothing changes it meanwhile.
            await desk.store.save_booking(redact_booking(booking, now), [])
            redacted += 1
    erased["bookings_redacted"] = redacted
    for incident in await desk.store.incidents_about(person_id):
        if not involves(incident, person_id):
            continue
        reason = (
            "open: kept until it is resolved"
            if incident.is_open
            else "a closed safety record: kept for the incident retention, then deleted"
        )
        result.kept.append(
            {
                "kind": "incident",
                "id": incident.id,
                "status": incident.status.value,
                "reason": reason,
            }
        )
    await desk.store.append_access(
        AccessEntry(
            t=now,
            actor=actor,
            action="erase",
            subject=person_id,
            role=role,
            detail={
                "erased": dict(erased),
                "kept": {
                    kind: sum(1 for k in result.kept if k["kind"] == kind)
                    for kind in ("booking", "incident")
                },
            },
        )
    )
    return result
