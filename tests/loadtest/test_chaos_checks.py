"""The chaos soak's checks (loadtest/chaos/checks.py), fed with records that keep or break
each rule: a duplicate fix, a missing one, a lost SOS, a lost check-in, a rising RSS."""

from __future__ import annotations

from collections import Counter

from loadtest.chaos.checks import (
    DWELL_IN_S,
    MIB,
    check_checkins,
    check_fixes,
    check_rss,
    check_sos,
    longest_parked_on_one_hub,
    slope_per_min,
)
from loadtest.chaos.records import Ack, ConsoleRecord, RssSample, SosRecord, TechRecord


def tech(acked: int = 9, acks: list[Ack] | None = None, parked_from: float = 0.0) -> TechRecord:
    record = TechRecord("t1", "b1", parked_from_t=parked_from)
    record.stamps = {seq: 1000.0 + 10 * seq for seq in range(acked + 1)}
    record.acks = acks if acks is not None else [Ack(1, -1, True), Ack(1, acked, False)]
    record.acked_seq = acked
    return record


# ---------------------------------------------------------------------- fixes


def test_every_acked_fix_stored_once_passes() -> None:
    result = check_fixes([tech(acked=9)], {"t1": list(range(10))})
    assert result.passed
    assert result.figures["acked"] == 10 and result.figures["stored"] == 10


def test_a_fix_stored_twice_fails() -> None:
    result = check_fixes([tech(acked=9)], {"t1": [*range(10), 4]})
    assert not result.passed
    assert result.figures["duplicates"] == 1
    assert "stored twice [4]" in result.problems[0]


def test_an_acked_fix_missing_from_the_history_fails() -> None:
    result = check_fixes([tech(acked=9)], {"t1": [s for s in range(10) if s != 7]})
    assert not result.passed
    assert result.figures["missing"] == 1


def test_a_fix_stored_but_not_yet_acked_is_no_failure() -> None:
    assert check_fixes([tech(acked=9)], {"t1": list(range(11))}).passed


# ---------------------------------------------------------------------- SOS


def incident(sub: str, client_id: str, incident_id: str) -> dict[str, object]:
    return {
        "id": incident_id,
        "client_id": client_id,
        "reporter": {"sub": sub, "role": "technician"},
    }


def console(
    raised: dict[str, int] | None = None, snapshot: set[str] | None = None
) -> ConsoleRecord:
    return ConsoleRecord("op", Counter(raised or {}), snapshot or set())


def press(incident_id: str | None = "i1") -> SosRecord:
    return SosRecord("c1", "t1", 5.0, incident=incident_id, via="socket", ack_after_s=0.1)


def test_an_sos_acked_stored_once_and_seen_passes() -> None:
    result = check_sos([press()], [incident("t1", "c1", "i1")], [console({"i1": 1}), console()])
    assert result.passed
    assert result.figures["reached_every_console"] == 0  # the second console never saw it


def test_an_sos_seen_only_in_a_snapshot_after_a_reconnect_reached_the_console() -> None:
    result = check_sos([press()], [incident("t1", "c1", "i1")], [console(snapshot={"i1"})])
    assert result.passed and result.figures["reached_every_console"] == 1


def test_an_sos_never_acked_is_lost() -> None:
    result = check_sos([press(None)], [], [console()])
    assert not result.passed
    assert result.figures["acked"] == 0


def test_an_sos_stored_but_never_acked_to_the_phone_fails() -> None:
    # The person who pressed it was never told help is coming: that is a failure too.
    result = check_sos([press(None)], [incident("t1", "c1", "i1")], [console({"i1": 1})])
    assert not result.passed
    assert result.figures["not_exactly_one_incident"] == 0


def test_one_press_stored_as_two_incidents_fails() -> None:
    stored = [incident("t1", "c1", "i1"), incident("t1", "c1", "i2")]
    result = check_sos([press()], stored, [console({"i1": 1})])
    assert not result.passed
    assert result.figures["not_exactly_one_incident"] == 1


def test_an_acked_sos_missing_from_the_incidents_fails() -> None:
    result = check_sos([press()], [], [console({"i1": 1})])
    assert not result.passed


def test_an_incident_no_console_saw_fails() -> None:
    result = check_sos([press()], [incident("t1", "c1", "i1")], [console({"other": 1})])
    assert not result.passed
    assert result.figures["reached_no_console"] == 1


def test_a_console_told_twice_is_a_figure_not_a_failure() -> None:
    result = check_sos([press()], [incident("t1", "c1", "i1")], [console({"i1": 2})])
    assert result.passed
    assert result.figures["duplicates_at_consoles"] == 1


def test_no_press_at_all_judges_nothing_and_fails() -> None:
    assert not check_sos([], [], [console()]).passed


# ---------------------------------------------------------------------- check-ins


def booking(*events: str) -> dict[str, object]:
    return {"status": "arrived", "events": [{"event": e} for e in events]}


def parked_tech(connections: list[tuple[int, int]], hubs: list[str] | None = None) -> TechRecord:
    """Parked from the start; each (resume, last) is one connection's acked stretch, each on
    the hub process named in ``hubs`` (by default alternating between two)."""
    acks = []
    for number, (resume, last) in enumerate(connections, start=1):
        acks += [Ack(number, resume, True), Ack(number, last, False)]
    record = tech(acked=connections[-1][1], acks=acks, parked_from=1000.0)
    hubs = hubs or [("hub-a#1", "hub-b#1")[i % 2] for i in range(len(connections))]
    record.hubs = dict(enumerate(hubs, start=1))
    return record


def test_the_parked_span_counts_one_hub_process_at_a_time() -> None:
    # Stamps 10 s apart: seqs 0..20 on one hub are 200 s, then 21..25 on the other 40 s.
    assert longest_parked_on_one_hub(parked_tech([(-1, 20), (20, 25)])) == 200.0
    assert longest_parked_on_one_hub(parked_tech([(-1, 5), (5, 10), (10, 15)])) == 50.0


def test_reconnecting_to_the_same_hub_process_continues_its_stretch() -> None:
    same = parked_tech([(-1, 5), (5, 10), (10, 15)], ["hub-a#1"] * 3)
    assert longest_parked_on_one_hub(same) == 150.0
    # The same hub after a restart is another process: its memory started empty.
    restarted = parked_tech([(-1, 5), (5, 10), (10, 15)], ["hub-a#1", "hub-a#2", "hub-a#2"])
    assert longest_parked_on_one_hub(restarted) == 90.0  # seqs 6..15 on hub-a#2


def test_a_technician_parked_long_on_one_hub_and_checked_in_passes() -> None:
    result = check_checkins([parked_tech([(-1, 20)])], {"b1": booking("en_route", "check_in")})
    assert result.passed
    assert result.figures["arrived"] == 1 and result.figures["checked_in"] == 1


def test_a_technician_parked_long_on_one_hub_without_a_check_in_is_a_lost_check_in() -> None:
    result = check_checkins([parked_tech([(-1, 20)])], {"b1": booking("en_route")})
    assert not result.passed
    assert result.figures["lost"] == 1


def test_two_check_ins_for_one_visit_fail() -> None:
    bookings = {"b1": booking("check_in", "check_in")}
    assert not check_checkins([parked_tech([(-1, 20)])], bookings).passed


def test_a_technician_moved_between_hubs_faster_than_the_dwell_is_not_judged() -> None:
    hopping = parked_tech([(-1, 5), (5, 10), (10, 15), (15, 20)])
    assert longest_parked_on_one_hub(hopping) < DWELL_IN_S
    settled = parked_tech([(-1, 20)])
    settled.technician_id, settled.booking_id = "t2", "b2"
    result = check_checkins(
        [hopping, settled], {"b1": booking("en_route"), "b2": booking("check_in")}
    )
    assert result.passed
    assert result.figures["not_judged"] == 1 and result.figures["not_judged_checked_in"] == 0


# ---------------------------------------------------------------------- RSS


def samples(
    series: str, mib_per_min: float, seconds: int = 300, base: float = 100.0, connections: int = 100
) -> list[RssSample]:
    return [
        RssSample(series, float(t), float(t), int((base + mib_per_min * t / 60) * MIB), connections)
        for t in range(seconds)
    ]


def test_the_fitted_slope_is_per_minute() -> None:
    assert abs(slope_per_min([(0.0, 0.0), (60.0, 2.0), (120.0, 4.0)]) - 2.0) < 1e-9


def check(rss: list[RssSample], faults: list[float] | None = None):
    return check_rss(
        rss,
        fault_times=faults or [],
        warmup_s=60,
        settle_s=10,
        min_judged_s=60,
        bound_mib_per_min=1.0,
    )


def test_flat_rss_after_warm_up_passes() -> None:
    warming = [RssSample("hub-a#1", float(t), float(t), int((50 + t) * MIB)) for t in range(60)]
    flat = [RssSample("hub-a#1", float(t), float(t), 110 * MIB) for t in range(60, 300)]
    result = check(warming + flat)
    assert result.passed
    assert result.figures["slope_mib_per_min"] == {"hub-a#1": 0.0}


def test_rss_rising_after_warm_up_fails() -> None:
    result = check(samples("hub-a#1", 5.0))
    assert not result.passed
    assert result.figures["slope_mib_per_min"]["hub-a#1"] == 5.0


def test_each_life_of_a_hub_is_its_own_series() -> None:
    # Two flat lives: as one series the restart's step down would read as a falling slope
    # and hide growth; apart each is judged on its own. A short life is listed, not judged.
    rss = samples("hub-a#1", 0.0) + samples("hub-a#2", 0.0, base=80) + samples("hub-b#1", 3.0)
    rss += samples("hub-b#2", 0.0, seconds=70)
    result = check(rss)
    assert not result.passed
    assert set(result.figures["slope_mib_per_min"]) == {"hub-a#1", "hub-a#2", "hub-b#1"}
    assert result.figures["too_short_to_judge"] == ["hub-b#2"]
    assert result.problems == ["hub-b#1: RSS grows 3.0 MiB/min after warm-up"]


def test_a_step_at_a_fault_is_load_moving_not_growth() -> None:
    # The other hub died at 150 s and its clients came here: RSS steps up 20 MiB, flat before
    # and after. Fitted across the step it would read as ~6 MiB/min.
    rss = [
        RssSample("hub-a#1", float(t), float(t), (100 + 20 * (t >= 152)) * MIB, 100)
        for t in range(300)
    ]
    assert check(rss, faults=[150.0]).passed
    assert not check(rss).passed  # the same series, not cut at the fault


def test_the_catch_up_right_after_a_fault_is_left_out() -> None:
    # Redis came back at 150 s: the fixes queued meanwhile are written over 8 s (RSS ramps
    # up 30 MiB), then flat. Within the settle time after a fault that is load, not growth.
    def mib(t: int) -> float:
        return 100 + 30 * min(max(t - 150, 0), 8) / 8

    rss = [RssSample("hub-a#1", float(t), float(t), int(mib(t) * MIB), 100) for t in range(300)]
    assert check(rss, faults=[150.0]).passed
    no_settle = check_rss(
        rss, fault_times=[150.0], warmup_s=60, settle_s=0, min_judged_s=60, bound_mib_per_min=1
    )
    assert not no_settle.passed


def test_growth_that_more_connections_explain_is_no_leak_but_growth_beside_it_is() -> None:
    # Clients dropped elsewhere come back one by one: 100 -> 340 connections at 60 KiB each.
    def series(leak_mib_per_min: float) -> list[RssSample]:
        out = []
        for t in range(300):
            connections = 100 + (t // 5) * 4
            mib = 100 + connections * 60 / 1024 + leak_mib_per_min * t / 60
            out.append(RssSample("hub-a#1", float(t), float(t), int(mib * MIB), connections))
        return out

    clean = check(series(0.0))
    assert clean.passed
    assert abs(clean.figures["kib_per_connection"]["hub-a#1"] - 60) < 1
    leaking = check(series(3.0))
    assert not leaking.passed
    assert abs(leaking.figures["slope_mib_per_min"]["hub-a#1"] - 3.0) < 0.05


def test_connections_that_closed_still_count_at_their_high_water_mark() -> None:
    # Clients leave after 150 s; the memory their sockets took stays: flat RSS, no leak.
    rss = [
        RssSample("hub-a#1", float(t), float(t), int((100 + (t // 3) * 0.5) * MIB), t // 3 * 8)
        for t in range(150)
    ]
    rss += [
        RssSample("hub-a#1", float(t), float(t), rss[-1].rss, max(0, 400 - (t - 150) * 4))
        for t in range(150, 300)
    ]
    assert check(rss).passed


def test_no_series_long_enough_fails() -> None:
    assert not check(samples("hub-a#1", 0.0, seconds=70)).passed
