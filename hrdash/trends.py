"""Pure core of the trends: readings into time buckets (min, mean, max, count), coarser buckets
from finer ones, and the series a chart draws with its gaps left open. No I/O, no clock.

The recorder (:mod:`hrdash.ingest.recorder`) keeps minute rollups beside the raw
readings, and a trend over any range is drawn from at most :data:`MAX_POINTS` buckets whose width
is a "nice" multiple of a minute (:func:`bucket_width`). Buckets are aligned on multiples of their
width since the Unix epoch, so the same reading always falls in the same bucket, whoever asks and
whenever; a wider bucket is the exact union of the narrower ones inside it (:func:`merge`).

Times are Unix milliseconds (int); bpm are numbers. A bucket with no reading does not exist: a
range without data is a gap, and :func:`series` puts a ``None`` between two buckets that are not
neighbours, so that a chart (Plotly with ``connectgaps`` off) draws no line across it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

__all__ = ["MAX_POINTS", "NICE_WIDTHS_S", "Bucket", "bucket_width", "merge", "rollup", "series"]

MAX_POINTS = 2000  # buckets per trace at most, whatever the range
MINUTE_MS = 60_000
# Bucket widths a trend may use, in seconds: a minute and its readable multiples up to a day.
NICE_WIDTHS_S = (60, 120, 180, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400)


@dataclass(frozen=True)
class Bucket:
    """The readings of one bucket ``[t, t + width)``: their min, mean, max and count ``n``."""

    t: int
    min: float
    mean: float
    max: float
    n: int

    def as_dict(self) -> dict[str, Any]:
        return {"t": self.t, "min": self.min, "mean": self.mean, "max": self.max, "n": self.n}


def bucket_width(span_ms: int, max_points: int = MAX_POINTS) -> int:
    """The narrowest width in :data:`NICE_WIDTHS_S` (ms) that covers ``span_ms`` in at most
    ``max_points`` buckets, counting the partial buckets at both ends; the widest one if none
    does. Raises ValueError for a negative span or fewer than 2 points."""
    if span_ms < 0:
        raise ValueError(f"span must be >= 0 ms, got {span_ms}")
    if max_points < 2:
        raise ValueError(f"max_points must be >= 2, got {max_points}")
    for seconds in NICE_WIDTHS_S:
        width = seconds * 1000
        if math.ceil(span_ms / width) + 1 <= max_points:  # +1: a range rarely starts on a bucket
            return width
    return NICE_WIDTHS_S[-1] * 1000


def _start(t: int, width_ms: int) -> int:
    return t - t % width_ms  # floor, also for times before 1970


def rollup(readings: Iterable[tuple[int, float]], width_ms: int = MINUTE_MS) -> list[Bucket]:
    """``(time_ms, bpm)`` readings, in any order, into buckets of ``width_ms`` aligned on the
    epoch, sorted by time. Raises ValueError for a width below 1 ms."""
    if width_ms < 1:
        raise ValueError(f"width must be >= 1 ms, got {width_ms}")
    acc: dict[int, list[float]] = {}  # start → [min, sum, max, n]
    for t, bpm in readings:
        start = _start(t, width_ms)
        a = acc.get(start)
        if a is None:
            acc[start] = [bpm, bpm, bpm, 1]
        else:
            a[0] = min(a[0], bpm)
            a[1] += bpm
            a[2] = max(a[2], bpm)
            a[3] += 1
    return [
        Bucket(start, lo, total / n, hi, int(n))
        for start, (lo, total, hi, n) in sorted(acc.items())
    ]


def merge(buckets: Iterable[Bucket], width_ms: int) -> list[Bucket]:
    """Buckets of ``width_ms`` from narrower ones (e.g. minute rollups into 5-minute buckets):
    min of the mins, max of the maxes, the mean weighted by count. Exact when ``width_ms`` is a
    multiple of the narrower width (both epoch-aligned). Raises ValueError for a width below
    1 ms or a bucket without readings."""
    if width_ms < 1:
        raise ValueError(f"width must be >= 1 ms, got {width_ms}")
    acc: dict[int, list[float]] = {}
    for b in buckets:
        if b.n < 1:
            raise ValueError(f"bucket at {b.t} has no readings (n={b.n})")
        start = _start(b.t, width_ms)
        a = acc.get(start)
        if a is None:
            acc[start] = [b.min, b.mean * b.n, b.max, b.n]
        else:
            a[0] = min(a[0], b.min)
            a[1] += b.mean * b.n
            a[2] = max(a[2], b.max)
            a[3] += b.n
    return [
        Bucket(start, lo, total / n, hi, int(n))
        for start, (lo, total, hi, n) in sorted(acc.items())
    ]


def series(buckets: Iterable[Bucket], width_ms: int) -> dict[str, list[Any]]:
    """Columns ``t``, ``min``, ``mean``, ``max``, ``n`` of time-sorted buckets, with a row of
    ``None`` wherever two consecutive buckets are not neighbours (a gap: no line across it)."""
    cols: dict[str, list[Any]] = {"t": [], "min": [], "mean": [], "max": [], "n": []}
    previous: int | None = None
    for b in buckets:
        if previous is not None and b.t - previous > width_ms:
            for key in cols:
                cols[key].append(None)
        for key, value in b.as_dict().items():
            cols[key].append(value)
        previous = b.t
    return cols
