"""Pure core of the alarms: one patient's alarm engine and the station's audio pause. No I/O,
no asyncio; the clock is passed in.

The bridge (:mod:`hrdash.station_alarms`) feeds each patient's :class:`PatientAlarms`
with the readings it accepts (:meth:`~PatientAlarms.on_reading`), the state of the patient's
service (:meth:`~PatientAlarms.on_upstream`), the viewers' acknowledgements and limits, and
calls :meth:`~PatientAlarms.tick` by :meth:`~PatientAlarms.next_deadline` so that the timers
(condition delays, no signal, source down) fire with no reading coming in. Every method returns
the log entries it produced (the ``/api/alarms/log`` shape)::

    {"time": <Unix ms>, "patient", "alarm": ID | None, "kind", "priority", "event",
     "value", "limit", "origin"}

and :meth:`~PatientAlarms.alarms` is the patient's whole alarm state (the alarms that have not
ended; :meth:`~PatientAlarms.ended_alarms` keeps the last few that did), ALARM dicts::

    {"id", "patient", "kind", "priority", "state", "since", "ended", "value", "limit"}

Times passed in are Unix seconds (float); times given out are Unix ms (int).

**Conditions.** ``hr_low``: a reading below ``low``; ``hr_high``: above ``high`` (medium
priority, :data:`MEDIUM_DELAY`); ``hr_extreme_low``/``hr_extreme_high``: beyond the extreme
limits (high priority, :data:`HIGH_DELAY`, latching). A heart-rate condition begins with a
reading strictly beyond its limit and ends with a reading back inside by the hysteresis margin
(:data:`HYSTERESIS`, at most half the gap to the next limit inwards): a value hovering on a limit
holds the condition instead of flapping. It also ends when the signal is lost (``no_signal``:
the value is not known any more). ``no_signal``: no reading for ``no_signal_after`` seconds,
counted from the last reading (or from the engine's start), whatever the service did meanwhile:
a reconnect does not reset it. ``source_down``: the service not connected for as long (from the
start until it first connects, or since it went down). Technical alarms are low priority and
never latch; they hold from the moment their time is up (no further delay) until a reading
comes (``no_signal``) or the service connects (``source_down``).

**Life cycle** of one alarm (at most one per kind that has not ended)::

    state          event                                      next state       logged
    (none)         condition held for its delay               active           raised
    active         condition goes, not latching               ended            ended
    active         condition goes, latching (extreme)         latched          latched
    active         acknowledged                               acknowledged     acknowledged
    acknowledged   condition goes                             ended            ended
    latched        acknowledged                               ended            acknowledged, ended
    latched        condition back and held for its delay      active           raised (same id)
    active/ack.    the extreme alarm of its side is raised    ended            ended (medium only)

A delay counts from the condition's onset, or from the last limits change while it holds (the
condition is judged afresh on the last reading against the new limits; an alarm already raised
stays if its condition still holds, with the new limit). **Extreme supersedes**: while the
extreme alarm of a side is active or acknowledged, that side's medium alarm does not exist (it
ends when the extreme one is raised, and is not raised meanwhile); when the extreme condition
goes, a medium condition that still holds and has held for its delay is raised at once. So a
side shows one heart-rate alarm at a time, the worst, except a latched extreme one beside the
medium one that still holds.

**Same instant.** Timers due at a time fire before a reading or message at that same time
(every method ticks to ``now`` first), so the result never depends on whether the bridge's
timer or the reading came first. Timers fire at their exact time, whenever ``tick`` is called:
the ``since`` of an alarm and the times in the log are when it happened, not when the engine
was asked. A clock that steps back is held at the latest time seen.

``value`` of a heart-rate alarm is the worst reading of its episode (the highest for a high
alarm, the lowest for a low one), ``limit`` the limit in bpm; for a technical alarm ``value``
is None and ``limit`` the seconds. A ``limits_changed`` entry has the old limits (dict) as
``value`` and the new ones as ``limit``; ``origin`` is who did it (the page's Origin), None
for what the readings and timers did, and the acknowledger or limit changer for what their
message caused (an alarm ended by a limits change carries that origin).

:class:`AudioPause` is the station's audio pause (at most :data:`AUDIO_PAUSE_MAX`, never
without a time limit): while it runs, nothing sounds but an alarm of a higher priority than any
that sounded when the pause began; acknowledged alarms never sound.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from itertools import pairwise
from typing import Any

__all__ = [
    "ACKNOWLEDGED",
    "ACTIVE",
    "AUDIO_PAUSE_MAX",
    "DELAYS",
    "ENDED",
    "EVENTS",
    "HIGH_DELAY",
    "HYSTERESIS",
    "KINDS",
    "KIND_LABELS",
    "LATCHED",
    "LATCHING",
    "LIMIT_MAX",
    "LIMIT_MIN",
    "LIMIT_ORDER",
    "MARKERS",
    "MEDIUM_DELAY",
    "NO_SIGNAL_AFTER",
    "PRIORITIES",
    "PRIORITY",
    "STATES",
    "TECHNICAL",
    "AudioPause",
    "Limits",
    "PatientAlarms",
]

Alarm = dict[str, Any]  # an ALARM of the contract
Entry = dict[str, Any]  # a log entry of the contract

LIMIT_MIN, LIMIT_MAX = 20, 300  # bpm: the range every alarm limit must lie in
LIMIT_ORDER = ("extreme_low", "low", "high", "extreme_high")  # strictly rising

MEDIUM_DELAY = 5.0  # seconds a low/high condition holds before its (medium) alarm
HIGH_DELAY = 2.0  # seconds an extreme condition holds before its (high) alarm
NO_SIGNAL_AFTER = 10.0  # seconds without a reading → no_signal; not connected → source_down
HYSTERESIS = 2.0  # bpm back inside a limit that end a condition (at most half the gap inwards)
AUDIO_PAUSE_MAX = 120.0  # seconds: the longest audio pause
ENDED_KEPT = 16  # ended alarms kept per patient for ended_alarms()

KINDS = ("hr_low", "hr_high", "hr_extreme_low", "hr_extreme_high", "no_signal", "source_down")
PRIORITIES = ("high", "medium", "low")  # highest first
ACTIVE, LATCHED, ACKNOWLEDGED, ENDED = "active", "latched", "acknowledged", "ended"
STATES = (ACTIVE, LATCHED, ACKNOWLEDGED, ENDED)
EVENTS = ("raised", "latched", "acknowledged", "ended", "audio_paused", "limits_changed")
MARKERS = {"high": "***", "medium": "**", "low": "*"}
KIND_LABELS = {  # what the pages call each kind
    "hr_low": "HR low",
    "hr_high": "HR high",
    "hr_extreme_low": "HR extremely low",
    "hr_extreme_high": "HR extremely high",
    "no_signal": "No signal",
    "source_down": "Source down",
}
PRIORITY = {
    "hr_low": "medium",
    "hr_high": "medium",
    "hr_extreme_low": "high",
    "hr_extreme_high": "high",
    "no_signal": "low",
    "source_down": "low",
}
DELAYS = {
    "hr_low": MEDIUM_DELAY,
    "hr_high": MEDIUM_DELAY,
    "hr_extreme_low": HIGH_DELAY,
    "hr_extreme_high": HIGH_DELAY,
}
LATCHING = frozenset({"hr_extreme_low", "hr_extreme_high"})
TECHNICAL = frozenset({"no_signal", "source_down"})

_RANK = {"high": 3, "medium": 2, "low": 1}
# Heart-rate kinds: (limit field, side: +1 above, -1 below, the limit next inwards).
_HR = {
    "hr_extreme_low": ("extreme_low", -1, "low"),
    "hr_extreme_high": ("extreme_high", 1, "high"),
    "hr_low": ("low", -1, "high"),
    "hr_high": ("high", 1, "low"),
}
_SUPERSEDED_BY = {"hr_low": "hr_extreme_low", "hr_high": "hr_extreme_high"}
# The order kinds are settled in: extremes before the medium ones they supersede.
_ORDER = ("hr_extreme_low", "hr_extreme_high", "hr_low", "hr_high", "no_signal", "source_down")


def _number(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{name}: expected a number, got {type(value).__name__}")
    if not math.isfinite(value):
        raise ValueError(f"{name}: expected a finite number, got {value}")
    return value


def _ms(t: float) -> int:
    return round(t * 1000)


@dataclass(frozen=True)
class Limits:
    """A patient's heart-rate alarm limits, in bpm (adult defaults)."""

    low: float = 50
    high: float = 120
    extreme_low: float = 40
    extreme_high: float = 150

    def check(self) -> None:
        """Raise ValueError, one line naming a field, unless every limit is a finite number
        within LIMIT_MIN-LIMIT_MAX and extreme_low < low < high < extreme_high."""
        for name in LIMIT_ORDER:
            value = _number(name, getattr(self, name))
            if not LIMIT_MIN <= value <= LIMIT_MAX:
                raise ValueError(f"{name}: expected {LIMIT_MIN}-{LIMIT_MAX} bpm, got {value}")
        for below, above in pairwise(LIMIT_ORDER):
            if getattr(self, below) >= getattr(self, above):
                raise ValueError(
                    f"{above}: expected more than {below} ({getattr(self, below)}), "
                    f"got {getattr(self, above)}"
                )

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any], defaults: Limits | None = None) -> Limits:
        """Checked limits from a mapping (a ``limits`` message, a sources file's table). Keys
        other than the four limits are ignored (a message also has ``type`` and ``patient``).
        Without ``defaults`` all four are required (a message); with it, a missing one is taken
        from it. Raises ValueError, one line naming the field. Whole numbers become ints."""
        found: dict[str, float] = {}
        for name in LIMIT_ORDER:
            if name in values:
                value = _number(name, values[name])
                found[name] = int(value) if float(value).is_integer() else float(value)
            elif defaults is None:
                raise ValueError(
                    f"{name}: missing (all four are required: {', '.join(LIMIT_ORDER)})"
                )
            else:
                found[name] = getattr(defaults, name)
        limits = cls(**found)
        limits.check()
        return limits

    def as_dict(self) -> dict[str, float]:
        return asdict(self)

    def margin(self, kind: str) -> float:
        """bpm back inside its limit that end a heart-rate condition: HYSTERESIS, or half the
        gap to the next limit inwards when that is less (so the two sides never overlap)."""
        name, _, inner = _HR[kind]
        return min(HYSTERESIS, abs(getattr(self, name) - getattr(self, inner)) / 2)


@dataclass
class _Record:
    """One alarm, as the engine keeps it (times in Unix seconds)."""

    id: str
    kind: str
    state: str
    since: float
    value: float | None
    limit: float | None
    ended: float | None = None

    def as_alarm(self, patient: str) -> Alarm:
        return {
            "id": self.id,
            "patient": patient,
            "kind": self.kind,
            "priority": PRIORITY[self.kind],
            "state": self.state,
            "since": _ms(self.since),
            "ended": None if self.ended is None else _ms(self.ended),
            "value": self.value,
            "limit": self.limit,
        }


@dataclass
class _Condition:
    """A heart-rate condition: ``on`` (with hysteresis), ``start`` of its delay count and the
    ``worst`` reading since its onset."""

    on: bool = False
    start: float = 0.0
    worst: float = 0.0


class PatientAlarms:
    """One patient's alarm engine, started at ``now`` (Unix seconds) with its ``limits`` (checked
    here) and ``no_signal_after`` seconds (> 0) for the technical alarms. The service counts as
    not connected until :meth:`on_upstream` says otherwise.

    Every method takes the time, runs the timers due up to it (:meth:`tick`) and returns the
    log entries produced, oldest first. After any call, the caller should call :meth:`tick` at
    :meth:`next_deadline` (if not None), and send the patient's alarm state (:meth:`alarms`)
    when it differs from what it last sent: an entry means it changed, and a worse reading
    changes an alarm's ``value`` without one.
    """

    def __init__(
        self,
        patient: str,
        now: float,
        limits: Limits | None = None,
        no_signal_after: float = NO_SIGNAL_AFTER,
    ) -> None:
        limits = Limits() if limits is None else limits
        limits.check()
        if not (math.isfinite(no_signal_after) and no_signal_after > 0):
            raise ValueError(f"no_signal_after: expected seconds > 0, got {no_signal_after}")
        self.patient = patient
        self.no_signal_after = float(no_signal_after)
        self._limits = limits
        self._now = now
        self._last_reading = now  # no_signal counts from the start until the first reading
        self._last_value: float | None = None
        self._connected = False
        self._down_since = now
        self._conditions = {kind: _Condition() for kind in _HR}
        self._alarms: dict[str, _Record] = {}  # kind → its alarm that has not ended
        self._ended: deque[_Record] = deque(maxlen=ENDED_KEPT)
        self._ids: dict[str, tuple[int, int]] = {}  # kind → (ms, n) of its last id

    @property
    def limits(self) -> Limits:
        return self._limits

    # -- inputs ---------------------------------------------------------------------------

    def on_reading(self, bpm: float, now: float) -> list[Entry]:
        """A reading the bridge accepted at ``now``. Raises ValueError for a non-finite bpm."""
        _number("bpm", bpm)
        out = self.tick(now)
        t = self._now
        self._last_reading = t
        self._last_value = bpm
        for kind, cond in self._conditions.items():
            name, side, _ = _HR[kind]
            limit = getattr(self._limits, name)
            if not cond.on:
                if side * (bpm - limit) > 0:
                    cond.on, cond.start, cond.worst = True, t, bpm
            elif side * (limit - bpm) >= self._limits.margin(kind):
                cond.on = False
            else:
                cond.worst = max(cond.worst, bpm) if side > 0 else min(cond.worst, bpm)
                record = self._alarms.get(kind)
                if record is not None and record.state != LATCHED and record.value is not None:
                    record.value = max(record.value, bpm) if side > 0 else min(record.value, bpm)
        out += self._settle(t, None)
        return out

    def on_upstream(self, connected: bool, now: float) -> list[Entry]:
        """The patient's service connected (True) or is not connected (False) since ``now``."""
        out = self.tick(now)
        if connected and not self._connected:
            self._connected = True
        elif not connected and self._connected:
            self._connected = False
            self._down_since = self._now
        out += self._settle(self._now, None)
        return out

    def acknowledge(self, alarm_id: str, now: float, origin: str | None) -> list[Entry]:
        """Acknowledge an alarm: an active one becomes acknowledged (silenced, shown until its
        condition goes), a latched one ends. Any other id (ended, unknown, already
        acknowledged) changes nothing: the entries are then only those of the timers."""
        out = self.tick(now)
        t = self._now
        for record in self._alarms.values():
            if record.id != alarm_id or record.state not in (ACTIVE, LATCHED):
                continue
            out.append(self._entry(t, record, "acknowledged", origin))
            if record.state == LATCHED:
                out += self._end(t, record, origin)
            else:
                record.state = ACKNOWLEDGED
            break
        out += self._settle(t, origin)
        return out

    def set_limits(self, limits: Limits, now: float, origin: str | None) -> list[Entry]:
        """New limits from ``now`` (checked first: ValueError and nothing changes). Every
        heart-rate condition is judged afresh on the last reading and its delay counts from
        now; raised alarms whose condition still holds stay, with the new limit. The same
        limits again change nothing."""
        limits.check()
        out = self.tick(now)
        t = self._now
        if limits == self._limits:
            return out
        old, self._limits = self._limits, limits
        out.append(self._plain_entry(t, "limits_changed", old.as_dict(), limits.as_dict(), origin))
        signal = self._last_value is not None and t < self._last_reading + self.no_signal_after
        for kind, cond in self._conditions.items():
            name, side, _ = _HR[kind]
            limit = getattr(limits, name)
            bpm = self._last_value
            cond.on = signal and bpm is not None and side * (bpm - limit) > 0
            if cond.on and bpm is not None:
                cond.start, cond.worst = t, bpm
            record = self._alarms.get(kind)
            if cond.on and record is not None and record.state != LATCHED:
                record.limit = limit
        out += self._settle(t, origin)
        return out

    def tick(self, now: float) -> list[Entry]:
        """Fire every timer due up to ``now``, each at its own time."""
        out: list[Entry] = []
        while (due := self._due()) is not None and due <= now:
            self._now = max(self._now, due)
            out += self._settle(self._now, None)
            if self._due() == due:  # never: _settle consumes every timer due (a safety net)
                break
        self._now = max(self._now, now)
        return out

    # -- outputs --------------------------------------------------------------------------

    def next_deadline(self) -> float | None:
        """When :meth:`tick` must be called next (Unix seconds), None when no timer runs."""
        return self._due()

    def alarms(self) -> list[Alarm]:
        """The alarms that have not ended (active, latched, acknowledged), highest priority
        first, oldest first within one."""
        records = sorted(self._alarms.values(), key=lambda r: (-_RANK[PRIORITY[r.kind]], r.since))
        return [r.as_alarm(self.patient) for r in records]

    def ended_alarms(self) -> list[Alarm]:
        """The last :data:`ENDED_KEPT` alarms that ended, newest first (state ``ended``)."""
        return [r.as_alarm(self.patient) for r in reversed(self._ended)]

    # -- the machine ----------------------------------------------------------------------

    def _due(self) -> float | None:
        """The earliest time a timer fires: a condition's delay, no_signal, source_down."""
        times: list[float] = []
        for kind, cond in self._conditions.items():
            record = self._alarms.get(kind)
            if (
                cond.on
                and (record is None or record.state == LATCHED)
                and not self._suppressed(kind)
            ):
                times.append(cond.start + DELAYS[kind])
        if "no_signal" not in self._alarms:
            times.append(self._last_reading + self.no_signal_after)
        if not self._connected and "source_down" not in self._alarms:
            times.append(self._down_since + self.no_signal_after)
        return min(times, default=None)

    def _suppressed(self, kind: str) -> bool:
        extreme = _SUPERSEDED_BY.get(kind)
        record = self._alarms.get(extreme) if extreme else None
        return record is not None and record.state in (ACTIVE, ACKNOWLEDGED)

    def _settle(self, t: float, origin: str | None) -> list[Entry]:
        """Bring every alarm in line with its condition at time ``t``."""
        out: list[Entry] = []
        signal_lost = t >= self._last_reading + self.no_signal_after
        if signal_lost:
            for cond in self._conditions.values():
                cond.on = False
        for kind in _ORDER:
            record = self._alarms.get(kind)
            if kind in TECHNICAL:
                holds = (
                    signal_lost
                    if kind == "no_signal"
                    else not self._connected and t >= self._down_since + self.no_signal_after
                )
                if holds and record is None:
                    out.append(self._raise(t, kind, None, self.no_signal_after))
                elif not holds and record is not None:
                    out += self._end(t, record, None)
                continue
            cond = self._conditions[kind]
            suppressed = self._suppressed(kind)
            if record is not None and record.state in (ACTIVE, ACKNOWLEDGED):
                if not cond.on and record.state == ACTIVE and kind in LATCHING:
                    record.state = LATCHED
                    out.append(self._entry(t, record, "latched", origin))
                elif not cond.on or suppressed:
                    out += self._end(t, record, origin if not cond.on else None)
                record = self._alarms.get(kind)
            if cond.on and not suppressed and t >= cond.start + DELAYS[kind]:
                limit = getattr(self._limits, _HR[kind][0])
                if record is None:
                    out.append(self._raise(t, kind, cond.worst, limit))
                elif record.state == LATCHED:
                    _, side, _ = _HR[kind]
                    worst = record.value if record.value is not None else cond.worst
                    record.value = max(worst, cond.worst) if side > 0 else min(worst, cond.worst)
                    record.state, record.limit = ACTIVE, limit
                    out.append(self._entry(t, record, "raised", None))
        return out

    def _raise(self, t: float, kind: str, value: float | None, limit: float | None) -> Entry:
        ms = _ms(t)
        last_ms, n = self._ids.get(kind, (None, 0))
        n = n + 1 if last_ms == ms else 1  # the same kind raised twice in one ms: still unique
        self._ids[kind] = (ms, n)
        alarm_id = f"{self.patient}:{kind}:{ms}" + (f":{n}" if n > 1 else "")
        record = _Record(alarm_id, kind, ACTIVE, t, value, limit)
        self._alarms[kind] = record
        return self._entry(t, record, "raised", None)

    def _end(self, t: float, record: _Record, origin: str | None) -> list[Entry]:
        record.state, record.ended = ENDED, t
        del self._alarms[record.kind]
        self._ended.append(record)
        return [self._entry(t, record, "ended", origin)]

    def _entry(self, t: float, record: _Record, event: str, origin: str | None) -> Entry:
        return {
            "time": _ms(t),
            "patient": self.patient,
            "alarm": record.id,
            "kind": record.kind,
            "priority": PRIORITY[record.kind],
            "event": event,
            "value": record.value,
            "limit": record.limit,
            "origin": origin,
        }

    def _plain_entry(
        self, t: float, event: str, value: Any, limit: Any, origin: str | None
    ) -> Entry:
        return {
            "time": _ms(t),
            "patient": self.patient,
            "alarm": None,
            "kind": None,
            "priority": None,
            "event": event,
            "value": value,
            "limit": limit,
            "origin": origin,
        }


class AudioPause:
    """The station's audio pause. While it runs (at most :data:`AUDIO_PAUSE_MAX` seconds; it
    ends by itself), an alarm sounds only if its priority is higher than every alarm that
    sounded (active or latched) when the pause began. Acknowledged alarms never sound."""

    def __init__(self) -> None:
        self._until: float | None = None
        self._ceiling = 0  # rank of the highest priority sounding when the pause began

    def pause(
        self, seconds: float, now: float, origin: str | None, alarms: Iterable[Alarm]
    ) -> list[Entry]:
        """Pause the audio for ``seconds`` (0 < seconds <= AUDIO_PAUSE_MAX) from ``now``, over
        ``alarms`` (every patient's, as they are now); a new pause replaces a running one.
        Raises ValueError (one line) for other seconds. Returns the ``audio_paused`` entry:
        ``patient`` None (the whole station), ``value`` the seconds, ``limit`` the longest
        pause allowed."""
        self.check(seconds)
        self._until = now + seconds
        self._ceiling = max((_RANK[a["priority"]] for a in alarms if _sounds(a)), default=0)
        return [
            {
                "time": _ms(now),
                "patient": None,
                "alarm": None,
                "kind": None,
                "priority": None,
                "event": "audio_paused",
                "value": seconds,
                "limit": AUDIO_PAUSE_MAX,
                "origin": origin,
            }
        ]

    @staticmethod
    def check(seconds: Any) -> None:
        """ValueError (one line) unless a pause may last ``seconds`` (a number, 0 < seconds <=
        AUDIO_PAUSE_MAX)."""
        _number("seconds", seconds)
        if not 0 < seconds <= AUDIO_PAUSE_MAX:
            raise ValueError(
                f"seconds: expected more than 0 and at most {AUDIO_PAUSE_MAX:g}, got {seconds}"
            )

    def remaining(self, now: float) -> float:
        """Seconds of pause left at ``now`` (0 when not paused)."""
        return 0.0 if self._until is None else max(0.0, self._until - now)

    def should_sound(self, alarms: Iterable[Alarm], now: float) -> str | None:
        """The highest priority that sounds at ``now`` among ``alarms`` (every patient's), or
        None."""
        floor = self._ceiling if self.remaining(now) > 0 else 0
        ranks = [_RANK[a["priority"]] for a in alarms if _sounds(a)]
        best = max((r for r in ranks if r > floor), default=0)
        return next((p for p in PRIORITIES if _RANK[p] == best), None)


def _sounds(alarm: Alarm) -> bool:
    return alarm["state"] in (ACTIVE, LATCHED)
