"""Pure core of what goes the other way (edges → ingests) and of the alarm log in Redis.

==============================  ======  ===================================================
key                             type    holds
==============================  ======  ===================================================
``hrdash:station:control``      stream  every accepted ``ack``, ``audio_pause`` and ``limits``
                                        message from any edge: field ``control``, JSON (the
                                        viewer's message, its allowed ``origin`` and the
                                        ``edge`` that took it); ``MAXLEN ~ CONTROL_KEPT``
``hrdash:{ID}:log``             stream  the patient's alarm log entries, field ``entry``, JSON;
                                        ``MAXLEN ~ LOG_KEPT``
``hrdash:station:log``          stream  the station's entries (``audio_paused``), same form
==============================  ======  ===================================================

The station keys have no braces, so they cannot meet a patient's (whose id has none either).
Every ingest reads the control stream and applies what concerns the patients it holds (an
``audio_pause``: every ingest, it is the station's); the station log's entries are written by
every ingest with the control entry's id, so Redis keeps one copy (an id not newer than the
top is refused).

Decoding never raises on what came out of Redis: a bad entry is a
:class:`~hrdash.readings.Rejected` (reasons from :data:`hrdash.broker.entries.ENTRY_REASONS`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from hrdash.broker.entries import KEY_PREFIX, json_field, keys_for
from hrdash.readings import Rejected

__all__ = [
    "CONTROL_FIELD",
    "CONTROL_KEPT",
    "CONTROL_KEY",
    "CONTROL_KINDS",
    "LOG_FIELD",
    "STATION_LOG_KEY",
    "decode_control",
    "decode_log",
    "encode_control",
    "encode_log",
    "log_key",
]

CONTROL_KEY = f"{KEY_PREFIX}:station:control"
STATION_LOG_KEY = f"{KEY_PREFIX}:station:log"
CONTROL_KEPT = 1000  # control entries the stream keeps (MAXLEN ~); ingests read from the top
CONTROL_FIELD = "control"
LOG_FIELD = "entry"
CONTROL_KINDS = ("ack", "audio_pause", "limits")  # the viewer messages that change alarm state
MAX_TEXT = 4096  # bytes of JSON in one control or log entry at most (a viewer's message: 4 KiB)


def log_key(patient_id: str | None) -> str:
    """The log stream of ``patient_id`` (None: the station's). ValueError for a bad id."""
    if patient_id is None:
        return STATION_LOG_KEY
    return keys_for(patient_id).readings.removesuffix(":readings") + ":log"


def _dumps(obj: Any) -> str:
    text = json.dumps(obj, separators=(",", ":"), allow_nan=False)
    if len(text.encode()) > MAX_TEXT:
        raise ValueError(f"entry of {len(text.encode())} bytes: over {MAX_TEXT}")
    return text


def encode_control(request: Mapping[str, Any], origin: str, edge: str) -> dict[str, str]:
    """The fields of a control entry: the viewer's message (``type`` one of
    :data:`CONTROL_KINDS`) with the ``origin`` it came from and the ``edge`` that took it.
    ValueError (one line) for anything else."""
    if request.get("type") not in CONTROL_KINDS:
        raise ValueError(f"expected a message of type {', '.join(CONTROL_KINDS)}")
    return {CONTROL_FIELD: _dumps({**request, "origin": origin, "edge": edge})}


def _object(entry_id: str | bytes, fields: Mapping[Any, Any], field: str) -> Any:
    """The JSON object in ``field``, or why the entry is refused."""
    value = json_field(entry_id, fields, field)
    if isinstance(value, Rejected | dict):
        return value
    return Rejected("bad_frame", f"entry {entry_id!r}: not a JSON object")


def decode_control(entry_id: str | bytes, fields: Mapping[Any, Any]) -> dict[str, Any] | Rejected:
    """A control entry as the message (with ``origin`` and ``edge``), or why it is refused. The
    message's own fields are checked by whoever applies it (as a viewer's would be)."""
    value = _object(entry_id, fields, CONTROL_FIELD)
    if isinstance(value, Rejected):
        return value
    if value.get("type") not in CONTROL_KINDS or not isinstance(value.get("origin"), str):
        return Rejected("bad_frame", "control entry: no known type or no origin")
    return dict(value)


def encode_log(entry: Mapping[str, Any]) -> dict[str, str]:
    """The fields of a log entry (one of :mod:`hrdash.alarms`' log entries)."""
    if not isinstance(entry.get("event"), str) or not isinstance(entry.get("time"), int):
        raise ValueError("expected an alarm log entry (event and time)")
    return {LOG_FIELD: _dumps(dict(entry))}


def decode_log(entry_id: str | bytes, fields: Mapping[Any, Any]) -> dict[str, Any] | Rejected:
    """A log stream's entry, or why it is refused."""
    value = _object(entry_id, fields, LOG_FIELD)
    if isinstance(value, Rejected):
        return value
    if not isinstance(value.get("event"), str) or not isinstance(value.get("time"), int):
        return Rejected("bad_frame", "log entry: no event or no time")
    return dict(value)
