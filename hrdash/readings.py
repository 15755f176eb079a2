"""Pure core: turn one upstream frame into readings, or into a counted rejection.

No I/O here: no sockets, no logging, no clock (the caller passes the receive time). The bridge
calls :func:`parse_frame` for every frame it receives and relays only what comes back as readings.

A reading is a heart rate (``bpm``, a finite number in ``BPM_MIN..BPM_MAX``) with a time in Unix
milliseconds. Times may arrive as Unix seconds, milliseconds, microseconds or nanoseconds (told
apart by magnitude) or as ISO-8601 strings; a frame without a time gets its receive time.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NamedTuple

BPM_MIN = 20
BPM_MAX = 300
DEFAULT_VALUE_FIELD = "value"
DEFAULT_TIME_FIELD = "time"

# Why a frame was rejected. These names are stable: they are counter keys in /healthz and in
# the bridge's status frames.
FRAME_REASONS: tuple[str, ...] = (
    "binary",  # a binary WebSocket frame
    "not_json",  # text that is not JSON (or nests too deep, or holds an absurd integer)
    "not_object",  # JSON, but not an object holding the value
    "no_value",  # the value field is missing or null
    "boolean",  # the value is true/false
    "not_numeric",  # the value is neither a number nor a numeric string
    "not_finite",  # NaN or +-Infinity
    "out_of_range",  # outside BPM_MIN..BPM_MAX
    "bad_time",  # the time field is present but not a usable time
)
REJECT_REASONS: tuple[str, ...] = (
    *FRAME_REASONS,
    "too_large",  # the frame exceeded the bridge's max_size (counted by the bridge)
    "transform_error",  # the HRDASH_TRANSFORM hook raised or returned something unusable
    "transform_skipped",  # the hook returned None: skipped on purpose, still counted
)


class Reading(NamedTuple):
    """One accepted reading, before the buffer gives it a sequence number."""

    time: int  # Unix ms
    bpm: int | float


class Rejected(NamedTuple):
    """A frame we will not relay. ``detail`` is a short human-readable explanation."""

    reason: str
    detail: str


@dataclass(frozen=True)
class FieldMapping:
    """Where the heart rate and the time live in an upstream frame (dotted paths)."""

    value: str = DEFAULT_VALUE_FIELD
    time: str = DEFAULT_TIME_FIELD

    @classmethod
    def from_settings(cls, value_field: str, time_field: str) -> FieldMapping:
        return cls(value=value_field or DEFAULT_VALUE_FIELD, time=time_field or DEFAULT_TIME_FIELD)


_MISSING = object()


def get_path(obj: Any, path: str) -> Any:
    """Follow a dotted path (``a.b.0.c``; integers index lists). Returns ``_MISSING`` if absent."""
    current = obj
    for part in path.split("."):
        if isinstance(current, dict):
            if part not in current:
                return _MISSING
            current = current[part]
        elif isinstance(current, list):
            try:
                current = current[int(part)]
            except (ValueError, IndexError):
                return _MISSING
        else:
            return _MISSING
    return current


def _reject_constant(name: str) -> float:
    # json.loads accepts NaN/Infinity literals; keep them as floats so that the value check
    # rejects them with the precise reason ("not_finite").
    return float(name.replace("Infinity", "inf"))


def decode(data: str | bytes) -> Any | Rejected:
    """Parse a text frame as JSON. Binary frames and non-JSON text are rejections."""
    if isinstance(data, (bytes, bytearray, memoryview)):
        return Rejected("binary", f"binary frame of {len(data)} bytes")
    try:
        return json.loads(data, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return Rejected("not_json", first[:120])


def to_bpm(value: Any) -> int | float | Rejected:
    """Validate a heart-rate value: a finite number (or numeric string) in range."""
    if value is _MISSING or value is None:
        return Rejected("no_value", "no heart-rate value")
    if isinstance(value, bool):
        return Rejected("boolean", f"value is {str(value).lower()}")
    if isinstance(value, str):
        text = value.strip()
        try:
            number: int | float = int(text)
        except ValueError:
            try:
                number = float(text)
            except ValueError:
                return Rejected("not_numeric", f"value {value[:40]!r} is not a number")
    elif isinstance(value, (int, float)):
        number = value
    else:
        return Rejected("not_numeric", f"value is a {type(value).__name__}")
    if isinstance(number, float):
        if not math.isfinite(number):
            return Rejected("not_finite", f"value is {number}")
        if number.is_integer():
            number = int(number)
    if not BPM_MIN <= number <= BPM_MAX:
        if abs(number) < 1e9:
            shown = str(number)
        elif isinstance(number, float):
            shown = f"{number:.3g}"
        else:  # formatting a huge int as a float would raise OverflowError
            shown = f"a {len(str(abs(number)))}-digit integer"
        return Rejected("out_of_range", f"{shown} bpm is outside {BPM_MIN}-{BPM_MAX}")
    return number


def to_time_ms(value: Any, received_ms: int) -> int | Rejected:
    """Normalise a time to Unix ms. Missing/null → ``received_ms``."""
    if value is _MISSING or value is None:
        return received_ms
    if isinstance(value, bool):
        return Rejected("bad_time", f"time is {str(value).lower()}")
    if isinstance(value, str):
        text = value.strip()
        try:
            number: float = float(text)
        except ValueError:
            try:
                parsed = datetime.fromisoformat(text)
            except ValueError:
                return Rejected("bad_time", f"time {value[:40]!r} is not a number or ISO-8601")
            if parsed.tzinfo is None:
                parsed = parsed.replace(tzinfo=UTC)
            iso_ms = round(parsed.timestamp() * 1000)
            if not 0 < iso_ms <= 1e14:  # the same range as numeric times
                return Rejected("bad_time", f"time {value[:40]!r} is out of range")
            return iso_ms
    elif isinstance(value, (int, float)):
        try:
            number = float(value)
        except OverflowError:  # an integer too large for a float
            return Rejected("bad_time", "time is too far in the future")
    else:
        return Rejected("bad_time", f"time is a {type(value).__name__}")
    if not math.isfinite(number) or number <= 0:
        return Rejected("bad_time", f"time {value!r} is not a positive finite number")
    # Tell units apart by magnitude (valid for dates between 1973 and 5138).
    if number < 1e11:
        ms = number * 1000  # seconds
    elif number < 1e14:
        ms = number  # milliseconds
    elif number < 1e17:
        ms = number / 1000  # microseconds
    else:
        ms = number / 1e6  # nanoseconds
    if ms > 1e14:
        return Rejected("bad_time", f"time {value!r} is too far in the future")
    if round(ms) <= 0:  # e.g. 2e-6 s: positive, but not one whole ms after the epoch
        return Rejected("bad_time", f"time {value!r} is not a positive finite number")
    return round(ms)


def _reading(value: Any, time_value: Any, received_ms: int, value_path: str) -> Reading | Rejected:
    bpm = to_bpm(value)
    if isinstance(bpm, Rejected):
        if bpm.reason == "no_value":
            return Rejected("no_value", f"no field {value_path!r}")
        return bpm
    time_ms = to_time_ms(time_value, received_ms)
    if isinstance(time_ms, Rejected):
        return time_ms
    return Reading(time_ms, bpm)


def extract(obj: Any, mapping: FieldMapping, received_ms: int) -> Reading | Rejected:
    """One decoded JSON object → one reading or a rejection (paths without ``*``)."""
    if not isinstance(obj, dict):
        return Rejected("not_object", f"frame is a JSON {type(obj).__name__}, not an object")
    value = get_path(obj, mapping.value)
    return _reading(value, get_path(obj, mapping.time), received_ms, mapping.value)


def _split_star(path: str) -> tuple[str, str] | None:
    """``readings.*.hr`` → (``readings``, ``hr``); ``None`` for a path without ``*``."""
    if "*" not in path.split("."):
        return None
    prefix, _, suffix = path.partition("*")
    return prefix.rstrip("."), suffix.lstrip(".")


def extract_all(obj: Any, mapping: FieldMapping, received_ms: int) -> list[Reading | Rejected]:
    """One decoded frame → every reading it holds, in order, or rejections.

    - A value path with a ``*`` segment (``readings.*.hr``, ``*.value``) yields one reading per
      element of that list; the time comes from the same element when the time path has the
      same ``prefix.*``, otherwise from the frame (``ts`` for all) or the receive time.
    - A frame that is a JSON array, with a mapping without ``*``, is read element by element.
    - Anything else is one object, one reading.
    """
    star = _split_star(mapping.value)
    if star is None:
        if isinstance(obj, list):
            if not obj:
                return [Rejected("no_value", "empty array")]
            return [extract(item, mapping, received_ms) for item in obj]
        return [extract(obj, mapping, received_ms)]
    prefix, suffix = star
    records = get_path(obj, prefix) if prefix else obj
    if not isinstance(records, list):
        where = repr(prefix) if prefix else "the top of the frame"
        kind = "missing" if records is _MISSING else f"a {type(records).__name__}"
        return [
            Rejected(
                "no_value" if records is _MISSING else "not_object",
                f"expected a list of readings at {where}, found {kind}",
            )
        ]
    if not records:
        return [Rejected("no_value", "empty list of readings")]
    time_star = _split_star(mapping.time)
    per_record_time = time_star is not None and time_star[0] == prefix
    frame_time = _MISSING if per_record_time else get_path(obj, mapping.time)
    out: list[Reading | Rejected] = []
    for record in records:
        value = get_path(record, suffix) if suffix else record
        if per_record_time and time_star is not None:
            time_value = get_path(record, time_star[1]) if time_star[1] else _MISSING
        else:
            time_value = frame_time
        out.append(_reading(value, time_value, received_ms, mapping.value))
    return out


def parse_frame(data: str | bytes, mapping: FieldMapping, received_ms: int) -> Reading | Rejected:
    """One upstream WebSocket frame → one reading, or why it was rejected. Never raises.

    For frames that may hold several readings use :func:`parse_readings`."""
    obj = decode(data)
    if isinstance(obj, Rejected):
        return obj
    return extract(obj, mapping, received_ms)


def parse_readings(
    data: str | bytes, mapping: FieldMapping, received_ms: int
) -> list[Reading | Rejected]:
    """One upstream frame → its readings and rejections, in order. Never raises."""
    obj = decode(data)
    if isinstance(obj, Rejected):
        return [obj]
    return extract_all(obj, mapping, received_ms)


class RejectCounter:
    """Counts rejections by reason and decides when each reason may be logged again.

    Logging is limited to once per reason per ``log_every`` seconds; the caller passes the
    clock, so this stays pure.
    """

    def __init__(self, log_every: float = 10.0) -> None:
        self.log_every = log_every
        self.counts: dict[str, int] = {}
        self.suppressed: dict[str, int] = {}
        self._last_logged: dict[str, float] = {}

    def add(self, reason: str, now: float) -> int | None:
        """Count one rejection. Returns how many were suppressed since the last log line if this
        one should be logged now, else ``None``."""
        self.counts[reason] = self.counts.get(reason, 0) + 1
        last = self._last_logged.get(reason)
        if last is not None and now - last < self.log_every:
            self.suppressed[reason] = self.suppressed.get(reason, 0) + 1
            return None
        self._last_logged[reason] = now
        return self.suppressed.pop(reason, 0)

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def __iter__(self) -> Iterator[tuple[str, int]]:
        return iter(sorted(self.counts.items()))
