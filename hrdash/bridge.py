"""The bridge: every patient's service in, many browser viewers out, in one process.

It composes three parts, each in its own module:

* **ingest** — one :class:`hrdash.ingest.PatientSource` per patient: connects and reconnects to
  that patient's service with its own settings, reads and maps its frames, counts rejections;
* **hub** — :class:`hrdash.hub.Hub`, pure: each patient's ring and ``seq``, snapshots,
  since/resend answers, the frames, the station digest;
* **edge** — :class:`hrdash.edge.Edge`, the asyncio server: ``/ws?patient=ID``, ``/ws?station=1``,
  ``/api/patients``, ``/readings``, ``/healthz`` and the fan-out (see its docstring for the
  protocol);
* **alarms** — :class:`hrdash.station_alarms.StationAlarms`: each patient's alarm engine (limits
  from the sources file, or the defaults; ``HRDASH_NO_SIGNAL_AFTER``), fed every accepted
  reading and every upstream change (connected = the service live), and a timer task that fires
  the engines' deadlines, so alarms happen with no page open; the edge sends the changes. With
  a history, every log entry and limits change goes to the recorder too, and at start the
  stored log (the newest ``LOG_KEPT`` per patient) and limits are read back (first, within the
  same ``HISTORY_LOAD_TIMEOUT`` as the readings below): a patient starts with its stored limits
  (set on a page) while the sources file still says what it said when they were set; once the
  file was edited since, the file's limits win, logged as a ``limits_changed`` entry with
  origin ``"sources file"``;
* **recorder** — :class:`hrdash.ingest.recorder.Recorder`, the history (``HRDASH_DB``; none with
  ``:memory:``): every accepted reading is handed to it (it commits about once a second, in a
  thread of its own, never delaying a reading to the viewers). At start the bridge puts each
  patient's newest stored readings (up to ``HRDASH_BUFFER``) into its ring before it serves
  anyone, so a monitor shows the readings from before a restart at once; waiting at most
  ``HISTORY_LOAD_TIMEOUT`` for them (an unhappy disk does not keep the live readings from the
  viewers). On close it commits what it accepted, waiting at most ``HISTORY_CLOSE_TIMEOUT``.

The patients are :func:`hrdash.sources.station_sources` of the settings, in that order: the
sources file's, the one service of ``HRDASH_UPSTREAM_URL`` (``patient-1``), or the embedded
simulator's. A source tells the edge about accepted readings and upstream changes through
callbacks; the edge reads the hub; the hub knows neither. For one patient the bridge behaves
as it did before there were several, and the attributes below (``port``, ``counters``,
``buffer``, ``status()``...) are that first patient's.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Callable, Sequence
from typing import Any

from websockets.asyncio.server import Server, ServerConnection

from hrdash.alarms import Limits
from hrdash.buffer import RingBuffer
from hrdash.edge import Edge, history_off
from hrdash.hub import OVERLAP, Hub, PatientHub
from hrdash.ingest import PatientSource, reconnect_delays
from hrdash.ingest.recorder import Recorder
from hrdash.ingest.source import Callback, ReadingsCallback
from hrdash.readings import Reading, RejectCounter
from hrdash.settings import SettingError, Settings
from hrdash.signals import stop_requested
from hrdash.sources import Source, source_settings, station_sources
from hrdash.station_alarms import LOG_KEPT, StationAlarms
from hrdash.store import MEMORY, SOURCES_FILE, StoredLimits, limits_at_start
from hrdash.upstream import UPSTREAM_MAX_SIZE, FrameReader

__all__ = [
    "OVERLAP",
    "UPSTREAM_MAX_SIZE",
    "Bridge",
    "close_recorder",
    "history_recorder",
    "patient_source",
    "reconnect_delays",
    "run_bridge",
]

log = logging.getLogger("hrdash.bridge")

HISTORY_LOAD_TIMEOUT = 5.0  # seconds the start waits for the history's alarm log, limits and
# newest readings (all patients); past it the bridge serves without those not yet read
HISTORY_CLOSE_TIMEOUT = 3.0  # seconds the close waits for the last commit: within the
# supervisor's STOP_GRACE (4 s between SIGTERM and SIGKILL)


def patient_source(
    settings: Settings,
    source: Source,
    patient: PatientHub,
    *,
    on_readings: ReadingsCallback,
    on_change: Callback,
    clock: Callable[[], float],
) -> PatientSource:
    """The :class:`PatientSource` of ``source`` (one patient of :func:`station_sources`) into
    ``patient``, with that patient's own settings. Raises SettingError (one line naming the
    sources file and the patient) when its transform hook cannot be loaded."""
    try:
        return PatientSource(
            patient,
            source_settings(settings, source),
            on_readings=on_readings,
            on_change=on_change,
            clock=clock,
        )
    except SettingError as exc:  # its transform hook cannot be loaded
        if not settings.sources:
            raise
        cause = str(exc).removeprefix("HRDASH_TRANSFORM: ")
        where = f'{settings.sources}: patient "{source.id}"'
        raise SettingError(f"{where}: transform: {cause}") from None


def history_recorder(
    settings: Settings, patients: Sequence[tuple[str, str]], clock: Callable[[], float]
) -> Recorder | None:
    """The history's recorder (``HRDASH_DB``) for ``patients`` (id, name), not started; None with
    ``:memory:`` (no history). The file is opened by :meth:`Recorder.start`, in its thread."""
    if settings.db == MEMORY:
        return None
    return Recorder(
        settings.db,
        patients,
        retention=settings.retention,
        trend_retention=settings.trend_retention,
        clock=clock,
    )


async def close_recorder(recorder: Recorder) -> None:
    """Commit what ``recorder`` accepted and close it, waiting ``HISTORY_CLOSE_TIMEOUT`` at
    most (in a thread: the event loop goes on meanwhile)."""
    await asyncio.to_thread(recorder.close, HISTORY_CLOSE_TIMEOUT)


class Bridge:
    """Every patient's source, the hub and the edge. Start with :meth:`start`, stop with
    :meth:`close`. Raises :class:`~hrdash.settings.SettingError` (one line) for a bad sources
    file or a transform hook that cannot be loaded.

    ``clock`` gives Unix seconds (reading ages, status times); ``monotonic`` is the clock of
    the viewers' message rate limit."""

    def __init__(
        self,
        settings: Settings,
        *,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.clock = clock
        self.hub = Hub(settings.buffer, settings.window, run_id=secrets.token_hex(4))
        self.sources: list[PatientSource] = []
        patients = station_sources(settings)
        self.file_limits = {source.id: source.limits for source in patients}
        self.alarms = StationAlarms(
            [(source.id, source.limits) for source in patients],
            no_signal_after=settings.no_signal_after,
            clock=clock,
            on_change=self._on_alarms,
            on_log=self._on_alarm_log,
            on_limits=self._on_limits,
        )
        for source in patients:
            patient = self.hub.add(source.id, source.name)
            self.sources.append(
                patient_source(
                    settings,
                    source,
                    patient,
                    on_readings=self._on_readings,
                    on_change=self._on_change,
                    clock=clock,
                )
            )
        named = [(source.id, source.name) for source in self.sources]
        self.recorder = history_recorder(settings, named, clock)
        self.edge = Edge(
            settings,
            self.hub,
            self.sources,
            clock=clock,
            monotonic=monotonic,
            history=self.history_status,
            alarms=self.alarms,
        )
        self._tasks: list[asyncio.Task[None]] = []

    def _on_readings(self, source: PatientSource, readings: list[Reading]) -> None:
        if self.recorder is not None:
            self.recorder.add(source.id, readings)
        for reading in readings:
            self.alarms.reading(source.id, reading.bpm)
        self.edge.readings_accepted(source.id)

    def history_status(self) -> dict[str, Any]:
        """The recorder's status (``/healthz``, the Source panel), or the history is off."""
        return self.recorder.status() if self.recorder is not None else history_off()

    def _on_change(self, source: PatientSource) -> None:
        self.alarms.upstream(source.id, source.upstream_state.state == "live")
        self.edge.upstream_changed(source.id)

    def _on_alarms(self, patient_id: str | None) -> None:
        self.edge.alarms_changed(patient_id)

    def _on_alarm_log(self, entries: list[dict[str, Any]]) -> None:
        if self.recorder is not None:
            self.recorder.add_log(entries)

    def _on_limits(self, patient_id: str, limits: Limits, time_ms: int, origin: str | None) -> None:
        if self.recorder is not None:
            file = self.file_limits[patient_id]
            self.recorder.set_limits(patient_id, limits, file, time_ms, origin)

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> Server:
        """Start the history, put back the stored alarm log and limits and each patient's
        newest stored readings in its ring, listen for viewers, then start reading every
        patient's service."""
        if self.recorder is not None:
            self.recorder.start()
            # One bound for both: the alarms' past first (small), then the readings.
            deadline = asyncio.get_running_loop().time() + HISTORY_LOAD_TIMEOUT
            await self._preload_alarms(self.recorder, deadline)
            await self._preload(self.recorder, deadline)
        server = await self.edge.start()
        self._tasks = [
            asyncio.create_task(source.run(), name=f"upstream {source.id}")
            for source in self.sources
        ]
        self._tasks.append(asyncio.create_task(self.alarms.run(), name="alarm timers"))
        return server

    async def _preload(self, recorder: Recorder, deadline: float) -> None:
        """Each patient's ring gets the history's newest readings, until ``deadline`` (the
        event loop's time; the patients not read by then start empty)."""
        loaded = 0
        try:
            async with asyncio.timeout_at(deadline):
                for patient_id, patient in self.hub.patients.items():
                    stored = await asyncio.to_thread(
                        recorder.load_recent, patient_id, self.settings.buffer
                    )
                    loaded += patient.preload(stored)
        except TimeoutError:
            log.warning(
                "history: the newest readings not read within %g s; serving without them (%s)",
                HISTORY_LOAD_TIMEOUT,
                recorder.status().get("detail") or "no cause given",
            )
        except Exception as exc:  # the live readings matter more than the past
            log.warning("history: the newest readings not read (%s); serving without them", exc)
        if loaded:
            log.info("history: %d readings from %s shown from the start", loaded, self.settings.db)

    async def _preload_alarms(self, recorder: Recorder, deadline: float) -> None:
        """The stored alarm log back in memory and each patient's limits by the rule of
        :func:`hrdash.store.limits_at_start`, until ``deadline`` (the event loop's time; past
        it, or on a read error, the sources file's limits and an empty log)."""

        def load() -> tuple[dict[str, StoredLimits], list[dict[str, Any]]]:
            return recorder.load_limits(), recorder.load_log(LOG_KEPT)

        try:
            async with asyncio.timeout_at(deadline):
                stored, entries = await asyncio.to_thread(load)
        except TimeoutError:
            log.warning(
                "history: the alarm log and limits not read within %g s; starting with the"
                " sources file's limits (%s)",
                HISTORY_LOAD_TIMEOUT,
                recorder.status().get("detail") or "no cause given",
            )
            return
        except Exception as exc:  # the alarms must run, with or without their past
            log.warning("history: the alarm log and limits not read (%s)", exc)
            return
        kept = self.alarms.preload_log(entries)
        for patient_id, file in self.file_limits.items():
            row = stored.get(patient_id)
            limits, edited = limits_at_start(row, file)
            if edited and row is not None:
                self.alarms.restore_limits(patient_id, row.limits)
                self.alarms.set_limits(patient_id, file, SOURCES_FILE)  # logged
            elif limits != file:
                self.alarms.restore_limits(patient_id, limits)
        if kept or stored:
            log.info(
                "history: %d alarm log entries and %d patients' limits from %s",
                kept,
                len(stored),
                self.settings.db,
            )

    async def close(self) -> None:
        """Stop reading; then, while the edge closes the viewers' connections, the recorder
        commits everything accepted (at most ``HISTORY_CLOSE_TIMEOUT``) and closes."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        recorder = self.recorder
        closing = None
        if recorder is not None:
            closing = asyncio.create_task(close_recorder(recorder), name="history close")
        await self.edge.close()
        if closing is not None:
            await closing

    # -- the first patient (the one patient of HRDASH_UPSTREAM_URL) ----------------------------

    @property
    def port(self) -> int:
        return self.edge.port

    @property
    def server(self) -> Server | None:
        return self.edge.server

    @property
    def run_id(self) -> str:
        return self.hub.run_id

    @property
    def source(self) -> PatientSource:
        return self.sources[0]

    @property
    def patient(self) -> PatientHub:
        return self.hub.first

    @property
    def buffer(self) -> RingBuffer:
        return self.patient.buffer

    @property
    def counters(self) -> dict[str, int]:
        """Every counter of the first patient, the edge's, the hub's and the source's."""
        return self.edge.counters(self.edge.first)

    def status(self) -> dict[str, Any]:
        """The first patient's status frame (what a viewer or /healthz sees)."""
        return self.edge.status()

    def on_frame(self, data: str | bytes) -> list[Reading]:
        """Hand the first patient's source one upstream frame (see PatientSource.on_frame)."""
        return self.source.on_frame(data)

    @property
    def upstream(self) -> str:
        return self.source.upstream

    @property
    def reader(self) -> FrameReader:
        return self.source.reader

    @property
    def rejects(self) -> RejectCounter:
        return self.source.rejects

    @property
    def last_rejection(self) -> dict[str, Any] | None:
        return self.source.last_rejection

    @property
    def viewers(self) -> set[ServerConnection]:
        return self.edge.first.viewers

    @property
    def detail_viewers(self) -> set[ServerConnection]:
        return self.edge.first.detail_viewers

    @property
    def monotonic(self) -> Callable[[], float]:
        """The clock of the viewers' message rate limit."""
        return self.edge.monotonic

    @monotonic.setter
    def monotonic(self, clock: Callable[[], float]) -> None:
        self.edge.monotonic = clock


async def run_bridge(settings: Settings, ready: Callable[[Bridge], None] | None = None) -> None:
    """Run a bridge until SIGINT/SIGTERM."""
    bridge = Bridge(settings)
    await bridge.start()
    if len(bridge.sources) == 1:
        relaying = bridge.source.settings.display_source
    else:
        relaying = f"{len(bridge.sources)} patients ({settings.display_source})"
    log.info(
        "bridge on ws://%s:%d/ws relaying %s (origins: %s)",
        settings.bridge_host,
        bridge.port,
        relaying,
        ", ".join(settings.effective_origins),
    )
    if ready is not None:
        ready(bridge)
    await stop_requested()
    await bridge.close()
