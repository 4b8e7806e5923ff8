"""The backend contract: every Store and Bus behaviour, run against every implementation.

``store`` is parametrized over SQLite and Redis, ``bus`` over the in-process bus and Redis
(fixtures in ``conftest.py``). A behaviour that only exists with several hubs (two buses on
one Redis) is tested on Redis only, and says why.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from alerts import incident as incident_core
from alerts import safety_alert as alert_core
from alerts.incident import AuditEntry, Incident, IncidentAction, Outcome, Reporter
from alerts.safety_alert import AlertKind, SafetyAlert
from realtime import booking as booking_core
from realtime.backends.base import Bus, BusMessage, DuplicateReporterKey, Store, StoredFix
from realtime.backends.redis import RedisBus
from realtime.booking import BookingEvent, BookingStatus, Destination
from tests.realtime.backends.conftest import REDIS_URL, random_prefix, redis_bus

T0 = 1_700_000_000.0
HERE = Destination(lat=52.52, lon=13.405)


def fix(seq: int, t: float, technician_id: str = "tech-1", lat: float = 52.5) -> StoredFix:
    return StoredFix(technician_id, seq, t, lat, 13.4, 5.0, None, 90.0, t + 0.25)


def new_booking(booking_id: str = "b1", technician_id: str | None = None):
    return booking_core.create(
        booking_id=booking_id,
        customer_id="cust-1",
        destination=HERE,
        t=T0,
        actor="platform",
        technician_id=technician_id,
    )


def new_incident(incident_id: str = "inc-1", client_id: str = "sos-1", t: float = T0) -> Incident:
    return incident_core.raise_incident(
        incident_id=incident_id,
        client_id=client_id,
        kind="sos",
        reporter=Reporter(sub="tech-1", role="technician"),
        t=t,
        technician_id="tech-1",
    )


def key_of(incident: Incident) -> str:
    return f"{incident.reporter.role}:{incident.reporter.sub}:{incident.client_id}"


def new_alert(alert_id: str, t: float) -> tuple[SafetyAlert, AuditEntry]:
    return alert_core.open_alert(
        alert_id=alert_id,
        kind=AlertKind.SIGNAL_LOST,
        t=t,
        technician_id="tech-1",
        booking_id="b1",
        message="no fix for 10 min",
        actor="system:watchdog",
    )


# ---------------------------------------------------------------------------------- bookings


async def test_saved_booking_reads_back_with_its_audit_trail(store: Store) -> None:
    booking, events = new_booking(technician_id="tech-1")
    await store.save_booking(booking, events)
    assert await store.get_booking("b1") == booking
    assert await store.booking_events("b1") == events
    assert [e.event for e in events] == [BookingEvent.CREATE, BookingEvent.ASSIGN]


async def test_unknown_booking_is_none_with_no_events(store: Store) -> None:
    assert await store.get_booking("nope") is None
    assert await store.booking_events("nope") == []
    assert await store.active_bookings() == []


async def test_each_save_appends_its_events_in_order(store: Store) -> None:
    booking, events = new_booking()
    await store.save_booking(booking, events)
    history = list(events)
    for event, t in [
        (BookingEvent.ASSIGN, T0 + 1),
        (BookingEvent.EN_ROUTE, T0 + 2),
        (BookingEvent.CHECK_IN, T0 + 3),
    ]:
        booking, record = booking_core.apply(
            booking, event, t=t, actor="platform", technician_id="tech-1"
        )
        await store.save_booking(booking, [record])
        history.append(record)
    assert await store.get_booking("b1") == booking
    assert booking.status is BookingStatus.ARRIVED
    assert await store.booking_events("b1") == history


async def test_active_bookings_follow_the_status(store: Store) -> None:
    requested, events = new_booking("b-requested")
    await store.save_booking(requested, events)
    assigned, events = new_booking("b-assigned", technician_id="tech-1")
    await store.save_booking(assigned, events)
    done, events = new_booking("b-done", technician_id="tech-2")
    await store.save_booking(done, events)
    assert sorted(b.id for b in await store.active_bookings()) == ["b-assigned", "b-done"]

    done, record = booking_core.apply(done, BookingEvent.CANCEL, t=T0 + 5, actor="platform")
    await store.save_booking(done, [record])
    assert await store.active_bookings() == [assigned]
    assert (await store.get_booking("b-done")) == done


async def test_waiting_bookings_are_the_requested_ones(store: Store) -> None:
    second, events = new_booking("b-2")
    await store.save_booking(second, events)
    first, events = new_booking("b-1")
    await store.save_booking(first, events)
    assigned, events = new_booking("b-assigned", technician_id="tech-1")
    await store.save_booking(assigned, events)
    assert [b.id for b in await store.waiting_bookings()] == ["b-1", "b-2"]

    first, record = booking_core.apply(
        first, BookingEvent.ASSIGN, t=T0 + 5, actor="dispatch", technician_id="tech-2"
    )
    await store.save_booking(first, [record])
    second, record = booking_core.apply(second, BookingEvent.CANCEL, t=T0 + 6, actor="platform")
    await store.save_booking(second, [record])
    assert await store.waiting_bookings() == []


async def test_a_technicians_active_bookings_follow_status_and_reassignment(
    store: Store,
) -> None:
    first, events = new_booking("b-first", technician_id="tech-1")
    await store.save_booking(first, events)
    second, events = new_booking("b-second", technician_id="tech-1")
    await store.save_booking(second, events)
    other, events = new_booking("b-other", technician_id="tech-2")
    await store.save_booking(other, events)
    unassigned, events = new_booking("b-none")
    await store.save_booking(unassigned, events)
    assert sorted(b.id for b in await store.active_bookings_of("tech-1")) == [
        "b-first",
        "b-second",
    ]
    assert await store.active_bookings_of("tech-2") == [other]
    assert await store.active_bookings_of("tech-3") == []

    # Ended: no longer the technician's. Reassigned: the new technician's only.
    first, record = booking_core.apply(first, BookingEvent.CANCEL, t=T0 + 5, actor="platform")
    await store.save_booking(first, [record])
    second, record = booking_core.apply(
        second, BookingEvent.ASSIGN, t=T0 + 6, actor="platform", technician_id="tech-2"
    )
    await store.save_booking(second, [record])
    assert await store.active_bookings_of("tech-1") == []
    assert sorted(b.id for b in await store.active_bookings_of("tech-2")) == [
        "b-other",
        "b-second",
    ]
    # And back again: read stale once, the index still finds it when it is assigned anew.
    second, record = booking_core.apply(
        second, BookingEvent.ASSIGN, t=T0 + 7, actor="platform", technician_id="tech-1"
    )
    await store.save_booking(second, [record])
    assert await store.active_bookings_of("tech-1") == [second]
    assert await store.active_bookings_of("tech-2") == [other]


async def test_ids_that_look_like_key_suffixes_do_not_mix(store: Store) -> None:
    # ":" is legal in ids; "b1" and "b1:audit" must stay two bookings with two trails.
    first, first_events = new_booking("b1")
    second, second_events = new_booking("b1:audit")
    await store.save_booking(first, first_events)
    await store.save_booking(second, second_events)
    assert await store.booking_events("b1") == first_events
    assert await store.booking_events("b1:audit") == second_events
    assert (await store.get_booking("b1:audit")) == second


# ---------------------------------------------------------------------------- fix history


async def test_fixes_read_back_exactly(store: Store) -> None:
    fixes = [fix(1, T0 + 0.001), fix(2, T0 + 1.123456789), fix(3, T0 + 2)]
    await store.append_fixes(fixes)
    assert await store.track("tech-1", T0, T0 + 10, 100) == fixes


async def test_append_ignores_a_seq_already_stored(store: Store) -> None:
    await store.append_fixes([fix(1, T0), fix(2, T0 + 1)])
    # A retried batch, overlapping and with a different position for seq 2: the first wins.
    await store.append_fixes([fix(2, T0 + 1, lat=1.0), fix(3, T0 + 2)])
    await store.append_fixes([fix(3, T0 + 2, lat=1.0)])
    track = await store.track("tech-1", 0, T0 + 10, 100)
    assert [f.seq for f in track] == [1, 2, 3]
    assert all(f.lat == 52.5 for f in track)
    assert await store.highest_seq("tech-1") == 3


async def test_empty_append_is_a_no_op(store: Store) -> None:
    await store.append_fixes([])
    assert await store.highest_seq("tech-1") == -1


async def test_a_lower_seq_not_stored_yet_is_stored(store: Store) -> None:
    await store.append_fixes([fix(10, T0 + 10)])
    await store.append_fixes([fix(5, T0 + 5)])
    assert [f.seq for f in await store.track("tech-1", 0, T0 + 60, 100)] == [5, 10]
    assert await store.highest_seq("tech-1") == 10


async def test_track_is_an_inclusive_time_range_ordered_by_time_then_seq(store: Store) -> None:
    await store.append_fixes(
        [
            fix(1, T0 + 10),
            fix(2, T0 + 20),
            fix(3, T0 + 5),  # the phone's clock jumped back: later seq, earlier time
            fix(4, T0 + 20),  # same time as seq 2
            fix(5, T0 + 30),
        ]
    )
    assert [f.seq for f in await store.track("tech-1", T0, T0 + 100, 100)] == [3, 1, 2, 4, 5]
    assert [f.seq for f in await store.track("tech-1", T0 + 10, T0 + 20, 100)] == [1, 2, 4]
    assert [f.seq for f in await store.track("tech-1", T0 + 10.5, T0 + 19.5, 100)] == []
    assert await store.track("tech-1", T0 + 30, T0 + 10, 100) == []


async def test_track_returns_at_most_limit_oldest_first(store: Store) -> None:
    await store.append_fixes([fix(seq, T0 + seq) for seq in range(1, 11)])
    assert [f.seq for f in await store.track("tech-1", T0, T0 + 100, 3)] == [1, 2, 3]
    assert [f.seq for f in await store.track("tech-1", T0 + 5, T0 + 100, 2)] == [5, 6]
    assert await store.track("tech-1", T0, T0 + 100, 0) == []


async def test_history_is_per_technician(store: Store) -> None:
    # One batch with two technicians, as the history writer sends them.
    await store.append_fixes(
        [fix(1, T0, "tech-a"), fix(1, T0 + 1, "tech-b"), fix(2, T0 + 2, "tech-a")]
    )
    assert [f.seq for f in await store.track("tech-a", 0, T0 + 10, 100)] == [1, 2]
    assert [(f.technician_id, f.seq) for f in await store.track("tech-b", 0, T0 + 10, 100)] == [
        ("tech-b", 1)
    ]
    assert await store.track("tech-c", 0, T0 + 10, 100) == []
    assert await store.highest_seq("tech-a") == 2
    assert await store.highest_seq("tech-b") == 1


async def test_highest_seq_and_last_fix_of_an_unknown_technician(store: Store) -> None:
    assert await store.highest_seq("nobody") == -1
    assert await store.last_fix("nobody") is None


async def test_last_fix_is_the_newest_by_time_then_seq(store: Store) -> None:
    await store.append_fixes([fix(1, T0 + 10), fix(2, T0 + 20)])
    assert await store.last_fix("tech-1") == fix(2, T0 + 20)
    # A higher seq with an older time is stored but is not the last known position.
    await store.append_fixes([fix(3, T0 + 15)])
    assert await store.last_fix("tech-1") == fix(2, T0 + 20)
    assert await store.highest_seq("tech-1") == 3
    # Same time: the higher seq wins.
    await store.append_fixes([fix(4, T0 + 20)])
    assert await store.last_fix("tech-1") == fix(4, T0 + 20)
    # A lower, newly stored seq at the same time does not.
    await store.append_fixes([fix(0, T0 + 20)])
    assert await store.last_fix("tech-1") == fix(4, T0 + 20)


# ---------------------------------------------------------------------------------- incidents


async def test_saved_incident_reads_back_by_id_and_reporter_key(store: Store) -> None:
    incident = new_incident()
    await store.save_incident(incident, key_of(incident), list(incident.audit))
    assert await store.get_incident("inc-1") == incident
    assert await store.incident_by_reporter_key(key_of(incident)) == incident
    assert await store.incident_audit("inc-1") == list(incident.audit)
    assert await store.get_incident("other") is None
    assert await store.incident_by_reporter_key("technician:tech-1:other") is None
    assert await store.incident_audit("other") == []


async def test_incident_updates_append_audit_and_leave_the_open_list_when_closed(
    store: Store,
) -> None:
    incident = new_incident()
    await store.save_incident(incident, key_of(incident), list(incident.audit))
    acked = incident_core.apply(incident, IncidentAction.ACK, t=T0 + 5, actor="operator:op-1")
    await store.save_incident(acked, key_of(acked), list(acked.audit[1:]))
    assert await store.open_incidents() == [acked]
    resolved = incident_core.apply(
        acked, IncidentAction.RESOLVE, t=T0 + 9, actor="operator:op-1", outcome=Outcome.SAFE
    )
    await store.save_incident(resolved, key_of(resolved), list(resolved.audit[2:]))
    assert await store.open_incidents() == []
    assert await store.get_incident("inc-1") == resolved
    assert await store.incident_by_reporter_key(key_of(incident)) == resolved
    assert [e.action for e in await store.incident_audit("inc-1")] == ["raise", "ack", "resolve"]


async def test_open_incidents_are_ordered_by_last_update(store: Store) -> None:
    early, late = new_incident("inc-a", "sos-a", T0 + 10), new_incident("inc-b", "sos-b", T0)
    for incident in (early, late):
        await store.save_incident(incident, key_of(incident), list(incident.audit))
    assert [i.id for i in await store.open_incidents()] == ["inc-b", "inc-a"]
    touched = incident_core.apply(late, IncidentAction.ACK, t=T0 + 20, actor="operator:op-1")
    await store.save_incident(touched, key_of(touched), [touched.audit[-1]])
    assert [i.id for i in await store.open_incidents()] == ["inc-a", "inc-b"]


async def test_a_new_incident_cannot_take_a_reporter_key_already_used(store: Store) -> None:
    first = new_incident("inc-1", "sos-1")
    await store.save_incident(first, key_of(first), list(first.audit))
    second = new_incident("inc-2", "sos-1")
    with pytest.raises(DuplicateReporterKey) as raised:
        await store.save_incident(second, key_of(second), list(second.audit))
    assert raised.value.incident_id == "inc-1"
    # Nothing of the refused write is stored.
    assert await store.get_incident("inc-2") is None
    assert await store.incident_audit("inc-2") == []
    assert await store.open_incidents() == [first]
    assert await store.incident_by_reporter_key(key_of(first)) == first


async def test_an_existing_incident_keeps_the_reporter_key_it_was_stored_with(
    store: Store,
) -> None:
    incident = new_incident()
    await store.save_incident(incident, "key-1", list(incident.audit))
    acked = incident_core.apply(incident, IncidentAction.ACK, t=T0 + 5, actor="operator:op-1")
    await store.save_incident(acked, "key-2", [acked.audit[-1]])
    assert await store.incident_by_reporter_key("key-1") == acked
    assert await store.incident_by_reporter_key("key-2") is None


# ---------------------------------------------------------------------------- safety alerts


async def test_alerts_read_back_and_leave_the_open_list_when_acknowledged(store: Store) -> None:
    alert, entry = new_alert("al-1", T0)
    await store.save_alert(alert, [entry])
    assert await store.get_alert("al-1") == alert
    assert await store.open_alerts() == [alert]
    acked, ack_entry = alert_core.acknowledge(alert, t=T0 + 3, actor="operator:op-1")
    await store.save_alert(acked, [ack_entry])
    assert await store.get_alert("al-1") == acked
    assert await store.open_alerts() == []
    assert await store.alert_audit("al-1") == [entry, ack_entry]
    assert await store.get_alert("nope") is None
    assert await store.alert_audit("nope") == []


async def test_open_alerts_are_ordered_by_time_then_id(store: Store) -> None:
    for alert_id, t in [("al-c", T0 + 1), ("al-b", T0 + 2), ("al-a", T0 + 1)]:
        alert, entry = new_alert(alert_id, t)
        await store.save_alert(alert, [entry])
    assert [a.id for a in await store.open_alerts()] == ["al-a", "al-c", "al-b"]


# -------------------------------------------------------------------------------- documents


async def test_documents_put_get_overwrite(store: Store) -> None:
    assert await store.get_document("zones", "z1") is None
    await store.put_document("zones", "z1", b"\x00first\xff")
    assert await store.get_document("zones", "z1") == b"\x00first\xff"
    await store.put_document("zones", "z1", b"second")
    assert await store.get_document("zones", "z1") == b"second"


async def test_documents_delete_says_whether_something_was_deleted(store: Store) -> None:
    await store.put_document("zones", "z1", b"x")
    assert await store.delete_document("zones", "z1") is True
    assert await store.delete_document("zones", "z1") is False
    assert await store.get_document("zones", "z1") is None


async def test_documents_list_by_namespace_sorted_by_key(store: Store) -> None:
    await store.put_document("zones", "z2", b"2")
    await store.put_document("zones", "z1", b"1")
    await store.put_document("zones:old", "z3", b"3")
    await store.put_document("technicians", "z1", b"t")
    listed = await store.list_documents("zones")
    assert listed == {"z1": b"1", "z2": b"2"}
    assert list(listed) == ["z1", "z2"]
    assert await store.list_documents("technicians") == {"z1": b"t"}
    assert await store.list_documents("empty") == {}


# -------------------------------------------------------------------------------------- bus


def collector() -> tuple[list[BusMessage], Callable[[BusMessage], None]]:
    received: list[BusMessage] = []
    return received, received.append


async def wait_for(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


async def test_publish_reaches_the_subscribers_of_that_channel_only(bus: Bus) -> None:
    first, first_cb = collector()
    second, second_cb = collector()
    other, other_cb = collector()
    bus.subscribe("booking:b1", first_cb)
    bus.subscribe("booking:b1", second_cb)
    bus.subscribe("booking:b2", other_cb)
    message = BusMessage(kind="status", text='{"type":"status"}', conflate_key="k", final=True)
    await bus.publish("booking:b1", message)
    # Delivery to this bus's own subscribers is synchronous on every backend.
    assert first == [message]
    assert second == [message]
    assert other == []
    await bus.publish("booking:nobody", message)  # no subscriber: nothing happens


async def test_unsubscribe_stops_delivery(bus: Bus) -> None:
    kept, kept_cb = collector()
    gone, gone_cb = collector()
    bus.subscribe("fleet", kept_cb)
    unsubscribe = bus.subscribe("fleet", gone_cb)
    unsubscribe()
    unsubscribe()  # twice is harmless
    await bus.publish("fleet", BusMessage(kind="fleet", text="1"))
    assert [m.text for m in kept] == ["1"]
    assert gone == []


async def test_a_subscriber_may_unsubscribe_while_being_delivered_to(bus: Bus) -> None:
    received, received_cb = collector()
    unsubscribe_self: list[Callable[[], None]] = []

    def closing(message: BusMessage) -> None:
        unsubscribe_self[0]()

    unsubscribe_self.append(bus.subscribe("booking:b1", closing))
    bus.subscribe("booking:b1", received_cb)
    await bus.publish("booking:b1", BusMessage(kind="status", text="1"))
    await bus.publish("booking:b1", BusMessage(kind="status", text="2"))
    assert [m.text for m in received] == ["1", "2"]


# Two buses on one Redis are two hubs; the in-process bus has no second hub to reach.


async def test_two_hubs_see_each_others_messages_once(
    redis_buses: tuple[RedisBus, RedisBus],
) -> None:
    hub_a, hub_b = redis_buses
    on_a, on_a_cb = collector()
    on_b, on_b_cb = collector()
    hub_a.subscribe("booking:b1", on_a_cb)
    hub_b.subscribe("booking:b1", on_b_cb)
    await hub_a.wait_synced()
    await hub_b.wait_synced()
    from_a = BusMessage(kind="position", text="from a", conflate_key="position:t1")
    from_b = BusMessage(kind="status", text="from b", urgent=True, final=True)
    await hub_a.publish("booking:b1", from_a)
    await hub_b.publish("booking:b1", from_b)
    await wait_for(lambda: len(on_a) == 2 and len(on_b) == 2)
    await asyncio.sleep(0.1)  # a duplicate (our own message echoed back) would arrive now
    assert on_a == [from_a, from_b]
    assert on_b == [from_b, from_a]


async def test_other_hubs_channels_and_unsubscribes_are_respected(
    redis_buses: tuple[RedisBus, RedisBus],
) -> None:
    hub_a, hub_b = redis_buses
    b1, b1_cb = collector()
    b2, b2_cb = collector()
    unsubscribe = hub_b.subscribe("booking:b1", b1_cb)
    hub_b.subscribe("booking:b2", b2_cb)
    await hub_b.wait_synced()
    await hub_a.publish("booking:b2", BusMessage(kind="status", text="to b2"))
    await wait_for(lambda: len(b2) == 1)
    assert b1 == []

    unsubscribe()
    await hub_b.wait_synced()
    await hub_a.publish("booking:b1", BusMessage(kind="status", text="to b1"))
    await hub_a.publish("booking:b2", BusMessage(kind="status", text="to b2 again"))
    await wait_for(lambda: len(b2) == 2)
    assert b1 == []


async def test_hubs_with_different_prefixes_do_not_see_each_other(
    redis_buses: tuple[RedisBus, RedisBus],
) -> None:
    hub_a, hub_b = redis_buses
    elsewhere_bus = redis_bus(REDIS_URL, random_prefix())  # another deployment, same Redis
    await elsewhere_bus.connect()
    try:
        elsewhere, elsewhere_cb = collector()
        here, here_cb = collector()
        elsewhere_bus.subscribe("fleet", elsewhere_cb)
        hub_a.subscribe("fleet", here_cb)
        await elsewhere_bus.wait_synced()
        await hub_a.wait_synced()
        await hub_b.publish("fleet", BusMessage(kind="fleet", text="x"))
        await wait_for(lambda: len(here) == 1)
        await asyncio.sleep(0.1)
        assert elsewhere == []
    finally:
        await elsewhere_bus.disconnect()


async def test_bookings_and_incidents_created_in_a_period(store: Store) -> None:
    for booking_id, t in (("b-before", T0 - 10), ("b-first", T0), ("b-second", T0 + 50)):
        booking, events = booking_core.create(
            booking_id=booking_id, customer_id="c", destination=HERE, t=t, actor="platform"
        )
        await store.save_booking(booking, events)
    for incident_id, t in (("inc-in", T0 + 5), ("inc-after", T0 + 100)):
        incident = new_incident(incident_id, client_id=incident_id, t=t)
        await store.save_incident(incident, key_of(incident), list(incident.audit))
    got = await store.bookings_created_between(T0, T0 + 100, 10)
    assert [b.id for b in got] == ["b-first", "b-second"]  # [from, to): T0 in, T0+100 out
    assert [b.id for b in await store.bookings_created_between(T0, T0 + 100, 1)] == ["b-first"]
    assert [i.id for i in await store.incidents_created_between(T0, T0 + 100, 10)] == ["inc-in"]
