"""The roster contract (``realtime/backends/roster.py``), run against every implementation.

``roster`` is parametrized over ``MemoryRoster`` and ``RedisRoster`` (the real Redis on
127.0.0.1:6379, a random key prefix, its keys deleted at teardown by prefix, never FLUSHDB).
What only exists with several hubs on one Redis (two rosters sharing a prefix, the key
layout) is tested on Redis only, and says so.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator

import pytest

from geofence.geo import destination_point, distance_m
from realtime.backends.redis import delete_all
from realtime.backends.redis.roster import GC_AFTER_S, RedisRoster, RosterKeys
from realtime.backends.roster import MemoryRoster, Roster, RosterEntry
from tests.realtime.backends.conftest import REDIS_URL, random_prefix

T0 = 1_700_000_000.0
LEASE_S = 15.0
CENTRE = (52.52, 13.405)  # Berlin


@pytest.fixture(params=["memory", "redis"])
async def roster(request: pytest.FixtureRequest) -> AsyncIterator[Roster]:
    prefix = random_prefix()
    backend: Roster = (
        MemoryRoster() if request.param == "memory" else RedisRoster(REDIS_URL, prefix)
    )
    await backend.open()
    yield backend
    await backend.close()
    if request.param == "redis":
        await delete_all(REDIS_URL, prefix)


@pytest.fixture
async def redis_rosters() -> AsyncIterator[tuple[RedisRoster, RedisRoster]]:
    """Two rosters on one Redis and prefix: what two hubs of one deployment have."""
    prefix = random_prefix()
    first, second = RedisRoster(REDIS_URL, prefix), RedisRoster(REDIS_URL, prefix)
    await first.open()
    await second.open()
    yield first, second
    await first.close()
    await second.close()
    await delete_all(REDIS_URL, prefix)


def entry(
    technician_id: str,
    seq: int,
    t: float,
    lat: float = 52.5,
    lon: float = 13.4,
    **extra: float | None,
) -> RosterEntry:
    return RosterEntry(
        technician_id=technician_id, seq=seq, t=t, lat=lat, lon=lon, received_t=t + 0.5, **extra
    )


def at(technician_id: str, bearing: float, metres: float, seq: int = 1) -> RosterEntry:
    """An entry ``metres`` from CENTRE along ``bearing``."""
    lat, lon = destination_point(*CENTRE, bearing, metres)
    return entry(technician_id, seq, T0, lat=lat, lon=lon)


# ---------------------------------------------------------------------------------- presence


async def test_leases_are_live_until_their_time_and_not_at_it(roster: Roster) -> None:
    await roster.set_online("hub-a", ["t1", "t2"], T0 + LEASE_S)
    assert await roster.online(T0) == {"t1": "hub-a", "t2": "hub-a"}
    assert await roster.online(T0 + LEASE_S - 0.001) == {"t1": "hub-a", "t2": "hub-a"}
    assert await roster.online(T0 + LEASE_S) == {}
    assert await roster.online(T0 + 10 * LEASE_S) == {}


async def test_nobody_is_online_at_first(roster: Roster) -> None:
    assert await roster.online(T0) == {}
    await roster.set_online("hub-a", [], T0 + LEASE_S)
    assert await roster.online(T0) == {}


async def test_renewal_extends_a_lease(roster: Roster) -> None:
    await roster.set_online("hub-a", ["t1"], T0 + LEASE_S)
    await roster.set_online("hub-a", ["t1"], T0 + 5 + LEASE_S, now=T0 + 5)
    assert await roster.online(T0 + LEASE_S + 1) == {"t1": "hub-a"}
    assert await roster.online(T0 + 5 + LEASE_S) == {}


async def test_a_dead_hub_s_technicians_drop_out_after_its_last_lease(roster: Roster) -> None:
    # Both hubs renew every 5 s; hub A is killed after its renewal at T0 + 5.
    await roster.set_online("hub-a", ["t1", "t2"], T0 + LEASE_S)
    await roster.set_online("hub-b", ["t3"], T0 + LEASE_S)
    await roster.set_online("hub-a", ["t1", "t2"], T0 + 5 + LEASE_S, now=T0 + 5)
    for t in (T0 + 5, T0 + 10, T0 + 15, T0 + 20, T0 + 25):
        await roster.set_online("hub-b", ["t3"], t + LEASE_S, now=t)
    assert await roster.online(T0 + 19) == {"t1": "hub-a", "t2": "hub-a", "t3": "hub-b"}
    assert await roster.online(T0 + 20) == {"t3": "hub-b"}
    assert await roster.online(T0 + 25) == {"t3": "hub-b"}


async def test_set_offline_by_the_holder_removes_the_lease(roster: Roster) -> None:
    await roster.set_online("hub-a", ["t1", "t2"], T0 + LEASE_S)
    await roster.set_offline("hub-a", "t1")
    assert await roster.online(T0) == {"t2": "hub-a"}
    await roster.set_offline("hub-a", "t1")  # again: nothing left to remove
    await roster.set_offline("hub-a", "never-seen")
    assert await roster.online(T0) == {"t2": "hub-a"}


async def test_set_offline_by_a_hub_not_holding_the_lease_is_a_no_op(roster: Roster) -> None:
    await roster.set_online("hub-a", ["t1"], T0 + LEASE_S)
    await roster.set_offline("hub-b", "t1")
    assert await roster.online(T0) == {"t1": "hub-a"}


async def test_a_reconnect_to_another_hub_moves_the_lease(roster: Roster) -> None:
    await roster.set_online("hub-a", ["t1"], T0 + LEASE_S)
    # The technician's network flips; it reconnects to hub B at T0 + 3.
    await roster.set_online("hub-b", ["t1"], T0 + 3 + LEASE_S)
    assert await roster.online(T0 + 3) == {"t1": "hub-b"}
    # Hub A has not noticed yet and renews what it thinks it holds: B keeps the lease.
    await roster.set_online("hub-a", ["t1"], T0 + 5 + LEASE_S, now=T0 + 5)
    assert await roster.online(T0 + 5) == {"t1": "hub-b"}
    # Then A notices its old socket closed: the technician stays online, on B.
    await roster.set_offline("hub-a", "t1")
    assert await roster.online(T0 + 6) == {"t1": "hub-b"}
    assert await roster.online(T0 + 3 + LEASE_S) == {}


async def test_a_renewal_takes_an_absent_or_expired_lease(roster: Roster) -> None:
    await roster.set_online("hub-b", ["t1"], T0 + LEASE_S)
    # B died; the technician also has a socket on A, whose renewal after B's lease ran out
    # takes it, and which takes a lease nobody holds.
    await roster.set_online("hub-a", ["t1", "t2"], T0 + 20 + LEASE_S, now=T0 + 20)
    assert await roster.online(T0 + 20) == {"t1": "hub-a", "t2": "hub-a"}
    # B's renewal leaves A's live lease alone, but takes it at exactly its end (expired is
    # until_t <= now).
    await roster.set_online("hub-b", ["t1"], T0 + 30, now=T0 + 21)
    assert await roster.online(T0 + 21) == {"t1": "hub-a", "t2": "hub-a"}
    await roster.set_online("hub-b", ["t1"], T0 + 35 + LEASE_S, now=T0 + 20 + LEASE_S)
    assert await roster.online(T0 + 36) == {"t1": "hub-b"}


async def test_a_connect_takes_the_lease_whoever_holds_it(roster: Roster) -> None:
    await roster.set_online("hub-a", ["t1"], T0 + 100)
    await roster.set_online("hub-b", ["t1"], T0 + LEASE_S)  # shorter, but the newest connect
    assert await roster.online(T0) == {"t1": "hub-b"}
    assert await roster.online(T0 + LEASE_S) == {}


async def test_set_offline_after_a_lease_moved_back_removes_it(roster: Roster) -> None:
    await roster.set_online("hub-a", ["t1"], T0 + LEASE_S)
    await roster.set_online("hub-b", ["t1"], T0 + 1 + LEASE_S)
    await roster.set_online("hub-a", ["t1"], T0 + 2 + LEASE_S)
    await roster.set_offline("hub-b", "t1")
    assert await roster.online(T0 + 2) == {"t1": "hub-a"}
    await roster.set_offline("hub-a", "t1")
    assert await roster.online(T0 + 2) == {}


# ---------------------------------------------------------------------------------- positions


async def test_positions_keep_the_newest_by_time_then_seq(roster: Roster) -> None:
    newest = entry("t1", 5, T0 + 10, lat=52.51, acc=4.0, speed=3.5, heading=180.0)
    await roster.record_positions([newest])
    await roster.record_positions(
        [
            entry("t1", 9, T0 + 9, lat=52.0),  # older by t, though a higher seq
            entry("t1", 4, T0 + 10, lat=52.1),  # same t, lower seq
            entry("t1", 5, T0 + 10, lat=52.2),  # the same fix again
        ]
    )
    assert await roster.positions(["t1"]) == {"t1": newest}
    same_t_higher_seq = entry("t1", 6, T0 + 10, lat=52.3)
    await roster.record_positions([same_t_higher_seq])
    assert await roster.positions(["t1"]) == {"t1": same_t_higher_seq}
    later = entry("t1", 2, T0 + 11, lat=52.4)  # a lower seq but later: t decides
    await roster.record_positions([later])
    assert await roster.positions(["t1"]) == {"t1": later}


async def test_out_of_order_entries_of_one_batch_keep_the_newest(roster: Roster) -> None:
    a = [entry("t1", seq, T0 + seq, lat=52.0 + seq / 100) for seq in (3, 7, 1, 5)]
    b = [entry("t2", seq, T0 + seq, lat=51.0 + seq / 100) for seq in (2, 1)]
    await roster.record_positions([a[0], b[0], a[1], b[1], a[2], a[3]])
    assert await roster.positions(["t1", "t2"]) == {"t1": a[1], "t2": b[0]}


async def test_positions_omit_unknown_ids_and_keep_every_field(roster: Roster) -> None:
    full = RosterEntry(
        technician_id="t1",
        seq=2**53 - 1,
        t=T0 + 0.123456789,
        lat=52.123456789012,
        lon=-13.987654321098,
        received_t=T0 + 1.000001,
        acc=3.25,
        speed=0.0,
        heading=359.9,
    )
    bare = entry("t2", 0, T0)
    await roster.record_positions([full, bare])
    assert await roster.positions(["nobody", "t1", "t2", "t1"]) == {"t1": full, "t2": bare}
    assert await roster.positions(iter(["t2"])) == {"t2": bare}
    assert await roster.positions([]) == {}
    assert await roster.positions(["nobody"]) == {}
    assert bare.acc is None and bare.speed is None and bare.heading is None


async def test_an_invalid_entry_writes_nothing_of_its_batch(roster: Roster) -> None:
    good = entry("t1", 1, T0)
    for bad in (
        entry("t2", 1, T0, lat=90.5),
        entry("t2", 1, T0, lon=-180.5),
        entry("t2", 1, T0, lat=math.nan),
        entry("t2", 1, math.inf),
        entry("t2", -1, T0),
        entry("t2", 2**53, T0),
    ):
        with pytest.raises(ValueError):
            await roster.record_positions([good, bad])
    assert await roster.positions(["t1", "t2"]) == {}
    assert await roster.near(*CENTRE, 100_000, 10) == []


async def test_unusual_ids_work_everywhere(roster: Roster) -> None:
    ids = ["a:b", "{x}", "{", "}:{", "tech:1:fixes", "*", "ü 名前", "", "a" * 300]
    ids += ['q"uote', "back\\slash/", "tab\tnl\n", "1", "2", "null"]
    for i, tid in enumerate(ids):
        await roster.record_positions([at(tid, 90.0, 100.0 * (i + 1))])
    await roster.set_online("hub:{1}", ids, T0 + LEASE_S)
    assert await roster.online(T0) == dict.fromkeys(ids, "hub:{1}")
    positions = await roster.positions(ids)
    assert sorted(positions) == sorted(ids)
    assert all(positions[tid].technician_id == tid for tid in ids)
    assert [tid for tid, _ in await roster.near(*CENTRE, 10_000, 100)] == ids
    await roster.set_offline("hub:{1}", "{x}")
    await roster.set_offline("hub", "a:b")  # not the holder
    assert sorted(await roster.online(T0)) == sorted(tid for tid in ids if tid != "{x}")


async def test_a_large_batch_keeps_the_newest_of_each(roster: Roster) -> None:
    # Larger than one Redis script's share (RECORD_BATCH): the newest still wins across them.
    ids = [f"t{i}" for i in range(1_200)]
    old = [entry(tid, 1, T0, lat=52.0) for tid in ids]
    new = [entry(tid, 2, T0 + 1, lat=52.1) for tid in ids]
    await roster.record_positions(new[:600] + old + new[600:])
    assert await roster.positions(ids) == {e.technician_id: e for e in new}
    await roster.set_online("hub-a", ids, T0 + LEASE_S)
    assert await roster.online(T0) == dict.fromkeys(ids, "hub-a")


# ---------------------------------------------------------------------------------- near


def assert_close(found: list[tuple[str, float]], expected: list[tuple[str, float]]) -> None:
    assert [tid for tid, _ in found] == [tid for tid, _ in expected]
    for (tid, got), (_, want) in zip(found, expected, strict=True):
        assert got == pytest.approx(want, rel=0.01), tid


async def test_near_is_nearest_first_with_distances_in_metres(roster: Roster) -> None:
    placed = [
        at("far", 200.0, 4_000.0),
        at("near", 10.0, 250.0),
        at("mid", 300.0, 1_200.0),
        at("mid2", 100.0, 2_500.0),
    ]
    await roster.record_positions(placed)
    found = await roster.near(*CENTRE, 10_000.0, 10)
    expected = sorted(
        ((e.technician_id, distance_m(*CENTRE, e.lat, e.lon)) for e in placed),
        key=lambda pair: pair[1],
    )
    assert_close(found, expected)
    assert [tid for tid, _ in found] == ["near", "mid", "mid2", "far"]
    assert found[0][1] == pytest.approx(250.0, rel=0.01)
    assert found[-1][1] == pytest.approx(4_000.0, rel=0.01)


async def test_near_respects_radius_and_limit(roster: Roster) -> None:
    await roster.record_positions(
        [
            at("in-900", 45.0, 900.0),
            at("in-300", 135.0, 300.0),
            at("out-1100", 225.0, 1_100.0),
            at("out-50km", 0.0, 50_000.0),
        ]
    )
    assert [tid for tid, _ in await roster.near(*CENTRE, 1_000.0, 10)] == ["in-300", "in-900"]
    assert [tid for tid, _ in await roster.near(*CENTRE, 1_000.0, 1)] == ["in-300"]
    assert [tid for tid, _ in await roster.near(*CENTRE, 200.0, 10)] == []
    assert await roster.near(*CENTRE, 100_000.0, 0) == []
    assert [tid for tid, _ in await roster.near(*CENTRE, 100_000.0, 3)] == [
        "in-300",
        "in-900",
        "out-1100",
    ]
    # From somewhere else: the nearest is another one.
    lat, lon = destination_point(*CENTRE, 0.0, 49_000.0)
    found = await roster.near(lat, lon, 2_000.0, 10)
    assert [tid for tid, _ in found] == ["out-50km"]
    assert found[0][1] == pytest.approx(1_000.0, rel=0.01)


async def test_near_follows_the_newest_position_only(roster: Roster) -> None:
    await roster.record_positions([at("t1", 0.0, 500.0, seq=2)])
    # An older fix far away, arriving late, must not move the technician.
    lat, lon = destination_point(*CENTRE, 0.0, 30_000.0)
    await roster.record_positions([entry("t1", 1, T0 - 60, lat=lat, lon=lon)])
    found = await roster.near(*CENTRE, 1_000.0, 10)
    assert [tid for tid, _ in found] == ["t1"]
    assert found[0][1] == pytest.approx(500.0, rel=0.01)
    # A newer one does.
    await roster.record_positions([entry("t1", 3, T0 + 60, lat=lat, lon=lon)])
    assert await roster.near(*CENTRE, 1_000.0, 10) == []
    assert [tid for tid, _ in await roster.near(lat, lon, 10.0, 10)] == ["t1"]


async def test_near_the_poles(roster: Roster) -> None:
    # Beyond the GEO latitude range a position is kept but not searchable, and moving there
    # takes the technician out of the search.
    await roster.record_positions([entry("t1", 1, T0, lat=85.0, lon=10.0)])
    assert [tid for tid, _ in await roster.near(85.0, 10.0, 10.0, 5)] == ["t1"]
    polar = entry("t1", 2, T0 + 1, lat=89.9, lon=10.0)
    await roster.record_positions([polar])
    assert await roster.positions(["t1"]) == {"t1": polar}
    assert await roster.near(85.0, 10.0, 1_000_000.0, 5) == []
    with pytest.raises(ValueError):
        await roster.near(89.9, 10.0, 1_000.0, 5)
    with pytest.raises(ValueError):
        await roster.near(math.nan, 10.0, 1_000.0, 5)


# ------------------------------------------------------------------- several hubs (Redis only)


async def test_two_hubs_on_one_redis_see_one_roster(
    redis_rosters: tuple[RedisRoster, RedisRoster],
) -> None:
    # Only Redis is shared between processes; a MemoryRoster is one hub's by design.
    a, b = redis_rosters
    await a.set_online("hub-a", ["t1"], T0 + LEASE_S)
    await b.set_online("hub-b", ["t2"], T0 + LEASE_S)
    await a.record_positions([at("t1", 0.0, 400.0)])
    await b.record_positions([at("t2", 90.0, 800.0)])
    for roster in (a, b):
        assert await roster.online(T0) == {"t1": "hub-a", "t2": "hub-b"}
        assert [tid for tid, _ in await roster.near(*CENTRE, 1_000.0, 5)] == ["t1", "t2"]
    await b.set_offline("hub-b", "t1")  # B does not hold t1
    assert await a.online(T0) == {"t1": "hub-a", "t2": "hub-b"}


async def test_redis_keys_are_under_the_prefix_tag_and_cleaned_up() -> None:
    # Redis only: the key layout. delete_all (SCAN "{p}:*") must find every roster key.
    prefix = random_prefix()
    roster = RedisRoster(REDIS_URL, prefix)
    await roster.open()
    try:
        await roster.set_online("hub-a", ["t1"], T0 + LEASE_S)
        await roster.record_positions([at("t1", 0.0, 400.0)])
        keys = RosterKeys(prefix)
        assert keys.all == [
            f"{{{prefix}}}:roster:online",
            f"{{{prefix}}}:roster:hub",
            f"{{{prefix}}}:roster:last",
            f"{{{prefix}}}:roster:geo",
        ]
        stored = sorted([k.decode() async for k in roster.redis.scan_iter(match=f"*{prefix}*")])
        assert stored == sorted(keys.all)
    finally:
        await roster.close()
        deleted = await delete_all(REDIS_URL, prefix)
    assert deleted == 4


async def test_redis_renewals_delete_long_expired_leases(
    redis_rosters: tuple[RedisRoster, RedisRoster],
) -> None:
    # Redis only: garbage is invisible through the contract (expired leases never show), but
    # it must not pile up in Redis's memory for technicians who never come back.
    a, _ = redis_rosters
    await a.set_online("hub-a", ["gone-1", "gone-2"], T0 + LEASE_S)
    await a.set_online("hub-a", ["recent"], T0 + GC_AFTER_S)
    later = T0 + LEASE_S + GC_AFTER_S + 1
    await a.set_online("hub-b", ["t9"], later + LEASE_S, now=later)
    assert await a.redis.zrange(a.keys.online, 0, -1) == [b"recent", b"t9"]
    assert sorted(await a.redis.hkeys(a.keys.hub)) == [b"recent", b"t9"]
    assert await a.online(later) == {"t9": "hub-b"}


# ------------------------------------------------------------------ privacy


async def test_positions_older_than_the_cutoff_are_forgotten_with_their_geo_entry(
    roster: Roster,
) -> None:
    old = at("tech-old", 0, 100)
    new = entry("tech-new", 1, T0 + 100, lat=CENTRE[0], lon=CENTRE[1])
    await roster.record_positions([old, new])
    await roster.set_online("hub-a", ["tech-old"], T0 + LEASE_S)

    assert await roster.forget_positions_before(T0 + 50) == 1
    assert await roster.positions(["tech-old", "tech-new"]) == {"tech-new": new}
    assert [t for t, _ in await roster.near(*CENTRE, 1000, 10)] == ["tech-new"]
    assert await roster.online(T0) == {"tech-old": "hub-a"}  # leases are not positions
    assert await roster.forget_positions_before(T0 + 50) == 0


async def test_forget_drops_one_technicians_position(roster: Roster) -> None:
    await roster.record_positions([at("tech-1", 0, 10), at("tech-2", 90, 10)])
    assert await roster.forget("tech-1") is True
    assert await roster.forget("tech-1") is False
    assert list(await roster.positions(["tech-1", "tech-2"])) == ["tech-2"]
    assert [t for t, _ in await roster.near(*CENTRE, 1000, 10)] == ["tech-2"]
