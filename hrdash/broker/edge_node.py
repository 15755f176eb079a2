"""An edge of the Redis fan-out (``hrdash edge``): viewers served from the streams.

With ``HRDASH_REDIS_URL`` the ingest (``hrdash ingest``) writes each patient's readings, status
and alarm frames once to Redis Streams (:mod:`hrdash.broker.entries`), and any number of edge
processes, on this machine (sharing ``BRIDGE_PORT`` with ``SO_REUSEPORT``) or others, read them
and serve ``/ws``, ``/api/patients``, ``/api/alarms``, ``/api/alarms/log``, ``/readings`` and
``/healthz`` exactly as the single process does: :class:`RedisEdge` is the bridge's
:class:`hrdash.edge.Edge`, fed by a :class:`hrdash.broker.reader.StreamReader` instead of the
patients' services:

* readings go into each patient's ring with the ingest's run and seqs
  (:meth:`hrdash.hub.PatientHub.accept_numbered`), so every edge sends the same seq for the same
  reading and a viewer resumes on any edge (``?since=&run=``) with no gap and no duplicate. The
  port opens only once the first reads delivered what the streams hold (at most
  ``BACKLOG_WAIT``; then it serves with a warning), so the rings hold the streams' readings;
  none of those counts as just received (a patient is live from its next reading);
* each patient's :class:`RemoteIngest` (the edge's :class:`hrdash.edge.Ingest`) is its newest
  status frame, but ``down`` with a one-line cause while the reader cannot reach Redis, or when
  no status frame came for ``INGEST_SILENT_AFTER`` (the ingest writes one every second): a
  reading shown as live is live;
* :class:`RemoteAlarms` mirrors each patient's newest alarm frame; a viewer's state change is
  checked against the mirror as the bridge checks it (errors answered at once, in the bridge's
  words) and written to the control stream (:mod:`hrdash.broker.control`) for the ingests to
  apply; when that write fails the viewer gets an error frame ("try again"). The alarm log is
  read from the log streams.

``/healthz`` gains ``"broker": {"role": "edge", "edge": EDGE_ID, "redis": <URL, redacted>,
"reader": <the reader's status>, "ingests": {ID: {"holder", "heard"}}}`` (``heard``: seconds
since the patient's last status frame, on this edge's clock).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import random
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

from redis.asyncio import Redis
from websockets.asyncio.server import Server

from hrdash.alarms import ACTIVE, LATCHED, PRIORITIES, Limits
from hrdash.broker.client import (
    BLOCK_MS,
    CONNECT_ERRORS,
    DOWN_ERRORS,
    Sleep,
    aclose_quietly,
    client_for,
    describe_error,
    round_trip,
)
from hrdash.broker.control import (
    CONTROL_KEPT,
    CONTROL_KEY,
    decode_log,
    encode_control,
    log_key,
)
from hrdash.broker.entries import StreamReading, keys_for, parse_id
from hrdash.broker.lease import holder_id, new_run
from hrdash.broker.reader import StreamReader
from hrdash.edge import Edge, Unavailable
from hrdash.hub import Hub, UpstreamState
from hrdash.readings import Rejected
from hrdash.settings import Settings
from hrdash.signals import stop_requested
from hrdash.sources import station_sources
from hrdash.station_alarms import alarm_frame, check_change, no_such_alarm, ranked

__all__ = [
    "BACKLOG_WAIT",
    "INGEST_SILENT_AFTER",
    "RedisEdge",
    "RemoteAlarms",
    "RemoteIngest",
    "run_edge",
]

log = logging.getLogger("hrdash.edge")

INGEST_SILENT_AFTER = 3.0  # seconds without a status frame before a patient shows "down" (the
# ingest writes one at least every second: STATUS_EVERY)
BACKLOG_WAIT = 5.0  # seconds the start waits for the streams' readings before it serves anyway
WATCH_EVERY = 0.25  # seconds between two looks at every patient's ingest (silent? Redis down?)
FIRST_BLOCK_MS = 1  # ms the start's reads wait for new entries (they read what is there)
_RANK = {p: i for i, p in enumerate(PRIORITIES)}

Link = Callable[[], str | None]  # the reader's cause while it cannot reach Redis, else None


class RemoteIngest:
    """One patient's ingest as an edge sees it: its newest status frame (the
    :class:`hrdash.edge.Ingest` an :class:`~hrdash.edge.Edge` shows).

    :attr:`upstream_state` is the frame's ``upstream``, ``detail`` and, while live, the edge's
    clock when this edge saw it go live; but ``down`` while ``link()`` names a cause (the reader
    cannot reach Redis: ``"Redis unreachable: ..."``), or when no frame came for
    ``silent_after`` seconds of ``monotonic`` (``"no ingest has reported for this patient for
    3 s"``; before any frame, ``connecting`` for as long). It changes only in :meth:`refresh`,
    which says when it did (the edge tells the viewers)."""

    def __init__(
        self,
        patient_id: str,
        link: Link,
        *,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        silent_after: float = INGEST_SILENT_AFTER,
    ) -> None:
        self.id = patient_id
        self.link = link
        self.clock, self.monotonic = clock, monotonic
        self.silent_after = silent_after
        self.frame: dict[str, Any] | None = None
        self.heard_at = monotonic()  # the last frame (or the start, or Redis back)
        self.counters: dict[str, int] = {}
        self._shown = UpstreamState()
        self._shown_key: tuple[str, str, int | None] = ("connecting", "", None)
        self._shown_since = int(clock() * 1000)  # Unix ms of the last change shown
        self._mapping: Any = None
        # The state shown is the fan-out's fault (Redis unreachable, the ingest silent), not the
        # patient's service's: status frames say so ("relay": "down"), and the page with them.
        self.relay_down = False

    # -- in --------------------------------------------------------------------------------

    def update(self, frame: dict[str, Any]) -> bool:
        """The patient's newest status frame; true when what viewers see changed."""
        self.frame = frame
        self.heard_at = self.monotonic()
        counters = frame.get("counters")
        if isinstance(counters, dict):
            self.counters = {
                k: v for k, v in counters.items() if type(v) is int and k != "rejected"
            }
        mapping = frame.get("mapping")
        changed = mapping != self._mapping
        self._mapping = mapping
        return self.refresh() or changed

    def heard_before(self, age: float) -> None:
        """The newest frame read at the start was written ``age`` seconds ago (Redis's clock):
        the silence counts from then, not from when this edge read it."""
        self.heard_at = min(self.heard_at, self.monotonic() - age)

    def reconnected(self) -> None:
        """Redis answers again: the silence counts from now (the ingest's frames held while
        Redis was away are on their way)."""
        self.heard_at = max(self.heard_at, self.monotonic())

    def refresh(self) -> bool:
        """Judge the state now; true when it changed (a new ``since`` from the ingest, a
        reconnect between two frames read, included)."""
        state = self._judge()
        frame = self.frame
        since = frame.get("since") if frame and state.state == frame.get("upstream") else None
        since = since if isinstance(since, int) else None  # the frame's, when its state shows
        key = (state.state, state.detail, since)
        if key == self._shown_key:
            return False
        self._shown_key = key
        now = self.clock()
        if state.state == "live":  # this edge saw it go live: readings count from now
            state = UpstreamState("live", state.detail, now)
        self._shown = state
        self._shown_since = since if since is not None else int(now * 1000)
        return True

    def _judge(self) -> UpstreamState:
        self.relay_down = True
        cause = self.link()
        if cause is not None:
            return UpstreamState("down", f"Redis unreachable: {cause}")
        frame = self.frame
        if self.monotonic() - self.heard_at > self.silent_after:
            return UpstreamState("down", self.silent_detail)
        self.relay_down = False
        if frame is None:
            return UpstreamState()
        detail = frame.get("detail")
        return UpstreamState(str(frame["upstream"]), detail if isinstance(detail, str) else "")

    @property
    def silent_detail(self) -> str:
        return f"no ingest has reported for this patient for {self.silent_after:g} s"

    # -- the Ingest protocol ---------------------------------------------------------------

    @property
    def upstream_state(self) -> UpstreamState:
        return self._shown

    def _field(self, name: str, default: Any) -> Any:
        return default if self.frame is None else self.frame.get(name, default)

    def status_fields(self) -> dict[str, Any]:
        """The frame's part of a status frame, with the state this edge shows."""
        return {
            "upstream": self._shown.state,
            "since": self._shown_since,
            "detail": self._shown.detail,
            "source": self._field("source", ""),
            "mapping": self._field("mapping", {}),
            "last_rejection": self._field("last_rejection", None),
            "relay": "down" if self.relay_down else "up",
        }

    def rejected(self) -> dict[str, Any]:
        counters = self._field("counters", {})
        counters = counters if isinstance(counters, dict) else {}
        by_reason = counters.get("rejected_by_reason", {})
        return {
            "rejected": counters.get("rejected", 0),
            "rejected_by_reason": by_reason if isinstance(by_reason, dict) else {},
        }

    def source_detail(self) -> dict[str, Any]:
        """The ingest's source detail (its ``recorder`` included) and its ``ingest`` part."""
        detail = self._field("source_detail", {})
        detail = dict(detail) if isinstance(detail, dict) else {}
        return {**detail, "ingest": self._field("ingest", None)}

    def heard(self) -> dict[str, Any]:
        """For ``/healthz``: the ingest holding the patient, seconds since its last frame."""
        ingest = self._field("ingest", None)
        holder = ingest.get("holder") if isinstance(ingest, dict) else None
        ago = None if self.frame is None else round(self.monotonic() - self.heard_at, 3)
        return {"holder": holder, "heard": ago}


def _well_formed(alarm: Any) -> bool:
    return (
        isinstance(alarm, dict)
        and isinstance(alarm.get("id"), str)
        and alarm.get("priority") in _RANK
        and isinstance(alarm.get("since"), int | float)
    )


class RemoteAlarms:
    """The station's alarms as an edge mirrors them (the :class:`hrdash.edge.Alarms` of a
    :class:`RedisEdge`): each patient's newest alarm frame (before one, no alarms and the
    limits of ``patients``, the sources file's), the log read from the log streams, and the
    viewers' state changes checked against the mirror and written to the control stream with
    ``edge_id``."""

    def __init__(
        self,
        client: Redis,
        patients: Mapping[str, Limits],
        edge_id: str,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.client = client
        self.patients = dict(patients)
        self.edge_id = edge_id
        self.clock = clock
        self.frames: dict[str, dict[str, Any]] = {}
        self._paused_until: int | None = None  # the newest frame's
        self.counters = {"log_rejected": 0}  # log entries refused when read
        self._writing = asyncio.Lock()  # state changes written one by one, in order (FIFO)

    def update(self, patient_id: str, frame: dict[str, Any]) -> None:
        """The patient's newest alarm frame (its malformed alarms left out)."""
        kept = dict(frame)
        kept["alarms"] = [a for a in frame["alarms"] if _well_formed(a)]
        self.frames[patient_id] = kept
        until = frame.get("audio_paused_until")
        self._paused_until = until if isinstance(until, int) else None

    # -- what the edge shows ---------------------------------------------------------------

    def alarms(self, patient_id: str) -> list[dict[str, Any]]:
        frame = self.frames.get(patient_id)
        return list(frame["alarms"]) if frame is not None else []

    def limits(self, patient_id: str) -> dict[str, float]:
        frame = self.frames.get(patient_id)
        limits = frame.get("limits") if frame is not None else None
        return dict(limits) if isinstance(limits, dict) else self.patients[patient_id].as_dict()

    def all_alarms(self) -> list[dict[str, Any]]:
        return ranked(a for pid in self.patients for a in self.alarms(pid))

    def paused_until(self) -> int | None:
        until = self._paused_until
        return until if until is not None and until > self.clock() * 1000 else None

    def sounding(self, patient_id: str | None = None) -> str | None:
        """What sounds over the patient's alarms (its frame's), or (None) every patient's."""
        ids = self.patients if patient_id is None else [patient_id]
        heard = [self.frames.get(pid, {}).get("sounding") for pid in ids]
        return min((p for p in heard if p in _RANK), key=_RANK.__getitem__, default=None)

    def alarm_frame(self, patient_id: str) -> dict[str, Any]:
        """The patient's alarm frame as the ingest wrote it, with this edge's clock."""
        return alarm_frame(self, patient_id, self.clock())

    async def log(self, patient_id: str | None, limit: int) -> list[dict[str, Any]]:
        """The newest ``limit`` log entries, newest first, from the log streams: the patient's,
        or (None) every patient's and the station's. :class:`~hrdash.edge.Unavailable` when
        Redis cannot be read."""
        if patient_id is not None:
            streams = [log_key(patient_id)]
        else:
            streams = [*(log_key(pid) for pid in self.patients), log_key(None)]
        pipe = self.client.pipeline(transaction=False)
        for key in streams:
            pipe.xrevrange(key, "+", "-", count=limit)
        try:
            async with round_trip():
                replies = await pipe.execute()
        except CONNECT_ERRORS as exc:
            raise Unavailable(_cause(exc)) from None
        # Newest first: by the entries' ids (Redis's clock, ms), within one ms by their own
        # time (several streams may have an entry in one ms), then by the ids' sequence part.
        found: list[tuple[tuple[int, int, int], dict[str, Any]]] = []
        for reply in replies:
            for entry_id, fields in reply or []:
                entry = decode_log(entry_id, fields)
                at = parse_id(entry_id)
                if isinstance(entry, Rejected) or at is None:
                    self.counters["log_rejected"] += 1
                else:
                    found.append(((at[0], entry["time"], at[1]), entry))
        found.sort(key=lambda item: item[0], reverse=True)
        return [entry for _, entry in found[:limit]]

    # -- state changes ---------------------------------------------------------------------

    def change(self, request: dict[str, Any], origin: str) -> Awaitable[None]:
        """Check a viewer's state change as the bridge does (ValueError, one line, in its
        words; an ``ack`` must name an alarm the mirror shows active or latched) and return
        the write of its checked form to the control stream, to await."""
        change = check_change(request, self.patients)
        if change["type"] == "ack":
            alarm_id = change["alarm"]
            if not any(
                a["id"] == alarm_id and a.get("state") in (ACTIVE, LATCHED)
                for frame in self.frames.values()
                for a in frame["alarms"]
            ):
                raise no_such_alarm(alarm_id)
        return self._write(change, origin)

    async def _write(self, change: dict[str, Any], origin: str) -> None:
        """Write one change; one at a time, in the order they were taken (each write on its
        own connection could overtake another: an ack before the pause sent after it)."""
        fields: Mapping[Any, Any] = encode_control(change, origin, self.edge_id)
        try:
            async with round_trip(), self._writing:  # the bound covers the wait in line
                await self.client.xadd(
                    CONTROL_KEY, dict(fields), maxlen=CONTROL_KEPT, approximate=True
                )
        except CONNECT_ERRORS as exc:
            raise Unavailable(_cause(exc)) from None


def _cause(exc: BaseException) -> str:
    """A Redis failure for a viewer, one line."""
    if isinstance(exc, DOWN_ERRORS):
        return f"Redis unreachable: {describe_error(exc)}"
    return f"Redis refused it: {describe_error(exc)}"


def _by_run(readings: Iterable[StreamReading]) -> Iterable[tuple[str, list[StreamReading]]]:
    for run, group in itertools.groupby(readings, key=lambda r: r.run):
        yield run, list(group)


class RedisEdge:
    """An edge of the Redis fan-out (see the module's docstring): the station's patients
    (:func:`hrdash.sources.station_sources`: every machine has the same sources file), a hub, a
    :class:`RemoteIngest` per patient, the :class:`RemoteAlarms` and a reader, behind an
    :class:`~hrdash.edge.Edge` listening with ``SO_REUSEPORT``. Start with :meth:`start`, stop
    with :meth:`close`; ``client`` is the caller's (it closes it).

    ``clock`` gives Unix seconds, ``monotonic`` the clock of the ingests' silence and the
    viewers' rate limits; ``silent_after`` is INGEST_SILENT_AFTER, ``backlog_wait``
    BACKLOG_WAIT; ``block_ms``, ``rng`` and ``sleep`` are the reader's."""

    def __init__(
        self,
        settings: Settings,
        client: Redis,
        *,
        edge_id: str | None = None,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        silent_after: float = INGEST_SILENT_AFTER,
        backlog_wait: float = BACKLOG_WAIT,
        block_ms: int = BLOCK_MS,
        rng: random.Random | None = None,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.settings = settings
        self.client = client
        self.edge_id = edge_id or holder_id()
        self.clock = clock
        self.backlog_wait = backlog_wait
        self.watch_every = min(WATCH_EVERY, silent_after / 4)
        sources = station_sources(settings)
        self.hub = Hub(settings.buffer, settings.window, run_id=new_run())
        self.ingests: dict[str, RemoteIngest] = {}
        for source in sources:
            self.hub.add(source.id, source.name)
            self.ingests[source.id] = RemoteIngest(
                source.id, self._link, clock=clock, monotonic=monotonic, silent_after=silent_after
            )
        self.alarms = RemoteAlarms(
            client, {s.id: s.limits for s in sources}, self.edge_id, clock=clock
        )
        self.reader = StreamReader(
            client,
            list(self.ingests),
            on_readings=self._on_readings,
            on_status=self._on_status,
            on_alarm=self._on_alarm,
            backlog=True,
            block_ms=block_ms,
            clock=clock,
            rng=rng,
            sleep=sleep,
        )
        self.edge = Edge(
            settings,
            self.hub,
            list(self.ingests.values()),
            clock=clock,
            monotonic=monotonic,
            history=self.history,
            alarms=self.alarms,
            broker=self.broker_status,
            relay=self._link,
            reuse_port=True,
        )
        self._tasks: list[asyncio.Task[None]] = []

    # -- from the reader -------------------------------------------------------------------

    def _link(self) -> str | None:
        reader = self.reader
        return (reader.detail or "no answer") if reader.state == "down" else None

    def _on_readings(self, patient_id: str, readings: list[StreamReading]) -> None:
        patient, now = self.hub[patient_id], self.clock()
        stored = 0
        for run, group in _by_run(readings):
            stored += len(patient.accept_numbered(run, group, now))
        if stored:
            self.edge.readings_accepted(patient_id)

    def _on_status(self, patient_id: str, frame: dict[str, Any]) -> None:
        if self.ingests[patient_id].update(frame):
            self.edge.upstream_changed(patient_id)

    def _on_alarm(self, patient_id: str, frame: dict[str, Any]) -> None:
        self.alarms.update(patient_id, frame)
        self.edge.alarms_changed(patient_id)

    # -- status ----------------------------------------------------------------------------

    def history(self) -> dict[str, Any]:
        """``/healthz``'s ``recorder``: the history is the ingest's (each patient's Source
        panel shows its recorder)."""
        return {"db": None, "state": "ingest", "detail": "kept by the ingest"}

    def broker_status(self) -> dict[str, Any]:
        """``/healthz``'s ``broker`` section."""
        return {
            "role": "edge",
            "edge": self.edge_id,
            "redis": self.settings.shown_redis_url,
            "reader": self.reader.status(),
            "ingests": {pid: ingest.heard() for pid, ingest in self.ingests.items()},
        }

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> Server:
        """Read what the streams hold (at most ``backlog_wait``), then listen for viewers and
        go on reading."""
        await self._read_backlog()
        for patient_id, ingest in self.ingests.items():
            ingest.refresh()
            # Read now, not received now: how old they are is not known (their times are the
            # services'), so none counts as fresh; the next reading does.
            self.hub[patient_id].last_reading_at = None
        server = await self.edge.start()
        self._tasks = [
            asyncio.create_task(self.reader.run(), name="stream reader"),
            asyncio.create_task(self._watch(), name="ingest watch"),
        ]
        return server

    async def _read_backlog(self) -> None:
        """Read until every readings stream is read up to where its top was at the start.

        A status frame read now may be old (its ingest gone long ago): its age on Redis's own
        clock (``TIME`` against the entry's id, both Redis's, so no two machines' clocks are
        compared) counts toward the ingest's silence, so such a patient shows down at once
        rather than live for INGEST_SILENT_AFTER."""
        reader = self.reader
        keys = [keys_for(pid).readings for pid in self.ingests]
        block, reader.block_ms = reader.block_ms, FIRST_BLOCK_MS
        try:
            async with asyncio.timeout(self.backlog_wait):
                pipe = self.client.pipeline(transaction=False)
                for key in keys:
                    pipe.xrevrange(key, "+", "-", count=1)
                for pid in self.ingests:
                    pipe.xrevrange(keys_for(pid).status, "+", "-", count=1)
                pipe.time()
                async with round_trip():
                    *replies, (seconds, micros) = await pipe.execute()
                tops = [parse_id(top[0][0]) if top else None for top in replies[: len(keys)]]
                redis_ms = int(seconds) * 1000 + int(micros) // 1000
                ages = {
                    pid: max(0.0, (redis_ms - at[0]) / 1000)
                    for pid, top in zip(self.ingests, replies[len(keys) :], strict=True)
                    if top and (at := parse_id(top[0][0])) is not None
                }
                while True:
                    await reader.read_once()
                    behind = [
                        key
                        for key, top in zip(keys, tops, strict=True)
                        if top is not None and (parse_id(reader.positions[key]) or (0, 0)) < top
                    ]
                    if not behind:
                        break
            reader.state = "up"  # it has read (its task goes on from here)
            for pid, age in ages.items():
                self.ingests[pid].heard_before(age)
        except TimeoutError:
            log.warning(
                "redis: the streams not read to their end within %g s; serving what was read"
                " (%d readings)",
                self.backlog_wait,
                reader.counters["readings"],
            )
        except CONNECT_ERRORS as exc:
            log.warning(
                "redis: the streams not read (%s); serving, reading on", describe_error(exc)
            )
        finally:
            reader.block_ms = block

    async def _watch(self) -> None:
        """Every ``watch_every`` seconds: a patient whose ingest fell silent, or all of them
        when Redis went away or came back, gets its new state to its viewers."""
        was_down = False
        while True:
            down = self.reader.state == "down"
            for patient_id, ingest in self.ingests.items():
                if was_down and not down:
                    ingest.reconnected()
                if ingest.refresh():
                    self.edge.upstream_changed(patient_id)
            was_down = down
            await asyncio.sleep(self.watch_every)

    @property
    def port(self) -> int:
        return self.edge.port

    async def close(self) -> None:
        """Stop reading, then close the viewers' connections."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self.edge.close()


def _patients_shown(ids: list[str], most: int = 8) -> str:
    """``"2 patients: bed-01, bed-02"``, the first ``most`` ids named."""
    shown = ", ".join(ids[:most]) + (f" and {len(ids) - most} more" if len(ids) > most else "")
    return f"{len(ids)} patient{'s' if len(ids) != 1 else ''}: {shown}"


async def run_edge(settings: Settings, ready: Callable[[RedisEdge], None] | None = None) -> None:
    """Run an edge until SIGINT/SIGTERM. Redis need not answer now (the command's start check,
    :func:`hrdash.cli.check_redis`, is skipped by a supervised edge restarted during an outage:
    it serves its patients as down and reads once Redis is back). Raises
    :class:`hrdash.broker.client.BrokerError` (one line) for a URL it cannot use."""
    client = client_for(settings.redis_url)
    try:
        edge = RedisEdge(settings, client)
        await edge.start()
        log.info(
            "edge %s on ws://%s:%d/ws (port shared) reading %s for %s",
            edge.edge_id,
            settings.bridge_host,
            edge.port,
            settings.shown_redis_url,
            _patients_shown(list(edge.ingests)),
        )
        if ready is not None:
            ready(edge)
        await stop_requested()
        await edge.close()
    finally:
        await aclose_quietly(client)
