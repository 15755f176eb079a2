"""Pure core: what the bridge does with readings once they are accepted. No I/O, no asyncio.

A :class:`PatientHub` holds one patient's ring (:class:`hrdash.buffer.RingBuffer`, which gives
each reading its ``seq``) and answers viewers from it:

* the snapshot a new viewer gets (the last ``window`` readings);
* ``since``/``resend`` answers: the readings after a seq when the viewer names this run, at
  most :data:`hrdash.buffer.SINCE_LIMIT` (the newest), an answer cut short being counted;
* the "flushed only" rule: a reading is *pending* from the moment it is accepted until the edge
  takes it with :meth:`PatientHub.flush` to send it out; no answer holds a pending reading, so no
  viewer gets one twice, and ``last_seq`` in every frame is the last seq sent out;
* the frames themselves, as dicts (readings, status), with the ``overlap`` repeat.

:class:`Hub` maps patient ids to their :class:`PatientHub`; every patient of one bridge run
shares its run id. The clock is passed in (Unix seconds) wherever time matters.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from hrdash.buffer import SINCE_LIMIT, RingBuffer, Stored
from hrdash.readings import Reading

__all__ = ["OVERLAP", "Hub", "PatientHub"]

OVERLAP = 3  # readings repeated in each live frame for viewers that ask with ?overlap=1


class PatientHub:
    """One patient's ring, seq, snapshot, since/resend answers and frames."""

    def __init__(self, capacity: int, window: int, run_id: str) -> None:
        self.buffer = RingBuffer(capacity)
        self.window = window
        self.run_id = run_id
        self.counters: dict[str, int] = {
            "accepted": 0,
            "resends": 0,
            "since_truncated": 0,  # since/resend answers cut to SINCE_LIMIT readings
        }
        self.last_reading_at: float | None = None  # clock of the last accepted reading
        self.flushed_seq = 0  # the last seq sent out
        self._pending: list[Stored] = []

    # -- in --------------------------------------------------------------------------------

    def accept(self, readings: Iterable[Reading], now: float) -> list[Stored]:
        """Store readings (pending until :meth:`flush`); returns them with their seq."""
        append, pending, start = self.buffer.append, self._pending, len(self._pending)
        for r in readings:  # the ingest path: a plain loop, no intermediate list
            pending.append(append(r.time, r.bpm))
        count = len(pending) - start
        if count:
            self.counters["accepted"] += count
            self.last_reading_at = now
            return pending[start:]
        return []

    @property
    def pending(self) -> int:
        """Readings accepted and not yet taken by :meth:`flush`."""
        return len(self._pending)

    def flush(self) -> list[Stored]:
        """Take the pending readings to send them out; from now on answers may hold them."""
        items, self._pending = self._pending, []
        if items:
            self.flushed_seq = items[-1].seq
        return items

    # -- answers ---------------------------------------------------------------------------

    def flushed_only(self, items: list[Stored]) -> list[Stored]:
        """Drop pending readings: they go out with the next live frame, not twice."""
        return [item for item in items if item.seq <= self.flushed_seq]

    def snapshot(self) -> list[Stored]:
        """What a new viewer gets without a usable ``since``: the last ``window`` readings."""
        return self.flushed_only(self.buffer.last(self.window))

    def since(self, seq: int) -> list[Stored]:
        """The readings after ``seq``, at most ``SINCE_LIMIT`` (the newest of those already
        sent out); an answer cut short is counted in ``since_truncated``."""
        pending = self.buffer.last_seq - self.flushed_seq  # go out with the next live frame
        items = self.flushed_only(self.buffer.since(seq, SINCE_LIMIT + pending))
        if self.buffer.held_after(seq) - pending > len(items):
            self.counters["since_truncated"] += 1
        return items

    def answer(self, since: int | None, run: object) -> list[Stored]:
        """``since`` when ``run`` names this run, else the snapshot."""
        if since is not None and run == self.run_id:
            return self.since(since)
        return self.snapshot()

    # -- frames ----------------------------------------------------------------------------

    def readings_frame(self, items: Iterable[Stored], **extra: Any) -> dict[str, Any]:
        return {
            "type": "readings",
            "run": self.run_id,
            "readings": [item.as_dict() for item in items],
            "first_seq": self.buffer.first_seq,
            "last_seq": self.flushed_seq,
            **extra,
        }

    def first_frame(self, since: int | None, run: object) -> dict[str, Any]:
        """The frame a viewer gets on connect (``?since=SEQ&run=RUN`` or the snapshot)."""
        return self.readings_frame(self.answer(since, run), snapshot=True)

    def resend_frame(self, since: int, run: object) -> dict[str, Any]:
        """The answer to ``{"type": "resend", "since": N, "run": RUN}``; counted."""
        items = self.answer(since, run)
        self.counters["resends"] += 1
        return self.readings_frame(items, resend=True)

    def overlap_frame(self, items: list[Stored]) -> dict[str, Any]:
        """A live frame of ``items`` with the ``OVERLAP`` readings before them repeated."""
        return self.readings_frame(self.buffer.last(len(items) + OVERLAP))

    def all_readings(self) -> dict[str, Any]:
        """Everything the ring holds (``GET /readings``)."""
        return {"run": self.run_id, "readings": [item.as_dict() for item in self.buffer]}

    def status_frame(
        self,
        now: float,
        *,
        upstream: str,
        since: int,
        detail: str,
        source: str,
        viewers: int,
        counters: dict[str, Any],
        mapping: dict[str, Any],
        last_rejection: dict[str, Any] | None,
    ) -> dict[str, Any]:
        """The status frame: the edge's fields around this ring's seqs and reading age."""
        age = None
        if self.last_reading_at is not None:
            age = round(max(0.0, now - self.last_reading_at), 3)
        return {
            "type": "status",
            "run": self.run_id,
            "upstream": upstream,
            "since": since,
            "detail": detail,
            "source": source,
            "first_seq": self.buffer.first_seq,
            "last_seq": self.flushed_seq,  # what viewers have been sent, never ahead of it
            "last_reading_age": age,
            "now": int(now * 1000),
            "viewers": viewers,
            "counters": counters,
            "mapping": mapping,
            "last_rejection": last_rejection,
        }


class Hub:
    """Patient id → :class:`PatientHub`, all of one run (one run id)."""

    def __init__(self, capacity: int, window: int, run_id: str) -> None:
        self.capacity, self.window, self.run_id = capacity, window, run_id
        self.patients: dict[str, PatientHub] = {}

    def add(self, patient_id: str) -> PatientHub:
        if patient_id in self.patients:
            raise ValueError(f"patient {patient_id!r} is already in the hub")
        patient = PatientHub(self.capacity, self.window, self.run_id)
        self.patients[patient_id] = patient
        return patient

    def __getitem__(self, patient_id: str) -> PatientHub:
        return self.patients[patient_id]

    def __iter__(self) -> Iterator[str]:
        return iter(self.patients)

    def __len__(self) -> int:
        return len(self.patients)
