"""Fix validation and per-technician seq bookkeeping (pure)."""

import pytest

from realtime.ingest import FixLimits, SeqTracker, check_fix
from realtime.protocol import Batch, ErrorCode, Location, ProtocolError

NOW = 1_800_000_000.0
LIMITS = FixLimits(max_future_skew_s=120, max_fix_age_s=12 * 3600, max_batch_points=5)


def fix(seq=1, **fields):
    values = {"t": NOW - 1, "lat": 52.5, "lon": 13.4}
    values.update(fields)
    return Location(seq=seq, **values)


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        ({"lat": 91.0}, ErrorCode.OUT_OF_RANGE),
        ({"lat": -90.5}, ErrorCode.OUT_OF_RANGE),
        ({"lon": -181.0}, ErrorCode.OUT_OF_RANGE),
        ({"lon": float("nan")}, ErrorCode.OUT_OF_RANGE),
        ({"lat": float("inf")}, ErrorCode.OUT_OF_RANGE),
        ({"t": float("nan")}, ErrorCode.OUT_OF_RANGE),
        ({"acc": -1.0}, ErrorCode.OUT_OF_RANGE),
        ({"speed": 500.0}, ErrorCode.OUT_OF_RANGE),
        ({"heading": 361.0}, ErrorCode.OUT_OF_RANGE),
        ({"t": NOW + 3600}, ErrorCode.TIMESTAMP_IN_FUTURE),
        ({"t": NOW - 2 * 86400}, ErrorCode.TIMESTAMP_TOO_OLD),
    ],
)
def test_bad_fix_is_refused_with_a_stable_code(fields, code):
    with pytest.raises(ProtocolError) as caught:
        check_fix(fix(**fields), NOW, LIMITS)
    assert caught.value.code is code and caught.value.seq == 1


def test_small_clock_skew_and_offline_age_are_fine():
    check_fix(fix(t=NOW + 60), NOW, LIMITS)
    check_fix(fix(t=NOW - 3 * 3600, acc=35.0, speed=14.0, heading=360.0), NOW, LIMITS)


def test_negative_seq_is_out_of_range():
    with pytest.raises(ProtocolError) as caught:
        check_fix(fix(seq=-1), NOW, LIMITS)
    assert caught.value.code is ErrorCode.OUT_OF_RANGE


def test_seq_going_backwards_or_repeating_is_stale():
    tracker = SeqTracker()
    assert tracker.accept(fix(5), NOW, LIMITS) == [fix(5)]
    for seq in (5, 3):
        with pytest.raises(ProtocolError) as caught:
            tracker.accept(fix(seq), NOW, LIMITS)
        assert caught.value.code is ErrorCode.STALE_SEQ
    assert tracker.highest == 5


def test_gaps_in_seq_are_allowed():
    tracker = SeqTracker(highest=10)
    assert tracker.accept(fix(20), NOW, LIMITS) == [fix(20)]


def test_batch_overlapping_stored_points_keeps_only_new_ones():
    tracker = SeqTracker(highest=3)
    fresh = tracker.accept(Batch(points=[fix(s) for s in range(1, 6)]), NOW, LIMITS)
    assert [p.seq for p in fresh] == [4, 5] and tracker.highest == 5
    assert tracker.accept(Batch(points=[fix(4), fix(5)]), NOW, LIMITS) == []


def test_batch_over_the_limit_is_refused_whole():
    tracker = SeqTracker()
    with pytest.raises(ProtocolError) as caught:
        tracker.accept(Batch(points=[fix(s) for s in range(1, 7)]), NOW, LIMITS)
    assert caught.value.code is ErrorCode.BATCH_TOO_LARGE and tracker.highest == -1


def test_batch_with_one_bad_point_is_refused_whole_and_names_it():
    tracker = SeqTracker()
    points = [fix(1), fix(2, lat=95.0), fix(3)]
    with pytest.raises(ProtocolError) as caught:
        tracker.accept(Batch(points=points), NOW, LIMITS)
    assert caught.value.code is ErrorCode.OUT_OF_RANGE
    assert "points[1]" in caught.value.message and tracker.highest == -1


def test_batch_must_increase():
    tracker = SeqTracker()
    with pytest.raises(ProtocolError) as caught:
        tracker.accept(Batch(points=[fix(2), fix(2)]), NOW, LIMITS)
    assert caught.value.code is ErrorCode.SEQ_NOT_INCREASING
