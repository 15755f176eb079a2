"""hrdash.inference: where the heart rate and the time live, inferred from a few frames.

Each case builds the frames a service of that shape would send, infers the mapping, and then reads
the frames with it (``parse_readings``): the readings must be exactly the values and times that
were put in.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from hrdash.inference import infer
from hrdash.readings import FieldMapping, Reading, parse_readings

T0 = 1_513_152_655_902  # Unix ms (December 2017), far from any receive time in a test
RECEIVED = 1  # receive time passed to the parser: a reading carrying it lost its own time


def read_all(frames: list[Any], value_path: str, time_path: str | None) -> list[Reading]:
    """Every reading the inferred mapping yields from ``frames`` (rejections are dropped)."""
    mapping = FieldMapping.from_settings(value_path, time_path or "")
    out = []
    for frame in frames:
        out.extend(
            r
            for r in parse_readings(json.dumps(frame), mapping, RECEIVED)
            if isinstance(r, Reading)
        )
    return out


def iso(ms: int, tz: timezone = UTC, z: bool = False) -> str:
    # Whole seconds and the ms apart: ms / 1000 as a float can land a hair below the ms, and
    # isoformat truncates (9157055213571 would print .570).
    exact = datetime.fromtimestamp(ms // 1000, tz).replace(microsecond=ms % 1000 * 1000)
    text = exact.isoformat(timespec="milliseconds")
    return text.replace("+00:00", "Z") if z else text


BPMS = [72, 75, 71, 80, 78, 74]
TIMES = [T0 + 500 * i for i in range(len(BPMS))]


# -- shapes ------------------------------------------------------------------------------------


def test_reference_shape() -> None:
    """The reference service's {"time", "value"} frames map to value/time in Unix ms, high."""
    frames = [{"time": t, "value": v} for t, v in zip(TIMES, BPMS, strict=True)]
    result = infer(frames)
    assert (result.value_path, result.time_path) == ("value", "time")
    assert result.time_unit == "ms"
    assert result.confidence == "high"
    assert result.misfits == []
    assert read_all(frames, "value", "time") == [
        Reading(t, v) for t, v in zip(TIMES, BPMS, strict=True)
    ]


def test_nested_object() -> None:
    """{"data": {"hr", "ts"}} maps to the dotted paths data.hr / data.ts."""
    frames = [{"data": {"hr": v, "ts": t}} for t, v in zip(TIMES, BPMS, strict=True)]
    result = infer(frames)
    assert (result.value_path, result.time_path) == ("data.hr", "data.ts")
    assert result.confidence == "high"
    assert read_all(frames, "data.hr", "data.ts") == [
        Reading(t, v) for t, v in zip(TIMES, BPMS, strict=True)
    ]


def test_iso_times_with_z_and_offsets() -> None:
    """ISO-8601 times ending in Z or carrying +02:00 / -05:30 offsets are the time, read to the
    right instant."""
    zones = [UTC, timezone(timedelta(hours=2)), timezone(-timedelta(hours=5, minutes=30))]
    for tz in zones:
        for z in (True, False) if tz is UTC else (False,):
            frames = [{"heart": v, "at": iso(t, tz, z)} for t, v in zip(TIMES, BPMS, strict=True)]
            result = infer(frames)
            assert (result.value_path, result.time_path, result.time_unit) == (
                "heart",
                "at",
                "iso",
            ), frames[0]
            assert [r.time for r in read_all(frames, "heart", "at")] == TIMES


def test_epoch_units() -> None:
    """Unix seconds (with a fraction), ms, µs and ns are each recognised, with their unit."""
    units = {
        "s": lambda ms: ms / 1000,
        "ms": lambda ms: ms,
        "us": lambda ms: ms * 1000,
        "ns": lambda ms: ms * 1_000_000,
    }
    for unit, convert in units.items():
        frames = [{"bpm": v, "stamp": convert(t)} for t, v in zip(TIMES, BPMS, strict=True)]
        result = infer(frames)
        assert (result.value_path, result.time_path, result.time_unit) == ("bpm", "stamp", unit)
        assert [r.time for r in read_all(frames, "bpm", "stamp")] == TIMES


def test_numeric_strings() -> None:
    """A heart rate and a time sent as numeric strings are still found and read as numbers."""
    frames = [{"pulse": str(v), "time": str(t)} for t, v in zip(TIMES, BPMS, strict=True)]
    result = infer(frames)
    assert (result.value_path, result.time_path) == ("pulse", "time")
    assert read_all(frames, "pulse", "time") == [
        Reading(t, v) for t, v in zip(TIMES, BPMS, strict=True)
    ]


def test_frame_that_is_an_array_of_readings() -> None:
    """A frame that is a JSON array of readings maps to *.bpm / *.time, one reading each."""
    frames = [
        [{"bpm": BPMS[i], "time": TIMES[i]}, {"bpm": BPMS[i + 1], "time": TIMES[i + 1]}]
        for i in (0, 2, 4)
    ]
    result = infer(frames)
    assert (result.value_path, result.time_path) == ("*.bpm", "*.time")
    assert read_all(frames, "*.bpm", "*.time") == [
        Reading(t, v) for t, v in zip(TIMES, BPMS, strict=True)
    ]


def test_frame_holding_an_array_with_per_record_times() -> None:
    """{"readings": [{"pulse", "at"}, ...]} maps to readings.*.pulse with each record's own time,
    even when the frame also carries a time of its own."""
    frames = [
        {
            "sent": TIMES[i + 1] + 40,
            "readings": [
                {"pulse": BPMS[i], "at": TIMES[i]},
                {"pulse": BPMS[i + 1], "at": TIMES[i + 1]},
            ],
        }
        for i in (0, 2, 4)
    ]
    result = infer(frames)
    assert (result.value_path, result.time_path) == ("readings.*.pulse", "readings.*.at")
    assert read_all(frames, result.value_path, result.time_path) == [
        Reading(t, v) for t, v in zip(TIMES, BPMS, strict=True)
    ]


def test_frame_holding_an_array_with_one_frame_time() -> None:
    """{"ts", "readings": [{"pulse"}, ...]}: every record of a frame gets the frame's time."""
    frames = [
        {"ts": TIMES[i], "readings": [{"pulse": BPMS[i]}, {"pulse": BPMS[i + 1]}]}
        for i in (0, 2, 4)
    ]
    result = infer(frames)
    assert (result.value_path, result.time_path) == ("readings.*.pulse", "ts")
    readings = read_all(frames, result.value_path, result.time_path)
    assert [r.bpm for r in readings] == BPMS
    assert [r.time for r in readings] == [TIMES[0]] * 2 + [TIMES[2]] * 2 + [TIMES[4]] * 2


def test_mixed_shapes_list_misfits() -> None:
    """hello/ping frames among data frames do not stop inference; their indices are misfits and
    a note says the shapes are mixed."""
    data = [{"time": t, "value": v} for t, v in zip(TIMES, BPMS, strict=True)]
    frames: list[Any] = [{"type": "hello", "version": 2}, *data[:3], {"type": "ping"}, *data[3:]]
    result = infer(frames)
    assert (result.value_path, result.time_path) == ("value", "time")
    assert result.misfits == [0, 4]
    assert result.frames == len(frames)
    assert any("mixed shapes" in note for note in result.notes)


def test_two_equally_plausible_fields_are_medium() -> None:
    """Two fields that both look like a heart rate: confidence medium, the other one listed as an
    alternative, and a note that says how to choose."""
    frames = [{"hr": v, "pulse": v + 3, "time": t} for t, v in zip(TIMES, BPMS, strict=True)]
    result = infer(frames)
    assert result.confidence == "medium"
    chosen_and_other = {result.value_path, *(c.path for c in result.alternatives)}
    assert {"hr", "pulse"} <= chosen_and_other
    assert result.value_path in ("hr", "pulse")
    assert any("HRDASH_VALUE_FIELD" in note for note in result.notes)


def test_counter_does_not_win() -> None:
    """A field counting 40, 41, 42... is in the bpm range but must not beat a real heart rate,
    whatever the real one is called and even when it holds still."""
    for name, bpms in (("x", BPMS), ("heart_rate", BPMS), ("v", [72] * len(BPMS))):
        frames = [
            {"seq": 40 + i, name: v, "time": t}
            for i, (t, v) in enumerate(zip(TIMES, bpms, strict=True))
        ]
        result = infer(frames)
        assert result.value_path == name, (name, result)


def test_nothing_plausible() -> None:
    """Frames without any plausible heart rate: no value path, confidence none, a note why."""
    frames = [{"status": "ok", "count": 1000 + i, "time": t} for i, t in enumerate(TIMES)]
    result = infer(frames)
    assert result.value_path is None
    assert result.confidence == "none"
    assert result.notes
    assert result.settings["HRDASH_VALUE_FIELD"] == ""


def test_nothing_json() -> None:
    """No frame is a JSON object or array: nothing inferred, confidence none."""
    result = infer(["hello", 72, None])
    assert (result.value_path, result.confidence) == (None, "none")


# -- generated shapes ----------------------------------------------------------------------------

NAME = st.text(alphabet="abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=10)
PATH = st.lists(NAME, min_size=1, max_size=4)
UNITS = ("s", "ms", "us", "ns", "iso")


def put(obj: dict[str, Any], path: list[str], value: Any) -> None:
    for part in path[:-1]:
        obj = obj.setdefault(part, {})
    obj[path[-1]] = value


def encode_time(ms: int, unit: str, offset_minutes: int) -> Any:
    if unit == "s":
        return ms / 1000
    if unit == "ms":
        return ms
    if unit == "us":
        return ms * 1000
    if unit == "ns":
        return ms * 1_000_000
    return iso(ms, timezone(timedelta(minutes=offset_minutes)))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    value_path=PATH,
    time_path=PATH,
    unit=st.sampled_from(UNITS),
    offset=st.integers(-12 * 60, 14 * 60),
    start=st.integers(978_307_300_000, 9_900_000_000_000),
    bpms=st.lists(st.integers(20, 300), min_size=2, max_size=8),
    as_strings=st.booleans(),
)
def test_generated_shapes(
    value_path: list[str],
    time_path: list[str],
    unit: str,
    offset: int,
    start: int,
    bpms: list[int],
    as_strings: bool,
) -> None:
    """A bpm field at a random nested path and a time at another, in a random unit: inference
    names exactly those two paths and that unit, and reading with them returns what was sent."""
    shortest = min(len(value_path), len(time_path))
    assume(value_path[:shortest] != time_path[:shortest])  # neither path inside the other
    times = [start + 500 * i for i in range(len(bpms))]
    frames: list[dict[str, Any]] = []
    for t, v in zip(times, bpms, strict=True):
        frame: dict[str, Any] = {}
        put(frame, value_path, str(v) if as_strings else v)
        put(frame, time_path, encode_time(t, unit, offset))
        frames.append(frame)
    result = infer(frames)
    assert result.value_path == ".".join(value_path)
    assert result.time_path == ".".join(time_path)
    assert result.time_unit == unit
    assert result.confidence != "none"
    assert result.misfits == []
    readings = read_all(frames, result.value_path, result.time_path)
    assert readings == [Reading(t, v) for t, v in zip(times, bpms, strict=True)]
