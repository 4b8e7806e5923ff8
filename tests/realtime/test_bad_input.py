"""The bad-input contract, against a real hub (uvicorn) with real WebSocket and HTTP clients.

Every refused frame gets an ``error`` frame with a stable code (docs/protocol.md, "Error
codes"); the connection stays open (the test proves it by getting a valid fix acked
afterwards); only the hard frame cap (1009) and a flood (1008) close it. Nothing malformed
reaches storage: each test reads the hub's store back through the Store API (so on either
backend), after the ack, which the hub sends only once the write is durable.

Most cases share one hub per module, each with its own technician (or booking), because a
hub start costs more than a case; tests that need other limits start their own.
"""

from __future__ import annotations

import json
import math
import re
import time
import zlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
import pytest
import pytest_asyncio
from websockets.exceptions import ConnectionClosed

from realtime.auth import Role, mint
from realtime.backends.base import StoredFix
from tests.conftest import SECRET, RunningHub, make_settings, receive_json, receive_until

MAX_SEQ = 2**53 - 1
module_loop = pytest.mark.asyncio(loop_scope="module")


# ------------------------------------------------------------------ frames


class Raw:
    """A value written into the JSON text as is (for what json.dumps will not write)."""

    def __init__(self, text: str) -> None:
        self.text = text


OMIT = object()  # remove the field

Frame = Callable[[float], "str | bytes"]  # built at send time: fixes need the current time


def fix(seq: Any = 1, now: float | None = None, **changes: Any) -> dict[str, Any]:
    """A valid fix (as a dict); ``changes`` (and ``seq``) may be values, OMIT, Raw or
    ``now -> value``."""
    now = time.time() if now is None else now
    changes = {"seq": seq, **changes}
    body: dict[str, Any] = {
        "type": "location",
        "t": now - 1,
        "lat": 52.52,
        "lon": 13.405,
        "acc": 5.0,
        "speed": 1.5,
        "heading": 90.0,
    }
    for name, value in changes.items():
        if value is OMIT:
            body.pop(name, None)
        else:
            body[name] = value(now) if callable(value) else value
    return body


def dumps(body: Any) -> str:
    """JSON text; Raw values are spliced in verbatim (json.dumps writes NaN as NaN already)."""
    raws: dict[str, str] = {}

    def placeholder(value: Any) -> Any:
        if isinstance(value, Raw):
            key = f"@@raw{len(raws)}@@"
            raws[key] = value.text
            return key
        if isinstance(value, dict):
            return {k: placeholder(v) for k, v in value.items()}
        if isinstance(value, list):
            return [placeholder(v) for v in value]
        return value

    text = json.dumps(placeholder(body))
    for key, raw in raws.items():
        text = text.replace(json.dumps(key), raw)
    return text


def location(**changes: Any) -> Frame:
    return lambda now: dumps(fix(now=now, **{"seq": 1, **changes}))


def batch(*points: dict[str, Any]) -> Frame:
    """A batch of fixes; each point is ``changes`` for ``fix`` and must say its seq."""
    return lambda now: dumps(
        {"type": "batch", "points": [fix(now=now, **point) for point in points]}
    )


def text(value: str) -> Frame:
    return lambda now: value


def binary(value: bytes) -> Frame:
    return lambda now: value


def seconds_from_now(offset: float) -> Callable[[float], float]:
    return lambda now: now + offset


# (frame, expected code); the frame says seq 1 whenever it says a seq.
BAD_FRAMES = [
    # Not a JSON object.
    pytest.param(text("hello"), "invalid_json", id="not JSON"),
    pytest.param(text(""), "invalid_json", id="empty frame"),
    pytest.param(text('{"type": "location", "seq": 1'), "invalid_json", id="truncated JSON"),
    pytest.param(location(lat=float("nan")), "invalid_json", id="NaN literal"),
    pytest.param(location(lon=float("inf")), "invalid_json", id="Infinity literal"),
    pytest.param(location(lon=float("-inf")), "invalid_json", id="-Infinity literal"),
    pytest.param(text(json.dumps([fix(1)])), "invalid_json", id="a JSON array"),
    pytest.param(text('"location"'), "invalid_json", id="a JSON string"),
    pytest.param(text("null"), "invalid_json", id="JSON null"),
    pytest.param(binary(json.dumps(fix(1)).encode()), "binary_frame", id="binary frame"),
    # Numbers no double can hold are valid JSON syntax, but out of range.
    pytest.param(location(lat=Raw("1e400")), "out_of_range", id="lat 1e400"),
    pytest.param(location(t=Raw("-1e400")), "out_of_range", id="t -1e400"),
    # Type.
    pytest.param(location(type=OMIT), "unknown_type", id="missing type"),
    pytest.param(location(type="teleport"), "unknown_type", id="unknown type"),
    pytest.param(location(type="LOCATION"), "unknown_type", id="type in the wrong case"),
    pytest.param(location(type=["location"]), "unknown_type", id="type is a list"),
    pytest.param(location(type={"name": "location"}), "unknown_type", id="type is an object"),
    pytest.param(location(type=7), "unknown_type", id="type is a number"),
    pytest.param(text("{}"), "unknown_type", id="empty object"),
    # Missing or mistyped fields.
    pytest.param(location(lat=OMIT), "invalid_field", id="missing lat"),
    pytest.param(location(lon=OMIT), "invalid_field", id="missing lon"),
    pytest.param(location(seq=OMIT), "invalid_field", id="missing seq"),
    pytest.param(location(t=OMIT), "invalid_field", id="missing t"),
    pytest.param(location(lat="52.52"), "invalid_field", id="lat as a string"),
    pytest.param(location(lat=None), "invalid_field", id="lat null"),
    pytest.param(location(lat=True), "invalid_field", id="lat as a bool"),
    pytest.param(location(t="2025-01-01T00:00:00Z"), "invalid_field", id="t as a date string"),
    pytest.param(location(seq=1.5), "invalid_field", id="seq as a float"),
    pytest.param(location(seq=1.0), "invalid_field", id="seq as a whole float"),
    pytest.param(location(seq=True), "invalid_field", id="seq as a bool"),
    pytest.param(location(seq="1"), "invalid_field", id="seq as a string"),
    pytest.param(location(acc="good"), "invalid_field", id="acc as a string"),
    pytest.param(text('{"type": "batch"}'), "invalid_field", id="batch without points"),
    pytest.param(text('{"type": "batch", "points": {}}'), "invalid_field", id="points not a list"),
    pytest.param(text('{"type": "batch", "points": [1]}'), "invalid_field", id="point not a fix"),
    # Out of range.
    pytest.param(location(lat=91), "out_of_range", id="lat 91"),
    pytest.param(location(lat=-91), "out_of_range", id="lat -91"),
    pytest.param(location(lat=90.000001), "out_of_range", id="lat just over 90"),
    pytest.param(location(lon=-181), "out_of_range", id="lon -181"),
    pytest.param(location(lon=181), "out_of_range", id="lon 181"),
    pytest.param(location(acc=-1), "out_of_range", id="acc negative"),
    pytest.param(location(acc=1e6), "out_of_range", id="acc 1000 km"),
    pytest.param(location(speed=1000), "out_of_range", id="speed 1000"),
    pytest.param(location(speed=-0.5), "out_of_range", id="speed negative"),
    pytest.param(location(heading=400), "out_of_range", id="heading 400"),
    pytest.param(location(heading=-1), "out_of_range", id="heading negative"),
    pytest.param(location(seq=-1), "out_of_range", id="seq negative"),
    pytest.param(location(seq=MAX_SEQ + 1), "out_of_range", id="seq 2^53"),
    pytest.param(location(seq=2**64), "out_of_range", id="seq 2^64"),
    pytest.param(location(seq=Raw("1" * 400)), "out_of_range", id="seq with 400 digits"),
    # Time.
    pytest.param(
        location(t=seconds_from_now(3600)), "timestamp_in_future", id="t 1 hour in the future"
    ),
    pytest.param(location(t=Raw("1e300")), "timestamp_in_future", id="t in the year 1e292"),
    pytest.param(location(t=seconds_from_now(-2 * 86400)), "timestamp_too_old", id="t 2 days ago"),
    pytest.param(location(t=0), "timestamp_too_old", id="t 1970"),
    pytest.param(location(t=-1), "timestamp_too_old", id="t negative"),
    # One bad point refuses the whole batch.
    pytest.param(
        batch({"seq": 1}, {"seq": 2, "lat": 91}, {"seq": 3}), "out_of_range", id="batch bad point"
    ),
    pytest.param(
        batch({"seq": 1}, {"seq": 2, "lat": "x"}, {"seq": 3}),
        "invalid_field",
        id="batch mistyped point",
    ),
    pytest.param(
        batch({"seq": 1}, {"seq": 2, "t": seconds_from_now(3600)}, {"seq": 3}),
        "timestamp_in_future",
        id="batch point in the future",
    ),
    pytest.param(batch({"seq": 1}, {"seq": 3}, {"seq": 2}), "seq_not_increasing", id="batch 1 3 2"),
    pytest.param(batch({"seq": 1}, {"seq": 1}), "seq_not_increasing", id="batch 1 1"),
    pytest.param(batch({"seq": 2}, {"seq": 1}), "seq_not_increasing", id="batch 2 1"),
]


# ------------------------------------------------------------------ hub and storage


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def shared(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[RunningHub]:
    """One hub for the cases that need only the default limits."""
    running = RunningHub(make_settings(tmp_path_factory.mktemp("bad-input")))
    await running.start()
    record_writes(running)
    yield running
    await running.stop()


@pytest_asyncio.fixture(loop_scope="module")
async def shub(shared: RunningHub) -> AsyncIterator[RunningHub]:
    """The shared hub; the sockets a test opened are closed after it."""
    yield shared
    clients, shared.clients = shared.clients, []
    for client in clients:
        await client.close()


def case_name(request: pytest.FixtureRequest) -> str:
    """A name for this parametrized case usable as an id (distinct even for "-Infinity")."""
    case = request.node.callspec.id
    return re.sub(r"[^A-Za-z0-9]+", "-", case).strip("-") + f"-{zlib.crc32(case.encode()):08x}"


def token(role: Role, sub: str, booking: str | None = None) -> str:
    SUBJECTS.add(sub)
    if booking:
        BOOKINGS.add(booking)
    return mint(SECRET, role=role, sub=sub, booking=booking, now=time.time(), ttl_s=600)[0]


async def technician(hub: RunningHub, technician_id: str, resume_from: int = -1) -> Any:
    """A technician socket, past the hub's greeting (the ack to resume from)."""
    ws = await hub.connect("/v1/ws/technician", token(Role.TECHNICIAN, technician_id))
    assert await receive_json(ws) == {"type": "ack", "seq": resume_from}
    return ws


async def send(ws: Any, frame: Frame | dict[str, Any]) -> None:
    await ws.send(dumps(frame) if isinstance(frame, dict) else frame(time.time()))


async def expect_error(ws: Any, code: str) -> dict[str, Any]:
    error = await receive_until(ws, "error")
    assert error["code"] == code, error
    assert isinstance(error["message"], str) and error["message"]
    return error


async def expect_ack(ws: Any, seq: int) -> None:
    """Wait for the ack that covers ``seq`` (acks conflate: intermediate ones may be skipped)."""
    while True:
        ack = await receive_until(ws, "ack")
        assert ack["seq"] <= seq, f"acked {ack['seq']}, beyond anything sent ({seq})"
        if ack["seq"] == seq:
            return


@dataclass
class Written:
    """The ids a hub's store was asked to write under, whatever it then kept."""

    technicians: set[str] = field(default_factory=set)
    bookings: set[str] = field(default_factory=set)
    incidents: set[str] = field(default_factory=set)
    alerts: set[str] = field(default_factory=set)


# Per hub (by data dir): the shared hub's store records its writes, so that the checks below
# can read back everything it stored through the Store API, on any backend.
WRITTEN: dict[Path, Written] = {}
# Every technician (or other subject) and booking the tests here name, on any hub.
SUBJECTS: set[str] = set()
BOOKINGS: set[str] = set()


def record_writes(running: RunningHub) -> None:
    """Wrap the hub's store writers to note what each write is about (before writing it)."""
    store = running.hub.store
    written = WRITTEN.setdefault(running.settings.data_dir, Written())
    append_fixes, save_booking = store.append_fixes, store.save_booking
    save_incident, save_alert = store.save_incident, store.save_alert

    async def recording_append_fixes(fixes: list[StoredFix]) -> None:
        written.technicians.update(f.technician_id for f in fixes)
        await append_fixes(fixes)

    async def recording_save_booking(booking: Any, events: list[Any]) -> None:
        written.bookings.add(booking.id)
        await save_booking(booking, events)

    async def recording_save_incident(incident: Any, reporter_key: str, audit: list[Any]) -> None:
        written.incidents.add(incident.id)
        await save_incident(incident, reporter_key, audit)

    async def recording_save_alert(alert: Any, audit: list[Any]) -> None:
        written.alerts.add(alert.id)
        await save_alert(alert, audit)

    store.append_fixes = recording_append_fixes
    store.save_booking = recording_save_booking
    store.save_incident = recording_save_incident
    store.save_alert = recording_save_alert


def written(hub: RunningHub) -> Written:
    return WRITTEN.get(hub.settings.data_dir, Written())


async def create_booking(hub: RunningHub, **body: Any) -> dict[str, Any]:
    BOOKINGS.add(body["id"])
    if body.get("technician_id"):
        SUBJECTS.add(body["technician_id"])
    return await hub.create_booking(**body)


async def stored_fixes(hub: RunningHub, technician_id: str) -> list[StoredFix]:
    """All the technician's stored fixes, by seq, read through the Store API."""
    store = hub.hub.store
    fixes = await store.track(technician_id, -math.inf, math.inf, -1)
    # Nothing stored outside the time range (a NaN t, say) is hiding from `track`: the
    # store's own newest fix and highest seq are among the fixes it returned.
    newest = max(fixes, key=lambda f: (f.t, f.seq), default=None)
    assert await store.last_fix(technician_id) == newest, technician_id
    assert await store.highest_seq(technician_id) == max((f.seq for f in fixes), default=-1)
    assert all(f.technician_id == technician_id for f in fixes), fixes
    return sorted(fixes, key=lambda f: f.seq)


async def stored(hub: RunningHub, technician_id: str) -> list[tuple[Any, ...]]:
    """(seq, lat, lon, acc, speed, heading) of the technician's stored fixes, by seq."""
    return [
        (f.seq, f.lat, f.lon, f.acc, f.speed, f.heading)
        for f in await stored_fixes(hub, technician_id)
    ]


def as_row(body: dict[str, Any]) -> tuple[Any, ...]:
    return tuple(body.get(k) for k in ("seq", "lat", "lon", "acc", "speed", "heading"))


async def all_stored_fixes(hub: RunningHub) -> list[StoredFix]:
    """Every fix of every technician named here or written to this hub's store."""
    fixes: list[StoredFix] = []
    for technician_id in sorted(SUBJECTS | written(hub).technicians):
        fixes += await stored_fixes(hub, technician_id)
    return fixes


async def assert_storage_holds_only_valid_fixes(hub: RunningHub) -> None:
    """Whatever was refused anywhere, every stored fix is in range and in time."""
    now = time.time()
    fixes = await all_stored_fixes(hub)
    assert fixes, "no stored fix to check: the technicians are not tracked"
    for f in fixes:
        seq, t, lat, lon, acc, speed, heading, received_t = msgspec.structs.astuple(f)[1:]
        assert type(seq) is int and 0 <= seq <= MAX_SEQ
        assert math.isfinite(t) and received_t - 12 * 3600 <= t <= received_t + 120
        assert received_t <= now
        assert math.isfinite(lat) and -90 <= lat <= 90
        assert math.isfinite(lon) and -180 <= lon <= 180
        assert acc is None or 0 <= acc <= 50_000
        assert speed is None or 0 <= speed <= 150
        assert heading is None or 0 <= heading <= 360


async def durable_records(hub: RunningHub) -> dict[str, dict[str, Any]]:
    """Every booking, incident and alert this hub stored (named here, written to its store,
    or still open), each with its audit trail: what a refused request must leave as it was."""
    store = hub.hub.store
    done = written(hub)
    bookings = BOOKINGS | done.bookings | {b.id for b in await store.active_bookings()}
    incidents = done.incidents | {i.id for i in await store.open_incidents()}
    alerts = done.alerts | {a.id for a in await store.open_alerts()}
    return {
        "bookings": {
            i: (await store.get_booking(i), await store.booking_events(i)) for i in sorted(bookings)
        },
        "incidents": {
            i: (await store.get_incident(i), await store.incident_audit(i))
            for i in sorted(incidents)
        },
        "alerts": {
            i: (await store.get_alert(i), await store.alert_audit(i)) for i in sorted(alerts)
        },
    }


# ------------------------------------------------------------------ technician socket


@module_loop
@pytest.mark.parametrize(("frame", "code"), BAD_FRAMES)
async def test_bad_frame_gets_an_error_and_the_connection_stays(shub, request, frame, code):
    technician_id = "tech-" + case_name(request)
    ws = await technician(shub, technician_id)

    await send(ws, frame)
    error = await expect_error(ws, code)
    # If the error names a seq, it is one the frame carried (the frames above use 1 to 3).
    assert "seq" not in error or (type(error["seq"]) is int and 1 <= error["seq"] <= 3), error

    # Still open, and nothing was half-applied: seq 1 is still free.
    good = fix(1)
    await send(ws, good)
    await expect_ack(ws, 1)
    assert await stored(shub, technician_id) == [as_row(good)]
    await assert_storage_holds_only_valid_fixes(shub)


@module_loop
@pytest.mark.parametrize(
    ("frame", "seq"),
    [
        pytest.param(location(lat=91), 1, id="out of range"),
        pytest.param(location(lat="x"), 1, id="mistyped field"),
        pytest.param(location(type="teleport"), 1, id="unknown type"),
        pytest.param(location(t=seconds_from_now(3600)), 1, id="in the future"),
        pytest.param(location(seq=True), None, id="seq true is not a seq"),
        pytest.param(location(seq=-1), None, id="negative seq"),
        pytest.param(location(seq=2**64), None, id="seq past 2^53"),
        pytest.param(text("NaN"), None, id="not JSON"),
    ],
)
async def test_error_names_the_seq_of_the_refused_frame_when_it_had_a_valid_one(
    shub, request, frame, seq
):
    ws = await technician(shub, "tech-echo-" + case_name(request))
    await send(ws, frame)
    error = await receive_until(ws, "error")
    assert error.get("seq") == seq and type(error.get("seq")) is type(seq), error


@module_loop
async def test_seq_going_backwards_is_stale(shub):
    ws = await technician(shub, "tech-backwards")
    five = fix(5, lat=52.5)
    await send(ws, five)
    await expect_ack(ws, 5)

    await send(ws, fix(3, lat=48.1))
    error = await expect_error(ws, "stale_seq")
    assert error["seq"] == 3

    six = fix(6)
    await send(ws, six)
    await expect_ack(ws, 6)
    assert await stored(shub, "tech-backwards") == [as_row(five), as_row(six)]


@module_loop
async def test_resending_a_stored_seq_is_stale_and_does_not_overwrite(shub):
    ws = await technician(shub, "tech-resend")
    original = fix(1, lat=40.0)
    await send(ws, original)
    await expect_ack(ws, 1)

    await send(ws, fix(1, lat=41.0))
    assert (await expect_error(ws, "stale_seq"))["seq"] == 1
    await ws.close()

    # Seqs increase across reconnects: the hub greets with the stored seq and still refuses 1.
    ws = await technician(shub, "tech-resend", resume_from=1)
    await send(ws, fix(1, lat=42.0))
    await expect_error(ws, "stale_seq")
    await send(ws, fix(2))
    await expect_ack(ws, 2)
    assert await stored(shub, "tech-resend") == [as_row(original), as_row(fix(2))]


@module_loop
async def test_a_batch_with_a_bad_point_stores_nothing_then_the_fixed_batch_stores_all(shub):
    ws = await technician(shub, "tech-batch-bad")
    await send(ws, batch({"seq": 1}, {"seq": 2, "lon": -181}, {"seq": 3}))
    error = await expect_error(ws, "out_of_range")
    assert error["message"].startswith("points[1]:")
    assert error["seq"] == 2

    await send(ws, batch({"seq": 1}, {"seq": 2}, {"seq": 3}))
    await expect_ack(ws, 3)
    assert [row[0] for row in await stored(shub, "tech-batch-bad")] == [1, 2, 3]


@module_loop
async def test_a_batch_overlapping_stored_seqs_stores_only_the_new_points(shub):
    ws = await technician(shub, "tech-overlap")
    await send(ws, batch({"seq": 1, "lat": 10.0}, {"seq": 2, "lat": 20.0}, {"seq": 3, "lat": 30.0}))
    await expect_ack(ws, 3)

    # An offline flush after a lost ack: 2 and 3 again (with other values), then 4 and 5.
    await send(
        ws,
        batch(
            {"seq": 2, "lat": -2.0},
            {"seq": 3, "lat": -3.0},
            {"seq": 4, "lat": 40.0},
            {"seq": 5, "lat": 50.0},
        ),
    )
    await expect_ack(ws, 5)
    assert [(seq, lat) for seq, lat, *_ in await stored(shub, "tech-overlap")] == [
        (1, 10.0),
        (2, 20.0),
        (3, 30.0),
        (4, 40.0),
        (5, 50.0),
    ]

    # A batch made only of stored points is not an error: it is acked again.
    await send(ws, batch({"seq": 4}, {"seq": 5}))
    await expect_ack(ws, 5)
    await send(ws, fix(6))
    await expect_ack(ws, 6)
    assert [row[0] for row in await stored(shub, "tech-overlap")] == [1, 2, 3, 4, 5, 6]


async def test_batch_over_the_limit_is_refused_whole(hub_factory):
    hub = await hub_factory(max_batch_points=5)
    ws = await technician(hub, "tech-1")
    await send(ws, batch(*({"seq": s} for s in range(1, 7))))
    error = await expect_error(ws, "batch_too_large")
    assert "6" in error["message"] and "5" in error["message"]

    await send(ws, batch(*({"seq": s} for s in range(1, 6))))
    await expect_ack(ws, 5)
    assert [row[0] for row in await stored(hub, "tech-1")] == [1, 2, 3, 4, 5]


@pytest.mark.parametrize(
    "padding",
    [pytest.param("x" * 4000, id="ascii"), pytest.param("€" * 1000, id="multibyte")],
)
async def test_frame_over_the_size_limit_is_refused_and_the_connection_stays(hub_factory, padding):
    hub = await hub_factory(max_frame_bytes=2048)
    ws = await technician(hub, "tech-1")
    # ~4 KB of UTF-8 in an unknown field (which a smaller frame may carry: changes are additive).
    big = fix(1, note=padding)
    assert len(dumps(big).encode()) > 4000 and len(dumps(big)) > 1000
    await send(ws, big)
    await expect_error(ws, "frame_too_large")

    small = fix(1, note="x" * 1000)
    await send(ws, small)
    await expect_ack(ws, 1)
    assert await stored(hub, "tech-1") == [as_row(small)]


async def test_frame_over_the_hard_cap_closes_the_transport_with_1009(hub_factory):
    hub = await hub_factory(max_frame_bytes=2048, hard_frame_bytes=8192)
    ws = await technician(hub, "tech-1")
    await send(ws, fix(1, note="x" * 16_000))
    with pytest.raises(ConnectionClosed) as caught:
        while True:
            await receive_json(ws)
    assert caught.value.rcvd is not None and caught.value.rcvd.code == 1009
    assert await stored(hub, "tech-1") == []

    # The hub itself is fine: the technician reconnects and streams.
    ws = await technician(hub, "tech-1")
    await send(ws, fix(1))
    await expect_ack(ws, 1)


# ------------------------------------------------------------------ watcher sockets

WATCHER_FRAMES = [
    pytest.param(lambda now: dumps(fix(1, lat=11.111)), "unknown_type", id="a location fix"),
    pytest.param(text('{"type": "subscribe", "to": "all"}'), "unknown_type", id="unknown type"),
    pytest.param(text("{}"), "unknown_type", id="no type"),
    pytest.param(text('{"type": ["location"]}'), "unknown_type", id="type is a list"),
    pytest.param(text("hello"), "invalid_json", id="not JSON"),
    pytest.param(text('{"lat": NaN}'), "invalid_json", id="NaN"),
    pytest.param(text("[]"), "invalid_json", id="a JSON array"),
    pytest.param(binary(b"\x00\x01"), "binary_frame", id="binary"),
]


@module_loop
@pytest.mark.parametrize(("frame", "code"), WATCHER_FRAMES)
async def test_customer_socket_refuses_input_and_keeps_watching(shub, request, frame, code):
    name = case_name(request)
    booking_id, technician_id = f"b-{name}", f"tech-watched-{name}"
    await create_booking(shub, id=booking_id, customer_id="cust-1", technician_id=technician_id)
    assert (await shub.post(f"/v1/bookings/{booking_id}/en_route")).status_code == 200
    customer = await shub.connect(
        f"/v1/ws/bookings/{booking_id}", token(Role.CUSTOMER, "cust-1", booking_id)
    )
    assert (await receive_json(customer))["type"] == "snapshot"

    await send(customer, frame)
    await expect_error(customer, code)

    # Still watching: the technician's next fix arrives.
    ws = await technician(shub, technician_id)
    await send(ws, fix(1))
    assert (await receive_until(customer, "position"))["seq"] == 1
    await expect_ack(ws, 1)
    assert [row[0] for row in await stored(shub, technician_id)] == [1]
    assert not [f for f in await all_stored_fixes(shub) if f.lat == 11.111]


@module_loop
@pytest.mark.parametrize(("frame", "code"), WATCHER_FRAMES)
async def test_operator_socket_refuses_input_and_keeps_watching(shub, request, frame, code):
    technician_id = "tech-ops-" + case_name(request)
    operator = await shub.connect("/v1/ws/ops", token(Role.OPERATOR, "op-1"))
    assert (await receive_json(operator))["type"] == "snapshot"

    await send(operator, frame)
    await expect_error(operator, code)

    # Still watching: the fleet shows the technician that just came online and moved.
    ws = await technician(shub, technician_id)
    await send(ws, fix(1))
    await expect_ack(ws, 1)
    while True:
        fleet = await receive_until(operator, "fleet")
        entries = {e["technician_id"]: e for e in fleet["positions"]}
        if technician_id in entries and entries[technician_id].get("lat") is not None:
            break
    assert not [f for f in await all_stored_fixes(shub) if f.lat == 11.111]


# ------------------------------------------------------------------ rate limit and flood

FLOOD_LIMITS = {"rate_per_s": 5, "rate_burst": 5, "flood_max_refused": 20}


async def test_over_the_rate_frames_are_delayed_not_dropped(hub_factory):
    """Technician frames over the rate wait (back-pressure): all are stored, none refused."""
    hub = await hub_factory(**FLOOD_LIMITS)
    ws = await technician(hub, "tech-1")
    sent = {seq: fix(seq) for seq in range(1, 11)}
    started = time.monotonic()
    for body in sent.values():
        await send(ws, body)
    while True:
        message = await receive_json(ws)
        assert message["type"] != "error", message
        if message == {"type": "ack", "seq": 10}:
            break
    # 5 in the burst, then 5 frames/s: the last one waited about a second.
    assert time.monotonic() - started >= 0.8
    kept = await stored(hub, "tech-1")
    assert kept == [as_row(sent[seq]) for seq in range(1, 11)]


async def test_a_flood_is_closed_with_1008(hub_factory):
    hub = await hub_factory(**FLOOD_LIMITS)
    ws = await technician(hub, "tech-1")
    now = time.time()
    frames = [dumps(fix(seq, now)) for seq in range(1, 201)]
    with pytest.raises(ConnectionClosed) as caught:
        for frame in frames:
            await ws.send(frame)
        while True:
            message = await receive_json(ws)
            assert message["type"] == "ack", message
    assert caught.value.rcvd is not None, "closed without a close frame"
    assert caught.value.rcvd.code == 1008
    assert "flood" in caught.value.rcvd.reason

    async with hub.client(None) as http:
        metrics = (await http.get("/metrics")).text
    assert metric(metrics, "doorstep_closes_total", code="1008") == 1
    assert metric(metrics, "doorstep_frames_rejected_total", code="rate_limited") == 1


def metric(exposition: str, name: str, **labels: str) -> float:
    """One sample from a Prometheus text exposition (0 when absent)."""
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in exposition.splitlines():
        sample, _, value = line.rpartition(" ")
        if sample == (f"{name}{{{wanted}}}" if labels else name):
            return float(value)
    return 0.0


async def test_metrics_count_rejections_by_code(hub):
    ws = await technician(hub, "tech-1")
    frames = [
        (text("hello"), "invalid_json"),
        (location(lat=91), "out_of_range"),
        (location(lon=181), "out_of_range"),
        (location(type="teleport"), "unknown_type"),
        (binary(b"\x00"), "binary_frame"),
        (location(t=seconds_from_now(3600)), "timestamp_in_future"),
    ]
    for frame, code in frames:
        await send(ws, frame)
        await expect_error(ws, code)

    async with hub.client(None) as http:
        exposition = (await http.get("/metrics")).text
    assert metric(exposition, "doorstep_frames_rejected_total", code="invalid_json") == 1
    assert metric(exposition, "doorstep_frames_rejected_total", code="out_of_range") == 2
    assert metric(exposition, "doorstep_frames_rejected_total", code="unknown_type") == 1
    assert metric(exposition, "doorstep_frames_rejected_total", code="binary_frame") == 1
    assert metric(exposition, "doorstep_frames_rejected_total", code="timestamp_in_future") == 1
    assert metric(exposition, "doorstep_frames_rejected_total", code="rate_limited") == 0


# ------------------------------------------------------------------ HTTP

DESTINATION = {"lat": 52.52, "lon": 13.405}


def booking_body(**changes: Any) -> bytes:
    body: dict[str, Any] = {"customer_id": "cust-1", "destination": dict(DESTINATION)}
    for name, value in changes.items():
        if value is OMIT:
            body.pop(name)
        else:
            body[name] = value
    return dumps(body).encode()


@module_loop
@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        pytest.param(b'{"customer_id": "c", ', 400, "invalid_json", id="invalid JSON"),
        pytest.param(b"\xff\xfe", 400, "invalid_json", id="not UTF-8"),
        pytest.param(
            booking_body(destination={"lat": float("nan"), "lon": 0}),
            400,
            "invalid_json",
            id="NaN",
        ),
        pytest.param(b"[]", 422, "invalid_field", id="a JSON array"),
        pytest.param(b"", 422, "invalid_field", id="empty body"),
        pytest.param(booking_body(customer_id=OMIT), 422, "invalid_field", id="no customer_id"),
        pytest.param(booking_body(customer_id=""), 422, "invalid_field", id="empty customer_id"),
        pytest.param(booking_body(customer_id="a b"), 422, "invalid_field", id="bad customer_id"),
        pytest.param(booking_body(customer_id=7), 422, "invalid_field", id="customer_id number"),
        pytest.param(booking_body(destination=OMIT), 422, "invalid_field", id="no destination"),
        pytest.param(
            booking_body(destination={"lat": "52", "lon": 13}),
            422,
            "invalid_field",
            id="lat as a string",
        ),
        pytest.param(
            booking_body(destination={"lat": 91, "lon": 13}), 422, "out_of_range", id="lat 91"
        ),
        pytest.param(
            booking_body(destination={"lat": 52, "lon": -181}), 422, "out_of_range", id="lon -181"
        ),
        pytest.param(
            booking_body(destination={"lat": Raw("1e400"), "lon": 13}),
            422,
            "out_of_range",
            id="lat 1e400",
        ),
        pytest.param(booking_body(geofence_radius_m=0), 422, "out_of_range", id="radius 0"),
        pytest.param(booking_body(geofence_radius_m=1e6), 422, "out_of_range", id="radius 1000 km"),
        pytest.param(
            booking_body(expected_duration_s=-5), 422, "out_of_range", id="negative duration"
        ),
        pytest.param(booking_body(colour="red"), 422, "invalid_field", id="unknown field"),
        pytest.param(
            booking_body(destination={**DESTINATION, "alt": 30}),
            422,
            "invalid_field",
            id="unknown field in destination",
        ),
        pytest.param(booking_body(skills="plumbing"), 422, "invalid_field", id="skills a string"),
        pytest.param(
            booking_body(notes="x" * 70_000), 413, "frame_too_large", id="body over 64 KiB"
        ),
    ],
)
async def test_bad_booking_body_is_refused_and_nothing_is_stored(shub, body, status, code):
    before = await durable_records(shub)
    async with shub.client() as http:
        response = await http.post(
            "/v1/bookings", content=body, headers={"Content-Type": "application/json"}
        )
    assert response.status_code == status, response.text
    answer = response.json()
    assert answer["code"] == code and answer["message"], answer
    after = await durable_records(shub)
    assert after == before


@module_loop
@pytest.mark.parametrize(
    ("path", "setup", "event", "state", "status", "code"),
    [
        ("en_route", [], "en_route", "requested", 409, "illegal_transition"),
        ("arrive", [], "check_in", "requested", 409, "illegal_transition"),
        ("start", ["assign"], "start_service", "assigned", 409, "illegal_transition"),
        ("complete", ["assign", "en_route"], "check_out", "en_route", 409, "illegal_transition"),
        ("assign", ["cancel"], "assign", "cancelled", 409, "illegal_transition"),
        ("cancel", ["cancel"], "cancel", "cancelled", 409, "illegal_transition"),
    ],
)
async def test_illegal_transition_is_refused_naming_state_and_event(
    shub, path, setup, event, state, status, code
):
    booking_id = f"b-illegal-{path}-{'-'.join(setup) or 'new'}"
    await create_booking(shub, id=booking_id)
    async with shub.client() as http:
        for step in setup:
            body = {"technician_id": "tech-9"} if step == "assign" else {}
            assert (await http.post(f"/v1/bookings/{booking_id}/{step}", json=body)).is_success
        trail = (await http.get(f"/v1/bookings/{booking_id}")).json()["events"]

        body = {"technician_id": "tech-9"} if path == "assign" else {}
        response = await http.post(f"/v1/bookings/{booking_id}/{path}", json=body)
        assert response.status_code == status, response.text
        answer = response.json()
        assert answer["code"] == code
        assert state in answer["message"] and repr(event) in answer["message"], answer

        after = (await http.get(f"/v1/bookings/{booking_id}")).json()
    assert after["status"] == state
    assert after["events"] == trail


@module_loop
@pytest.mark.parametrize(
    ("path", "body", "status", "code"),
    [
        ("/v1/bookings/nope/en_route", {}, 404, "not_found"),
        ("/v1/bookings/{id}/assign", {}, 422, "invalid_field"),
        ("/v1/bookings/{id}/assign", {"technician_id": "a b"}, 422, "invalid_field"),
        ("/v1/bookings/{id}/cancel", {"cause": 5}, 422, "invalid_field"),
        ("/v1/bookings/{id}/cancel", {"cause": "x" * 501}, 422, "invalid_field"),
        ("/v1/bookings/{id}/cancel", {"why": "moved"}, 422, "invalid_field"),
    ],
)
async def test_bad_transition_request_changes_nothing(shub, request, path, body, status, code):
    booking_id = "b-bad-transition-" + case_name(request)
    await create_booking(shub, id=booking_id)
    async with shub.client() as http:
        response = await http.post(path.format(id=booking_id), json=body)
        assert response.status_code == status, response.text
        assert response.json()["code"] == code
        after = (await http.get(f"/v1/bookings/{booking_id}")).json()
    assert after["status"] == "requested"
    assert [e["event"] for e in after["events"]] == ["create"]


async def test_a_hub_bug_on_one_frame_answers_internal_error_and_keeps_the_stream(
    hub_factory, monkeypatch
):
    running = await hub_factory()
    token = await running.token("technician", "tech-bug")
    tech = await running.connect("/v1/ws/technician", token)
    await receive_until(tech, "ack")
    real_ingest = running.hub.pipeline.ingest
    calls = 0

    async def broken_once(technician_id, message, received):
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("simulated bug")
        await real_ingest(technician_id, message, received)

    monkeypatch.setattr(running.hub.pipeline, "ingest", broken_once)
    fix = {"type": "location", "seq": 1, "t": time.time(), "lat": 52.5, "lon": 13.4}
    await tech.send(json.dumps(fix))
    error = await receive_until(tech, "error")
    assert error["code"] == "internal_error"
    await tech.send(json.dumps(fix))
    assert (await receive_until(tech, "ack"))["seq"] == 1


DEEP = "[" * 5000 + "]" * 5000


async def test_a_deeply_nested_frame_gets_an_error_frame_and_the_technician_socket_stays_up(
    hub: RunningHub,
):
    # 10 KB of nesting: msgspec's recursion guard used to escape the SOS sniffing of every
    # technician frame (a RecursionError ended the socket without a close frame).
    tech = await hub.connect("/v1/ws/technician", await hub.token("technician", "tech-deep"))
    assert await receive_json(tech) == {"type": "ack", "seq": -1}
    await tech.send('{"type": "sos", "id": "s-1", "t": 1, "x": ' + DEEP + "}")
    reply = await receive_json(tech)
    assert (reply["type"], reply["code"]) == ("error", "invalid_json")
    await tech.send('{"type": "check_ok", "id": "nope"}')
    reply = await receive_json(tech)
    assert (reply["type"], reply["code"]) == ("error", "not_found")
