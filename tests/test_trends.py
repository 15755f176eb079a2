"""The pure trend core (``hrdash/trends.py``): buckets checked against pandas on the raw rows,
merging minute rollups into wider buckets, the bucket width for a range, gaps in the series."""

from __future__ import annotations

import math
import random

import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from hrdash.trends import (
    MAX_POINTS,
    MINUTE_MS,
    NICE_WIDTHS_S,
    Bucket,
    bucket_width,
    merge,
    rollup,
    series,
)

DAY_MS = 86_400_000


def readings(seed: int, count: int, span_ms: int) -> list[tuple[int, float]]:
    """``count`` readings at random times within ``span_ms`` after a fixed day, in random order,
    with gaps of whole hours left empty."""
    rng = random.Random(seed)
    start = 1_700_000_000_000
    rows = []
    while len(rows) < count:
        t = start + rng.randrange(span_ms)
        if (t // 3_600_000) % 5 == 3:  # every fifth hour has no data
            continue
        rows.append((t, float(rng.randint(35, 190))))
    return rows


def pandas_buckets(rows: list[tuple[int, float]], width_ms: int) -> pd.DataFrame:
    df = pd.DataFrame(rows, columns=["time", "bpm"])
    df["t"] = df["time"] // width_ms * width_ms
    return df.groupby("t")["bpm"].agg(["min", "mean", "max", "count"]).reset_index()


@pytest.mark.parametrize("width_ms", [MINUTE_MS, 5 * MINUTE_MS, 3_600_000])
def test_rollup_matches_pandas_on_the_raw_rows(width_ms: int) -> None:
    """Every bucket's min, mean, max and count are what pandas computes from the raw readings
    grouped by the epoch-aligned bucket start; no bucket exists without readings."""
    rows = readings(7, 5000, DAY_MS)
    got = rollup(rows, width_ms)
    want = pandas_buckets(rows, width_ms)
    assert [b.t for b in got] == want["t"].tolist()
    assert [b.n for b in got] == want["count"].tolist()
    assert [b.min for b in got] == want["min"].tolist()
    assert [b.max for b in got] == want["max"].tolist()
    assert [b.mean for b in got] == pytest.approx(want["mean"].tolist(), rel=1e-12)
    assert sum(b.n for b in got) == len(rows)


def test_merging_minute_rollups_equals_bucketing_the_raw_rows() -> None:
    """Wider buckets made from minute rollups (what the recorder keeps) are the buckets of the
    raw readings themselves: the same counts, extremes and count-weighted means."""
    rows = readings(11, 4000, 8 * 3_600_000)
    minutes = rollup(rows, MINUTE_MS)
    for width in (5 * MINUTE_MS, 15 * MINUTE_MS, 3_600_000):
        merged, direct = merge(minutes, width), rollup(rows, width)
        assert [(b.t, b.n, b.min, b.max) for b in merged] == [
            (b.t, b.n, b.min, b.max) for b in direct
        ]
        assert [b.mean for b in merged] == pytest.approx([b.mean for b in direct], rel=1e-12)


def test_a_bucket_without_readings_cannot_be_merged() -> None:
    """A bucket with n = 0 is not data: merging it is refused, not counted as a zero."""
    with pytest.raises(ValueError, match="no readings"):
        merge([Bucket(0, 60.0, 60.0, 60.0, 0)], MINUTE_MS)


def test_times_before_the_epoch_floor_to_their_bucket() -> None:
    """Alignment is a floor for negative times too (a reading 1 ms before 1970 is in the minute
    that starts 60 s before it)."""
    assert [b.t for b in rollup([(-1, 70.0), (0, 80.0)], MINUTE_MS)] == [-MINUTE_MS, 0]


@pytest.mark.parametrize(
    ("span_ms", "width_s"),
    [(3_600_000, 60), (8 * 3_600_000, 60), (DAY_MS, 60), (3 * DAY_MS, 180), (30 * DAY_MS, 1800)],
)
def test_bucket_width_for_the_usual_ranges(span_ms: int, width_s: int) -> None:
    """1 h, 8 h and 24 h are drawn minute by minute (at most 1,441 buckets); 72 h needs 3-minute
    buckets; a month half-hours."""
    assert bucket_width(span_ms) == width_s * 1000


@given(st.integers(min_value=0, max_value=400 * DAY_MS), st.integers(min_value=2, max_value=5000))
def test_bucket_width_is_the_narrowest_that_fits(span_ms: int, max_points: int) -> None:
    """The width chosen keeps the range within ``max_points`` buckets (partial ends counted),
    and no narrower nice width would (unless even the widest does not fit)."""
    width = bucket_width(span_ms, max_points)
    widths = [s * 1000 for s in NICE_WIDTHS_S]
    assert width in widths
    fits = math.ceil(span_ms / width) + 1 <= max_points
    assert fits or width == widths[-1]
    for narrower in widths[: widths.index(width)]:
        assert math.ceil(span_ms / narrower) + 1 > max_points


def test_any_range_up_to_a_year_is_at_most_max_points_buckets() -> None:
    """Whatever the range, the trend has at most MAX_POINTS buckets (a year of readings)."""
    span = 365 * DAY_MS
    rows = readings(3, 3000, span)
    assert len(rollup(rows, bucket_width(span))) <= MAX_POINTS


def test_series_leaves_gaps_open() -> None:
    """A None row stands between two buckets that are not neighbours, and nowhere else."""
    buckets = rollup([(0, 60.0), (MINUTE_MS, 62.0), (5 * MINUTE_MS, 70.0)], MINUTE_MS)
    cols = series(buckets, MINUTE_MS)
    assert cols["t"] == [0, MINUTE_MS, None, 5 * MINUTE_MS]
    assert cols["mean"] == [60.0, 62.0, None, 70.0]
    assert series([], MINUTE_MS) == {"t": [], "min": [], "mean": [], "max": [], "n": []}


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: bucket_width(-1), "span"),
        (lambda: bucket_width(10, 1), "max_points"),
        (lambda: rollup([], 0), "width"),
        (lambda: merge([], 0), "width"),
    ],
)
def test_bad_arguments_are_one_clear_error(call: object, message: str) -> None:
    """Nonsense arguments raise ValueError naming what is wrong."""
    with pytest.raises(ValueError, match=message):
        call()  # type: ignore[operator]
