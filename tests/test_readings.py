"""hrdash.readings: the pure parser that decides which upstream frames become readings."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hrdash.readings import (
    BPM_MAX,
    BPM_MIN,
    FRAME_REASONS,
    FieldMapping,
    Reading,
    RejectCounter,
    Rejected,
    parse_frame,
)

MAPPING = FieldMapping()
RECEIVED_MS = 1_700_000_000_123
T_MS = 1_513_152_655_902  # 2017-12-13T08:10:55.902Z, the reference service's example

REJECTIONS: list[tuple[str, str | bytes]] = [
    ("binary", b'{"time": 1513152655902, "value": 95}'),
    ("binary", b""),
    ("not_json", ""),
    ("not_json", "hello"),
    ("not_json", '{"time": 1513152655902, "value": 9'),  # truncated
    ("not_json", '{"value": 95,}'),
    ("not_json", '{"value": ' * 5000 + "1" + "}" * 5000),  # nests 5000 deep
    ("not_json", "[" * 5000 + "]" * 5000),
    ("not_json", '{"value": ' + "9" * 5000 + "}"),  # an integer longer than Python parses
    ("not_object", "95"),
    ("not_object", "[95]"),
    ("not_object", '"95"'),
    ("not_object", "null"),
    ("no_value", "{}"),
    ("no_value", '{"time": 1513152655902}'),
    ("no_value", '{"value": null}'),
    ("no_value", '{"Value": 95}'),
    ("boolean", '{"value": true}'),
    ("boolean", '{"value": false}'),
    ("not_numeric", '{"value": "abc"}'),
    ("not_numeric", '{"value": ""}'),
    ("not_numeric", '{"value": [95]}'),
    ("not_numeric", '{"value": {"bpm": 95}}'),
    ("not_finite", '{"value": NaN}'),
    ("not_finite", '{"value": Infinity}'),
    ("not_finite", '{"value": -Infinity}'),
    ("not_finite", '{"value": 1e999}'),
    ("not_finite", '{"value": "NaN"}'),
    ("not_finite", '{"value": "inf"}'),
    ("out_of_range", '{"value": 19}'),
    ("out_of_range", '{"value": 19.99}'),
    ("out_of_range", '{"value": 301}'),
    ("out_of_range", '{"value": 300.01}'),
    ("out_of_range", '{"value": -5}'),
    ("out_of_range", '{"value": 0}'),
    ("out_of_range", '{"value": "301"}'),
    ("out_of_range", '{"value": 1e300}'),
    ("out_of_range", '{"value": 1' + "0" * 400 + "}"),  # too large for a float
    ("bad_time", '{"value": 95, "time": "yesterday"}'),
    ("bad_time", '{"value": 95, "time": true}'),
    ("bad_time", '{"value": 95, "time": 0}'),
    ("bad_time", '{"value": 95, "time": -1513152655902}'),
    ("bad_time", '{"value": 95, "time": NaN}'),
    ("bad_time", '{"value": 95, "time": 1e999}'),
    ("bad_time", '{"value": 95, "time": [1513152655902]}'),
    ("bad_time", '{"value": 95, "time": 1e300}'),
    ("bad_time", '{"value": 95, "time": 1' + "0" * 400 + "}"),  # too large for a float
    ("bad_time", '{"value": 95, "time": "0001-01-01T00:00:00Z"}'),  # before 1970
    ("bad_time", '{"value": 95, "time": "9999-12-31T00:00:00Z"}'),  # beyond numeric times
]


def test_rejection_table_covers_every_reason_but_too_large() -> None:
    """The table exercises every rejection reason the parser itself can give."""
    assert {reason for reason, _ in REJECTIONS} == set(FRAME_REASONS)


@pytest.mark.parametrize(("reason", "data"), REJECTIONS, ids=lambda v: str(v)[:40])
def test_rejects_with_reason(reason: str, data: str | bytes) -> None:
    """A bad frame is rejected with its precise reason and a short one-line detail."""
    result = parse_frame(data, MAPPING, RECEIVED_MS)
    assert isinstance(result, Rejected), result
    assert result.reason == reason
    assert result.detail
    assert "\n" not in result.detail
    assert len(result.detail) <= 200


@pytest.mark.parametrize(
    ("value", "bpm"),
    [
        ("95", 95),
        ("95.0", 95),
        ("72.5", 72.5),
        ('"95"', 95),
        ('" 95 "', 95),
        ('"72.5"', 72.5),
        ("20", 20),
        ("300", 300),
        ('"20"', 20),
    ],
)
def test_accepts_numbers_and_numeric_strings(value: str, bpm: float) -> None:
    """Ints, floats and numeric strings in 20-300 become that bpm; whole floats become ints."""
    result = parse_frame(f'{{"time": {T_MS}, "value": {value}}}', MAPPING, RECEIVED_MS)
    assert result == Reading(T_MS, bpm)
    assert type(result.bpm) is type(bpm)


@pytest.mark.parametrize(
    "time",
    [
        "1513152655.902",  # seconds
        "1513152655902",  # milliseconds
        "1513152655902000",  # microseconds
        "1513152655902000000",  # nanoseconds
        '"1513152655902"',  # milliseconds as a string
        '"2017-12-13T08:10:55.902Z"',
        '"2017-12-13T08:10:55.902+00:00"',
        '"2017-12-13T09:10:55.902+01:00"',
        '"2017-12-13T03:10:55.902-05:00"',
        '"2017-12-13T08:10:55.902"',  # naive: taken as UTC
    ],
)
def test_time_units_normalise_to_unix_ms(time: str) -> None:
    """Seconds, ms, µs, ns and ISO-8601 (Z, offsets) all give the same Unix milliseconds."""
    result = parse_frame(f'{{"value": 95, "time": {time}}}', MAPPING, RECEIVED_MS)
    assert result == Reading(T_MS, 95)


@pytest.mark.parametrize("frame", ['{"value": 95}', '{"value": 95, "time": null}'])
def test_missing_time_gets_receive_time(frame: str) -> None:
    """A frame without a time (or a null one) is stamped with its receive time."""
    assert parse_frame(frame, MAPPING, RECEIVED_MS) == Reading(RECEIVED_MS, 95)


@pytest.mark.parametrize(
    ("mapping", "frame", "expected"),
    [
        (
            FieldMapping("data.hr", "data.ts"),
            {"data": {"hr": 88, "ts": T_MS}},
            Reading(T_MS, 88),
        ),
        (
            FieldMapping("readings.0.value", "readings.0.time"),
            {"readings": [{"value": 77, "time": T_MS}, {"value": 99, "time": 1}]},
            Reading(T_MS, 77),
        ),
        (
            FieldMapping("readings.1.value", "meta.time"),
            {"readings": [{"value": 77}, {"value": 99}], "meta": {"time": T_MS}},
            Reading(T_MS, 99),
        ),
        (
            FieldMapping("a.b.c", "x"),
            {"a": {"b": {"c": "123"}}},
            Reading(RECEIVED_MS, 123),
        ),
    ],
)
def test_dotted_paths(mapping: FieldMapping, frame: object, expected: Reading) -> None:
    """Dotted paths reach into nested objects, and integer parts index lists."""
    assert parse_frame(json.dumps(frame), mapping, RECEIVED_MS) == expected


@pytest.mark.parametrize(
    ("path", "frame"),
    [
        ("readings.0.value", {"readings": []}),  # index past the end
        ("readings.1.value", {"readings": [{"value": 77}]}),
        ("readings.x.value", {"readings": [{"value": 77}]}),  # not an index
        ("readings.0.value", {"readings": {"value": 77}}),  # an object has no key "0"
        ("readings.0.value", {"readings": "77"}),  # a string is not followed
        ("data.hr", {"data": None}),
    ],
)
def test_dotted_path_that_does_not_resolve_is_no_value(path: str, frame: object) -> None:
    """A path that leads nowhere (missing key or index, wrong type) is a no_value rejection."""
    result = parse_frame(json.dumps(frame), FieldMapping(path), RECEIVED_MS)
    assert isinstance(result, Rejected)
    assert result.reason == "no_value"


def test_from_settings_defaults_to_value_and_time() -> None:
    """Empty mapping settings mean the reference service's fields, value and time."""
    assert FieldMapping.from_settings("", "") == FieldMapping("value", "time")
    assert FieldMapping.from_settings("data.hr", "") == FieldMapping("data.hr", "time")


class TestRejectCounter:
    def test_logs_first_then_once_per_interval(self) -> None:
        """Each reason is logged at once, then not again until 10 s have passed."""
        counter = RejectCounter(log_every=10.0)
        assert counter.add("not_json", now=100.0) == 0
        assert counter.add("not_json", now=100.5) is None
        assert counter.add("not_json", now=109.99) is None
        assert counter.add("not_json", now=110.0) == 2  # two suppressed since the last line
        assert counter.add("not_json", now=111.0) is None
        assert counter.add("not_json", now=125.0) == 1

    def test_reasons_are_independent(self) -> None:
        """A second reason is logged at once even while the first one is being suppressed."""
        counter = RejectCounter(log_every=10.0)
        assert counter.add("binary", now=0.0) == 0
        assert counter.add("boolean", now=1.0) == 0
        assert counter.add("binary", now=2.0) is None
        assert counter.add("boolean", now=3.0) is None
        assert counter.add("binary", now=10.0) == 1

    def test_counts_every_rejection(self) -> None:
        """Counts include the suppressed rejections; iteration is sorted by reason."""
        counter = RejectCounter()
        for t, reason in enumerate(["out_of_range", "binary", "out_of_range", "out_of_range"]):
            counter.add(reason, now=float(t))
        assert counter.total == 4
        assert list(counter) == [("binary", 1), ("out_of_range", 3)]


ZONES = [None, UTC, timezone(timedelta(hours=5, minutes=30)), timezone(timedelta(hours=-8))]

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=30),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.sampled_from(["value", "time", "data", "hr", "0"]), children, max_size=4
        )
    ),
    max_leaves=12,
)
frames = st.one_of(
    st.text(max_size=200),
    st.binary(max_size=50),
    json_values.map(json.dumps),
    st.fixed_dictionaries(
        {},
        optional={
            "value": json_values
            | st.integers()
            | st.floats()
            | st.text(alphabet="0123456789.eE+-naifINF ", max_size=12),
            "time": json_values
            | st.integers()
            | st.floats()
            | st.datetimes(timezones=st.sampled_from(ZONES)).map(datetime.isoformat)
            | st.text(alphabet="0123456789-:.TZ+", max_size=30),
        },
    ).map(json.dumps),
)
mappings = st.sampled_from([FieldMapping(), FieldMapping("data.hr", "data.0"), FieldMapping("0")])


@settings(max_examples=400, deadline=None)
@given(data=frames, mapping=mappings)
def test_parse_frame_never_raises_and_accepts_only_plausible_readings(
    data: str | bytes, mapping: FieldMapping
) -> None:
    """parse_frame never raises; an accepted reading is a finite bpm in 20-300 with an int time."""
    result = parse_frame(data, mapping, RECEIVED_MS)
    if isinstance(result, Rejected):
        assert result.reason in FRAME_REASONS
        assert result.reason != "too_large"
    else:
        assert isinstance(result, Reading)
        assert not isinstance(result.bpm, bool)
        assert math.isfinite(result.bpm)
        assert BPM_MIN <= result.bpm <= BPM_MAX
        assert isinstance(result.time, int)
        assert 0 < result.time <= 10**14
