"""hrdash.buffer: the bounded ring of readings and their sequence numbers."""

from __future__ import annotations

import pytest

from hrdash.buffer import SINCE_LIMIT, RingBuffer, Stored


def filled(capacity: int, count: int) -> RingBuffer:
    """A ring of ``capacity`` that was given ``count`` readings (bpm = 60 + i, time = 1000 * i)."""
    ring = RingBuffer(capacity)
    for i in range(1, count + 1):
        ring.append(1000 * i, 60 + i)
    return ring


def test_seq_starts_at_1_and_increments_by_1() -> None:
    """The first reading gets seq 1 and each next one exactly one more."""
    ring = RingBuffer(10)
    stored = [ring.append(1000 + i, 70 + i) for i in range(25)]
    assert [s.seq for s in stored] == list(range(1, 26))
    assert stored[0] == Stored(1, 1000, 70)
    assert stored[0].as_dict() == {"seq": 1, "time": 1000, "bpm": 70}


def test_capacity_bounds_the_ring() -> None:
    """The ring holds the newest ``capacity`` readings, oldest first, and nothing else."""
    ring = filled(5, 12)
    assert len(ring) == 5
    assert [s.seq for s in ring] == [8, 9, 10, 11, 12]
    assert [s.bpm for s in ring] == [68, 69, 70, 71, 72]
    assert (ring.first_seq, ring.last_seq) == (8, 12)


def test_capacity_must_be_positive() -> None:
    """A ring that could hold nothing is refused."""
    with pytest.raises(ValueError):
        RingBuffer(0)


@pytest.mark.parametrize(
    ("count", "n", "expected"),
    [
        (12, 3, [10, 11, 12]),
        (12, 5, [8, 9, 10, 11, 12]),
        (12, 6, [8, 9, 10, 11, 12]),  # more than the ring holds
        (2, 5, [1, 2]),  # more than was ever stored
        (12, 0, []),
        (12, -1, []),
        (0, 3, []),
    ],
)
def test_last(count: int, n: int, expected: list[int]) -> None:
    """last(n) gives the newest n readings held, oldest first."""
    assert [s.seq for s in filled(5, count).last(n)] == expected


@pytest.mark.parametrize(
    ("seq", "limit", "expected"),
    [
        (10, None, [11, 12]),
        (11, None, [12]),
        (12, None, []),  # nothing newer
        (50, None, []),  # a seq from the future
        (7, None, [8, 9, 10, 11, 12]),  # exactly the oldest held is next
        (3, None, [8, 9, 10, 11, 12]),  # 4..7 left the ring: they are simply absent
        (0, None, [8, 9, 10, 11, 12]),
        (-5, None, [8, 9, 10, 11, 12]),
        (3, 2, [11, 12]),  # the limit keeps the newest
        (9, 2, [11, 12]),
        (10, 5, [11, 12]),
        (10, 0, []),
    ],
)
def test_since(seq: int, limit: int | None, expected: list[int]) -> None:
    """since(seq) gives the readings after seq that are still held, the newest ``limit``."""
    ring = filled(5, 12)
    items = ring.since(seq) if limit is None else ring.since(seq, limit)
    assert [s.seq for s in items] == expected
    assert all(s.bpm == 60 + s.seq and s.time == 1000 * s.seq for s in items)
    assert ring.held_after(seq) == len(ring.since(seq))  # under the default limit: all of them


def test_since_is_bounded_by_default() -> None:
    """Without a limit, since() still gives at most SINCE_LIMIT readings, the newest, and
    held_after() says how many there were to give."""
    ring = filled(3 * SINCE_LIMIT, 3 * SINCE_LIMIT)
    items = ring.since(0)
    assert len(items) == SINCE_LIMIT
    assert [s.seq for s in items] == list(range(2 * SINCE_LIMIT + 1, 3 * SINCE_LIMIT + 1))
    assert ring.held_after(0) == 3 * SINCE_LIMIT
    assert len(ring.since(2 * SINCE_LIMIT - 1)) == SINCE_LIMIT
    assert ring.held_after(2 * SINCE_LIMIT - 1) == SINCE_LIMIT + 1
    assert len(ring.since(2 * SINCE_LIMIT)) == ring.held_after(2 * SINCE_LIMIT) == SINCE_LIMIT


def test_since_limit_holds_the_largest_window() -> None:
    """The bound is at least the largest HRDASH_WINDOW, so a whole window fits in one answer."""
    from hrdash.settings import SettingError, Settings

    top = SINCE_LIMIT
    assert Settings.load(env={"HRDASH_WINDOW": str(top), "HRDASH_BUFFER": str(top)}).window == top
    with pytest.raises(SettingError):
        Settings.load(env={"HRDASH_WINDOW": str(top + 1), "HRDASH_BUFFER": str(top + 1)})


def test_empty_ring() -> None:
    """An empty ring reports last_seq 0, first_seq 1, and gives nothing."""
    ring = RingBuffer(3)
    assert (ring.first_seq, ring.last_seq, len(ring)) == (1, 0, 0)
    assert ring.since(0) == []
    assert ring.last(3) == []
    assert list(ring) == []


def test_first_seq_follows_the_ring() -> None:
    """first_seq is the oldest seq held; last_seq the newest handed out."""
    ring = RingBuffer(3)
    seen = []
    for _ in range(5):
        ring.append(0, 80)
        seen.append((ring.first_seq, ring.last_seq))
    assert seen == [(1, 1), (1, 2), (1, 3), (2, 4), (3, 5)]


def numbered(capacity: int, seqs: list[int]) -> RingBuffer:
    """A ring given readings with these seqs (bpm = 60 + seq % 100, time = 1000 * seq)."""
    ring = RingBuffer(capacity)
    for seq in seqs:
        ring.append_numbered(seq, 1000 * seq, 60 + seq % 100)
    return ring


GAPPED = [3, 4, 7, 8, 9, 15, 16, 20]  # as an edge stores a stream that lost some


@pytest.mark.parametrize(
    ("seq", "limit", "expected"),
    [
        (0, None, GAPPED),
        (2, None, GAPPED),
        (3, None, [4, 7, 8, 9, 15, 16, 20]),
        (4, None, [7, 8, 9, 15, 16, 20]),
        (5, None, [7, 8, 9, 15, 16, 20]),  # a seq in a gap: what follows it
        (6, None, [7, 8, 9, 15, 16, 20]),
        (9, None, [15, 16, 20]),
        (12, None, [15, 16, 20]),
        (16, None, [20]),
        (19, None, [20]),
        (20, None, []),
        (99, None, []),
        (-3, None, GAPPED),
        (5, 2, [16, 20]),  # the limit keeps the newest
        (5, 0, []),
    ],
)
def test_since_with_gaps(seq: int, limit: int | None, expected: list[int]) -> None:
    """With numbered readings and gaps, since(seq) still gives exactly the readings held after
    seq, the newest ``limit``, and held_after counts them."""
    ring = numbered(10, GAPPED)
    items = ring.since(seq) if limit is None else ring.since(seq, limit)
    assert [s.seq for s in items] == expected
    assert all(s.time == 1000 * s.seq and s.bpm == 60 + s.seq for s in items)
    after = [s for s in GAPPED if s > seq]
    assert ring.held_after(seq) == len(after)


def test_append_numbered_keeps_its_seqs_and_the_ring_bound() -> None:
    """append_numbered stores the given seq; first_seq and last_seq follow the readings held
    (gaps and all), the ring keeps the newest ``capacity``, and append goes on after it."""
    ring = numbered(4, GAPPED)
    assert [s.seq for s in ring] == [9, 15, 16, 20]
    assert (ring.first_seq, ring.last_seq, len(ring)) == (9, 20, 4)
    assert ring.since(10) == [Stored(15, 15000, 75), Stored(16, 16000, 76), Stored(20, 20000, 80)]
    assert ring.append(1, 70).seq == 21
    empty = RingBuffer(3)
    assert empty.append_numbered(500, 1, 70) == Stored(500, 1, 70)
    assert (empty.first_seq, empty.last_seq) == (500, 500)


@pytest.mark.parametrize("seq", [20, 19, 1, 0])
def test_append_numbered_refuses_a_seq_not_above_the_last(seq: int) -> None:
    """A seq not above last_seq is refused (ValueError) and changes nothing."""
    ring = numbered(10, GAPPED)
    with pytest.raises(ValueError, match="expected more than 20"):
        ring.append_numbered(seq, 0, 70)
    assert [s.seq for s in ring] == GAPPED


def test_since_with_gaps_matches_a_plain_filter() -> None:
    """For random gaps, ring sizes and limits, since/held_after equal a plain filter of the
    readings held."""
    import random

    rng = random.Random(7)
    for _ in range(300):
        capacity = rng.randint(1, 30)
        seqs, seq = [], 0
        for _ in range(rng.randint(0, 60)):
            seq += rng.choice([1, 1, 1, 2, 5])
            seqs.append(seq)
        ring = numbered(capacity, seqs)
        held = seqs[-capacity:]
        for ask in range(-1, seq + 2):
            limit = rng.randint(0, 40)
            after = [s for s in held if s > ask]
            assert [s.seq for s in ring.since(ask, limit)] == after[max(0, len(after) - limit) :]
            assert ring.held_after(ask) == len(after)


def test_restart_empties_and_continues_from_next_seq() -> None:
    """restart(n): the ring is empty, first_seq/last_seq say n / n - 1, the next reading gets n
    and every answer counts from there."""
    ring = filled(5, 12)
    ring.restart(501)
    assert len(ring) == 0
    assert (ring.first_seq, ring.last_seq) == (501, 500)
    assert ring.since(0) == []
    assert ring.append(1, 70) == Stored(501, 1, 70)
    assert ring.append(2, 71).seq == 502
    assert [s.seq for s in ring.since(501)] == [502]
    assert ring.held_after(500) == 2
    for bad in (0, -3, True, 1.5):
        with pytest.raises(ValueError):
            ring.restart(bad)  # type: ignore[arg-type]
