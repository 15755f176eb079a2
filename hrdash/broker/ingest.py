"""``hrdash ingest``: the patients' services in, each reading, status and alarm frame once to
Redis out (:mod:`hrdash.broker.writer`). No listening port; any number of them, on any machines,
with the same sources file and ``HRDASH_REDIS_URL``.

A :class:`RedisIngest` holds what leases it can get (:class:`hrdash.broker.lease.LeaseKeeper`
over every patient of :func:`hrdash.sources.station_sources`). For each patient it holds:

* its :class:`hrdash.ingest.PatientSource` reads the service; the readings are numbered in a
  :class:`hrdash.hub.PatientHub` begun at the lease's run and next seq (the stream's, so a
  takeover continues the sequence) and handed to the writer (:meth:`StreamWriter.add`), the
  patient's alarm engine and the history (``HRDASH_DB``, as the bridge records it);
* its alarm engine (:class:`hrdash.station_alarms.StationAlarms`) starts with the limits of the
  newest frame in its alarms stream (set on a page, kept across takeovers), else the sources
  file's; every change of its alarm state is an alarm frame;
* a status frame goes out on every upstream change and every ``STATUS_EVERY`` (the heartbeat
  an edge takes the patient's ingest to be alive by): the source's fields, the counters, the
  source's detail with the history's status, and the ingest's holder, writer and lease state.

A lease lost (another ingest has the patient; or the writer found it fenced) stops that
patient's source and engine. The control stream (:mod:`hrdash.broker.control`) is read from its
top at start: ``ack`` and ``limits`` for the patients held are applied, ``audio_pause`` always
(the station's); what they log goes to the log streams, a station entry under the id of the
control entry that caused it (so N ingests store it once). A bad control entry is counted and
skipped. Redis unreachable: readings are held (the writer's bound), log entries too, and every
task reconnects with backoff. A clean stop (SIGTERM, SIGINT) stops the sources, flushes what
is held (``FLUSH_TIMEOUT``), releases the leases and closes the history within the
supervisor's grace.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import deque
from collections.abc import Callable, Generator, Mapping
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from hrdash.alarms import Limits
from hrdash.bridge import close_recorder, history_recorder, patient_source
from hrdash.broker.client import (
    BLOCK_MS,
    CONNECT_ERRORS,
    DOWN_ERRORS,
    Sleep,
    aclose_quietly,
    backoff,
    client_for,
    describe_error,
    raise_if_cancelled,
    round_trip,
)
from hrdash.broker.control import (
    CONTROL_KEY,
    STATION_LOG_KEY,
    decode_control,
    encode_log,
    log_key,
)
from hrdash.broker.entries import StreamReading, decode_frame, keys_for
from hrdash.broker.lease import LEASE_TTL, LeaseKeeper, holder_id
from hrdash.broker.writer import StreamWriter
from hrdash.edge import STATUS_EVERY, history_off
from hrdash.hub import Hub
from hrdash.ingest import PatientSource
from hrdash.readings import Reading, RejectCounter, Rejected
from hrdash.settings import Settings
from hrdash.signals import stop_requested
from hrdash.sources import Source, station_sources
from hrdash.station_alarms import LOG_KEPT, StationAlarms

__all__ = ["FLUSH_TIMEOUT", "LOG_HOLD", "RedisIngest", "run_ingest"]

log = logging.getLogger("hrdash.broker.ingest")

FLUSH_TIMEOUT = 2.0  # seconds a clean stop waits for the held readings and frames to be written
RELEASE_TIMEOUT = 1.0  # seconds a clean stop waits to release the leases (else they lapse)
LOG_HOLD = 1000  # log entries held while Redis is unreachable (the oldest dropped beyond)
CONTROL_COUNT = 100  # control entries read in one XREAD at most
REJECT_LOG_EVERY = 10.0  # seconds between two log lines about bad control entries of one reason


class LogWriter:
    """The alarm log entries to their log streams (``XADD key MAXLEN ~ LOG_KEPT``), in order,
    held while Redis is unreachable (at most ``hold``; the oldest dropped beyond, counted). An
    entry with an explicit id that Redis refuses as not above the stream's top is one another
    ingest wrote already (a station entry): counted ``log_duplicates``, not an error; one
    refused otherwise is dropped, counted and logged."""

    def __init__(
        self,
        client: Redis,
        *,
        hold: int = LOG_HOLD,
        rng: random.Random | None = None,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.client, self.hold, self.rng, self.sleep = client, hold, rng, sleep
        self._held: deque[tuple[str, str, dict[Any, Any]]] = deque()
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self.counters = {"log_written": 0, "log_duplicates": 0, "log_dropped": 0}

    def add(self, key: str, entry_id: str, fields: Mapping[str, str]) -> None:
        """Write ``fields`` to stream ``key`` with ``entry_id`` (``*``: Redis's)."""
        self._held.append((key, entry_id, dict(fields)))
        if len(self._held) > self.hold:
            self._held.popleft()
            self.counters["log_dropped"] += 1
        self._idle.clear()
        self._wake.set()

    async def drained(self) -> None:
        await self._idle.wait()

    async def run(self) -> None:
        delays: Generator[float] | None = None
        while True:
            if not self._held:
                self._idle.set()
                self._wake.clear()
                await self._wake.wait()
            try:
                await self._write_once()
            except CONNECT_ERRORS:
                raise_if_cancelled()
                delays = delays or backoff(self.rng)
                await self.sleep(next(delays))
                continue
            delays = None

    async def _write_once(self) -> None:
        taken = list(self._held)
        pipe = self.client.pipeline(transaction=False)
        for key, entry_id, fields in taken:
            pipe.xadd(key, fields, id=entry_id, maxlen=LOG_KEPT, approximate=True)
        async with round_trip():
            results = await pipe.execute(raise_on_error=False)
        for result in results:
            if isinstance(result, DOWN_ERRORS):
                raise result
        for _ in taken:
            self._held.popleft()
        for (key, _, _), result in zip(taken, results, strict=True):
            if isinstance(result, ResponseError) and "equal or smaller" in str(result):
                self.counters["log_duplicates"] += 1
            elif isinstance(result, Exception):  # e.g. the key is not a stream
                self.counters["log_dropped"] += 1
                log.warning("redis: a log entry not written to %s: %s", key, result)
            else:
                self.counters["log_written"] += 1


class RedisIngest:
    """Every patient's ingest that this process holds the lease of, to Redis (see the module's
    docstring). :meth:`start`, then :meth:`close`. Raises
    :class:`~hrdash.settings.SettingError` (one line) for a bad sources file or a transform hook
    that cannot be loaded.

    ``client`` is a Redis client (:func:`hrdash.broker.client.connect`); ``holder`` this
    process's holder id (default: :func:`holder_id`); ``ttl`` the leases' time to live;
    ``clock`` Unix seconds; ``rng`` the randomness of the holder id, the new runs and the
    backoffs; ``sleep`` the backoff's wait."""

    def __init__(
        self,
        settings: Settings,
        client: Redis,
        *,
        holder: str | None = None,
        ttl: float = LEASE_TTL,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.settings = settings
        self.client = client
        self.clock = clock
        self.rng = rng
        self.sleep = sleep
        self.holder = holder or holder_id(rng)
        patients = station_sources(settings)
        self.patients: dict[str, Source] = {source.id: source for source in patients}
        self.file_limits = {source.id: source.limits for source in patients}
        self.hub = Hub(settings.buffer, settings.window, run_id="0")  # each begun by its lease
        self.sources: dict[str, PatientSource] = {}
        for source in patients:
            self.hub.add(source.id, source.name)
            self.sources[source.id] = self._new_source(source.id)  # a bad hook fails here
        self.alarms = StationAlarms(
            [],  # an engine per patient held (add_patient when its lease is taken)
            no_signal_after=settings.no_signal_after,
            clock=clock,
            on_change=self._on_alarms,
            on_log=self._on_alarm_log,
            on_limits=self._on_limits,
        )
        named = [(pid, patient.name) for pid, patient in self.hub.patients.items()]
        self.recorder = history_recorder(settings, named, clock)
        self.writer = StreamWriter(
            client,
            buffer=settings.buffer,
            holder=self.holder,
            lease_ms=max(1, round(ttl * 1000)),
            on_fenced=self._on_fenced,
            rng=rng,
            sleep=sleep,
        )
        self.keeper = LeaseKeeper(
            client,
            self.holder,
            list(self.sources),
            on_gained=self._on_gained,
            on_lost=self._on_lost,
            ttl=ttl,
            rng=rng,
            sleep=sleep,
        )
        self.logs = LogWriter(client, rng=rng, sleep=sleep)
        self.held: dict[str, asyncio.Task[None]] = {}  # patient → its task (source and engine)
        self.control_state = "connecting"
        self.control_detail = ""
        self.control_rejects = RejectCounter(REJECT_LOG_EVERY)
        self.counters: dict[str, int] = {
            "control_applied": 0,  # control entries that changed this ingest's alarm state
            "control_ignored": 0,  # for a patient not held here, or nothing to change
            "control_bad": 0,  # refused: not a control entry, or its message not valid
            "control_failures": 0,  # reads of the control stream that failed
        }
        self._control_id: str | None = None  # the control entry being applied
        self.tasks: list[asyncio.Task[None]] = []  # started by start(), in this order:
        # stream writer, log writer, leases, control, status, alarm timers

    def _new_source(self, patient_id: str) -> PatientSource:
        return patient_source(
            self.settings,
            self.patients[patient_id],
            self.hub[patient_id],
            on_readings=self._on_readings,
            on_change=self._on_change,
            clock=self.clock,
        )

    # -- what is written ---------------------------------------------------------------------

    def history_status(self) -> dict[str, Any]:
        """The recorder's status, or the history is off."""
        return self.recorder.status() if self.recorder is not None else history_off()

    def status(self) -> dict[str, Any]:
        """The ingest's part of every status frame: its holder, its writer's state (with the
        log writer's counters), its keeper's, and its control reader's state and counters."""
        writer = {**self.writer.status(), **self.logs.counters}
        control = {"state": self.control_state, "detail": self.control_detail, **self.counters}
        return {
            "holder": self.holder,
            "writer": writer,
            "lease": self.keeper.status(),
            "control": control,
        }

    def status_frame(self, patient_id: str) -> dict[str, Any]:
        """The patient's status frame (the shape :mod:`hrdash.broker.entries` carries)."""
        source = self.sources[patient_id]
        patient = self.hub[patient_id]
        return {
            "type": "status",
            "patient": patient_id,
            "run": patient.run_id,
            **source.status_fields(),
            "counters": {**source.counters, **patient.counters, **source.rejected()},
            "source_detail": {**source.source_detail(), "recorder": self.history_status()},
            "ingest": self.status(),
            "now": int(self.clock() * 1000),
        }

    def _write_status(self, patient_id: str) -> None:
        if patient_id in self.alarms.engines:
            self.writer.add_status(patient_id, self.status_frame(patient_id))

    def _on_readings(self, source: PatientSource, readings: list[Reading]) -> None:
        patient_id = source.id
        patient = self.hub[patient_id]
        run = patient.run_id
        numbered = [StreamReading(s.seq, run, s.time, s.bpm) for s in patient.flush()]
        self.writer.add(patient_id, numbered)
        if self.recorder is not None:
            self.recorder.add(patient_id, readings)
        if patient_id in self.alarms.engines:
            for reading in readings:
                self.alarms.reading(patient_id, reading.bpm)

    def _on_change(self, source: PatientSource) -> None:
        if source.id in self.alarms.engines:
            self.alarms.upstream(source.id, source.upstream_state.state == "live")
        self._write_status(source.id)

    def _on_alarms(self, patient_id: str | None) -> None:
        for pid in list(self.alarms.engines) if patient_id is None else [patient_id]:
            if pid in self.alarms.engines:
                self.writer.add_alarm(pid, self.alarms.alarm_frame(pid))

    def _on_alarm_log(self, entries: list[dict[str, Any]]) -> None:
        if self.recorder is not None:
            self.recorder.add_log(entries)
        for entry in entries:
            patient_id = entry.get("patient")
            if patient_id is None:  # the station's: once, under the control entry's id
                if self._control_id is not None:
                    self.logs.add(STATION_LOG_KEY, self._control_id, encode_log(entry))
            else:
                self.logs.add(log_key(patient_id), "*", encode_log(entry))

    def _on_limits(self, patient_id: str, limits: Limits, time_ms: int, origin: str | None) -> None:
        if self.recorder is not None:
            file = self.file_limits[patient_id]
            self.recorder.set_limits(patient_id, limits, file, time_ms, origin)

    # -- leases --------------------------------------------------------------------------------

    def _on_gained(self, patient_id: str, run: str, next_seq: int) -> None:
        self._stop_patient(patient_id)
        self.hub[patient_id].begin(run, next_seq)
        self.held[patient_id] = asyncio.create_task(
            self._hold(patient_id), name=f"ingest {patient_id}"
        )

    def _on_lost(self, patient_id: str) -> None:
        if self._stop_patient(patient_id):
            log.warning("%s: another ingest holds it now; stopped reading it", patient_id)

    def _on_fenced(self, patient_id: str) -> None:
        """A write found the patient's lease another's: as lost; the keeper tries it again."""
        if patient_id in self.keeper.held:
            self.keeper.held.discard(patient_id)
            self.keeper.counters["lost"] += 1
        self._on_lost(patient_id)

    def _stop_patient(self, patient_id: str) -> bool:
        task = self.held.pop(patient_id, None)
        if task is not None:
            task.cancel()
        self.alarms.remove_patient(patient_id)
        return task is not None

    async def _hold(self, patient_id: str) -> None:
        """A patient held: its engine with the stored limits, then its source, until
        cancelled (lease lost, or the stop)."""
        try:
            limits = await self._stored_limits(patient_id)
            source = self._new_source(patient_id)
            self.sources[patient_id] = source
            self.alarms.add_patient(patient_id, limits)  # announced: its alarm frame goes out
            self._write_status(patient_id)
            await source.run()
        except Exception:  # a bug: start the patient afresh at the keeper's next round
            log.exception("%s: stopped by an error; starting it again", patient_id)
            if self.held.get(patient_id) is asyncio.current_task():
                self._stop_patient(patient_id)
                self.keeper.held.discard(patient_id)

    async def _stored_limits(self, patient_id: str) -> Limits:
        """The limits of the newest frame in the patient's alarms stream (set on a page, or by
        the ingest that held it before); the sources file's when there is none (or Redis cannot
        say now)."""
        file = self.file_limits[patient_id]
        try:
            async with round_trip():
                entries: Any = await self.client.xrevrange(
                    keys_for(patient_id).alarms, "+", "-", count=1
                )
        except CONNECT_ERRORS as exc:
            raise_if_cancelled()
            log.warning("%s: stored limits not read (%s)", patient_id, describe_error(exc))
            return file
        for entry_id, fields in entries or []:
            frame = decode_frame("alarm", patient_id, entry_id, fields)
            if isinstance(frame, Rejected) or not isinstance(frame.get("limits"), Mapping):
                return file
            try:
                return Limits.from_mapping(frame["limits"])
            except ValueError:
                return file
        return file

    # -- control -------------------------------------------------------------------------------

    def apply_control(self, entry_id: str, fields: Mapping[Any, Any]) -> bool:
        """Apply one control entry; True if it changed this ingest's alarm state. A bad one is
        counted (``control_bad``) and skipped."""
        message = decode_control(entry_id, fields)
        if isinstance(message, Rejected):
            self._bad_control(message.reason, message.detail)
            return False
        kind, origin = message["type"], message["origin"]
        self._control_id = entry_id
        try:
            if kind == "ack":
                alarm_id = message.get("alarm")
                if not isinstance(alarm_id, str):
                    raise ValueError("alarm: expected an alarm id (a string)")
                applied = self.alarms.acknowledge(alarm_id, origin)
            elif kind == "audio_pause":
                self.alarms.pause(message.get("seconds"), origin)
                applied = True
            else:
                patient_id = message.get("patient")
                applied = patient_id in self.alarms.engines
                if applied:
                    limits = Limits.from_mapping(message)
                    self.alarms.set_limits(str(patient_id), limits, origin)
        except (ValueError, TypeError) as exc:
            self._bad_control(kind, str(exc).splitlines()[0] if str(exc) else kind)
            return False
        finally:
            self._control_id = None
        self.counters["control_applied" if applied else "control_ignored"] += 1
        return applied

    def _bad_control(self, reason: str, detail: str) -> None:
        self.counters["control_bad"] += 1
        suppressed = self.control_rejects.add(reason, time.monotonic())
        if suppressed is not None:
            more = f" ({suppressed} more since the last report)" if suppressed else ""
            log.warning("control entry skipped: %s: %s%s", reason, detail, more)

    async def _control_forever(self) -> None:
        """Read the control stream from its top at start (entries after it), forever."""
        last: str | None = None
        delays: Generator[float] | None = None
        while True:
            try:
                if last is None:
                    async with round_trip():
                        top: Any = await self.client.xrevrange(CONTROL_KEY, "+", "-", count=1)
                    last = _text(top[0][0]) if top else "0-0"
                async with round_trip(BLOCK_MS / 1000):
                    reply: Any = await self.client.xread(
                        {CONTROL_KEY: last}, count=CONTROL_COUNT, block=BLOCK_MS
                    )
            except CONNECT_ERRORS as exc:
                raise_if_cancelled()
                self.counters["control_failures"] += 1
                cause = describe_error(exc)
                if self.control_state != "down" or cause != self.control_detail:
                    log.warning("redis: control stream not read (%s); retrying", cause)
                self.control_state, self.control_detail = "down", cause
                delays = delays or backoff(self.rng)
                await self.sleep(next(delays))
                continue
            delays = None
            self.control_state, self.control_detail = "up", ""
            for _key, entries in reply or []:
                for entry_id, fields in entries:
                    last = _text(entry_id)
                    self.apply_control(last, fields)

    # -- lifecycle -----------------------------------------------------------------------------

    async def _status_forever(self) -> None:
        """Every held patient's status frame every ``STATUS_EVERY`` (the heartbeat)."""
        while True:
            await asyncio.sleep(STATUS_EVERY)
            for patient_id in list(self.held):
                self._write_status(patient_id)

    async def start(self) -> None:
        """Start the history, the writers, the lease keeper, the control reader, the
        heartbeat and the alarm timer (the patients start as their leases are taken)."""
        if self.recorder is not None:
            self.recorder.start()
        jobs = {
            "stream writer": self.writer.run(),
            "log writer": self.logs.run(),
            "leases": self.keeper.run(),
            "control": self._control_forever(),
            "status": self._status_forever(),
            "alarm timers": self.alarms.run(),
        }
        self.tasks = [asyncio.create_task(job, name=name) for name, job in jobs.items()]

    async def close(self) -> None:
        """Stop the sources, write what is held (``FLUSH_TIMEOUT`` at most), release the leases
        and close the history (``HISTORY_CLOSE_TIMEOUT`` at most, meanwhile)."""
        closing = None
        if self.recorder is not None:
            closing = asyncio.create_task(close_recorder(self.recorder), name="history close")
        held = list(self.held.values())
        self.held.clear()
        for task in held:
            task.cancel()
        keeper, control, status, timers = self.tasks[2:]
        for task in (keeper, control, status, timers):
            task.cancel()
        await _settle([*held, keeper, control, status, timers])
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(FLUSH_TIMEOUT):
                await self.writer.drained()
                await self.logs.drained()
        if self.writer.held():
            log.warning("redis: %d readings not written at the stop", self.writer.held())
        writers = self.tasks[:2]
        for task in writers:
            task.cancel()
        await _settle(writers)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(RELEASE_TIMEOUT):
                await self.keeper.close()
        if closing is not None:
            await closing


async def _settle(tasks: list[asyncio.Task[None]]) -> None:
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task


def _text(value: str | bytes) -> str:
    return value.decode("ascii", "replace") if isinstance(value, bytes) else value


async def run_ingest(
    settings: Settings, ready: Callable[[RedisIngest], None] | None = None
) -> None:
    """Run an ingest until SIGINT/SIGTERM. Connects without waiting for Redis: the start check
    (``PING``, one line and exit status 2) is the command's, :func:`hrdash.cli.check_redis`,
    skipped by a supervised ingest, which a Redis outage may find restarting: it must start
    and wait for Redis (every task backs off), not stop the whole app. Raises
    :class:`hrdash.broker.BrokerError` (one line) for a URL redis-py cannot use."""
    client = client_for(settings.redis_url)
    try:
        ingest = RedisIngest(settings, client)
        await ingest.start()
        log.info(
            "ingest %s on %s for %d patients: %s",
            ingest.holder,
            settings.shown_redis_url,
            len(ingest.sources),
            ", ".join(ingest.sources),
        )
        if ready is not None:
            ready(ingest)
        stopping = asyncio.create_task(stop_requested(), name="stop")
        # A task of the ingest that ends is a bug: stop (the supervisor starts it again)
        # rather than hold leases without writing.
        done, _ = await asyncio.wait([stopping, *ingest.tasks], return_when="FIRST_COMPLETED")
        stopping.cancel()
        failed = [task for task in done if task is not stopping]
        for task in failed:
            error = None if task.cancelled() else task.exception()
            log.error("ingest: %s ended (%r); stopping", task.get_name(), error, exc_info=error)
        await ingest.close()
        log.info("ingest %s stopped", ingest.holder)
        if failed:
            raise SystemExit(1)
    finally:
        await aclose_quietly(client)
