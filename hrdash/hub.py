"""Pure core: what the bridge does with readings once they are accepted. No I/O, no asyncio.

A :class:`PatientHub` holds one patient's ring (:class:`hrdash.buffer.RingBuffer`, which gives
each reading its ``seq``) and answers viewers from it:

* the snapshot a new viewer gets (the last ``window`` readings);
* ``since``/``resend`` answers: the readings after a seq when the viewer names this run, at
  most :data:`hrdash.buffer.SINCE_LIMIT` (the newest), an answer cut short being counted;
* the "flushed only" rule: a reading is *pending* from the moment it is accepted until the edge
  takes it with :meth:`PatientHub.flush` to send it out; no answer holds a pending reading, so no
  viewer gets one twice, and ``last_seq`` in every frame is the last seq sent out;
* the frames themselves, as dicts (readings, status), with the ``overlap`` repeat;
* readings kept from a previous run (the history's newest), put in before any viewer connects
  with new seqs (:meth:`PatientHub.preload`): a restarted bridge's first snapshot holds them.

* the patient's entries in the station digest (below) and in ``GET /api/patients``.

:class:`Hub` maps patient ids to their :class:`PatientHub`; every patient of one bridge run
shares its run id. The clock is passed in (Unix seconds) wherever time matters.

The station digest (:meth:`Hub.station_frame`) is the whole station in one frame, complete on
its own (Dash may hand a page only the last of several)::

    {"type": "station", "run": RUN, "now": <Unix ms>, "stale_after": S, "snapshot": true,
     "audio_paused_until": <Unix ms> | null,
     "patients": [{"id", "name", "upstream", "detail", "state", "age", "last", "recent",
                   "alarms": [ALARM, ...]}, ...]}

in the order patients were added. ``upstream`` is what the ingest says of the service
(:class:`UpstreamState`); ``state`` (:func:`patient_state`) adds the readings' freshness to it;
``age`` is the seconds since the bridge accepted the patient's last reading, on the bridge's
clock (never the service's timestamps); ``last`` is that reading; ``recent`` holds the last
:data:`STATION_REPEAT` readings, or, in a snapshot (``"snapshot": true``), the tiles'
sparklines: the readings of the last :data:`SPARK_SECONDS`, thinned to one per
:data:`SPARK_STEP` of their own times but for the last ``STATION_REPEAT``, which are all there
(:meth:`PatientHub.spark_thinned`), oldest first: 340 KB at 64 patients, where every reading
made 660 KB at 2 Hz and 1.6 MB at 5 Hz (over a client's default 1 MiB message). A viewer gets
snapshots until it acknowledges one (``{"type": "snapshot_ok", "run": RUN}``, a bounded number
of times; the edge, :mod:`hrdash.edge`, keeps that count): a snapshot is complete on its own,
and repeated, so Dash's coalescing cannot lose the sparklines. ``alarms`` is each patient's
whole alarm state, from a provider the caller passes (the alarm engines,
:mod:`hrdash.station_alarms`; none: empty), and ``audio_paused_until`` the end of the station's
audio pause, as the caller says.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from hrdash.buffer import SINCE_LIMIT, RingBuffer, Stored
from hrdash.readings import Reading


class Numbered(Protocol):
    """A reading numbered elsewhere (:class:`hrdash.broker.entries.StreamReading` is one)."""

    @property
    def seq(self) -> int: ...

    @property
    def time(self) -> int: ...

    @property
    def bpm(self) -> int | float: ...


__all__ = [
    "OVERLAP",
    "SPARK_SECONDS",
    "SPARK_STEP",
    "STATION_REPEAT",
    "Hub",
    "PatientHub",
    "UpstreamState",
    "patient_state",
]

OVERLAP = 3  # readings repeated in each live frame for viewers that ask with ?overlap=1
STATION_REPEAT = 4  # readings of each patient in every station frame (the last ones)
SPARK_SECONDS = 120  # seconds of readings per patient in a station snapshot (the sparkline)
SPARK_LIMIT = 600  # readings per patient the sparkline is taken from at most (5 Hz for 120 s)
SPARK_STEP = 1.0  # seconds: a snapshot's sparkline keeps one reading per step of the readings'
# own times (and the last STATION_REPEAT in full): a tile's sparkline needs no more, and the
# snapshot stays bounded whatever the rate. At most half of stale_after, so the thinned line
# never shows a gap the page would break it at.
UPSTREAM_STATES = ("connecting", "live", "down")
STATES = ("live", "stale", "connecting", "down")


@dataclass(frozen=True)
class UpstreamState:
    """What the ingest says of a patient's service: ``state`` is one of UPSTREAM_STATES,
    ``detail`` the cause of the last failure (empty when none), ``live_since`` the clock (Unix
    seconds) when it last went live, ``None`` while it is not live."""

    state: str = "connecting"
    detail: str = ""
    live_since: float | None = None


def patient_state(
    upstream: UpstreamState, last_reading_at: float | None, now: float, stale_after: float
) -> str:
    """A patient's state at ``now`` (all on the bridge's clock, Unix seconds): ``down`` or
    ``connecting`` as its upstream is; with the upstream live, ``connecting`` until the first
    reading of this connection if that is less than ``stale_after`` away, ``stale`` when the
    last reading (or, without one since the connection went live, the connection) is older
    than ``stale_after``, else ``live``."""
    if upstream.state == "down":
        return "down"
    if upstream.state != "live":
        return "connecting"
    live_for = 0.0 if upstream.live_since is None else max(0.0, now - upstream.live_since)
    if last_reading_at is None or (
        upstream.live_since is not None and last_reading_at < upstream.live_since
    ):
        return "connecting" if live_for <= stale_after else "stale"
    return "stale" if now - last_reading_at > stale_after else "live"


_CONNECTING = UpstreamState()
AlarmsOf = Callable[[str], list[dict[str, Any]]] | None  # patient id → its ALARMs


class PatientHub:
    """One patient's ring, seq, snapshot, since/resend answers and frames."""

    def __init__(
        self, capacity: int, window: int, run_id: str, patient_id: str, name: str = ""
    ) -> None:
        self.id = patient_id
        self.name = name or patient_id
        self.buffer = RingBuffer(capacity)
        self.window = window
        self.run_id = run_id
        self.counters: dict[str, int] = {
            "accepted": 0,
            "resends": 0,
            "since_truncated": 0,  # since/resend answers cut to SINCE_LIMIT readings
            "duplicates": 0,  # numbered readings skipped: not above the last seq stored
        }
        self.last_reading_at: float | None = None  # clock of the last accepted reading
        self.flushed_seq = 0  # the last seq sent out
        self._pending: list[Stored] = []

    # -- in --------------------------------------------------------------------------------

    def preload(self, readings: Iterable[tuple[int, int | float]]) -> int:
        """Put readings kept from before this run (``(time_ms, bpm)``, oldest first) into an
        empty ring, with this run's seqs, before any viewer connects: they are in the next
        snapshot at once. They are not pending (no live frame sends them), not counted as
        accepted, and leave ``last_reading_at`` alone (old readings do not make the patient
        live). Returns how many were put in (the newest ``capacity`` at most). Raises
        ValueError when the ring already holds readings."""
        if self.buffer.last_seq or self._pending:
            raise ValueError(f"patient {self.id!r}: preload into a ring that holds readings")
        append = self.buffer.append
        for time_ms, bpm in readings:
            append(time_ms, bpm)
        self.flushed_seq = self.buffer.last_seq
        return len(self.buffer)

    def begin(self, run: str, next_seq: int) -> None:
        """Continue a sequence begun elsewhere (an ingest taking the patient over: the
        stream's run and the seq after its last reading): the ring and the pending readings
        are emptied, ``run_id`` becomes ``run`` and the next reading accepted gets
        ``next_seq``. The counters are kept."""
        self.buffer.restart(next_seq)
        self._pending = []
        self.run_id = run
        self.flushed_seq = next_seq - 1

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

    def accept_numbered(self, run: str, readings: Iterable[Numbered], now: float) -> list[Stored]:
        """Store readings numbered elsewhere (an edge of the Redis fan-out: the ingest's run and
        seqs, in stream order), pending until :meth:`flush` as with :meth:`accept`; returns
        those stored. Another ``run`` than this ring's starts the ring over under that run,
        empty, nothing sent before its first reading (the old run's readings, pending ones
        included, are gone: their seqs do not compare). A seq not above the last one stored is
        skipped and counted (``duplicates``); gaps are kept as they are."""
        items = list(readings)
        if not items:
            return []
        if run != self.run_id:
            self.run_id = run
            self.buffer = RingBuffer(self.buffer.capacity)
            self._pending = []
            self.flushed_seq = items[0].seq - 1
        buffer, pending, start = self.buffer, self._pending, len(self._pending)
        for r in items:
            if r.seq <= buffer.last_seq:
                self.counters["duplicates"] += 1
            else:
                pending.append(buffer.append_numbered(r.seq, r.time, r.bpm))
        count = len(pending) - start
        if not count:
            return []
        self.counters["accepted"] += count
        self.last_reading_at = now
        return pending[start:]

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
        """What a new viewer gets without a usable ``since``: the last ``window`` readings sent
        out (the pending ones follow in the next live frame), so a whole window whenever the
        ring holds one."""
        pending = len(self._pending)
        items = self.flushed_only(self.buffer.last(self.window + pending))
        return items[len(items) - self.window :] if len(items) > self.window else items

    def since(self, seq: int) -> list[Stored]:
        """The readings after ``seq``, at most ``SINCE_LIMIT`` (the newest of those already
        sent out); an answer cut short is counted in ``since_truncated``."""
        pending = len(self._pending)  # go out with the next live frame
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
            "patient": self.id,
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
        return {
            "run": self.run_id,
            "patient": self.id,
            "readings": [item.as_dict() for item in self.buffer],
        }

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
        **extra: Any,
    ) -> dict[str, Any]:
        """The status frame: the edge's fields around this ring's seqs and reading age (and
        ``extra``: an edge of the Redis fan-out says whether it is the ``relay`` that is down)."""
        return {
            "type": "status",
            "run": self.run_id,
            "patient": self.id,
            "upstream": upstream,
            "since": since,
            "detail": detail,
            "source": source,
            "first_seq": self.buffer.first_seq,
            "last_seq": self.flushed_seq,  # what viewers have been sent, never ahead of it
            "last_reading_age": self.age(now),
            "now": int(now * 1000),
            "viewers": viewers,
            "counters": counters,
            "mapping": mapping,
            "last_rejection": last_rejection,
            **extra,
        }

    # -- the station --------------------------------------------------------------------------

    def age(self, now: float) -> float | None:
        """Seconds since the last reading was accepted (bridge clock), ``None`` before one."""
        if self.last_reading_at is None:
            return None
        return round(max(0.0, now - self.last_reading_at), 3)

    def spark(self) -> list[Stored]:
        """The readings of the last ``SPARK_SECONDS`` up to the newest (by the readings' own
        times, relative to the newest), at most ``SPARK_LIMIT``, oldest first."""
        items = self.buffer.last(SPARK_LIMIT)
        if not items:
            return items
        cut = items[-1].time - SPARK_SECONDS * 1000
        start = len(items)
        while start > 0 and items[start - 1].time >= cut:
            start -= 1
        return items[start:]

    def spark_thinned(self, step: float = SPARK_STEP) -> list[Stored]:
        """:meth:`spark` thinned for a snapshot: of the readings before the last
        ``STATION_REPEAT``, the first of each ``step`` seconds of their own times (steps counted
        from the Unix epoch, so that repeated snapshots pick the same readings), at most
        ``SPARK_SECONDS / step + 1`` of them (the newest); then the last ``STATION_REPEAT``
        readings in full, the newest included, so that live frames join on. Oldest first, seq
        increasing, each reading as stored."""
        items = self.spark()
        split = max(0, len(items) - STATION_REPEAT)
        head, tail = items[:split], items[split:]
        step_ms = max(1, round(step * 1000))
        picked: list[Stored] = []
        bucket = None
        for item in head:
            this = item.time // step_ms
            if this != bucket:
                picked.append(item)
                bucket = this
        most = int(SPARK_SECONDS * 1000 // step_ms) + 1
        return picked[-most:] + tail

    def state(self, upstream: UpstreamState, now: float, stale_after: float) -> str:
        """This patient's state at ``now`` (:func:`patient_state`)."""
        return patient_state(upstream, self.last_reading_at, now, stale_after)

    def station_entry(
        self,
        upstream: UpstreamState,
        now: float,
        stale_after: float,
        *,
        snapshot: bool = False,
        alarms: list[dict[str, Any]] | None = None,
    ) -> dict[str, Any]:
        """This patient in a station frame (see the module's docstring)."""
        if snapshot:
            recent = self.spark_thinned(min(SPARK_STEP, stale_after / 2))
        else:
            recent = self.buffer.last(STATION_REPEAT)
        return {
            "id": self.id,
            "name": self.name,
            "upstream": upstream.state,
            "detail": upstream.detail,
            "state": self.state(upstream, now, stale_after),
            "age": self.age(now),
            "last": recent[-1].as_dict() if recent else None,
            "recent": [item.as_dict() for item in recent],
            "alarms": alarms or [],
        }

    def listing(
        self,
        upstream: UpstreamState,
        now: float,
        stale_after: float,
        alarms: list[dict[str, Any]] | None = None,
    ) -> dict[str, Any]:
        """This patient in ``GET /api/patients``."""
        last = self.buffer.last(1)
        return {
            "id": self.id,
            "name": self.name,
            "upstream": upstream.state,
            "state": self.state(upstream, now, stale_after),
            "age": self.age(now),
            "last": last[0].as_dict() if last else None,
            "alarms": alarms or [],
        }


class Hub:
    """Patient id → :class:`PatientHub`, all of one run (one run id), in the order added."""

    def __init__(self, capacity: int, window: int, run_id: str) -> None:
        self.capacity, self.window, self.run_id = capacity, window, run_id
        self.patients: dict[str, PatientHub] = {}

    def add(self, patient_id: str, name: str = "") -> PatientHub:
        if patient_id in self.patients:
            raise ValueError(f"patient {patient_id!r} is already in the hub")
        patient = PatientHub(self.capacity, self.window, self.run_id, patient_id, name)
        self.patients[patient_id] = patient
        return patient

    def get(self, patient_id: str) -> PatientHub | None:
        return self.patients.get(patient_id)

    @property
    def first(self) -> PatientHub:
        """The first patient added (``/ws`` without ``patient`` serves it)."""
        return next(iter(self.patients.values()))

    def station_frame(
        self,
        upstreams: Mapping[str, UpstreamState],
        now: float,
        stale_after: float,
        *,
        snapshot: bool = False,
        alarms: AlarmsOf = None,
        audio_paused_until: int | None = None,
    ) -> dict[str, Any]:
        """The station digest at ``now`` (Unix s): every patient with its upstream from
        ``upstreams`` (one missing there counts as connecting) and its alarms from ``alarms``
        (patient id → ALARMs); ``snapshot`` puts each patient's sparkline in ``recent``."""
        frame: dict[str, Any] = {
            "type": "station",
            "run": self.run_id,
            "now": int(now * 1000),
            "stale_after": stale_after,
        }
        if snapshot:
            frame["snapshot"] = True
        frame["audio_paused_until"] = audio_paused_until
        frame["patients"] = [
            patient.station_entry(
                upstreams.get(pid, _CONNECTING),
                now,
                stale_after,
                snapshot=snapshot,
                alarms=alarms(pid) if alarms is not None else None,
            )
            for pid, patient in self.patients.items()
        ]
        return frame

    def listing(
        self,
        upstreams: Mapping[str, UpstreamState],
        now: float,
        stale_after: float,
        alarms: AlarmsOf = None,
    ) -> list[dict[str, Any]]:
        """``GET /api/patients``: every patient, in order, with its alarms from ``alarms``."""
        return [
            patient.listing(
                upstreams.get(pid, _CONNECTING),
                now,
                stale_after,
                alarms(pid) if alarms is not None else None,
            )
            for pid, patient in self.patients.items()
        ]

    def __getitem__(self, patient_id: str) -> PatientHub:
        return self.patients[patient_id]

    def __iter__(self) -> Iterator[str]:
        return iter(self.patients)

    def __len__(self) -> int:
        return len(self.patients)
