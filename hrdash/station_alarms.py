"""The station's alarms at run time: every patient's :class:`hrdash.alarms.PatientAlarms`, the
station's :class:`hrdash.alarms.AudioPause`, the alarm log and the timer that fires the
engines' deadlines with no reading coming in.

The bridge feeds it (:meth:`StationAlarms.reading`, :meth:`StationAlarms.upstream`) and the
edge hands it the viewers' state changes (:meth:`StationAlarms.acknowledge`,
:meth:`StationAlarms.set_limits`, :meth:`StationAlarms.pause`). Whenever a patient's alarm state
(:meth:`PatientAlarms.alarms`) differs from what was last announced, or its limits change,
``on_change(patient_id)`` is called; a new audio pause, and its end, call ``on_change(None)``
(every patient's alarm frames carry the pause and what sounds). One asyncio task
(:meth:`StationAlarms.run`) sleeps until the earliest deadline of all patients (and the running
pause's end) and is woken when a deadline moves earlier, so alarms happen, and a pause ends,
with no page open and no message coming.

The log is kept in memory, bounded: the last :data:`LOG_KEPT` entries of each patient, and as
many of the station's (``audio_paused``); every new entry is also handed to ``on_log`` (the
bridge's recorder writes it to the history, ``alarm_log``), and every limits change to
``on_limits`` (the history's ``limits`` row). At start the bridge puts the history's newest
entries back (:meth:`StationAlarms.preload_log`) and the stored limits
(:meth:`StationAlarms.restore_limits`), so the log and page-set limits survive a restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import time
from collections import deque
from collections.abc import Callable, Container, Iterable, Mapping
from typing import Any, Protocol

from hrdash.alarms import PRIORITIES, AudioPause, Limits, PatientAlarms

__all__ = [
    "LOG_KEPT",
    "PATIENT_ID_SHOWN",
    "AlarmState",
    "StationAlarms",
    "alarm_frame",
    "check_change",
    "no_such_alarm",
    "ranked",
]

LOG_KEPT = 1000  # log entries kept per patient (and for the station's audio pauses)
PATIENT_ID_SHOWN = 64  # characters of an unknown patient id echoed in an answer
ALARM_ID_SHOWN = 100  # characters of an unknown alarm id echoed in an answer
TIMER_MAX_SLEEP = 60.0  # seconds the timer sleeps at most before looking again
TIMER_MIN_SLEEP = 0.001  # seconds the timer sleeps at least (a deadline already due: again)

Entry = dict[str, Any]
_RANK = {p: i for i, p in enumerate(PRIORITIES)}


def check_change(request: Mapping[str, Any], patients: Container[str]) -> dict[str, Any]:
    """A viewer's state change (``ack``, ``audio_pause`` or ``limits``) in its checked form,
    only the fields it is made of: ``{"type": "ack", "alarm": ID}``, ``{"type": "audio_pause",
    "seconds": S}`` or ``{"type": "limits", "patient": ID, <the four limits>}`` for a patient
    among ``patients``. Raises ValueError (one line, naming the field) when it is not valid;
    whether the alarm to acknowledge is active or latched is for the caller to see."""
    kind = request.get("type")
    if kind == "ack":
        alarm_id = request.get("alarm")
        if not isinstance(alarm_id, str):
            raise ValueError("alarm: expected an alarm id (a string)")
        return {"type": kind, "alarm": alarm_id}
    if kind == "audio_pause":
        seconds = request.get("seconds")
        AudioPause.check(seconds)
        return {"type": kind, "seconds": seconds}
    if kind == "limits":
        patient_id = request.get("patient")
        if not isinstance(patient_id, str) or patient_id not in patients:
            raise ValueError(f"patient: no patient {str(patient_id)[:PATIENT_ID_SHOWN]!r}")
        limits = Limits.from_mapping(request)
        return {"type": kind, "patient": patient_id, **limits.as_dict()}
    raise ValueError(f"type: expected ack, audio_pause or limits, got {str(kind)[:20]!r}")


def ranked(alarms: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """``alarms`` highest priority first, then oldest first (``GET /api/alarms``'s order)."""
    return sorted(alarms, key=lambda a: (_RANK[a["priority"]], a["since"]))


def no_such_alarm(alarm_id: str) -> ValueError:
    """The answer to an ``ack`` of an alarm that is not active or latched (one line)."""
    return ValueError(f"alarm: no active or latched alarm {alarm_id[:ALARM_ID_SHOWN]!r}")


class AlarmState(Protocol):
    """What an alarm frame is made of: :class:`StationAlarms`, or an edge's mirror of the
    ingests' frames (:class:`hrdash.broker.edge_node.RemoteAlarms`)."""

    def alarms(self, patient_id: str) -> list[dict[str, Any]]: ...

    def limits(self, patient_id: str) -> dict[str, float]: ...

    def sounding(self, patient_id: str | None = None) -> str | None: ...

    def paused_until(self) -> int | None: ...


def alarm_frame(state: AlarmState, patient_id: str, now: float) -> dict[str, Any]:
    """The patient's ``alarm`` frame at ``now`` (Unix s): the clock (``now``, Unix ms, as
    station frames carry it: a page counts the audio pause down against it), the patient's
    whole alarm state, its limits in effect, what of it sounds and the station's audio pause."""
    return {
        "type": "alarm",
        "patient": patient_id,
        "now": int(now * 1000),
        "alarms": state.alarms(patient_id),
        "limits": state.limits(patient_id),
        "sounding": state.sounding(patient_id),
        "audio_paused_until": state.paused_until(),
    }


class StationAlarms:
    """Every patient's alarm engine. ``patients`` maps each id to its limits; ``clock`` gives
    Unix seconds; ``on_change(patient_id | None)`` is told of each change to announce."""

    def __init__(
        self,
        patients: Iterable[tuple[str, Limits]],
        *,
        no_signal_after: float,
        clock: Callable[[], float] = time.time,
        on_change: Callable[[str | None], None] = lambda patient: None,
        on_log: Callable[[list[Entry]], None] = lambda entries: None,
        on_limits: Callable[[str, Limits, int, str | None], None] = lambda *change: None,
    ) -> None:
        self.clock = clock
        self.on_change = on_change
        self.on_log = on_log
        self.on_limits = on_limits
        self.no_signal_after = no_signal_after
        now = clock()
        self.engines: dict[str, PatientAlarms] = {
            pid: PatientAlarms(pid, now, limits, no_signal_after) for pid, limits in patients
        }
        self.audio = AudioPause()
        self.audio_paused_until: int | None = None  # Unix ms of the last pause's end
        self._count = itertools.count()
        self._logs: dict[str | None, deque[tuple[int, Entry]]] = {
            pid: deque(maxlen=LOG_KEPT) for pid in [*self.engines, None]
        }
        self._announced: dict[str, list[dict[str, Any]]] = {
            pid: engine.alarms() for pid, engine in self.engines.items()
        }
        self._wake = asyncio.Event()
        self._deadline: float | None = None  # what the timer sleeps until
        self._pause_end: float | None = None  # Unix s of the running pause's end, to announce

    # -- inputs ----------------------------------------------------------------------------

    def reading(self, patient_id: str, bpm: float) -> None:
        """A reading of the patient accepted now."""
        engine = self.engines[patient_id]
        self._after(patient_id, engine.on_reading(bpm, self.clock()))

    def upstream(self, patient_id: str, connected: bool) -> None:
        """The patient's service is connected (live) or not, from now."""
        engine = self.engines[patient_id]
        self._after(patient_id, engine.on_upstream(connected, self.clock()))

    def acknowledge(self, alarm_id: str, origin: str | None) -> bool:
        """Acknowledge an alarm (its id names its patient); false when no active or latched
        alarm has that id (nothing changed)."""
        patient_id = alarm_id.partition(":")[0]
        engine = self.engines.get(patient_id)
        if engine is None:
            return False
        entries = engine.acknowledge(alarm_id, self.clock(), origin)
        self._after(patient_id, entries)
        return any(e["event"] == "acknowledged" and e["alarm"] == alarm_id for e in entries)

    def set_limits(self, patient_id: str, limits: Limits, origin: str | None) -> None:
        """New limits for a known patient (checked: ValueError, one line, changes nothing):
        logged, handed to ``on_limits`` and announced (the alarm frames carry the limits), even
        when the alarms stay as they were. The same limits again change nothing."""
        engine = self.engines[patient_id]
        entries = engine.set_limits(limits, self.clock(), origin)
        changed = [e for e in entries if e["event"] == "limits_changed"]
        self._after(patient_id, entries, announce=bool(changed))
        for entry in changed:
            self.on_limits(patient_id, engine.limits, entry["time"], origin)

    def restore_limits(self, patient_id: str, limits: Limits) -> None:
        """Start the patient with ``limits`` (stored ones, at the bridge's start, before any
        reading): not logged, not handed to ``on_limits``. Its engine starts afresh (nothing
        has happened to it yet); ValueError (one line) for limits that are not valid."""
        old = self.engines[patient_id]
        self.engines[patient_id] = PatientAlarms(
            patient_id, self.clock(), limits, old.no_signal_after
        )
        self._after(patient_id, [])

    def add_patient(self, patient_id: str, limits: Limits) -> None:
        """Run an engine for ``patient_id`` from now, with ``limits`` (an ingest that took the
        patient over: not logged, not handed to ``on_limits``); announced, so its alarm frame
        goes out. ValueError for a patient it has already."""
        if patient_id in self.engines:
            raise ValueError(f"patient {patient_id!r} has an alarm engine already")
        limits.check()
        now = self.clock()
        engine = PatientAlarms(patient_id, now, limits, self.no_signal_after)
        self.engines[patient_id] = engine
        self._logs.setdefault(patient_id, deque(maxlen=LOG_KEPT))
        self._announced[patient_id] = engine.alarms()
        self._after(patient_id, [], announce=True)

    def remove_patient(self, patient_id: str) -> None:
        """Stop the patient's engine (another ingest has it now): no timer of it fires from
        now, no change of it is announced. Its log stays. Nothing for a patient it has not."""
        self.engines.pop(patient_id, None)
        self._announced.pop(patient_id, None)
        self._wake.set()  # the timer's deadline may have been this patient's

    def preload_log(self, entries: Iterable[Entry]) -> int:
        """Put stored log entries (oldest first) in the in-memory log before what happens
        from now, not handing them to ``on_log`` again; those of a patient the station does
        not have are left out. Returns how many were kept."""
        count = 0
        for entry in entries:
            log = self._logs.get(entry.get("patient"))
            if log is not None:
                log.append((next(self._count), entry))
                count += 1
        return count

    def pause(self, seconds: Any, origin: str | None) -> None:
        """Pause the station's audio (ValueError, one line, for seconds not a number in
        bounds)."""
        AudioPause.check(seconds)
        now = self.clock()
        for pid, engine in self.engines.items():  # the state the pause is judged on: now's
            self._after(pid, engine.tick(now))
        entries = self.audio.pause(seconds, now, origin, self.all_alarms())
        self.audio_paused_until = round((now + seconds) * 1000)
        self._pause_end = now + seconds
        self._log(None, entries)
        self.on_change(None)
        self._wake.set()  # the timer announces the pause's end

    def tick(self) -> None:
        """Fire every patient's timers due by now; announce a pause that has ended
        (``on_change(None)``: every patient's ``sounding`` and ``audio_paused_until`` changed)."""
        now = self.clock()
        for pid, engine in self.engines.items():
            self._after(pid, engine.tick(now))
        if self._pause_end is not None and self.audio.remaining(now) <= 0:
            self._pause_end = None
            self.on_change(None)

    def change(self, request: Mapping[str, Any], origin: str | None) -> None:
        """Apply a viewer's state change (:func:`check_change`): ValueError (one line) when it
        is not valid or acknowledges no active or latched alarm (nothing changed then)."""
        change = check_change(request, self.engines)
        kind = change["type"]
        if kind == "ack":
            if not self.acknowledge(change["alarm"], origin):
                raise no_such_alarm(change["alarm"])
        elif kind == "audio_pause":
            self.pause(change["seconds"], origin)
        else:
            self.set_limits(change["patient"], Limits.from_mapping(change), origin)

    # -- outputs ---------------------------------------------------------------------------

    def alarms(self, patient_id: str) -> list[dict[str, Any]]:
        """The patient's alarm state (active, latched, acknowledged)."""
        return self.engines[patient_id].alarms()

    def limits(self, patient_id: str) -> dict[str, float]:
        """The patient's limits in effect, ``{"extreme_low", "low", "high", "extreme_high"}``."""
        return self.engines[patient_id].limits.as_dict()

    def all_alarms(self) -> list[dict[str, Any]]:
        """Every patient's alarms, highest priority first, then oldest first."""
        return ranked(a for engine in self.engines.values() for a in engine.alarms())

    def paused_until(self) -> int | None:
        """Unix ms when the running audio pause ends, None when none runs."""
        if self.audio.remaining(self.clock()) > 0:
            return self.audio_paused_until
        return None

    def sounding(self, patient_id: str | None = None) -> str | None:
        """The priority that sounds now (:meth:`hrdash.alarms.AudioPause.should_sound`, the
        station's pause respected) over the patient's alarms, or (None) every patient's; None
        when nothing sounds."""
        alarms = self.all_alarms() if patient_id is None else self.alarms(patient_id)
        return self.audio.should_sound(alarms, self.clock())

    def alarm_frame(self, patient_id: str) -> dict[str, Any]:
        """The patient's ``alarm`` frame (:func:`alarm_frame`) on this station's clock."""
        return alarm_frame(self, patient_id, self.clock())

    def log(self, patient_id: str | None, limit: int) -> list[Entry]:
        """The newest ``limit`` log entries, newest first: the patient's, or (None) every
        patient's and the station's."""
        if patient_id is not None:
            kept: Iterable[tuple[int, Entry]] = reversed(self._logs[patient_id])
        else:
            kept = heapq.merge(
                *(reversed(log) for log in self._logs.values()), key=lambda item: -item[0]
            )
        return [entry for _, entry in itertools.islice(kept, limit)]

    # -- the timer -------------------------------------------------------------------------

    def next_deadline(self) -> float | None:
        """Unix s of the earliest engine deadline or the running pause's end; None: none."""
        deadlines = [d for e in self.engines.values() if (d := e.next_deadline()) is not None]
        if self._pause_end is not None:
            deadlines.append(self._pause_end)
        return min(deadlines, default=None)

    def wake(self) -> None:
        """Look at the deadlines again now (a deadline moved earlier, or the clock stepped)."""
        self._wake.set()

    async def run(self) -> None:
        """Fire the engines' timers at their deadlines, forever (cancel to stop)."""
        while True:
            self._wake.clear()
            self.tick()
            deadline = self.next_deadline()
            self._deadline = deadline
            wait = TIMER_MAX_SLEEP if deadline is None else deadline - self.clock()
            # At least TIMER_MIN_SLEEP: a deadline the tick did not consume cannot spin.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(min(max(wait, TIMER_MIN_SLEEP), TIMER_MAX_SLEEP)):
                    await self._wake.wait()

    # -- inside ----------------------------------------------------------------------------

    def _log(self, patient_id: str | None, entries: list[Entry]) -> None:
        log = self._logs[patient_id]
        for entry in entries:
            log.append((next(self._count), entry))
        if entries:
            self.on_log(entries)

    def _after(self, patient_id: str, entries: list[Entry], *, announce: bool = False) -> None:
        """Log what an engine call produced, announce a changed state (or anyway, with
        ``announce``), wake the timer when the earliest deadline moved earlier."""
        self._log(patient_id, entries)
        state = self.engines[patient_id].alarms()
        if announce or state != self._announced[patient_id]:
            self._announced[patient_id] = state
            self.on_change(patient_id)
        due = self.engines[patient_id].next_deadline()
        if due is not None and (self._deadline is None or due < self._deadline):
            self._deadline = due
            self._wake.set()
