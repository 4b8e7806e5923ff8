"""The offline buffer, the backoff and the seq stores: pure, synchronous specifications."""

from __future__ import annotations

import random

import pytest

from clients._buffer import OfflineBuffer
from clients._connection import Backoff
from clients.seqstore import FileSeqStore, MemorySeqStore
from realtime.protocol import Location


def fix(seq: int) -> Location:
    return Location(seq=seq, t=1_700_000_000.0 + seq, lat=52.5, lon=13.4)


def filled(count: int, limit: int = 100, max_batch: int = 500) -> OfflineBuffer:
    buffer = OfflineBuffer(limit, max_batch)
    for seq in range(count):
        buffer.append(fix(seq))
    return buffer


def test_a_full_buffer_drops_the_oldest_fix_and_counts_it():
    buffer = filled(5, limit=3)
    assert buffer.seqs() == [2, 3, 4]
    assert buffer.dropped == 2


def test_seqs_must_increase():
    buffer = filled(3)
    with pytest.raises(ValueError):
        buffer.append(fix(2))


def test_an_ack_trims_everything_up_to_its_seq_and_nothing_after():
    buffer = filled(10)
    assert buffer.ack(6) == 7
    assert buffer.seqs() == [7, 8, 9]
    assert buffer.acked == 6
    assert buffer.ack(3) == 0  # an older ack changes nothing
    assert buffer.acked == 6


def test_sending_does_not_remove_fixes_only_acks_do():
    buffer = filled(3)
    frame = buffer.next_frame()
    assert frame is not None and [p.seq for p in frame.points] == [0, 1, 2]
    assert len(buffer) == 3 and buffer.in_flight == 3 and buffer.unsent == 0
    assert buffer.next_frame() is None
    buffer.ack(1)
    assert buffer.seqs() == [2] and buffer.in_flight == 1


def test_batches_are_cut_at_the_batch_limit_oldest_first():
    buffer = filled(1200, limit=10_000)
    sizes = []
    while (frame := buffer.next_frame()) is not None:
        assert frame.batch
        sizes.append([p.seq for p in frame.points])
    assert [len(s) for s in sizes] == [500, 500, 200]
    assert [seq for chunk in sizes for seq in chunk] == list(range(1200))


def test_after_a_rewind_everything_unacked_is_resent_as_batches():
    buffer = filled(4)
    buffer.next_frame()
    buffer.ack(1)
    buffer.rewind()
    frame = buffer.next_frame()
    assert frame is not None and frame.batch and [p.seq for p in frame.points] == [2, 3]


def test_a_lone_new_fix_goes_as_a_location_once_the_resend_is_complete():
    buffer = filled(1)
    first = buffer.next_frame()
    # Right after a (re)connect even a single fix is a batch: the hub may already have it.
    assert first is not None and first.batch
    buffer.append(fix(1))
    second = buffer.next_frame()
    assert second is not None and not second.batch and second.points[0].seq == 1


def test_a_resend_that_is_cut_into_batches_stays_batches_until_it_is_complete():
    buffer = filled(3, max_batch=2)
    buffer.next_frame()
    buffer.append(fix(3))
    frame = buffer.next_frame()
    assert frame is not None and frame.batch and [p.seq for p in frame.points] == [2, 3]


def test_overflow_while_in_flight_keeps_the_cursor_on_the_right_fix():
    buffer = filled(3, limit=3)
    buffer.next_frame()  # 0, 1, 2 in flight
    buffer.append(fix(3))  # pushes 0 out
    assert buffer.in_flight == 2 and buffer.unsent == 1
    frame = buffer.next_frame()
    assert frame is not None and [p.seq for p in frame.points] == [3]


def test_a_rejected_fix_leaves_for_good_and_the_rest_is_resent():
    buffer = filled(4)
    buffer.next_frame()
    assert buffer.reject(2)
    assert buffer.seqs() == [0, 1, 3] and buffer.rejected == 1
    frame = buffer.next_frame()
    assert frame is not None and [p.seq for p in frame.points] == [0, 1, 3]
    assert not buffer.reject(42)


def test_renumbering_moves_every_fix_above_the_hubs_seq_keeping_the_order():
    buffer = filled(3)
    next_seq = buffer.renumber(100)
    assert next_seq == 103
    assert buffer.seqs() == [100, 101, 102]
    frame = buffer.next_frame()
    assert frame is not None and [p.t for p in frame.points] == [fix(s).t for s in range(3)]


def test_full_jitter_backoff_stays_under_a_growing_capped_ceiling():
    backoff = Backoff(base_s=0.5, cap_s=8.0, flood_delay_s=15.0, rng=random.Random(7))
    delays = [backoff.next_delay() for _ in range(12)]
    ceilings = [min(8.0, 0.5 * 2**n) for n in range(12)]
    assert all(0 <= d <= c for d, c in zip(delays, ceilings, strict=True))
    assert max(delays[6:]) > 1.0  # it does grow
    assert backoff.next_delay(flood=True) >= 15.0
    backoff.reset()
    assert backoff.next_delay() <= 0.5


def test_memory_seq_store_remembers_the_last_seq():
    store = MemorySeqStore()
    assert store.load() is None
    store.save(41)
    assert store.load() == 41


def test_file_seq_store_reserves_blocks_and_never_reuses_a_seq(tmp_path):
    path = tmp_path / "seq"
    store = FileSeqStore(path, reserve=100)
    assert store.load() is None
    for seq in range(150):
        store.save(seq)
    # Written twice (at 0 and at 100); a restart resumes above everything handed out.
    assert int(path.read_text()) == 200
    again = FileSeqStore(path, reserve=100)
    assert again.load() == 200


def test_frames_in_flight_are_counted_until_an_ack_covers_them():
    buffer = OfflineBuffer(100, max_batch=2)
    for seq in range(6):
        buffer.append(Location(seq=seq, t=1.0, lat=0.0, lon=0.0))
    frames = [buffer.next_frame() for _ in range(3)]
    assert [f.points[-1].seq for f in frames] == [1, 3, 5]
    assert buffer.frames_in_flight == 3
    buffer.ack(2)  # covers the first frame, half of the second
    assert buffer.frames_in_flight == 2
    buffer.ack(3)
    assert buffer.frames_in_flight == 1
    buffer.rewind()  # a refused frame gets no ack: the count starts again
    assert buffer.frames_in_flight == 0


def test_holds_says_whether_a_fix_is_still_buffered():
    buffer = OfflineBuffer(2)
    for seq in range(3):  # 0 is pushed out by the limit
        buffer.append(Location(seq=seq, t=1.0, lat=0.0, lon=0.0))
    assert not buffer.holds(0) and buffer.holds(1) and buffer.holds(2)
    buffer.ack(1)
    assert not buffer.holds(1)
