"""The load's plan and its pre-encoded frames: valid for the hub, the same for every target."""

from __future__ import annotations

from loadtest.load import frames
from loadtest.load.config import LoadConfig, dropouts, slices, sos_presses
from loadtest.load.driver import order
from realtime import protocol


def test_a_fix_is_encoded_once_and_stamped_with_its_send_time() -> None:
    prefixes = frames.fix_prefixes(7, 3, rate_hz=2.0)
    assert len(prefixes) == 3
    fix = protocol.decode_technician_frame(frames.stamp(prefixes[1], 1_700_000_000.25))
    assert isinstance(fix, protocol.Location)
    assert (fix.seq, fix.t) == (2, 1_700_000_000.25)
    seen = frames.SEEN.decode(frames.stamp(prefixes[0], 12.5))
    assert (seen.type, seen.seq, seen.t) == ("location", 1, 12.5)


def test_technicians_start_away_from_the_destination_and_drive_further() -> None:
    lat0, lon0 = frames.DESTINATION
    for n in range(50):
        first, last = (
            protocol.decode_technician_frame(frames.stamp(p, 0.0))
            for p in frames.fix_prefixes(n, 600, 1.0)[::599]
        )
        d_first = (first.lat - lat0) ** 2 + ((first.lon - lon0) * 0.61) ** 2
        d_last = (last.lat - lat0) ** 2 + ((last.lon - lon0) * 0.61) ** 2
        assert d_first > 0.025**2  # more than ~2.7 km
        assert d_last > d_first


def test_buffered_fixes_go_as_one_batch_the_hub_accepts() -> None:
    points = [frames.stamp(p, 100.0 + i) for i, p in enumerate(frames.fix_prefixes(1, 4, 1.0))]
    message = protocol.decode_technician_frame(frames.batch(points))
    assert isinstance(message, protocol.Batch)
    assert [p.seq for p in message.points] == [1, 2, 3, 4]


def test_an_sos_press_and_the_incident_operators_get_for_it() -> None:
    sos = protocol.decode_technician_frame(frames.sos("lt1h-sos-0", 5.0, 52.5, 13.4))
    assert isinstance(sos, protocol.Sos)
    assert sos.id == "lt1h-sos-0"
    incident = protocol.encode(
        protocol.IncidentMessage(incident={"kind": "sos", "client_id": "lt1h-sos-0"}, reason="new")
    )
    assert frames.incident_client_id(frames.SEEN.decode(incident)) == "lt1h-sos-0"
    other = protocol.encode(protocol.IncidentMessage(incident={"kind": "overdue_visit"}))
    assert frames.incident_client_id(frames.SEEN.decode(other)) is None


def test_slices_share_the_load_and_keep_customers_with_their_technician() -> None:
    config = LoadConfig(technicians=10, customers=13, operators=3, processes=3, dropout=0.2)
    parts = slices(config, "tag")
    assert sorted(n for p in parts for n in p.technicians) == list(range(10))
    assert sum(len(p.customers) for p in parts) == 13
    assert sorted(j for p in parts for j in p.operators) == [0, 1, 2]
    for part in parts:
        assert set(part.customers) <= set(part.technicians)
        assert set(part.dropouts) <= set(part.technicians)
        assert {s.technician for s in part.sos} <= set(part.technicians)
    assert sum(len(p.dropouts) for p in parts) == 2


def test_the_same_config_plans_the_same_dropouts_and_sos_presses() -> None:
    config = LoadConfig(technicians=40, seconds=30, sos_per_min=20, dropout=0.1)
    assert dropouts(config) == dropouts(config)
    drops = dropouts(config)
    presses = sos_presses(config, "x", set(drops))
    assert presses == sos_presses(config, "x", set(drops))
    assert len(presses) == 8  # 20 a minute for the first 80 % of 30 s
    assert not {p.technician for p in presses} & set(drops)
    assert len({p.client_id for p in presses}) == len(presses)
    for drop in drops.values():
        assert 0.2 * 30 <= drop.at_s <= 0.6 * 30
        assert drop.length_s <= 30 / 4


def test_no_sos_when_the_rate_is_zero() -> None:
    assert sos_presses(LoadConfig(sos_per_min=0), "x", set()) == []


def test_the_order_of_runs_for_each_comparison() -> None:
    assert order("hub", False, 1) == [("hub", 1)]
    assert order("hub", True, 2) == [("relay", 1), ("hub", 1), ("relay", 2), ("hub", 2)]
    assert order("hub-redis", True, 1) == [("relay", 1), ("hub-redis", 1)]
    assert order("hub", False, 1, compare_backends=True) == [("hub", 1), ("hub-redis", 1)]
    assert order("hub", True, 1, compare_backends=True) == [
        ("relay", 1),
        ("hub", 1),
        ("hub-redis", 1),
    ]
