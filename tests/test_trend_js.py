"""The Trend card's pure helpers (``assets/trend.js``, ``window.hrdashTrend``) in real Chromium.

One blank page for the module, in a time zone with daylight saving time (the chart shows local
wall-clock time), with the real Plotly that Dash serves, ``hrdash.js`` (whose ``plotTime`` and
``yRange`` the trend shares with the live chart) and ``trend.js``. The helpers are checked
against Python's own answers: :func:`hrdash.trends.series` for the gaps, :func:`hrdash.trends.
rollup` for the live update, the card's config (:func:`hrdash.callbacks.trend.config`) for the
constants.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import plotly
import pytest

from hrdash import trends
from hrdash.callbacks import trend
from hrdash.settings import Settings
from hrdash.webapp import ASSETS
from tests.support import chromium_page

pytestmark = pytest.mark.browser

PLOTLY_JS = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"  # what Dash serves
SETTINGS = Settings.load(env={})
CONFIG = trend.config(SETTINGS)
TIME_ZONE = "Europe/Berlin"
T0 = 1_764_400_000_000  # 2025-11-29 07:06:40 UTC, Unix ms
MIN = trends.MINUTE_MS
THEME = {
    "text": "#111111",
    "muted": "#222222",
    "grid": "#333333",
    "card": "#ffffff",
    "band": "rgba(1, 2, 3, 0.2)",
    "line": "#444444",
}


@pytest.fixture(scope="module")
def page() -> Iterator[Any]:
    with chromium_page(1280, 900, timezone_id=TIME_ZONE) as page:
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.set_content('<div id="plot" style="width: 1000px; height: 300px"></div>')
        page.add_script_tag(path=str(PLOTLY_JS))
        page.add_script_tag(path=str(ASSETS / "hrdash.js"))
        page.add_script_tag(path=str(ASSETS / "trend.js"))
        yield page
        assert errors == [], errors


def call(page: Any, name: str, *args: Any) -> Any:
    """``hrdashTrend[name](...args)`` in the page, its result as JSON."""
    return page.evaluate("([name, args]) => window.hrdashTrend[name](...args)", [name, list(args)])


def buckets_with_gaps(rng: random.Random, width: int, count: int) -> list[trends.Bucket]:
    """``count`` buckets of ``width`` from T0, with a few runs of missing ones."""
    out = []
    t = T0 - T0 % width
    while len(out) < count:
        if rng.random() < 0.08:
            t += width * rng.randint(1, 30)  # a gap
        lo = rng.randint(45, 90)
        hi = lo + rng.randint(0, 40)
        out.append(trends.Bucket(t, lo, (lo + hi) / 2, hi, rng.randint(1, 120)))
        t += width
    return out


def readings(start: int, end: int, period: int = 500) -> list[tuple[int, int]]:
    return [(t, 60 + (t // period) % 37) for t in range(start, end, period)]


def test_series_matches_python(page: Any) -> None:
    """series() puts a null row exactly where trends.series does, for several widths."""
    rng = random.Random(9)
    for seconds in (60, 300, 3600):
        width = seconds * 1000
        buckets = buckets_with_gaps(rng, width, 300)
        dicts = [b.as_dict() for b in buckets]
        assert call(page, "series", dicts, width) == trends.series(buckets, width)
    assert call(page, "series", [], MIN) == trends.series([], MIN)


def test_raw_series_breaks_where_readings_stop(page: Any) -> None:
    """Raw readings further apart than the config's raw_gap_ms (the stale limit) get a null
    between them; closer ones are joined."""
    gap = CONFIG["raw_gap_ms"]
    assert gap == SETTINGS.stale_after * 1000
    times = [T0, T0 + 500, T0 + 1000, T0 + 1000 + gap, T0 + 2000 + 2 * gap + 1, T0 + 2500 + 2 * gap]
    rows = [{"t": t, "bpm": 70 + i} for i, t in enumerate(times)]
    out = call(page, "rawSeries", rows, gap)
    assert out["t"] == [*times[:4], None, *times[4:]]
    assert out["bpm"] == [70, 71, 72, 73, None, 74, 75]


def test_plot_times_round_trip_in_local_time(page: Any) -> None:
    """A time drawn on the chart (local wall clock) reads back as the same Unix ms, also on
    either side of a daylight saving change; the custom range fields round-trip to the minute."""
    spring = 1_774_746_000_000  # 2026-03-29 01:00 UTC: Berlin goes from 02:00 to 03:00
    for t in (T0, T0 + 123, spring - 1, spring, spring + 3_600_123):
        text = page.evaluate("(t) => hrdashCore.plotTime(t)", t)
        assert call(page, "parsePlotTime", text) == t, text
        field = call(page, "fieldTime", t)
        assert call(page, "parseField", field) == t - t % MIN, field
    assert call(page, "fieldTime", T0) == "2025-11-29 08:06"  # Berlin, UTC+1
    assert call(page, "parsePlotTime", "2025-11-29 08:06") == T0 - 40_000
    for bad in ("", "yesterday", "2025-11-29", "29.11.2025 08:06", "2025-11-29 8"):
        assert math.isnan(call(page, "parseField", bad)), bad


def test_urls_under_the_prefix(page: Any) -> None:
    """The routes are asked for under the app's prefix, with the query as given (nulls left
    out); the export links name the shown range."""
    assert (
        call(page, "apiUrl", "/", "bed-01", "trend", {"range": "1h", "raw": None})
        == "/api/patients/bed-01/trend?range=1h"
    )
    assert (
        call(page, "apiUrl", "/ward/4b/", "p_7", "trend", {"from": 1, "to": 2, "raw": 1})
        == "/ward/4b/api/patients/p_7/trend?from=1&to=2&raw=1"
    )
    assert call(page, "exportUrls", "/x/", "bed-02", T0 + 0.4, T0 + 3_600_000.6) == {
        "readings": f"/x/api/patients/bed-02/readings.csv?from={T0}&to={T0 + 3_600_001}",
        "trend": f"/x/api/patients/bed-02/trend.csv?from={T0}&to={T0 + 3_600_001}",
    }


def test_live_update_equals_a_fresh_trend(page: Any) -> None:
    """Moving on: the base trend of [from, to) merged with the answer for [start of its last
    bucket, to') at the same width holds exactly the buckets of all the readings since its
    start that are not wholly before the new range, for several steps."""
    span = 3_600_000
    for width in (60_000, 120_000):
        to = T0 + 37_250
        data = readings(to - span - 10 * width, to + 30 * 60_000)

        def rollup(
            start: int, end: int, width: int = width, data: list[tuple[int, int]] = data
        ) -> list[dict[str, Any]]:
            rows = [(t, bpm) for t, bpm in data if start <= t < end]
            return [b.as_dict() for b in trends.rollup(rows, width)]

        start = to - span
        base = {"range": "1h", "from": start, "to": to, "width": width}
        base["buckets"] = rollup(start, to)
        for step in (10_000, 10_000, 61_000, 250_000, 10_000):
            query = call(page, "liveQuery", base, to + step)
            assert query == {"from": base["buckets"][-1]["t"], "to": to + step, "width": width}
            to += step
            update = {"from": query["from"], "to": to, "buckets": rollup(query["from"], to)}
            base = call(page, "mergeLive", base, update)
            assert (base["from"], base["to"], base["range"]) == (to - span, to, "1h")
            fresh = [b for b in rollup(start, to) if b["t"] + width > to - span]
            assert base["buckets"] == fresh


def test_live_query_without_buckets(page: Any) -> None:
    """A base with no buckets yet moves on from the start of the bucket its end falls in."""
    base = {"from": T0 - 3_600_000, "to": T0, "width": 60_000, "buckets": []}
    assert call(page, "liveQuery", base, T0 + 5000) == {
        "from": T0 - T0 % 60_000,
        "to": T0 + 5000,
        "width": 60_000,
    }


def figure(page: Any, view: dict[str, Any]) -> Any:
    return call(
        page,
        "figure",
        view,
        THEME,
        CONFIG["layout"],
        {"rawGapMs": CONFIG["raw_gap_ms"], "yBase": [40, 160]},
    )


def test_figure_of_buckets(page: Any) -> None:
    """Buckets: a bar per bucket from min to max over [t, t + width) and the mean line through
    the buckets' middles, broken (null) where buckets are missing; at most max_points points a
    trace; the x axis spans the view, the y axis the base range widened to the data; the
    theme's colours."""
    rng = random.Random(3)
    width = 60_000
    buckets = buckets_with_gaps(rng, width, trends.MAX_POINTS)
    view = {
        "from": buckets[0].t,
        "to": buckets[-1].t + width,
        "width": width,
        "buckets": [b.as_dict() for b in buckets],
        "readings": None,
    }
    fig = figure(page, view)
    band, line = fig["data"]
    plot_time = page.evaluate(
        "(ts) => ts.map((t) => hrdashCore.plotTime(t))", [b.t for b in buckets]
    )
    assert band["type"] == "bar" and band["offset"] == 0
    assert band["x"] == plot_time
    assert band["base"] == [b.min for b in buckets]
    assert band["y"] == [b.max - b.min for b in buckets]
    assert band["width"] == [width] * len(buckets)
    assert band["marker"]["color"] == THEME["band"]
    cols = trends.series(buckets, width)
    mids = page.evaluate(
        "(ts) => ts.map((t) => t === null ? null : hrdashCore.plotTime(t))",
        [None if t is None else t + width // 2 for t in cols["t"]],
    )
    assert line["x"] == mids
    assert line["y"] == cols["mean"]
    assert line["connectgaps"] is False and line["line"]["color"] == THEME["line"]
    assert None in line["y"]  # the gaps are there
    for trace in fig["data"]:
        assert sum(x is not None for x in trace["x"]) <= CONFIG["max_points"]
    layout = fig["layout"]
    assert layout["xaxis"]["range"] == page.evaluate(
        "(v) => [hrdashCore.plotTime(v.from), hrdashCore.plotTime(v.to)]", view
    )
    lo = min(b.min for b in buckets)
    hi = max(b.max for b in buckets)
    assert layout["yaxis"]["range"] == page.evaluate(
        "([lo, hi]) => hrdashCore.yRange([{bpm: lo}, {bpm: hi}], [40, 160])", [lo, hi]
    )
    assert layout["yaxis"]["gridcolor"] == THEME["grid"]
    assert layout["height"] == trend.HEIGHT_PX
    # Plotly draws it: one bar per bucket, no error.
    drawn = page.evaluate(
        """async (fig) => { await Plotly.newPlot('plot', fig.data, fig.layout);
            return document.querySelectorAll('#plot .barlayer .point').length; }""",
        fig,
    )
    assert drawn == len(buckets)


def test_figure_of_raw_readings(page: Any) -> None:
    """Zoomed in with the readings: one line of the readings (null where they stop), no band."""
    rows = [{"t": t, "bpm": bpm} for t, bpm in readings(T0, T0 + 120_000)]
    rows += [{"t": t, "bpm": bpm} for t, bpm in readings(T0 + 180_000, T0 + 240_000)]
    view = {
        "from": T0,
        "to": T0 + 240_000,
        "width": 60_000,
        "buckets": [],
        "readings": rows,
        "zoomed": True,
    }
    band, line = figure(page, view)["data"]
    assert band["x"] == []
    assert line["y"] == [r["bpm"] for r in rows[:240]] + [None] + [r["bpm"] for r in rows[240:]]
    assert line["mode"] == "lines"  # markers only on a few readings


def test_relayout_range(page: Any) -> None:
    """A zoom on the chart (Plotly's relayout event) is read as a range in Unix ms, a double
    click (autorange) as going back, anything else as nothing to do."""
    a, b = page.evaluate("(ts) => ts.map((t) => hrdashCore.plotTime(t))", [T0, T0 + 300_000])
    assert call(page, "relayoutRange", {"xaxis.range[0]": a, "xaxis.range[1]": b}) == {
        "from": T0,
        "to": T0 + 300_000,
    }
    assert call(page, "relayoutRange", {"xaxis.range": [a, b]}) == {
        "from": T0,
        "to": T0 + 300_000,
    }
    assert call(page, "relayoutRange", {"xaxis.autorange": True}) == {"reset": True}
    for other in ({"autosize": True}, {"xaxis.range[0]": b, "xaxis.range[1]": a}, {}, None):
        assert call(page, "relayoutRange", other) is None


def test_status_text(page: Any) -> None:
    """The status line says what is drawn, in words."""
    width = 300_000
    buckets = [{"t": T0, "min": 60, "mean": 70, "max": 80, "n": 600}] * 1234
    assert (
        call(page, "statusText", {"buckets": buckets, "width": width, "readings": None})
        == "1,234 buckets of 5 min: min\u2013max and mean · drag to zoom in"
    )
    assert call(page, "statusText", {"buckets": [], "width": width, "readings": None}) == (
        "No readings in this range · drag to zoom in"
    )
    raw = {"buckets": [], "width": 60_000, "readings": [{"t": T0, "bpm": 70}], "zoomed": True}
    assert call(page, "statusText", raw) == "1 reading (raw) · double-click to go back"
    note = trend.config(SETTINGS.replace(db=":memory:"))["note"]
    assert note == "History is off (HRDASH_DB=:memory:): only what the bridge still holds"
    with_note = call(page, "statusText", raw, note)
    assert with_note == f"1 reading (raw) · double-click to go back · {note}"
    assert CONFIG["note"] == ""  # a history file: nothing to add
    assert [call(page, "widthText", s * 1000) for s in trends.NICE_WIDTHS_S] == [
        "1 min", "2 min", "3 min", "5 min", "10 min", "15 min", "30 min",
        "1 h", "2 h", "3 h", "6 h", "12 h", "1 day",
    ]  # fmt: skip
