"""hrdash.readings: the pure parser that decides which upstream frames become readings."""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hrdash.bridge import Bridge
from hrdash.buffer import Stored
from hrdash.edge import _json
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
from hrdash.settings import Settings
from hrdash.upstream import INFER_WAIT
from tests.conftest import strict_json, timeout

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
    ("bad_time", '{"value": 95, "time": 2e-6}'),  # positive, but rounds to 0 ms
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


# -- fuzzing what production calls ---------------------------------------------------------------
#
# The bridge hands every upstream frame to Bridge.on_frame → FrameReader.feed (the configured or
# inferred mapping; paths with ``*``) → parse_readings → decode + extract_all, and, while a
# mapping is being inferred, FrameReader.due from its heartbeat. The tests below drive that path
# through a real Bridge (no sockets: on_frame is synchronous; its fan-out is scheduled on the
# running loop and never run here).

FUZZ_EXAMPLES = 10_000

ZONES = [None, UTC, timezone(timedelta(hours=5, minutes=30)), timezone(timedelta(hours=-8))]
KEYS = ["value", "time", "data", "hr", "ts", "readings", "0", "*"]

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=30),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.sampled_from(KEYS), children, max_size=4)
    ),
    max_leaves=8,
)
bpm_like = (
    json_values
    | st.integers(-10, 400)
    | st.floats()
    | st.text(alphabet="0123456789.eE+-naifINF ", max_size=12)
)
time_like = (
    json_values
    | st.integers()
    | st.floats()
    | st.datetimes(timezones=st.sampled_from(ZONES)).map(datetime.isoformat)
    | st.text(alphabet="0123456789-:.TZ+", max_size=30)
)


def _record(value_key: str, time_key: str) -> st.SearchStrategy[object]:
    return st.fixed_dictionaries({}, optional={value_key: bpm_like, time_key: time_like})


records = (
    st.lists(_record("hr", "ts") | _record("value", "time") | json_values, max_size=5) | json_values
)
structured = st.one_of(
    _record("value", "time"),
    st.fixed_dictionaries({"data": _record("hr", "ts")}),
    st.fixed_dictionaries({"readings": records}, optional={"ts": time_like}),
    st.lists(_record("value", "time") | json_values, max_size=5),
)
# What a service may send: anything at all, arbitrary JSON, and frames close to each mapping's
# shape with hostile leaves (NaN/Infinity literals included: json.dumps writes them).
fuzz_frames = st.one_of(
    st.text(max_size=200),
    st.binary(max_size=50),
    json_values.map(json.dumps),
    structured.map(json.dumps),
)
# value_field/time_field as a user sets them; "" leaves the bridge to infer the mapping.
FUZZ_MAPPINGS = [
    ("", ""),
    ("value", "time"),
    ("data.hr", "data.ts"),
    ("readings.*.hr", "readings.*.ts"),
    ("readings.*.hr", "ts"),
    ("readings.*", "ts"),
    ("readings.0.hr", "readings.0.ts"),
    ("*.value", "*.time"),
    ("*.hr", "time"),
    ("*", "*"),
]


@pytest.fixture(scope="module")
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    """One event loop for every example (on_frame schedules its fan-out on the running loop),
    with the bridge's log quiet: it logs the first rejection of each reason, and thousands of
    fresh bridges would flood the captured log."""
    logger = logging.getLogger("hrdash")
    level = logger.level
    logger.setLevel(logging.ERROR)
    running = asyncio.new_event_loop()
    yield running
    running.close()
    logger.setLevel(level)


def fresh_bridge(value_field: str, time_field: str) -> Bridge:
    return Bridge(BASE_SETTINGS.replace(value_field=value_field, time_field=time_field))


def feed_all(loop: asyncio.AbstractEventLoop, bridge: Bridge, frames: list[str | bytes]) -> None:
    """What the bridge does with a run of frames: on_frame each, then (as its heartbeat does)
    decide a mapping still being inferred once INFER_WAIT has passed."""

    async def run() -> None:
        for data in frames:
            accepted = bridge.on_frame(data)
            assert all(isinstance(r, Reading) for r in accepted)
        if bridge.reader.deciding:
            bridge.source.accept(bridge.reader.due(time.monotonic() + INFER_WAIT), None)
        assert not bridge.reader.deciding

    loop.run_until_complete(run())


BASE_SETTINGS = Settings.load(env={})


def assert_plausible(item: Stored) -> None:
    assert isinstance(item.bpm, int | float) and not isinstance(item.bpm, bool)
    assert math.isfinite(item.bpm)
    assert BPM_MIN <= item.bpm <= BPM_MAX
    assert type(item.time) is int
    assert 0 < item.time <= 10**14


@pytest.mark.slow
@pytest.mark.timeout(timeout(600))  # ~25 s of CPU, mostly generating examples; more when busy
@settings(
    max_examples=FUZZ_EXAMPLES,
    deadline=None,
    derandomize=True,  # the same examples on every run: CI is stable
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    frames=st.lists(fuzz_frames, min_size=1, max_size=3),
    mapping=st.sampled_from(FUZZ_MAPPINGS),
)
def test_bridge_reads_any_frames_without_raising_and_relays_only_plausible_readings(
    loop: asyncio.AbstractEventLoop, frames: list[str | bytes], mapping: tuple[str, str]
) -> None:
    """Any frames, under any mapping (configured, with ``*``, or inferred): the bridge's reading
    path never raises; every frame is counted; every reading it keeps is a finite bpm in 20-300
    with an int Unix ms time, with contiguous seqs; every rejection is counted under one of
    FRAME_REASONS; and the status it would send is strict JSON."""
    bridge = fresh_bridge(*mapping)
    feed_all(loop, bridge, frames)
    stored = list(bridge.buffer)
    for item in stored:
        assert_plausible(item)
    assert [item.seq for item in stored] == list(range(1, len(stored) + 1))
    assert bridge.counters["frames"] == len(frames)
    assert bridge.counters["accepted"] == len(stored)
    assert set(bridge.rejects.counts) <= set(FRAME_REASONS)
    assert bridge.counters["accepted"] + bridge.rejects.total >= len(frames)  # none unaccounted
    if bridge.last_rejection is not None:
        assert bridge.last_rejection["reason"] in FRAME_REASONS
        detail = bridge.last_rejection["detail"]
        assert detail and "\n" not in detail and len(detail) <= 200
    strict_json(_json(bridge.status()))


# Exact representations of one Unix ms time in every accepted unit.
def _iso(ms: int, zone: timezone | None) -> str:
    moment = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=ms)
    if zone is None:
        return moment.replace(tzinfo=None).isoformat()  # naive: read as UTC
    return moment.astimezone(zone).isoformat()


TIME_FORMS = {
    "s": lambda ms: ms / 1000,
    "ms": lambda ms: ms,
    "us": lambda ms: ms * 1000,
    "ns": lambda ms: ms * 10**6,
    "ms-text": str,
    "iso-utc": lambda ms: _iso(ms, UTC),
    "iso-naive": lambda ms: _iso(ms, None),
    "iso-offset": lambda ms: _iso(ms, timezone(timedelta(hours=-5, minutes=-30))),
}
valid_bpm = st.integers(BPM_MIN, BPM_MAX) | st.floats(BPM_MIN, BPM_MAX)
valid_ms = st.integers(10**11, 10**14 - 1)  # 1973 to 5138: what the magnitudes tell apart


def _frames_for(
    shape: str, readings: list[tuple[int | float, int]], form: str, as_text: bool
) -> tuple[tuple[str, str], list[str]]:
    """Frames in ``shape`` holding ``readings`` and the mapping that reads them."""
    t = TIME_FORMS[form]

    def v(bpm: int | float) -> object:
        return repr(bpm) if as_text else bpm

    if shape == "object":
        return ("", ""), [json.dumps({"value": v(b), "time": t(ms)}) for b, ms in readings]
    if shape == "nested":
        return ("data.hr", "data.ts"), [
            json.dumps({"data": {"hr": v(b), "ts": t(ms)}, "note": "x"}) for b, ms in readings
        ]
    if shape == "star":
        rows = [{"hr": v(b), "ts": t(ms)} for b, ms in readings]
        return ("readings.*.hr", "readings.*.ts"), [json.dumps({"readings": rows})]
    if shape == "array":
        rows = [{"value": v(b), "time": t(ms)} for b, ms in readings]
        return ("value", "time"), [json.dumps(rows)]
    assert shape == "top-star"
    rows = [{"value": v(b), "time": t(ms)} for b, ms in readings]
    return ("*.value", "*.time"), [json.dumps(rows)]


@pytest.mark.slow
@settings(max_examples=1_000, deadline=None, derandomize=True, database=None)
@given(
    readings=st.lists(st.tuples(valid_bpm, valid_ms), min_size=1, max_size=5),
    shape=st.sampled_from(["object", "nested", "star", "array", "top-star"]),
    form=st.sampled_from(sorted(TIME_FORMS)),
    as_text=st.booleans(),
)
def test_valid_readings_round_trip_through_the_bridge(
    loop: asyncio.AbstractEventLoop,
    readings: list[tuple[int | float, int]],
    shape: str,
    form: str,
    as_text: bool,
) -> None:
    """Valid readings written in any supported shape (objects, nested paths, ``*`` lists, arrays),
    any time unit (s, ms, µs, ns, numeric text, ISO-8601 with Z, offset or none) and bpm as a
    number or numeric text come out of the bridge exactly: the same bpm (whole floats as ints),
    the same Unix ms, in order, seqs 1..n, nothing rejected."""
    mapping, frames = _frames_for(shape, readings, form, as_text)
    bridge = fresh_bridge(*mapping)
    feed_all(loop, bridge, list(frames))
    assert bridge.rejects.total == 0, bridge.last_rejection
    stored = list(bridge.buffer)
    assert [(item.time, item.bpm) for item in stored] == [(ms, b) for b, ms in readings]
    assert [item.seq for item in stored] == list(range(1, len(readings) + 1))
    for item, (bpm, _) in zip(stored, readings, strict=True):
        assert_plausible(item)
        assert type(item.bpm) is (int if float(bpm).is_integer() else float)
