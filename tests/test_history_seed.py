"""The benchmarks' history seeder writes a file the history's readers can trust: hrdash's schema,
the readings it says, the holes it was asked for, and minute rollups equal to the raw rows'."""

from __future__ import annotations

import itertools
import sqlite3
from pathlib import Path

import pytest

from benchmarks.history_seed import seed
from hrdash import store, trends

END = 1_800_000_000_000  # a fixed end, on a minute


def _info(tmp_path: Path, name: str = "h.db", **kw: object) -> dict[str, object]:
    args: dict[str, object] = {"patients": 3, "hours": 1.0, "end_ms": END, "seed": 7}
    args.update(kw)
    return seed(tmp_path / name, **args)  # type: ignore[arg-type]


def test_schema_counts_and_holes(tmp_path: Path) -> None:
    info = _info(tmp_path, holes=((600.0, 120.0),))
    conn = store.connect(info["path"], readonly=True)  # type: ignore[arg-type]
    store.ensure_schema(conn)  # ours, current version: no error
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert store.patient_keys(conn) == {"bed-01": 1, "bed-02": 2, "bed-03": 3}
    rows = conn.execute("SELECT patient, t, n, bpm FROM readings").fetchall()
    assert len(rows) == info["readings"] == 3 * (3600 - 120) * 2
    start, hole = END - 3_600_000, END - 600_000
    for patient in (1, 2, 3):
        times = [t for p, t, _, _ in rows if p == patient]
        assert times == sorted(times) and len(set(times)) == len(times)
        assert start <= times[0] and times[-1] < END
        assert not [t for t in times if hole <= t < hole + 120_000]
        steps = {b - a for a, b in itertools.pairwise(times)}
        assert steps == {500, 500 + 120_000}
    assert {n for _, _, n, _ in rows} == {0}
    assert all(isinstance(bpm, int) and 30 <= bpm <= 220 for *_, bpm in rows)


def test_minutes_equal_the_rollup_of_the_raw_rows(tmp_path: Path) -> None:
    info = _info(tmp_path)
    conn = sqlite3.connect(str(info["path"]))
    for patient in (1, 2, 3):
        raw = conn.execute("SELECT t, bpm FROM readings WHERE patient = ?", (patient,)).fetchall()
        want = [(b.t, b.min, b.mean, b.max, b.n) for b in trends.rollup(raw)]
        got = [
            (t, lo, total / n, hi, n)
            for t, lo, total, hi, n in conn.execute(
                "SELECT t, min, sum, max, n FROM minutes WHERE patient = ? ORDER BY t", (patient,)
            )
        ]
        assert got == want
    assert info["minutes"] == conn.execute("SELECT count(*) FROM minutes").fetchone()[0]


def test_same_arguments_same_file_and_no_overwrite(tmp_path: Path) -> None:
    a, b = _info(tmp_path, "a.db"), _info(tmp_path, "b.db")
    c = _info(tmp_path, "c.db", seed=8)
    dump = "SELECT patient, t, bpm FROM readings ORDER BY patient, t"

    def rows(info: dict[str, object]) -> list[tuple[int, int, int]]:
        return sqlite3.connect(str(info["path"])).execute(dump).fetchall()

    assert rows(a) == rows(b) != rows(c)
    with pytest.raises(FileExistsError):
        _info(tmp_path, "a.db")
