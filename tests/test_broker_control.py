"""The control stream's and the log streams' entries (pure: no Redis)."""

from __future__ import annotations

import json

import pytest

from hrdash.broker.control import (
    CONTROL_FIELD,
    STATION_LOG_KEY,
    decode_control,
    decode_log,
    encode_control,
    encode_log,
    log_key,
)
from hrdash.broker.entries import keys_for
from hrdash.readings import Rejected


def test_log_keys_share_the_patients_hash_tag_and_the_station_has_its_own() -> None:
    assert log_key("bed-01") == "hrdash:{bed-01}:log"
    assert log_key("bed-01").startswith(keys_for("bed-01").lease.removesuffix("lease"))
    assert log_key(None) == STATION_LOG_KEY
    assert "{" not in STATION_LOG_KEY
    with pytest.raises(ValueError):
        log_key("a{b}")


def test_control_round_trip_keeps_the_message_origin_and_edge() -> None:
    request = {"type": "ack", "alarm": "bed-01:3"}
    fields = encode_control(request, "http://127.0.0.1:8050", "host:1:ab")
    decoded = decode_control("5-0", {k.encode(): v.encode() for k, v in fields.items()})
    assert decoded == {**request, "origin": "http://127.0.0.1:8050", "edge": "host:1:ab"}


def test_control_refuses_other_types_and_oversized_messages() -> None:
    with pytest.raises(ValueError):
        encode_control({"type": "resend", "since": 1}, "o", "e")
    with pytest.raises(ValueError):
        encode_control({"type": "ack", "alarm": "x" * 5000}, "o", "e")
    with pytest.raises(ValueError):
        encode_control({"type": "audio_pause", "seconds": float("nan")}, "o", "e")


@pytest.mark.parametrize(
    ("entry_id", "fields", "reason"),
    [
        ("x", {CONTROL_FIELD: "{}"}, "bad_id"),
        ("1-0", {}, "missing_field"),
        ("1-0", {CONTROL_FIELD: "{"}, "not_json"),
        ("1-0", {CONTROL_FIELD: '{"type":"ack","origin":NaN}'}, "not_json"),
        ("1-0", {CONTROL_FIELD: "[1]"}, "bad_frame"),
        ("1-0", {CONTROL_FIELD: json.dumps({"type": "ack"})}, "bad_frame"),
        ("1-0", {CONTROL_FIELD: json.dumps({"type": "drop", "origin": "o"})}, "bad_frame"),
    ],
)
def test_bad_control_entries_are_refused_with_a_reason(
    entry_id: str, fields: dict[str, str], reason: str
) -> None:
    result = decode_control(entry_id, fields)
    assert isinstance(result, Rejected)
    assert result.reason == reason


def test_log_round_trip_and_refusals() -> None:
    entry = {"time": 1_700_000_000_000, "patient": "bed-01", "event": "raised", "alarm": "a"}
    assert decode_log("9-0", encode_log(entry)) == entry
    with pytest.raises(ValueError):
        encode_log({"event": "raised", "time": 1.5})
    bad = decode_log("9-0", {"entry": json.dumps({"event": "raised"})})
    assert isinstance(bad, Rejected)
    assert bad.reason == "bad_frame"
