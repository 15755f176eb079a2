"""The Redis fan-out's pure core: key names, stream entries in and out, the takeover's seq."""

from __future__ import annotations

import json
import math
import random
import re
import subprocess
import sys

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from hrdash.broker import continue_from, holder_id, new_run
from hrdash.broker.entries import (
    ENTRY_REASONS,
    MAX_FRAME_BYTES,
    StreamReading,
    decode_frame,
    decode_reading,
    encode_frame,
    encode_reading,
    id_after,
    keys_for,
    parse_id,
)
from hrdash.readings import BPM_MAX, BPM_MIN, Rejected
from tests.support import ROOT

SEQS = st.integers(1, 2**53 - 1)
RUNS = st.from_regex(r"[A-Za-z0-9_-]{1,64}", fullmatch=True)
TIMES = st.integers(0, 2**53 - 1)
BPMS = st.one_of(
    st.integers(BPM_MIN, BPM_MAX),
    st.floats(BPM_MIN, BPM_MAX, allow_nan=False, allow_infinity=False),
)


def fields_of(reading: StreamReading) -> tuple[str, dict[bytes, bytes]]:
    """The entry as Redis hands it back (bytes)."""
    entry_id, fields = encode_reading(reading)
    return entry_id, {k.encode(): v.encode() for k, v in fields.items()}


def test_keys_are_the_designs_names_under_one_hash_tag() -> None:
    """Stream names exactly as DESIGN.md says; every key of a patient in its hash tag."""
    keys = keys_for("patient-1")
    assert keys.readings == "hrdash:{patient-1}:readings"
    assert keys.alarms == "hrdash:{patient-1}:alarms"
    assert keys.status == "hrdash:{patient-1}:status"
    assert keys.lease == "hrdash:{patient-1}:lease"
    assert {re.search(r"\{(.*?)\}", key).group(1) for key in keys} == {"patient-1"}  # type: ignore[union-attr]


@pytest.mark.parametrize("bad", ["", "a{b}", "a:b", "x" * 33, "bed 1", "b\u00e9d"])
def test_keys_refuse_an_id_that_could_leave_the_hash_tag(bad: str) -> None:
    """An id outside [A-Za-z0-9_-]{1,32} is refused with one line."""
    with pytest.raises(ValueError, match="expected") as err:
        keys_for(bad)
    assert "\n" not in str(err.value)


@given(SEQS, RUNS, TIMES, BPMS)
@example(1, "a", 0, 72.1)
@example(2**53 - 1, "r" * 64, 2**53 - 1, BPM_MAX)
def test_a_reading_round_trips(seq: int, run: str, time_ms: int, bpm: float) -> None:
    """decode(encode(r)) == r for every valid reading; the entry id is the seq."""
    reading = StreamReading(seq, run, time_ms, bpm)
    entry_id, fields = fields_of(reading)
    assert entry_id == f"{seq}-0"
    back = decode_reading(entry_id.encode(), fields)
    assert back == reading
    assert type(back.bpm) is type(bpm)  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "reading",
    [
        StreamReading(0, "r", 1, 70),
        StreamReading(True, "r", 1, 70),
        StreamReading(1, "", 1, 70),
        StreamReading(1, "a b", 1, 70),
        StreamReading(1, "r", -1, 70),
        StreamReading(1, "r", 1.5, 70),  # type: ignore[arg-type]
        StreamReading(1, "r", 1, math.nan),
        StreamReading(1, "r", 1, math.inf),
        StreamReading(1, "r", 1, BPM_MAX + 1),
        StreamReading(1, "r", 1, True),
    ],
)
def test_encode_refuses_a_reading_no_reader_would_take(reading: StreamReading) -> None:
    """The writer fails loudly on its caller's bug instead of storing a bad entry."""
    with pytest.raises(ValueError):
        encode_reading(reading)


GOOD = {b"seq": b"7", b"run": b"abc", b"time": b"1000", b"bpm": b"71"}


@pytest.mark.parametrize(
    ("entry_id", "change", "reason"),
    [
        (b"7", {}, "bad_id"),
        (b"7-0", {b"bpm": b"\xff"}, "not_text"),
        (b"7-0", {b"run": None}, "missing_field"),
        (b"7-0", {b"seq": b"0"}, "bad_seq"),
        (b"7-0", {b"seq": b"seven"}, "bad_seq"),
        (b"8-0", {}, "id_mismatch"),
        (b"7-1", {}, "id_mismatch"),
        (b"7-0", {b"run": b"a{b}"}, "bad_run"),
        (b"7-0", {b"time": b"-5"}, "bad_time"),
        (b"7-0", {b"time": b"1e3"}, "bad_time"),
        (b"7-0", {b"bpm": b"NaN"}, "bad_bpm"),
        (b"7-0", {b"bpm": b"inf"}, "bad_bpm"),
        (b"7-0", {b"bpm": b"19"}, "bad_bpm"),
        (b"7-0", {b"bpm": b""}, "bad_bpm"),
    ],
)
def test_decode_refuses_a_bad_reading_entry_with_its_reason(
    entry_id: bytes, change: dict[bytes, bytes | None], reason: str
) -> None:
    """Each kind of bad entry gets its stable reason, never an exception."""
    fields = {k: v for k, v in {**GOOD, **change}.items() if v is not None}
    result = decode_reading(entry_id, fields)
    assert isinstance(result, Rejected)
    assert result.reason == reason
    assert reason in ENTRY_REASONS


def test_decode_ignores_extra_fields() -> None:
    """A newer writer may add fields; the reading still decodes."""
    assert decode_reading(b"7-0", {**GOOD, b"note": b"x"}) == StreamReading(7, "abc", 1000, 71)


@given(
    st.binary(max_size=30),
    st.dictionaries(st.binary(max_size=8), st.binary(max_size=30), max_size=6),
)
def test_decode_never_raises_on_any_entry(entry_id: bytes, fields: dict[bytes, bytes]) -> None:
    """Whatever Redis hands back, decoding returns a reading or a counted reason."""
    for result in (
        decode_reading(entry_id, fields),
        decode_frame("status", "p", entry_id, fields),
        decode_frame("alarm", "p", entry_id, fields),
    ):
        assert not isinstance(result, Rejected) or result.reason in ENTRY_REASONS


STATUS = {"type": "status", "patient": "p", "upstream": "live", "detail": "", "counters": {}}
ALARM = {"type": "alarm", "patient": "p", "alarms": [{"id": "a1", "kind": "hr_high"}]}


@pytest.mark.parametrize("frame", [STATUS, ALARM])
def test_a_frame_round_trips(frame: dict[str, object]) -> None:
    """Status and alarm frames come back equal, as strict JSON in one field."""
    fields = {k.encode(): v.encode() for k, v in encode_frame(frame).items()}
    assert decode_frame(str(frame["type"]), "p", b"1-0", fields) == frame


@pytest.mark.parametrize(
    ("kind", "raw", "reason"),
    [
        ("status", b"{", "not_json"),
        ("status", b'{"type":"status","patient":"p","upstream":"live","x":NaN}', "not_json"),
        ("status", b'{"type":"alarm","patient":"p","alarms":[]}', "bad_frame"),
        ("status", b'{"type":"status","patient":"q","upstream":"live"}', "bad_frame"),
        ("status", b'{"type":"status","patient":"p","upstream":"sleeping"}', "bad_frame"),
        ("alarm", b'{"type":"alarm","patient":"p","alarms":{}}', "bad_frame"),
        ("alarm", b"[1,2]", "bad_frame"),
        ("alarm", b"\xff\xfe", "not_json"),
        ("alarm", b" " * (MAX_FRAME_BYTES + 1), "too_large"),
    ],
)
def test_decode_refuses_a_bad_frame_entry_with_its_reason(
    kind: str, raw: bytes, reason: str
) -> None:
    """A frame entry that is not this kind's frame for this patient is refused by reason."""
    result = decode_frame(kind, "p", b"3-1", {b"frame": raw})
    assert isinstance(result, Rejected) and result.reason == reason


def test_decode_frame_needs_its_field_and_a_stream_id() -> None:
    """No ``frame`` field, or an id that is not one, is refused."""
    missing = decode_frame("status", "p", b"3-1", {b"other": b"{}"})
    assert isinstance(missing, Rejected) and missing.reason == "missing_field"
    bad_id = decode_frame("status", "p", b"x", {b"frame": json.dumps(STATUS).encode()})
    assert isinstance(bad_id, Rejected) and bad_id.reason == "bad_id"


def test_encode_frame_refuses_what_is_not_a_strict_status_or_alarm_frame() -> None:
    """NaN, another type or a missing patient never reach a stream."""
    with pytest.raises(ValueError):
        encode_frame({**STATUS, "x": math.nan})
    with pytest.raises(ValueError):
        encode_frame({"type": "readings", "patient": "p"})
    with pytest.raises(ValueError):
        encode_frame({"type": "status"})


def test_stream_ids_compare_as_pairs() -> None:
    """Ids order by (ms, n), not as text."""
    assert parse_id("10-0") == (10, 0)
    assert parse_id(b"3-12") == (3, 12)
    assert parse_id("3") is None and parse_id("a-1") is None and parse_id("-1-0") is None
    assert id_after("10-0", "9-5") and not id_after("9-5", "10-0") and not id_after("2-0", "2-0")


def test_a_takeover_continues_the_streams_run_and_seq() -> None:
    """The next seq follows the stream's last reading in its run; an empty stream starts a new
    run at seq 1."""
    assert continue_from(StreamReading(41, "abc", 5, 70), "new") == ("abc", 42)
    assert continue_from(None, "new") == ("new", 1)


def test_holder_and_run_ids_come_from_the_randomness_passed_in() -> None:
    """holder = host:pid:8 hex digits; the same seed gives the same id."""
    first = holder_id(random.Random(7))
    assert first == holder_id(random.Random(7))
    assert re.fullmatch(r"[^:]+:\d+:[0-9a-f]{8}", first)
    assert first != holder_id(random.Random(8))
    assert re.fullmatch(r"[0-9a-f]{8}", new_run(random.Random(1)))


def test_the_default_path_imports_no_redis() -> None:
    """Without HRDASH_REDIS_URL nothing needs redis-py: the bridge, the CLI and the app import
    with ``redis`` made unimportable, and none of them imports ``hrdash.broker``."""
    code = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'redis' or name.startswith('redis.'):\n"
        "            raise ImportError('no redis here')\n"
        "sys.meta_path.insert(0, Block())\n"
        "import hrdash.bridge, hrdash.cli, hrdash.supervisor, app\n"
        "print(sorted(m for m in sys.modules if m.startswith(('redis', 'hrdash.broker'))))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "[]"


@st.composite
def _near_valid(draw: st.DrawFn) -> tuple[bytes | str, dict[bytes | str, bytes]]:
    """Entries close to the writer's own: each field a good value or a nearly good one, the
    id mostly the seq's."""
    digits = st.text("0123456789", min_size=0, max_size=34).map(str.encode)
    odd = st.sampled_from([b"71.5", b"5.", b".5", b"1e2", b"-7", b" 7", b"07", b"\xff", b"1.2.3"])

    def near(low: int, high: int) -> st.SearchStrategy[bytes]:
        whole = st.integers(low - 2, high + 2).map(lambda n: str(n).encode())
        real = st.floats(low - 2, min(high + 2, 2**53)).map(lambda f: repr(f).encode())
        return st.one_of(whole, whole, whole, real, digits, odd)

    good_run = st.text("ab-_09", min_size=1, max_size=64).map(str.encode)
    bad_run = st.one_of(st.sampled_from([b"a{b}", b"", b"x" * 65, b"\xff"]), st.binary())
    runs = st.one_of(good_run, good_run, good_run, bad_run)
    fields: dict[bytes | str, bytes] = {
        b"seq": draw(near(1, 2**53 - 1)),
        b"run": draw(runs),
        b"time": draw(near(0, 2**53 - 1)),
        b"bpm": draw(near(20, 300)),
    }
    if draw(st.integers(0, 9)) == 0:
        fields[draw(st.sampled_from([b"note", "seq"]))] = draw(st.binary(max_size=4))
    how = draw(st.integers(0, 9))
    entry_id: bytes | str = fields[b"seq"] + b"-0"
    if how == 0:
        entry_id = draw(st.sampled_from([b"7-0", b"7-1", "7-0", b"x"]))
    return entry_id, fields


@settings(max_examples=500)
@given(_near_valid())
@example((b"7-0", {**GOOD}))
@example((b"7-0", {**GOOD, b"bpm": b"0000000000000000000000000000071"}))
@example((b"007-0", {**GOOD, b"seq": b"007"}))
@example((b"7-0", {**GOOD, b"bpm": b"71.5"}))
@example((b"7-0", {**GOOD, b"bpm": b"5."}))
def test_the_quick_decoding_agrees_with_the_full_one(
    entry: tuple[bytes | str, dict[bytes | str, bytes]],
) -> None:
    """The quick path for the writer's own entries decodes exactly as the full path (same
    values, same types), and leaves everything else to it."""
    from hrdash.broker import entries

    entry_id, fields = entry
    quick = entries._writers_own(entry_id, fields)
    if quick is None:
        return
    full = entries._decode_reading(entry_id, fields)
    assert quick == full
    assert [type(v) for v in quick] == [type(v) for v in full]
