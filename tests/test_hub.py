"""hrdash.hub: one patient's ring, snapshot, since/resend answers and frames, without sockets."""

from __future__ import annotations

import itertools
import json
import random
from typing import Any

import pytest

from hrdash.bridge import Bridge
from hrdash.broker.entries import StreamReading
from hrdash.buffer import SINCE_LIMIT, Stored
from hrdash.hub import (
    OVERLAP,
    SPARK_SECONDS,
    SPARK_STEP,
    STATION_REPEAT,
    Hub,
    PatientHub,
    UpstreamState,
    patient_state,
)
from hrdash.readings import Reading
from hrdash.settings import Settings

RUN = "cafe0123"
PATIENT = "bed-01"
T0 = 1_700_000_000_000  # Unix ms


def readings(first: int, count: int) -> list[Reading]:
    """``count`` readings, the i-th (from ``first``) at T0 + 500 * i with bpm 60 + i % 50."""
    return [Reading(T0 + 500 * i, 60 + i % 50) for i in range(first, first + count)]


def hub_with(count: int, *, capacity: int = 100, window: int = 10) -> PatientHub:
    """A patient hub given ``count`` readings, all sent out (flushed)."""
    hub = PatientHub(capacity, window, RUN, PATIENT)
    hub.accept(readings(0, count), now=100.0)
    hub.flush()
    return hub


def seqs(frame: dict[str, object]) -> list[int]:
    items = frame["readings"]
    assert isinstance(items, list)
    return [item["seq"] for item in items]


def test_accept_gives_seqs_and_counts() -> None:
    """Accepted readings get seq 1, 2, ... in order and are counted."""
    hub = PatientHub(100, 10, RUN, PATIENT)
    stored = hub.accept(readings(0, 3), now=5.0)
    assert [(s.seq, s.time, s.bpm) for s in stored] == [
        (1, T0, 60),
        (2, T0 + 500, 61),
        (3, T0 + 1000, 62),
    ]
    assert hub.accept([], now=6.0) == []
    assert hub.counters["accepted"] == 3
    assert hub.last_reading_at == 5.0  # an empty batch does not move it


def test_snapshot_is_the_last_window() -> None:
    """A new viewer without since gets the last ``window`` readings and this run's seqs."""
    hub = hub_with(25, window=10)
    frame = hub.first_frame(None, None)
    assert frame["type"] == "readings" and frame["snapshot"] is True
    assert frame["run"] == RUN
    assert seqs(frame) == list(range(16, 26))
    assert (frame["first_seq"], frame["last_seq"]) == (1, 25)
    assert frame["readings"][-1] == {"seq": 25, "time": T0 + 500 * 24, "bpm": 60 + 24}
    json.dumps(frame, allow_nan=False)  # what the edge sends is plain JSON


def test_snapshot_is_a_whole_window_while_readings_are_pending() -> None:
    """Readings accepted but not yet sent out are not in a snapshot (the next live frame
    carries them), and the snapshot is still a whole window of those that were."""
    hub = hub_with(25, window=10)
    hub.accept([Reading(T0 + 500 * i, 60 + i) for i in range(25, 28)], now=20.0)  # pending
    assert hub.pending == 3
    assert seqs(hub.first_frame(None, None)) == list(range(16, 26))
    hub.flush()
    assert seqs(hub.first_frame(None, None)) == list(range(19, 29))


def test_since_with_this_run_gives_what_follows() -> None:
    """since=N with this run's id gives every reading after N (more than the window)."""
    hub = hub_with(25, window=10)
    assert seqs(hub.first_frame(3, RUN)) == list(range(4, 26))
    assert seqs(hub.first_frame(25, RUN)) == []
    assert hub.counters["since_truncated"] == 0


@pytest.mark.parametrize("run", ["deadbeef", None, ""])
def test_since_with_another_run_gives_the_snapshot(run: str | None) -> None:
    """A since from another run (or none) is meaningless here: the viewer gets the snapshot."""
    hub = hub_with(25, window=10)
    assert seqs(hub.first_frame(3, run)) == list(range(16, 26))


def test_since_is_bounded_and_truncation_counted() -> None:
    """A since answer holds at most SINCE_LIMIT readings, the newest, and each cut is counted."""
    total = SINCE_LIMIT + 50
    hub = hub_with(total, capacity=total + 10)
    frame = hub.resend_frame(0, RUN)
    assert frame["resend"] is True
    assert seqs(frame) == list(range(51, total + 1))
    assert (hub.counters["since_truncated"], hub.counters["resends"]) == (1, 1)
    # Exactly SINCE_LIMIT readings after the since: not cut, not counted.
    assert len(seqs(hub.resend_frame(50, RUN))) == SINCE_LIMIT
    assert (hub.counters["since_truncated"], hub.counters["resends"]) == (1, 2)
    # A resend from another run gets the window, uncounted as truncation.
    assert seqs(hub.resend_frame(0, "other")) == list(range(total - 9, total + 1))
    assert (hub.counters["since_truncated"], hub.counters["resends"]) == (1, 3)


def test_pending_readings_do_not_count_as_truncation() -> None:
    """Readings not yet sent out are left out of an answer without counting it as cut."""
    hub = hub_with(SINCE_LIMIT, capacity=SINCE_LIMIT + 10)
    hub.accept(readings(SINCE_LIMIT, 5), now=101.0)  # pending
    assert seqs(hub.first_frame(0, RUN)) == list(range(1, SINCE_LIMIT + 1))
    assert hub.counters["since_truncated"] == 0


def test_pending_readings_are_left_out_until_flushed() -> None:
    """Accepted but not sent out: in no answer and not in last_seq; after flush, in all."""
    hub = hub_with(3)
    hub.accept(readings(3, 2), now=101.0)
    assert hub.pending == 2
    assert seqs(hub.first_frame(None, None)) == [1, 2, 3]
    assert seqs(hub.first_frame(0, RUN)) == [1, 2, 3]
    assert seqs(hub.resend_frame(1, RUN)) == [2, 3]
    assert hub.first_frame(None, None)["last_seq"] == 3
    live = hub.flush()
    assert [s.seq for s in live] == [4, 5]
    assert (hub.pending, hub.flushed_seq) == (0, 5)
    assert hub.flush() == []  # nothing new: flushed_seq stays
    assert hub.flushed_seq == 5
    assert seqs(hub.first_frame(None, None)) == [1, 2, 3, 4, 5]
    assert hub.readings_frame(live)["last_seq"] == 5


def stored_before(count: int) -> list[tuple[int, int | float]]:
    """``count`` (time, bpm) pairs as the history keeps them, oldest first (one a real)."""
    pairs: list[tuple[int, int | float]] = [(r.time, r.bpm) for r in readings(0, count)]
    if pairs:
        pairs[-1] = (pairs[-1][0], 71.5)
    return pairs


def test_preload_puts_old_readings_in_the_first_snapshot() -> None:
    """Readings from before the run go into the ring with this run's seqs 1..N, as stored, and
    a new viewer's snapshot holds the last window of them at once; they are not pending (no
    live frame sends them), not counted as accepted, and the patient is not live for them."""
    hub = PatientHub(100, 10, RUN, PATIENT)
    assert hub.preload(stored_before(25)) == 25
    assert hub.pending == 0 and hub.flush() == []
    assert hub.counters["accepted"] == 0
    assert hub.last_reading_at is None and hub.age(1e9) is None
    frame = hub.first_frame(None, None)
    assert seqs(frame) == list(range(16, 26))
    assert (frame["first_seq"], frame["last_seq"]) == (1, 25)
    assert [(r["time"], r["bpm"]) for r in frame["readings"]] == stored_before(25)[-10:]
    assert isinstance(frame["readings"][-2]["bpm"], int)  # 72 stays 72
    fields: dict[str, Any] = {"upstream": "live", "since": 0, "detail": "", "source": ""}
    status = hub.status_frame(
        1e9, **fields, viewers=0, counters={}, mapping={}, last_rejection=None
    )
    assert status["last_reading_age"] is None
    live = UpstreamState("live", live_since=50.0)
    assert hub.state(live, now=51.0, stale_after=5.0) == "connecting"


def test_accepted_readings_follow_the_preloaded_ones() -> None:
    """After a preload, live readings continue the seqs, go out as live frames (only they),
    and a viewer resuming with since gets the preloaded ones it lacks too."""
    hub = PatientHub(100, 10, RUN, PATIENT)
    hub.preload(stored_before(5))
    stored = hub.accept(readings(5, 2), now=200.0)
    assert [s.seq for s in stored] == [6, 7]
    assert hub.counters["accepted"] == 2 and hub.last_reading_at == 200.0
    assert seqs(hub.readings_frame(hub.flush())) == [6, 7]
    assert seqs(hub.first_frame(2, RUN)) == [3, 4, 5, 6, 7]


def test_preload_keeps_the_newest_that_fit_and_refuses_a_used_ring() -> None:
    """More readings than the ring holds: the newest stay, the seqs still count them all;
    preloading a ring that already holds readings (or has some pending) is refused."""
    hub = PatientHub(10, 5, RUN, PATIENT)
    assert hub.preload(stored_before(30)) == 10
    assert (hub.buffer.first_seq, hub.buffer.last_seq, hub.flushed_seq) == (21, 30, 30)
    assert [s.time for s in hub.snapshot()] == [t for t, _ in stored_before(30)[-5:]]
    with pytest.raises(ValueError, match="holds readings"):
        hub.preload(stored_before(1))
    busy = PatientHub(10, 5, RUN, PATIENT)
    busy.accept(readings(0, 1), now=1.0)
    with pytest.raises(ValueError, match="holds readings"):
        busy.preload(stored_before(1))
    empty = PatientHub(10, 5, RUN, PATIENT)
    assert empty.preload([]) == 0 and empty.snapshot() == []
    assert empty.buffer.last_seq == 0


def test_overlap_frame_repeats_the_readings_before() -> None:
    """An overlap viewer's live frame holds the new readings and the OVERLAP ones before."""
    hub = hub_with(10)
    hub.accept(readings(10, 2), now=101.0)
    live = hub.flush()
    assert seqs(hub.readings_frame(live)) == [11, 12]
    assert seqs(hub.overlap_frame(live)) == list(range(11 - OVERLAP, 13))
    assert hub.overlap_frame(live)["last_seq"] == 12
    # Early in a run there is less to repeat.
    young = PatientHub(100, 10, RUN, PATIENT)
    young.accept(readings(0, 1), now=1.0)
    assert seqs(young.overlap_frame(young.flush())) == [1]


def test_status_frame_fields() -> None:
    """The status frame puts the edge's fields around this ring's seqs, age and clock."""
    hub = PatientHub(5, 10, RUN, PATIENT)
    edge: dict[str, Any] = {
        "upstream": "live",
        "since": 123,
        "detail": "",
        "source": "ws://x",
        "viewers": 2,
        "counters": {"frames": 9},
        "mapping": {"value": "value"},
        "last_rejection": None,
    }
    empty = hub.status_frame(50.0, **edge)
    assert (empty["first_seq"], empty["last_seq"], empty["last_reading_age"]) == (1, 0, None)
    hub.accept(readings(0, 8), now=100.0)
    hub.accept(readings(8, 1), now=101.25)
    before_flush = hub.status_frame(102.0, **edge)
    assert before_flush["last_seq"] == 0  # never ahead of what viewers were sent
    hub.flush()
    status = hub.status_frame(102.0, **edge)
    assert list(status) == [
        "type",
        "run",
        "patient",
        "upstream",
        "since",
        "detail",
        "source",
        "first_seq",
        "last_seq",
        "last_reading_age",
        "now",
        "viewers",
        "counters",
        "mapping",
        "last_rejection",
    ]
    assert status["type"] == "status" and status["run"] == RUN and status["patient"] == PATIENT
    assert (status["first_seq"], status["last_seq"]) == (5, 9)  # capacity 5 of 9 readings
    assert status["last_reading_age"] == 0.75
    assert status["now"] == 102_000
    assert {k: status[k] for k in edge} == edge
    # A clock behind the last reading gives age 0, not a negative age.
    assert hub.status_frame(100.0, **edge)["last_reading_age"] == 0.0


def test_all_readings_is_the_whole_ring() -> None:
    hub = hub_with(7, capacity=5)
    assert hub.all_readings() == {
        "run": RUN,
        "patient": PATIENT,
        "readings": [{"seq": s, "time": T0 + 500 * (s - 1), "bpm": 59 + s} for s in range(3, 8)],
    }


def test_hub_maps_patients_to_their_own_rings() -> None:
    """Each patient has its own ring and seqs; all share the run id; ids are unique."""
    hub = Hub(100, 10, RUN)
    a, b = hub.add("bed-01"), hub.add("bed-02")
    a.accept(readings(0, 3), now=1.0)
    b.accept(readings(0, 1), now=1.0)
    assert (a.buffer.last_seq, b.buffer.last_seq) == (3, 1)
    assert hub["bed-02"] is b and list(hub) == ["bed-01", "bed-02"] and len(hub) == 2
    assert a.run_id == b.run_id == RUN
    with pytest.raises(ValueError, match="bed-01"):
        hub.add("bed-01")


@pytest.mark.parametrize("since", ["%C2%B2", "-1", "1.5", "x"])
def test_a_since_that_is_not_ascii_digits_gets_the_snapshot(since: str) -> None:
    """The bridge hands the hub a since only when it is ASCII digits ("²" is a digit to
    str.isdigit but not to int): anything else gets the snapshot, never an error."""
    bridge = Bridge(Settings.load(env={}))
    bridge.patient.accept(readings(0, 3), now=1.0)
    bridge.patient.flush()
    frame = json.loads(bridge.edge.first_frame(f"since={since}&run={bridge.run_id}"))
    assert [r["seq"] for r in frame["readings"]] == [1, 2, 3]
    assert [
        r["seq"]
        for r in json.loads(bridge.edge.first_frame(f"since=1&run={bridge.run_id}"))["readings"]
    ] == [2, 3]


# -- the station digest -------------------------------------------------------------------------

STALE = 2.0


@pytest.mark.parametrize(
    ("upstream", "last_at", "now", "state"),
    [
        (UpstreamState("down", "connection refused"), 99.0, 100.0, "down"),
        (UpstreamState("connecting", "connection lost"), 99.5, 100.0, "connecting"),
        (UpstreamState("connecting"), None, 100.0, "connecting"),
        # Live, no reading yet: connecting for stale_after, then stale.
        (UpstreamState("live", live_since=99.0), None, 100.0, "connecting"),
        (UpstreamState("live", live_since=99.0), None, 101.0, "connecting"),
        (UpstreamState("live", live_since=99.0), None, 101.5, "stale"),
        # Live, a reading from before this connection counts as none yet.
        (UpstreamState("live", live_since=99.0), 90.0, 100.0, "connecting"),
        (UpstreamState("live", live_since=99.0), 90.0, 102.0, "stale"),
        # Live with readings: fresh until stale_after has passed since the last one.
        (UpstreamState("live", live_since=50.0), 99.0, 100.0, "live"),
        (UpstreamState("live", live_since=50.0), 98.0, 100.0, "live"),
        (UpstreamState("live", live_since=50.0), 97.9, 100.0, "stale"),
    ],
)
def test_patient_state(
    upstream: UpstreamState, last_at: float | None, now: float, state: str
) -> None:
    """down and connecting follow the upstream; a live upstream is connecting until its first
    reading (for at most stale_after), stale once its last reading (or its connection, without
    one) is older than stale_after, else live; all on the bridge's clock."""
    assert patient_state(upstream, last_at, now, STALE) == state


def station_hub() -> Hub:
    """Two patients: bed-01 with 300 readings accepted at 100.0 (0.5 s apart by their own
    times), bed-02 with none."""
    hub = Hub(1000, 10, RUN)
    hub.add("bed-01", "Bed 1").accept(readings(0, 300), now=100.0)
    hub.add("bed-02")
    return hub


def test_station_frame_is_complete_and_in_order() -> None:
    """A station frame holds every patient in order with its name, upstream, state, age on the
    bridge's clock, last reading and the last STATION_REPEAT readings, oldest first; a patient
    the ingest says nothing of is connecting."""
    hub = station_hub()
    live = UpstreamState("live", live_since=10.0)
    frame = hub.station_frame({"bed-01": live}, 101.25, STALE)
    assert {k: frame[k] for k in ("type", "run", "now", "stale_after")} == {
        "type": "station",
        "run": RUN,
        "now": 101_250,
        "stale_after": STALE,
    }
    assert "snapshot" not in frame
    first, second = frame["patients"]
    assert [p["id"] for p in frame["patients"]] == ["bed-01", "bed-02"]
    assert first == {
        "id": "bed-01",
        "name": "Bed 1",
        "upstream": "live",
        "detail": "",
        "state": "live",
        "age": 1.25,
        "last": {"seq": 300, "time": T0 + 500 * 299, "bpm": 60 + 299 % 50},
        "recent": [
            {"seq": s, "time": T0 + 500 * (s - 1), "bpm": 60 + (s - 1) % 50}
            for s in range(297, 301)
        ],
        "alarms": [],
    }
    assert len(first["recent"]) == STATION_REPEAT
    assert second == {
        "id": "bed-02",
        "name": "bed-02",
        "upstream": "connecting",
        "detail": "",
        "state": "connecting",
        "age": None,
        "last": None,
        "recent": [],
        "alarms": [],
    }
    json.dumps(frame, allow_nan=False)  # strict JSON
    # Time passes with no reading: the same patient goes stale, its age grows.
    later = hub.station_frame({"bed-01": live}, 103.5, STALE)["patients"][0]
    assert (later["state"], later["age"]) == ("stale", 3.5)


def test_station_snapshot_holds_the_sparkline_thinned() -> None:
    """A snapshot's ``recent`` is the last SPARK_SECONDS up to the newest reading (by their own
    times), one reading per SPARK_STEP (the first of each step) but for the last STATION_REPEAT,
    which are all there; oldest first, each reading as stored; it says it is a snapshot."""
    hub = station_hub()  # 300 readings 0.5 s apart, T0 on a whole second
    frame = hub.station_frame({}, 100.0, STALE, snapshot=True)
    assert frame["snapshot"] is True
    spark = frame["patients"][0]["recent"]
    first = 300 - 2 * SPARK_SECONDS  # the first reading of the last SPARK_SECONDS
    tail = list(range(301 - STATION_REPEAT, 301))
    assert [r["seq"] for r in spark] == [first, *range(first + 1, tail[0], 2), *tail]
    assert spark == [
        {"seq": s, "time": T0 + 500 * (s - 1), "bpm": 60 + (s - 1) % 50}
        for s in (r["seq"] for r in spark)
    ]
    assert spark[0]["time"] == T0 + 500 * 299 - SPARK_SECONDS * 1000
    assert frame["patients"][0]["last"] == spark[-1]
    assert frame["patients"][1]["recent"] == []
    # Live frames are not thinned: the last STATION_REPEAT readings.
    live = hub.station_frame({}, 100.0, STALE)["patients"][0]["recent"]
    assert [r["seq"] for r in live] == tail


def spark_of(times: list[int], stale_after: float = STALE) -> tuple[list[int], list[Stored]]:
    """A patient given readings at ``times`` (Unix ms): its snapshot sparkline's seqs (each
    entry checked to be the stored reading), and its unthinned last SPARK_SECONDS
    (:meth:`PatientHub.spark`)."""
    hub = Hub(2000, 10, RUN)
    patient = hub.add(PATIENT)
    patient.accept([Reading(t, 60 + i % 40) for i, t in enumerate(times)], now=100.0)
    recent = hub.station_frame({}, 101.0, stale_after, snapshot=True)["patients"][0]["recent"]
    full = patient.spark()
    by_seq = {item.seq: item.as_dict() for item in full}
    assert all(r == by_seq[r["seq"]] for r in recent)  # {"seq", "time", "bpm"} as stored
    return [r["seq"] for r in recent], full


@pytest.mark.parametrize("period_ms", [100, 200, 250, 333, 500, 999, 1000, 1500, 3000])
def test_thinned_sparkline_is_bounded_and_joins_the_live_frames(period_ms: int) -> None:
    """Whatever the rate: at most SPARK_SECONDS / SPARK_STEP + STATION_REPEAT + 1 readings,
    seq increasing, taken from the unthinned sparkline and reaching back as far, the newest
    included and the last STATION_REPEAT in full; no two neighbours further apart than
    SPARK_STEP plus the period, nor than stale_after unless the readings themselves are."""
    times = [T0 + 7 + period_ms * i for i in range(1500)]
    got, full = spark_of(times)
    full_seqs = [item.seq for item in full]
    assert len(got) <= SPARK_SECONDS / SPARK_STEP + STATION_REPEAT + 1
    assert got == sorted(set(got)) and set(got) <= set(full_seqs)
    assert got[0] == full_seqs[0] and got[-1] == full_seqs[-1] == 1500
    assert got[-STATION_REPEAT:] == full_seqs[-STATION_REPEAT:]
    at = {item.seq: item.time for item in full}
    gaps = [at[b] - at[a] for a, b in itertools.pairwise(got)]
    assert max(gaps) < SPARK_STEP * 1000 + period_ms, gaps
    assert max(gaps) <= max(STALE * 1000, period_ms), gaps  # the page breaks the line beyond


def test_thinned_sparkline_picks_the_same_readings_as_readings_arrive() -> None:
    """Two snapshots a few readings apart pick the same older readings (the steps are counted
    from the epoch), so the page's merge by seq does not pile up points."""
    times = [T0 + 130 + 300 * i for i in range(600)]
    before, _ = spark_of(times)
    after, _ = spark_of([*times, *(times[-1] + 300 * i for i in range(1, 8))])
    lo, hi = after[1], before[-STATION_REPEAT - 1]  # past each window's first reading
    both = [seq for seq in before if lo <= seq <= hi]
    assert len(both) > 100 and both == [seq for seq in after if lo <= seq <= hi]


def test_thinned_sparkline_follows_a_short_stale_after() -> None:
    """With stale_after under twice SPARK_STEP the step is stale_after / 2, so the thinned line
    shows no gap the page would break it at (readings 0.1 s apart, stale after 0.5 s)."""
    times = [T0 + 100 * i for i in range(1500)]
    got, full = spark_of(times, stale_after=0.5)
    at = {item.seq: item.time for item in full}
    assert max(at[b] - at[a] for a, b in itertools.pairwise(got)) <= 500
    assert len(got) < len(full)  # still thinned


def test_thinned_sparkline_is_bounded_with_times_out_of_order() -> None:
    """Readings whose own times jump back and forth within the last SPARK_SECONDS still give at
    most SPARK_SECONDS / SPARK_STEP + STATION_REPEAT + 1 readings, seq increasing, the newest
    and the last STATION_REPEAT included."""
    rng = random.Random(8)
    newest = T0 + 200_000
    times = [newest - rng.randrange(0, SPARK_SECONDS * 1000) for _ in range(599)] + [newest]
    got, full = spark_of(times)
    assert len(full) == 600
    assert len(got) <= SPARK_SECONDS / SPARK_STEP + STATION_REPEAT + 1
    assert got == sorted(set(got)) and got[-STATION_REPEAT:] == list(range(597, 601))


def test_listing_is_what_api_patients_answers() -> None:
    """``GET /api/patients``: id, name, upstream, state, age, last reading and alarms."""
    hub = station_hub()
    listing = hub.listing({"bed-02": UpstreamState("down", "connection refused")}, 100.5, STALE)
    assert listing == [
        {
            "id": "bed-01",
            "name": "Bed 1",
            "upstream": "connecting",
            "state": "connecting",
            "age": 0.5,
            "last": {"seq": 300, "time": T0 + 500 * 299, "bpm": 60 + 299 % 50},
            "alarms": [],
        },
        {
            "id": "bed-02",
            "name": "bed-02",
            "upstream": "down",
            "state": "down",
            "age": None,
            "last": None,
            "alarms": [],
        },
    ]


def stream_readings(run: str, seqs: list[int]) -> list[StreamReading]:
    """Readings numbered by an ingest: ``run``, these seqs, time T0 + 500 * seq."""
    return [StreamReading(seq, run, T0 + 500 * seq, 60 + seq % 50) for seq in seqs]


def test_accept_numbered_keeps_the_ingests_seqs_and_run() -> None:
    """An edge's ring takes the ingest's run and seqs as they are (gaps kept): pending until
    flushed, counted, and every answer (snapshot, since, resend, first/last seq) follows
    them."""
    hub = PatientHub(100, 4, "edge0001", PATIENT)
    stored = hub.accept_numbered("ing1", stream_readings("ing1", [41, 42, 45, 46]), now=7.0)
    assert [s.seq for s in stored] == [41, 42, 45, 46]
    assert (hub.run_id, hub.pending, hub.counters["accepted"], hub.last_reading_at) == (
        "ing1",
        4,
        4,
        7.0,
    )
    assert seqs(hub.first_frame(None, None)) == []  # all pending: nothing sent yet
    assert hub.first_frame(None, None)["last_seq"] == 40
    hub.flush()
    hub.accept_numbered("ing1", stream_readings("ing1", [47, 50]), now=8.0)
    frame = hub.first_frame(None, None)
    assert (seqs(frame), frame["first_seq"], frame["last_seq"]) == ([41, 42, 45, 46], 41, 46)
    hub.flush()
    assert seqs(hub.first_frame(None, None)) == [45, 46, 47, 50]
    assert seqs(hub.first_frame(43, "ing1")) == [45, 46, 47, 50]
    assert seqs(hub.resend_frame(46, "ing1")) == [47, 50]
    assert seqs(hub.first_frame(48, "ing1")) == [50]
    assert seqs(hub.first_frame(43, "other")) == [45, 46, 47, 50]  # another run: snapshot


def test_accept_numbered_skips_and_counts_duplicates() -> None:
    """A seq not above the last one stored (a stream read again after Redis restarted) is
    skipped and counted; the new ones after it are stored; last_reading_at moves only when
    something was stored."""
    hub = PatientHub(100, 10, "ing1", PATIENT)
    hub.accept_numbered("ing1", stream_readings("ing1", [1, 2, 3]), now=1.0)
    again = hub.accept_numbered("ing1", stream_readings("ing1", [2, 3]), now=2.0)
    assert again == [] and hub.last_reading_at == 1.0
    more = hub.accept_numbered("ing1", stream_readings("ing1", [1, 3, 4, 5]), now=3.0)
    assert [s.seq for s in more] == [4, 5]
    assert (hub.counters["duplicates"], hub.counters["accepted"]) == (4, 5)
    assert [s.seq for s in hub.flush()] == [1, 2, 3, 4, 5]
    assert hub.accept_numbered("ing1", [], now=4.0) == [] and hub.last_reading_at == 3.0


def test_accept_numbered_starts_over_on_another_run() -> None:
    """Readings of another run start the ring over under that run: the old readings (pending
    ones too) are gone, nothing of the new run counts as sent before its first reading, and
    seqs compare within the new run only."""
    hub = PatientHub(100, 10, "ing1", PATIENT)
    hub.accept_numbered("ing1", stream_readings("ing1", [10, 11, 12]), now=1.0)
    hub.flush()
    hub.accept_numbered("ing1", stream_readings("ing1", [13]), now=1.5)  # pending
    stored = hub.accept_numbered("ing2", stream_readings("ing2", [1, 2]), now=2.0)
    assert [s.seq for s in stored] == [1, 2]
    assert hub.run_id == "ing2" and [s.seq for s in hub.buffer] == [1, 2]
    assert hub.pending == 2 and hub.flushed_seq == 0
    assert hub.counters["duplicates"] == 0  # seq 1 is not a duplicate of the old run's 10
    assert [s.seq for s in hub.flush()] == [1, 2]
    assert seqs(hub.first_frame(0, "ing2")) == [1, 2]
    assert seqs(hub.first_frame(11, "ing1")) == [1, 2]  # the old run: the snapshot
    frame = hub.status_frame(
        3.0,
        upstream="live",
        since=0,
        detail="",
        source="s",
        viewers=0,
        counters={},
        mapping={},
        last_rejection=None,
    )
    assert (frame["run"], frame["first_seq"], frame["last_seq"]) == ("ing2", 1, 2)


def test_begin_continues_another_run_and_keeps_the_counters() -> None:
    """begin(run, next_seq): the ring and the pending readings are gone, the run is the one
    given, the next accepted reading gets next_seq and no answer holds the old readings; the
    counters go on."""
    hub = hub_with(20)
    hub.accept(readings(20, 2), now=101.0)  # pending
    hub.begin("feed0042", 731)
    assert hub.run_id == "feed0042"
    assert (hub.pending, len(hub.buffer), hub.flushed_seq) == (0, 0, 730)
    assert hub.snapshot() == []
    stored = hub.accept(readings(0, 3), now=102.0)
    assert [s.seq for s in stored] == [731, 732, 733]
    assert hub.counters["accepted"] == 25
    assert seqs(hub.first_frame(730, "feed0042")) == []  # pending until flushed
    hub.flush()
    frame = hub.first_frame(730, "feed0042")
    assert seqs(frame) == [731, 732, 733]
    assert (frame["first_seq"], frame["last_seq"], frame["run"]) == (731, 733, "feed0042")
    assert seqs(hub.first_frame(0, RUN)) == [731, 732, 733]  # the old run: the snapshot
