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


# ------------------------------------------------------------------ the hole (honest acks)


def busy(tracker, message, room):
    with pytest.raises(ProtocolError) as caught:
        tracker.accept(message, NOW, LIMITS, room=room)
    return caught.value


def test_no_room_refuses_a_location_naming_it_and_later_seqs_wait_for_it():
    tracker = SeqTracker(highest=4)
    error = busy(tracker, fix(5), room=0)
    assert (error.code, error.seq, tracker.hole) == (ErrorCode.SERVER_BUSY, 5, 5)
    # Room again, but 6 would jump over 5: refused, naming 5; the highest stays.
    error = busy(tracker, fix(6), room=100)
    assert (error.code, error.seq, tracker.highest) == (ErrorCode.SERVER_BUSY, 5, 4)
    assert tracker.accept(Batch(points=[fix(3), fix(5), fix(6)]), NOW, LIMITS, room=100) == [
        fix(5),
        fix(6),
    ]
    assert (tracker.highest, tracker.hole) == (6, None)


def test_a_busy_batch_names_its_first_fresh_point():
    tracker = SeqTracker(highest=2)
    error = busy(tracker, Batch(points=[fix(s) for s in range(1, 6)]), room=2)
    assert (error.code, error.seq, tracker.hole) == (ErrorCode.SERVER_BUSY, 3, 3)


def test_a_batch_too_large_names_its_first_fresh_point_and_holds_it():
    tracker = SeqTracker(highest=1)
    error = busy(tracker, Batch(points=[fix(s) for s in range(1, 8)]), room=None)
    assert (error.code, error.seq, tracker.hole) == (ErrorCode.BATCH_TOO_LARGE, 2, 2)
    assert busy(tracker, fix(9), room=None).seq == 2


def test_a_bad_point_is_refused_for_good_but_the_others_in_its_batch_are_held():
    tracker = SeqTracker()
    error = busy(tracker, Batch(points=[fix(1), fix(2, lat=95.0), fix(3)]), room=None)
    assert (error.code, error.seq, tracker.hole) == (ErrorCode.OUT_OF_RANGE, 2, 1)
    assert busy(tracker, fix(4), room=None).code is ErrorCode.SERVER_BUSY
    # The client drops 2 and resends the rest.
    assert [p.seq for p in tracker.accept(Batch(points=[fix(1), fix(3)]), NOW, LIMITS)] == [1, 3]
    assert tracker.hole is None


def test_the_awaited_fix_refused_for_good_on_resend_releases_the_hole():
    tracker = SeqTracker(highest=4)
    busy(tracker, fix(5), room=0)
    error = busy(tracker, fix(5, t=NOW - 2 * 86400), room=100)  # too old by now
    assert (error.code, error.seq, tracker.hole) == (ErrorCode.TIMESTAMP_TOO_OLD, 5, None)
    assert tracker.accept(fix(6), NOW, LIMITS) == [fix(6)]


def test_a_hole_settles_when_the_highest_catches_up_from_elsewhere():
    tracker = SeqTracker(highest=4)
    busy(tracker, fix(5), room=0)
    tracker.highest = 9  # another hub stored up to 9 (read at connect)
    assert tracker.accept(fix(10), NOW, LIMITS) == [fix(10)] and tracker.hole is None


def test_forget_hole():
    tracker = SeqTracker(highest=4)
    busy(tracker, fix(5), room=0)
    tracker.forget_hole()
    assert tracker.accept(fix(7), NOW, LIMITS) == [fix(7)]


@pytest.mark.parametrize("seed", range(40))
def test_property_acks_never_pass_an_unstored_fix(seed):
    """An honest pipelining client (it sends several frames before it reads the answers,
    drops what is refused for good, resends from its oldest unacked fix after a retryable
    refusal) against random room and random bad fixes: after every frame, every seq at or
    below the highest is stored or was refused for good naming it; in the end all are."""
    import random

    rng = random.Random(seed)
    tracker = SeqTracker()
    buffer = [fix(s, lat=95.0) if rng.random() < 0.05 else fix(s) for s in range(200)]
    bad = {f.seq for f in buffer if f.lat > 90}
    sent: set[int] = set()
    stored: set[int] = set()
    for_good: set[int] = set()
    sent_upto = -1  # the newest seq sent since the last rewind
    for _round in range(2000):
        if not buffer:
            break
        answers = []
        for _ in range(rng.randint(1, 4)):  # pipelined frames
            size = rng.choice([1, 1, 2, 3, 6])  # 6: over the batch limit of 5
            points = [f for f in buffer if f.seq > sent_upto][:size]
            if not points:
                break
            sent_upto = points[-1].seq
            message = points[0] if len(points) == 1 and rng.random() < 0.5 else Batch(points)
            sent.update(p.seq for p in points)
            room = rng.choice([0, 1, 2, 100, 100, 100]) if _round < 1500 else None
            try:
                stored.update(f.seq for f in tracker.accept(message, NOW, LIMITS, room=room))
            except ProtocolError as error:
                answers.append(error)
                if error.code is ErrorCode.OUT_OF_RANGE:
                    for_good.add(error.seq)  # refused for good, naming it
            honest = {s for s in sent if s <= tracker.highest}
            assert honest <= stored | for_good, sorted(honest - stored - for_good)[:5]
        rewind = sent_upto >= buffer[-1].seq
        for error in answers:  # the client reads the answers
            if error.code in (ErrorCode.OUT_OF_RANGE, ErrorCode.STALE_SEQ):
                buffer = [f for f in buffer if f.seq != error.seq]
            rewind = True
        buffer = [f for f in buffer if f.seq > tracker.highest]  # the ack trims
        if rewind:
            sent_upto = -1
    assert stored == set(range(200)) - bad and for_good == bad
