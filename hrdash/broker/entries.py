"""Pure core of the Redis fan-out: key names and stream entries. No I/O, no clock.

Every patient's keys share one Redis Cluster hash tag, the patient id in braces, so that one
script may touch them together (the lease and a stream, :mod:`hrdash.broker.writer`):

==============================  ======  ===================================================
key                             type    holds
==============================  ======  ===================================================
``hrdash:{ID}:readings``        stream  every reading once: fields ``seq run time bpm``,
                                        entry id ``<seq>-0``; capped ``MAXLEN ~ buffer``
``hrdash:{ID}:alarms``          stream  alarm frames (each the patient's whole alarm state):
                                        field ``frame``, JSON; ``MAXLEN ~ STATE_KEPT``
``hrdash:{ID}:status``          stream  status of the patient's ingest (``upstream`` ...):
                                        field ``frame``, JSON; ``MAXLEN ~ STATE_KEPT``
``hrdash:{ID}:lease``           string  the id of the ingest holding the patient, ``PX`` ttl
==============================  ======  ===================================================

A reading's entry id is its seq (``<seq>-0``): the stream's own order is the seq order, a
``since`` is an id range (``XRANGE (<seq>-0 +``), and a reading written twice (a batch retried
after a lost reply) is refused by Redis as not newer than the stream's top, never stored twice.
Status and alarm entries get Redis's ids (``*``): they are state, each complete on its own, and
readers need only the newest.

Decoding never raises on what came out of Redis: a bad entry becomes a :class:`Rejected` with one
of :data:`ENTRY_REASONS` (stable names: counter keys) and a short detail, for the caller to
count (:class:`hrdash.readings.RejectCounter`) and skip.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from typing import Any, NamedTuple

from hrdash.hub import UPSTREAM_STATES
from hrdash.readings import BPM_MAX, BPM_MIN, Rejected

__all__ = [
    "ENTRY_REASONS",
    "FRAME_FIELD",
    "FRAME_KINDS",
    "MAX_FRAME_BYTES",
    "PatientKeys",
    "StreamReading",
    "decode_frame",
    "decode_reading",
    "encode_frame",
    "encode_reading",
    "id_after",
    "keys_for",
    "parse_id",
    "reading_id",
]

KEY_PREFIX = "hrdash"
PATIENT_ID = re.compile(r"[A-Za-z0-9_-]{1,32}")  # as in the sources file (no braces, no colon)
RUN_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
SEQ_MAX = 2**53 - 1  # the largest integer a browser's JSON keeps exact
TIME_MAX = 2**53 - 1  # Unix ms
MAX_FRAME_BYTES = 256 * 1024  # a status or alarm entry larger than this is refused
FRAME_FIELD = "frame"  # the one field of a status or alarm entry: the frame as JSON
FRAME_KINDS = ("status", "alarm")  # the "type" of the frames the state streams carry
READING_FIELDS = ("seq", "run", "time", "bpm")

# Why an entry read from Redis was not used. Stable: counter keys.
ENTRY_REASONS: tuple[str, ...] = (
    "not_text",  # a field name or value that is not UTF-8
    "missing_field",  # a field the entry must have is absent
    "bad_id",  # the entry id is not "<ms>-<n>"
    "bad_seq",  # seq not a whole number from 1 to 2**53-1
    "id_mismatch",  # a reading whose entry id is not "<seq>-0"
    "bad_run",  # run not 1 to 64 of [A-Za-z0-9_-]
    "bad_time",  # time not a whole number of Unix ms from 0 to 2**53-1
    "bad_bpm",  # bpm not a finite number within BPM_MIN..BPM_MAX
    "too_large",  # a frame over MAX_FRAME_BYTES
    "not_json",  # a frame that is not strict JSON (NaN and Infinity refused)
    "bad_frame",  # JSON, but not a frame of this kind for this patient
)


class PatientKeys(NamedTuple):
    """The Redis keys of one patient (see the module's docstring)."""

    readings: str
    alarms: str
    status: str
    lease: str


def keys_for(patient_id: str) -> PatientKeys:
    """The keys of ``patient_id``. Raises ValueError (one line) for an id that is not
    ``[A-Za-z0-9_-]{1,32}``: braces in it would move its keys off the shared hash tag."""
    if not isinstance(patient_id, str) or not PATIENT_ID.fullmatch(patient_id):
        raise ValueError(f"patient id {str(patient_id)[:40]!r}: expected [A-Za-z0-9_-]{{1,32}}")
    tag = f"{KEY_PREFIX}:{{{patient_id}}}"
    return PatientKeys(f"{tag}:readings", f"{tag}:alarms", f"{tag}:status", f"{tag}:lease")


class StreamReading(NamedTuple):
    """A reading as the readings stream holds it: its seq and run are the ingest's, given once."""

    seq: int
    run: str
    time: int  # Unix ms
    bpm: int | float

    def as_dict(self) -> dict[str, int | float]:
        """The reading in a ``readings`` frame (``run`` is the frame's)."""
        return {"seq": self.seq, "time": self.time, "bpm": self.bpm}


# -- ids ---------------------------------------------------------------------------------------


def parse_id(entry_id: str | bytes) -> tuple[int, int] | None:
    """A stream entry id ``"<ms>-<n>"`` as a pair to compare, or ``None`` if it is not one."""
    text = entry_id.decode("ascii", "replace") if isinstance(entry_id, bytes) else entry_id
    ms, dash, n = text.partition("-")
    if not (dash and ms.isascii() and ms.isdigit() and n.isascii() and n.isdigit()):
        return None
    if len(ms) > 20 or len(n) > 20:
        return None
    return int(ms), int(n)


def reading_id(seq: int) -> str:
    """The readings stream's entry id of the reading with ``seq``."""
    return f"{seq}-0"


def id_after(entry_id: str, other: str) -> bool:
    """True if ``entry_id`` comes after ``other`` in a stream (both valid ids)."""
    a, b = parse_id(entry_id), parse_id(other)
    if a is None or b is None:
        raise ValueError(f"not stream ids: {entry_id!r}, {other!r}")
    return a > b


# -- readings ----------------------------------------------------------------------------------


def _bpm_text(bpm: int | float) -> str:
    if isinstance(bpm, bool) or not isinstance(bpm, int | float):
        raise ValueError(f"bpm {bpm!r}: expected a number")
    if isinstance(bpm, float) and not math.isfinite(bpm):
        raise ValueError(f"bpm {bpm!r}: expected a finite number")
    return str(bpm) if isinstance(bpm, int) else repr(bpm)


def encode_reading(reading: StreamReading) -> tuple[str, dict[str, str]]:
    """The entry id and fields of ``reading``. Raises ValueError for a reading no reader would
    accept (the ingest's bug, not the service's: mapped readings are checked already)."""
    seq, run, time_ms, bpm = reading
    if isinstance(seq, bool) or not isinstance(seq, int) or not 1 <= seq <= SEQ_MAX:
        raise ValueError(f"seq {seq!r}: expected a whole number from 1 to {SEQ_MAX}")
    if not isinstance(run, str) or not RUN_ID.fullmatch(run):
        raise ValueError(f"run {str(run)[:70]!r}: expected 1 to 64 of [A-Za-z0-9_-]")
    if isinstance(time_ms, bool) or not isinstance(time_ms, int) or not 0 <= time_ms <= TIME_MAX:
        raise ValueError(f"time {time_ms!r}: expected whole Unix ms from 0 to {TIME_MAX}")
    text = _bpm_text(bpm)
    if not BPM_MIN <= bpm <= BPM_MAX:
        raise ValueError(f"bpm {bpm!r}: expected {BPM_MIN} to {BPM_MAX}")
    fields = {"seq": str(seq), "run": run, "time": str(time_ms), "bpm": text}
    return reading_id(seq), fields


def _text_fields(fields: Mapping[Any, Any]) -> dict[str, str] | None:
    out: dict[str, str] = {}
    try:
        for name, value in fields.items():
            key = name.decode() if isinstance(name, bytes) else name
            out[key] = value.decode() if isinstance(value, bytes) else value
    except UnicodeDecodeError:
        return None
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in out.items()):
        return None
    return out


def _whole(text: str, low: int, high: int) -> int | None:
    digits = text[1:] if text.startswith("-") else text
    if not (digits.isascii() and digits.isdigit()) or len(digits) > 20:
        return None
    value = int(text)
    return value if low <= value <= high else None


def _number(text: str) -> int | float | None:
    if not text.isascii() or len(text) > 32:
        return None
    whole = _whole(text, -SEQ_MAX, SEQ_MAX)
    if whole is not None:
        return whole
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


_RUN_BYTES = re.compile(RUN_ID.pattern.encode())


def _writers_own(entry_id: Any, fields: Mapping[Any, Any]) -> StreamReading | None:
    """An entry exactly as the writer makes it (four bytes fields, whole seq and time, a plain
    decimal bpm) decoded quickly, as :func:`decode_reading` would; None for anything else (it
    takes the full path then, which decides). An edge decodes every reading it serves, and
    reads whole streams at its start."""
    if not isinstance(entry_id, bytes) or len(fields) != 4:
        return None
    try:
        seq_b, run_b, time_b = fields[b"seq"], fields[b"run"], fields[b"time"]
        bpm_b = fields[b"bpm"]
    except (KeyError, TypeError):
        return None
    if not (
        isinstance(seq_b, bytes)
        and isinstance(time_b, bytes)
        and isinstance(bpm_b, bytes)
        and isinstance(run_b, bytes)
        and seq_b.isdigit()
        and time_b.isdigit()
        and len(seq_b) <= 20
        and len(time_b) <= 20
        and len(bpm_b) <= 32
        and _RUN_BYTES.fullmatch(run_b)
    ):
        return None
    seq, time_ms = int(seq_b), int(time_b)
    if not (1 <= seq <= SEQ_MAX and time_ms <= TIME_MAX and entry_id == b"%d-0" % seq):
        return None
    if bpm_b.isdigit() and len(bpm_b) <= 20:  # (longer: a float, as the full path reads it)
        bpm: int | float = int(bpm_b)
    elif bpm_b.replace(b".", b"", 1).isdigit():
        bpm = float(bpm_b)
    else:
        return None
    if not BPM_MIN <= bpm <= BPM_MAX:
        return None
    return StreamReading(seq, run_b.decode("ascii"), time_ms, bpm)


def decode_reading(entry_id: str | bytes, fields: Mapping[Any, Any]) -> StreamReading | Rejected:
    """One readings-stream entry as a :class:`StreamReading`, or why it is refused. Unknown
    extra fields are ignored (a newer writer may add some)."""
    quick = _writers_own(entry_id, fields)
    return quick if quick is not None else _decode_reading(entry_id, fields)


def _decode_reading(entry_id: str | bytes, fields: Mapping[Any, Any]) -> StreamReading | Rejected:
    """:func:`decode_reading`, the full path: every check, in order."""
    text_id = entry_id.decode("ascii", "replace") if isinstance(entry_id, bytes) else entry_id
    if parse_id(text_id) is None:
        return Rejected("bad_id", f"entry id {text_id[:40]!r}")
    text = _text_fields(fields)
    if text is None:
        return Rejected("not_text", f"entry {text_id}: a field is not UTF-8 text")
    missing = [name for name in READING_FIELDS if name not in text]
    if missing:
        return Rejected("missing_field", f"entry {text_id}: no {missing[0]!r}")
    seq = _whole(text["seq"], 1, SEQ_MAX)
    if seq is None:
        return Rejected("bad_seq", f"entry {text_id}: seq {text['seq'][:40]!r}")
    if text_id != reading_id(seq):
        return Rejected("id_mismatch", f"entry {text_id}: seq {seq}")
    run = text["run"]
    if not RUN_ID.fullmatch(run):
        return Rejected("bad_run", f"entry {text_id}: run {run[:70]!r}")
    time_ms = _whole(text["time"], 0, TIME_MAX)
    if time_ms is None:
        return Rejected("bad_time", f"entry {text_id}: time {text['time'][:40]!r}")
    bpm = _number(text["bpm"])
    if bpm is None or not BPM_MIN <= bpm <= BPM_MAX:
        return Rejected("bad_bpm", f"entry {text_id}: bpm {text['bpm'][:40]!r}")
    return StreamReading(seq, run, time_ms, bpm)


# -- status and alarm frames -------------------------------------------------------------------


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"non-standard JSON constant {name}")


def json_field(entry_id: str | bytes, fields: Mapping[Any, Any], field: str) -> Any:
    """The strict JSON held in ``field`` of an entry (any JSON value), or why it is refused:
    a bad id, the field missing, over ``MAX_FRAME_BYTES``, not strict JSON."""
    text_id = entry_id.decode("ascii", "replace") if isinstance(entry_id, bytes) else entry_id
    if parse_id(text_id) is None:
        return Rejected("bad_id", f"entry id {text_id[:40]!r}")
    raw = fields.get(field.encode(), fields.get(field))
    if raw is None:
        return Rejected("missing_field", f"entry {text_id}: no {field!r}")
    if len(raw) > MAX_FRAME_BYTES:
        return Rejected("too_large", f"entry {text_id}: {len(raw)} bytes")
    try:
        return json.loads(raw, parse_constant=_refuse_constant)
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        return Rejected("not_json", f"entry {text_id}: not strict JSON")


def encode_frame(frame: Mapping[str, Any]) -> dict[str, str]:
    """The fields of a status or alarm entry: the frame as strict JSON. Raises ValueError for a
    frame that is not one (``type`` not in :data:`FRAME_KINDS`, no ``patient``, NaN...)."""
    if frame.get("type") not in FRAME_KINDS or not isinstance(frame.get("patient"), str):
        raise ValueError("expected a status or alarm frame with its patient")
    text = json.dumps(frame, separators=(",", ":"), allow_nan=False)
    if len(text.encode()) > MAX_FRAME_BYTES:
        raise ValueError(f"frame of {len(text.encode())} bytes: over {MAX_FRAME_BYTES}")
    return {FRAME_FIELD: text}


def decode_frame(
    kind: str, patient_id: str, entry_id: str | bytes, fields: Mapping[Any, Any]
) -> dict[str, Any] | Rejected:
    """One status or alarm entry (``kind``: ``"status"`` or ``"alarm"``) of ``patient_id``'s
    stream as its frame, or why it is refused: the frame must be a JSON object of that ``type``
    for that ``patient``; a status frame's ``upstream`` one of the upstream states, an alarm
    frame's ``alarms`` a list."""
    if kind not in FRAME_KINDS:
        raise ValueError(f"kind {kind!r}: expected one of {FRAME_KINDS}")
    frame = json_field(entry_id, fields, FRAME_FIELD)
    if isinstance(frame, Rejected):
        return frame
    text_id = entry_id.decode("ascii", "replace") if isinstance(entry_id, bytes) else entry_id
    if not isinstance(frame, dict) or frame.get("type") != kind:
        return Rejected("bad_frame", f"entry {text_id}: not a {kind} frame")
    if frame.get("patient") != patient_id:
        return Rejected("bad_frame", f"entry {text_id}: not patient {patient_id!r}'s")
    if kind == "status" and frame.get("upstream") not in UPSTREAM_STATES:
        return Rejected("bad_frame", f"entry {text_id}: upstream not one of {UPSTREAM_STATES}")
    if kind == "alarm" and not isinstance(frame.get("alarms"), list):
        return Rejected("bad_frame", f"entry {text_id}: alarms not a list")
    return frame
