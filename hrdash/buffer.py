"""Pure core: a bounded ring of readings, each given a sequence number.

``seq`` starts at 1 for each bridge run and increases by exactly one per accepted reading, so a
viewer can tell a hole from the numbers alone. The ring keeps the newest ``capacity`` readings.
An edge of the Redis fan-out stores readings numbered by the ingest
(:meth:`RingBuffer.append_numbered`): increasing, with a gap where the stream lost some; every
answer below stays right with gaps.

Every answer to a viewer's ``since`` (on connect, or a ``resend`` request) holds at most
``SINCE_LIMIT`` readings, the newest: however large the ring (``HRDASH_BUFFER``), one request
costs at most that much to encode and send.
"""

from __future__ import annotations

from bisect import bisect_right
from collections import deque
from collections.abc import Iterator
from itertools import islice
from typing import NamedTuple

# Readings in one since/resend answer at most (~45 KB of JSON): the newest win. At least the
# largest HRDASH_WINDOW (1000), so that a page's whole window always fits in one answer; at 2 Hz
# it is 8 min 20 s of readings, enough to resume a connection lost for minutes.
SINCE_LIMIT = 1000


class Stored(NamedTuple):
    seq: int
    time: int  # Unix ms
    bpm: int | float

    def as_dict(self) -> dict[str, int | float]:
        return {"seq": self.seq, "time": self.time, "bpm": self.bpm}


class RingBuffer:
    """The newest ``capacity`` readings, oldest first."""

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.capacity = capacity
        self._items: deque[Stored] = deque(maxlen=capacity)
        self._next_seq = 1

    def append(self, time: int, bpm: int | float) -> Stored:
        """Store one reading and return it with its sequence number."""
        item = Stored(self._next_seq, time, bpm)
        self._next_seq += 1
        self._items.append(item)
        return item

    def append_numbered(self, seq: int, time: int, bpm: int | float) -> Stored:
        """Store one reading that has its ``seq`` already (the ingest's, read from a stream):
        above :attr:`last_seq`, gaps allowed; the next :meth:`append` follows it. Raises
        ValueError for a seq not above ``last_seq``."""
        if seq < self._next_seq:
            raise ValueError(f"seq {seq}: expected more than {self._next_seq - 1}")
        item = Stored(seq, time, bpm)
        self._next_seq = seq + 1
        self._items.append(item)
        return item

    def restart(self, next_seq: int) -> None:
        """Empty the ring; the next reading appended gets ``next_seq`` (at least 1): a ring
        that continues a sequence begun elsewhere (another ingest's, read from the stream)."""
        if isinstance(next_seq, bool) or not isinstance(next_seq, int) or next_seq < 1:
            raise ValueError(f"next_seq {next_seq!r}: expected a whole number from 1")
        self._items.clear()
        self._next_seq = next_seq

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[Stored]:
        return iter(self._items)

    @property
    def first_seq(self) -> int:
        """The oldest seq still held (``last_seq + 1`` when empty)."""
        return self._items[0].seq if self._items else self._next_seq

    @property
    def last_seq(self) -> int:
        """The newest seq handed out (0 before the first reading)."""
        return self._next_seq - 1

    def last(self, n: int) -> list[Stored]:
        """The newest ``n`` readings, oldest first."""
        if n <= 0:
            return []
        start = max(0, len(self._items) - n)
        return list(islice(self._items, start, None))

    def _index_after(self, seq: int) -> int:
        """The index of the first reading held with a seq greater than ``seq``."""
        items = self._items
        if not items:
            return 0
        guess = max(0, seq + 1 - items[0].seq)  # the index when no seq is missing
        if items[-1].seq - items[0].seq == len(items) - 1:  # none missing
            return min(guess, len(items))
        # With gaps a seq sits at or before its gapless index: search up to there.
        return bisect_right(items, seq, 0, min(guess, len(items)), key=_seq)

    def held_after(self, seq: int) -> int:
        """How many readings with a seq greater than ``seq`` the ring holds."""
        return len(self._items) - self._index_after(seq)

    def since(self, seq: int, limit: int = SINCE_LIMIT) -> list[Stored]:
        """Readings with a seq greater than ``seq``, oldest first, at most ``limit`` (the newest
        ones win when the limit cuts; compare with :meth:`held_after` to tell). Readings that
        have left the ring are simply absent."""
        if not self._items:
            return []
        start = max(self._index_after(seq), len(self._items) - max(0, limit))
        if start >= len(self._items):
            return []
        return list(islice(self._items, start, None))


def _seq(item: Stored) -> int:
    return item.seq
