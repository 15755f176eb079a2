"""A seeded history file: N patients x H hours of readings at R Hz, written straight through
hrdash's schema (:mod:`hrdash.store`), for the history benchmarks and the trend page's screenshot.

    python benchmarks/history_seed.py PATH --patients 64 --hours 24     # 11,059,200 readings

The patients are the simulator's ids (``bed-01`` … ``bed-NN``). Each patient's bpm is a bounded
random walk (seeded, so the same arguments give the same file): small Gaussian steps around a
resting value of its own, reflected at that patient's bounds, rounded to integers like the
simulator's readings. Readings are ``1 / rate_hz`` apart with a per-patient phase, in
``[end_ms - hours, end_ms)``; ``holes`` leave stretches without readings (gaps in the trend).
The minute rollups are then computed in SQL from the raw rows, as the recorder keeps them.

Speed: the file is written with ``journal_mode=OFF`` and ``synchronous=OFF`` (a crash while
seeding leaves a useless file; nothing else ever writes that way) and set to WAL mode at the end,
as the recorder leaves it. The path must not exist yet.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import sys
import time
from collections.abc import Iterator, Sequence
from itertools import repeat
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from hrdash import store  # noqa: E402
from hrdash.simulator import patient_ids  # noqa: E402
from hrdash.trends import MINUTE_MS  # noqa: E402

HOUR_MS = 3_600_000
# (starts this long before end_ms, lasts this long), seconds: every patient's readings stop for
# 30 minutes 6 hours before the end and for 5 minutes 45 minutes before the end.
DEFAULT_HOLES: tuple[tuple[float, float], ...] = ((6 * 3600.0, 30 * 60.0), (45 * 60.0, 5 * 60.0))
REST_BPM = (58.0, 95.0)  # each patient's resting value is drawn from this range
HALF_RANGE_BPM = (12.0, 30.0)  # its bounds are rest ± this (drawn), kept within 35-190
STEP_SD_BPM = (0.25, 0.6)  # the walk's step (per reading), standard deviation drawn from this
NOISE_SD_BPM = 1.0  # beat-to-beat noise on top of the walk (not accumulated)
PATIENTS_PER_TRANSACTION = 4  # ~700,000 rows per transaction at 24 h x 2 Hz


def _walk(rng: np.random.Generator, count: int) -> np.ndarray:
    """``count`` bpm: a Gaussian random walk reflected into this patient's bounds, plus a little
    noise, as ints."""
    rest = rng.uniform(*REST_BPM)
    half = rng.uniform(*HALF_RANGE_BPM)
    lo, hi = max(35.0, rest - half), min(190.0, rest + half)
    steps = rng.normal(0.0, rng.uniform(*STEP_SD_BPM), count)
    steps[0] = rest - lo
    x = np.cumsum(steps)  # the free walk, measured from lo
    span = hi - lo
    folded = np.abs(np.mod(x, 2 * span) - span)  # reflect at 0 and span: a triangle wave
    noisy = hi - folded + rng.normal(0.0, NOISE_SD_BPM, count)
    return np.rint(noisy).astype(np.int64)


def _times(
    rng: np.random.Generator,
    start_ms: int,
    end_ms: int,
    period_ms: float,
    holes: Sequence[tuple[float, float]],
) -> np.ndarray:
    """Reading times in ``[start_ms, end_ms)`` one period apart (a per-patient phase), minus the
    holes."""
    first = start_ms + int(rng.integers(0, max(1, int(period_ms))))
    count = max(0, int(np.ceil((end_ms - first) / period_ms)))
    t = first + np.floor(np.arange(count) * period_ms).astype(np.int64)
    t = t[t < end_ms]
    keep = np.ones(len(t), dtype=bool)
    for ago_s, length_s in holes:
        h0 = end_ms - int(ago_s * 1000)
        keep &= (t < h0) | (t >= h0 + int(length_s * 1000))
    return t[keep]


def _rows(key: int, t: np.ndarray, bpm: np.ndarray) -> Iterator[tuple[int, int, int]]:
    return zip(repeat(key), t.tolist(), bpm.tolist(), strict=False)


def seed(
    path: str | Path,
    *,
    patients: int = 64,
    hours: float = 24.0,
    rate_hz: float = 2.0,
    end_ms: int | None = None,
    seed: int = 1,
    holes: Sequence[tuple[float, float]] = DEFAULT_HOLES,
) -> dict[str, Any]:
    """Write a new history file at ``path`` (must not exist) and return what it holds:
    ``{"path", "patients", "ids", "hours", "rate_hz", "start_ms", "end_ms", "seed", "holes",
    "readings", "minutes", "seconds", "bytes"}``. ``end_ms`` defaults to now; ``holes`` are
    ``(seconds before end_ms, length in seconds)`` applied to every patient."""
    path = Path(path)
    if path.exists():
        raise FileExistsError(f"{path} exists: the seeder writes a new file only")
    if patients < 1 or hours <= 0 or rate_hz <= 0:
        raise ValueError("patients must be >= 1, hours and rate_hz > 0")
    started = time.perf_counter()
    end = int(time.time() * 1000) if end_ms is None else int(end_ms)
    start = end - int(hours * HOUR_MS)
    period_ms = 1000.0 / rate_hz
    ids = patient_ids(patients)
    conn = sqlite3.connect(str(path), isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode=OFF")
        conn.execute("PRAGMA synchronous=OFF")
        conn.execute("PRAGMA temp_store=MEMORY")
        conn.execute("PRAGMA cache_size=-65536")  # 64 MB
        store.ensure_schema(conn)
        conn.execute("BEGIN")
        keys = [store.patient_key(conn, pid, f"Bed {i + 1}") for i, pid in enumerate(ids)]
        conn.execute("COMMIT")
        readings = 0
        for index, key in enumerate(keys):
            rng = np.random.default_rng([seed, index])
            t = _times(rng, start, end, period_ms, holes)
            bpm = _walk(rng, len(t))
            if index % PATIENTS_PER_TRANSACTION == 0:
                conn.execute("BEGIN")
            conn.executemany(
                "INSERT INTO readings (patient, t, bpm) VALUES (?, ?, ?)", _rows(key, t, bpm)
            )
            readings += len(t)
            if index % PATIENTS_PER_TRANSACTION == PATIENTS_PER_TRANSACTION - 1:
                conn.execute("COMMIT")
        if conn.in_transaction:
            conn.execute("COMMIT")
        # The minute rollups from the raw rows, one patient at a time (each a small sort).
        conn.execute("BEGIN")
        for key in keys:
            conn.execute(
                "INSERT INTO minutes (patient, t, min, sum, max, n)"
                " SELECT patient, t - t % ?1, min(bpm), sum(bpm), max(bpm), count(*)"
                " FROM readings WHERE patient = ?2 GROUP BY t - t % ?1",
                (MINUTE_MS, key),
            )
        conn.execute("COMMIT")
        minutes = conn.execute("SELECT count(*) FROM minutes").fetchone()[0]
        conn.execute("PRAGMA journal_mode=WAL")
    finally:
        conn.close()
    return {
        "path": str(path),
        "patients": patients,
        "ids": ids,
        "hours": hours,
        "rate_hz": rate_hz,
        "start_ms": start,
        "end_ms": end,
        "seed": seed,
        "holes": [list(h) for h in holes],
        "readings": readings,
        "minutes": int(minutes),
        "seconds": round(time.perf_counter() - started, 2),
        "bytes": os.path.getsize(path),
    }


def _hole(text: str) -> tuple[float, float]:
    try:
        ago, length = (float(x) for x in text.split(":"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected AGO_S:LENGTH_S, got {text!r}") from None
    return ago, length


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path", type=Path, help="the new history file (must not exist)")
    parser.add_argument("--patients", type=int, default=64)
    parser.add_argument("--hours", type=float, default=24.0)
    parser.add_argument("--rate-hz", type=float, default=2.0)
    parser.add_argument("--end-ms", type=int, default=None, help="default: now")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--hole",
        type=_hole,
        action="append",
        default=None,
        metavar="AGO_S:LENGTH_S",
        help="a stretch without readings, starting AGO_S seconds before the end (repeatable; "
        "default 21600:1800 and 2700:300)",
    )
    parser.add_argument("--no-holes", action="store_true", help="readings without a gap")
    args = parser.parse_args()
    holes = () if args.no_holes else tuple(args.hole or DEFAULT_HOLES)
    try:
        info = seed(
            args.path,
            patients=args.patients,
            hours=args.hours,
            rate_hz=args.rate_hz,
            end_ms=args.end_ms,
            seed=args.seed,
            holes=holes,
        )
    except (FileExistsError, ValueError) as exc:
        sys.exit(f"history_seed: {exc}")
    print(
        f"{info['readings']:,} readings, {info['minutes']:,} minutes, {info['patients']} patients"
        f" x {info['hours']:g} h, in {info['seconds']:.1f} s; {info['bytes'] / 2**20:.1f} MB;"
        f" {info['path']} (end_ms {info['end_ms']})"
    )


if __name__ == "__main__":
    main()
