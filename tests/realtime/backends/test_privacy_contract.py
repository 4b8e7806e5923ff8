"""The privacy part of the Store contract (retention, erasure, the access audit), run against
SQLite and Redis alike (the ``store`` fixture in ``conftest.py``)."""

from __future__ import annotations

import msgspec

from alerts import incident as incident_core
from alerts import safety_alert
from alerts.incident import IncidentAction, Outcome, Reporter
from alerts.safety_alert import AlertKind
from realtime import booking as booking_core
from realtime.backends.base import Store
from realtime.booking import BookingEvent, BookingStatus
from realtime.privacy import AccessEntry, redact_booking
from tests.realtime.backends.test_contract import T0, fix, key_of, new_booking, new_incident

DAY = 86400.0


async def test_purge_deletes_fixes_before_the_cutoff_and_keeps_the_rest(store: Store) -> None:
    await store.append_fixes([fix(1, T0), fix(2, T0 + 10), fix(3, T0 + 20)])
    await store.append_fixes([fix(1, T0 + 5, "tech-2"), fix(2, T0 + 30, "tech-2")])

    assert await store.purge_fixes_before(T0 + 10) == 2  # tech-1 seq 1, tech-2 seq 1
    assert [f.seq for f in await store.track("tech-1", 0, T0 + 100, 100)] == [2, 3]
    assert [f.seq for f in await store.track("tech-2", 0, T0 + 100, 100)] == [2]
    assert await store.purge_fixes_before(T0 + 10) == 0  # nothing left that is due


async def test_a_purge_keeps_the_highest_seq_and_drops_the_last_fix_when_it_is_due(
    store: Store,
) -> None:
    await store.append_fixes([fix(1, T0), fix(7, T0 + 10)])
    await store.purge_fixes_before(T0 + 100)

    assert await store.track("tech-1", 0, T0 + 100, 100) == []
    assert await store.last_fix("tech-1") is None
    assert await store.highest_seq("tech-1") == 7  # resume does not go back
    await store.append_fixes([fix(8, T0 + 200)])
    assert [f.seq for f in await store.track("tech-1", 0, T0 + 300, 100)] == [8]
    assert await store.highest_seq("tech-1") == 8


async def test_a_purge_of_many_fixes_goes_in_chunks_and_deletes_them_all(store: Store) -> None:
    await store.append_fixes([fix(seq, T0 + seq) for seq in range(1, 2501)])
    assert await store.purge_fixes_before(T0 + 2001) == 2000
    assert [f.seq for f in await store.track("tech-1", 0, T0 + 9999, 10_000)] == list(
        range(2001, 2501)
    )


async def test_erase_deletes_one_technicians_history_only(store: Store) -> None:
    await store.append_fixes([fix(1, T0), fix(2, T0 + 1), fix(1, T0, "tech-2")])

    assert await store.erase_fixes("tech-1") == 2
    assert await store.track("tech-1", 0, T0 + 10, 10) == []
    assert await store.last_fix("tech-1") is None
    assert await store.highest_seq("tech-1") == 2
    assert len(await store.track("tech-2", 0, T0 + 10, 10)) == 1
    assert await store.erase_fixes("nobody") == 0


async def test_closed_incidents_past_the_cutoff_go_with_their_audit_open_ones_stay(
    store: Store,
) -> None:
    old_open = new_incident("inc-open", "sos-open", t=T0)
    resolved = incident_core.apply(
        new_incident("inc-old", "sos-old", t=T0),
        IncidentAction.RESOLVE,
        t=T0 + 60,
        actor="operator:op-1",
        outcome=Outcome.SAFE,
    )
    recent = incident_core.apply(
        new_incident("inc-new", "sos-new", t=T0 + 10 * DAY),
        IncidentAction.RESOLVE,
        t=T0 + 10 * DAY,
        actor="operator:op-1",
        outcome=Outcome.SAFE,
    )
    for incident in (old_open, resolved, recent):
        await store.save_incident(incident, key_of(incident), list(incident.audit))

    assert await store.purge_closed_incidents_before(T0 + DAY) == 1
    assert await store.get_incident("inc-old") is None
    assert await store.incident_audit("inc-old") == []
    assert await store.incident_by_reporter_key(key_of(resolved)) is None
    assert (await store.get_incident("inc-open")) == old_open  # open: kept whatever its age
    assert [i.id for i in await store.open_incidents()] == ["inc-open"]
    assert (await store.get_incident("inc-new")) == recent
    # The reporter key is free again: a purged incident does not block a new one.
    await store.save_incident(resolved, key_of(resolved), [])


async def test_closed_bookings_before_lists_unredacted_closed_ones_oldest_first(
    store: Store,
) -> None:
    def closed(booking_id: str, t: float, event: BookingEvent = BookingEvent.CANCEL):
        booking, events = new_booking(booking_id, technician_id="tech-1")
        booking, event_record = booking_core.apply(booking, event, t=t, actor="platform")
        return booking, [*events, event_record]

    b_old, e_old = closed("b-old", T0 + 100)
    b_older, e_older = closed("b-older", T0 + 50)
    b_new, e_new = closed("b-new", T0 + 10 * DAY)
    b_active, e_active = new_booking("b-active", technician_id="tech-1")
    for booking, events in ((b_old, e_old), (b_older, e_older), (b_new, e_new)):
        await store.save_booking(booking, events)
    await store.save_booking(b_active, e_active)

    due = await store.closed_bookings_before(T0 + DAY, 10)
    assert [b.id for b in due] == ["b-older", "b-old"]
    assert [b.id for b in await store.closed_bookings_before(T0 + DAY, 1)] == ["b-older"]
    # Pages: after the first one seen, the next (a caller leaving some unredacted).
    after = (b_older.updated_t, b_older.id)
    page = await store.closed_bookings_before(T0 + DAY, 10, after=after)
    assert [b.id for b in page] == ["b-old"]
    assert await store.closed_bookings_before(T0 + DAY, 10, after=(b_old.updated_t, "b-old")) == []

    await store.save_booking(redact_booking(b_older, T0 + DAY), [])
    assert [b.id for b in await store.closed_bookings_before(T0 + DAY, 10)] == ["b-old"]
    stored = await store.get_booking("b-older")
    assert stored is not None and stored.redacted_t == T0 + DAY
    assert stored.status is BookingStatus.CANCELLED and stored.customer_id == "cust-1"
    assert await store.booking_events("b-older") == e_older  # the audit trail is kept


async def test_bookings_of_a_customer_and_of_a_technician(store: Store) -> None:
    first, events = new_booking("b1", technician_id="tech-1")
    second, more = new_booking("b2", technician_id="tech-2")
    second = msgspec.structs.replace(second, customer_id="cust-2")
    await store.save_booking(first, events)
    await store.save_booking(second, more)

    assert [b.id for b in await store.bookings_of("customer", "cust-1")] == ["b1"]
    assert [b.id for b in await store.bookings_of("customer", "cust-2")] == ["b2"]
    assert [b.id for b in await store.bookings_of("technician", "tech-2")] == ["b2"]
    assert await store.bookings_of("customer", "tech-1") == []


async def test_incidents_about_a_person_by_reporter_technician_or_customer(store: Store) -> None:
    mine = new_incident("inc-1", "sos-1", t=T0)
    about = incident_core.raise_incident(
        incident_id="inc-2",
        client_id="c-2",
        kind="sos",
        reporter=Reporter(sub="cust-9", role="customer"),
        t=T0 + 1,
        technician_id="tech-1",
        customer_id="cust-9",
    )
    for incident in (mine, about):
        await store.save_incident(incident, key_of(incident), [])
    assert [i.id for i in await store.incidents_about("tech-1")] == ["inc-1", "inc-2"]
    assert [i.id for i in await store.incidents_about("cust-9")] == ["inc-2"]
    assert await store.incidents_about("nobody") == []


async def test_the_access_log_is_per_subject_newest_limited_and_purged_by_time(
    store: Store,
) -> None:
    entries = [
        AccessEntry(
            t=T0 + i,
            actor="operator:op-1",
            action="track_read",
            subject="tech-1",
            role="technician",
            detail={"from": T0, "to": T0 + i},
        )
        for i in range(5)
    ]
    other = AccessEntry(
        t=T0, actor="platform:platform", action="contacts_read", subject="cust-1", role="customer"
    )
    for entry in entries:
        await store.append_access(entry)
    await store.append_access(other)

    assert await store.access_log("tech-1", 100) == entries
    assert await store.access_log("tech-1", 2) == entries[-2:]
    assert await store.access_log("cust-1", 100) == [other]
    assert await store.access_log("nobody", 100) == []

    assert await store.purge_access_before(T0 + 2) == 3  # two of tech-1, the one of cust-1
    assert await store.access_log("tech-1", 100) == entries[2:]
    assert await store.access_log("cust-1", 100) == []


async def test_acknowledged_alerts_past_the_cutoff_go_with_their_audit_open_ones_stay(
    store: Store,
) -> None:
    def raised(alert_id: str, t: float):
        return safety_alert.open_alert(
            alert_id=alert_id,
            kind=AlertKind.SIGNAL_LOST,
            t=t,
            technician_id="tech-1",
            booking_id="b-1",
            message="no fix for 10 minutes during the visit",
            actor="system:watchdog",
        )

    old_open, raise_open = raised("al-open", T0)
    old, raise_old = raised("al-old", T0)
    acked_old, ack_old = safety_alert.acknowledge(old, t=T0 + 60, actor="operator:op-1")
    # Raised long ago but acknowledged recently: closed after the cutoff, so it stays.
    late, raise_late = raised("al-late", T0)
    acked_late, ack_late = safety_alert.acknowledge(late, t=T0 + 2 * DAY, actor="operator:op-1")
    await store.save_alert(old_open, [raise_open])
    await store.save_alert(old, [raise_old])
    await store.save_alert(acked_old, [ack_old])
    await store.save_alert(late, [raise_late])
    await store.save_alert(acked_late, [ack_late])

    assert await store.purge_closed_alerts_before(T0 + DAY) == 1
    assert await store.get_alert("al-old") is None
    assert await store.alert_audit("al-old") == []
    assert await store.get_alert("al-open") == old_open  # open: kept whatever its age
    assert [a.id for a in await store.open_alerts()] == ["al-open"]
    assert await store.get_alert("al-late") == acked_late
    assert len(await store.alert_audit("al-late")) == 2
    assert await store.purge_closed_alerts_before(T0 + DAY) == 0
