"""Concurrent dispatches never assign one technician twice (issue 11, item 6).

``POST /v1/bookings/{id}/dispatch`` ranks the free technicians, then assigns the best.
Several at once all rank the same best technician; the assignment re-checks "free" under the
technician's store lock, so exactly one wins each technician and the others fall through to
the next one, or answer 409 ``no_technician_available`` when nobody is left. Over a real hub,
and over two hubs on one real Redis.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter

import httpx
import pytest

from geofence.geo import destination_point
from realtime.bookings_desk import Conflict
from tests.conftest import RunningHub, receive_until

HOME = (52.5200, 13.4050)


async def online_technicians(hub: RunningHub, count: int) -> list[str]:
    """``count`` technicians connected with a fresh fix, 1 km, 2 km, ... from HOME."""
    ids = []
    for n in range(count):
        technician_id = f"tech-{n}"
        tech = await hub.connect("/v1/ws/technician", await hub.token("technician", technician_id))
        await receive_until(tech, "ack")
        lat, lon = destination_point(*HOME, 90.0, 1000.0 * (n + 1))
        fix = {"type": "location", "seq": 1, "t": time.time(), "lat": lat, "lon": lon}
        await tech.send(json.dumps(fix))
        await receive_until(tech, "ack")
        ids.append(technician_id)
    return ids


async def dispatch_all(hubs: list[RunningHub], booking_ids: list[str]) -> list[httpx.Response]:
    """Dispatch every booking at once, spread over the hubs."""
    return await asyncio.gather(
        *(
            hubs[n % len(hubs)].post(f"/v1/bookings/{booking_id}/dispatch")
            for n, booking_id in enumerate(booking_ids)
        )
    )


def check_outcome(answers: list[httpx.Response], technicians: list[str]) -> Counter[str]:
    """No technician twice; everyone assigned while technicians last; the rest refused."""
    assigned = Counter(
        a.json()["booking"]["technician_id"] for a in answers if a.status_code == 200
    )
    refused = [a for a in answers if a.status_code != 200]
    assert all(n == 1 for n in assigned.values()), assigned
    assert len(assigned) == min(len(answers), len(technicians))
    assert all(
        (a.status_code, a.json()["code"]) == (409, "no_technician_available") for a in refused
    ), [a.text for a in refused]
    return assigned


@pytest.mark.parametrize(("bookings", "technicians"), [(4, 4), (5, 3)])
async def test_concurrent_dispatches_assign_each_technician_once(
    hub: RunningHub, bookings: int, technicians: int
):
    techs = await online_technicians(hub, technicians)
    ids = [f"job-{n}" for n in range(bookings)]
    for booking_id in ids:
        await hub.create_booking(id=booking_id, destination={"lat": HOME[0], "lon": HOME[1]})

    answers = await dispatch_all([hub], ids)
    assigned = check_outcome(answers, techs)
    assert set(assigned) == set(techs)
    # The store agrees with the answers: each winner's booking holds its technician.
    async with hub.client() as http:
        for answer in answers:
            if answer.status_code == 200:
                stored = (await http.get(f"/v1/bookings/{answer.json()['booking']['id']}")).json()
                assert stored["technician_id"] == answer.json()["booking"]["technician_id"]


async def test_concurrent_dispatches_on_two_hubs_assign_each_technician_once(
    redis_pair: list[RunningHub],
):
    first, second = redis_pair
    techs = await online_technicians(first, 2)
    ids = [f"job-{n}" for n in range(4)]
    for booking_id in ids:
        await first.create_booking(id=booking_id, destination={"lat": HOME[0], "lon": HOME[1]})
    # The second hub learns of the technicians from the shared roster (written every
    # fleet interval by the hub they are connected to).
    async with second.client() as http:
        for _ in range(100):
            ranking = (await http.post("/v1/bookings/job-0/dispatch?dry_run=1")).json()["ranking"]
            if len(ranking) == len(techs):
                break
            await asyncio.sleep(0.05)
    assert len(ranking) == len(techs)

    answers = await dispatch_all([first, second], ids)
    assigned = check_outcome(answers, techs)
    assert set(assigned) == set(techs)


async def test_a_dispatch_never_reassigns_a_booking_assigned_since_it_was_ranked(hub: RunningHub):
    # A batch ranked "late" while it was requested; a single dispatch (or the platform)
    # assigned it to tech-a meanwhile. The batch's assignment of tech-b must not replace it.
    await hub.create_booking(id="late", destination={"lat": HOME[0], "lon": HOME[1]})
    ranked = await hub.hub.bookings.get_booking("late")
    assert ranked is not None
    assigned_meanwhile = await hub.post("/v1/bookings/late/assign", {"technician_id": "tech-a"})
    assert assigned_meanwhile.status_code == 200
    with pytest.raises(Conflict, match="changed since it was ranked"):
        await hub.hub.bookings.assign_if_free(
            "late", "tech-b", "operator:op-1", "batch", ranked_version=ranked.updated_t
        )
    async with hub.client() as http:
        assert (await http.get("/v1/bookings/late")).json()["technician_id"] == "tech-a"
    # Unchanged since ranking: assigned.
    now = await hub.hub.bookings.get_booking("late")
    assigned = await hub.hub.bookings.assign_if_free(
        "late", "tech-b", "operator:op-1", "batch", ranked_version=now.updated_t
    )
    assert assigned is not None and assigned.technician_id == "tech-b"
