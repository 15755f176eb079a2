"""Pure core: a bounded ring of readings, each given a sequence number.

``seq`` starts at 1 for each bridge run and increases by exactly one per accepted reading, so a
viewer can tell a hole from the numbers alone. The ring keeps the newest ``capacity`` readings.

Every answer to a viewer's ``since`` (on connect, or a ``resend`` request) holds at most
``SINCE_LIMIT`` readings, the newest: however large the ring (``HRDASH_BUFFER``), one request
costs at most that much to encode and send.
"""

from __future__ import annotations

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

    def held_after(self, seq: int) -> int:
        """How many readings with a seq greater than ``seq`` the ring holds."""
        if not self._items:
            return 0
        return max(0, len(self._items) - max(0, seq + 1 - self._items[0].seq))

    def since(self, seq: int, limit: int = SINCE_LIMIT) -> list[Stored]:
        """Readings with a seq greater than ``seq``, oldest first, at most ``limit`` (the newest
        ones win when the limit cuts; compare with :meth:`held_after` to tell). Readings that
        have left the ring are simply absent."""
        if not self._items:
            return []
        start = max(0, seq + 1 - self._items[0].seq, len(self._items) - max(0, limit))
        if start >= len(self._items):
            return []
        return list(islice(self._items, start, None))
