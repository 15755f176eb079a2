"""The Trend card end to end: `python app.py` over a history file seeded through the store's
schema (24 h of one patient at 2 Hz with a 2 h hole), its monitor in headless Chromium.

The seeded bpm follow a known sawtooth, so every value drawn is checked against what was
written: the buckets of the 24 h trend against :func:`hrdash.trends.rollup` of the seeded
readings, the raw readings of a zoom and the exported CSV value for value. The page runs in a
time zone other than UTC (it shows local time; the routes speak Unix ms).
"""

from __future__ import annotations

import csv
import io
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from hrdash import ids, store, trends
from hrdash.callbacks import trend
from tests.support import Running, app_command, chromium_page, hrdash_running, poll, scaled

pytestmark = pytest.mark.browser

PATIENT = "bed-01"  # the simulator's one patient
HOUR_MS = 3_600_000
PERIOD_MS = 500  # 2 Hz
HOLE = (10 * HOUR_MS, 8 * HOUR_MS)  # no readings from 10 h to 8 h before the seeded end
TIME_ZONE = "America/New_York"


def seeded_bpm(t: int) -> int:
    """The bpm seeded at time ``t``: a sawtooth of 41 values, 60..100."""
    return 60 + (t // PERIOD_MS) % 41


@dataclass
class History:
    path: Path
    end: int  # the seeded readings are in [end - 24 h, end), without the hole
    readings: list[tuple[int, int]]

    @property
    def hole(self) -> tuple[int, int]:
        return self.end - HOLE[0], self.end - HOLE[1]

    def between(self, start: int, end: int) -> list[tuple[int, int]]:
        return [(t, bpm) for t, bpm in self.readings if start <= t < end]


def seed(path: Path, end: int) -> History:
    """24 h of PATIENT at 2 Hz before ``end``, without the hole, written through the store's
    schema: the raw readings, and the minutes computed from them."""
    start = end - 24 * HOUR_MS
    h0, h1 = end - HOLE[0], end - HOLE[1]
    rows = [
        (t, seeded_bpm(t))
        for t in range(start - start % PERIOD_MS, end, PERIOD_MS)
        if start <= t and not h0 <= t < h1
    ]
    conn = store.connect(path)
    try:
        store.ensure_schema(conn)
        conn.execute("BEGIN")
        key = store.patient_key(conn, PATIENT, "Bed 1")
        conn.executemany(
            "INSERT INTO readings (patient, t, n, bpm) VALUES (?, ?, 0, ?)",
            [(key, t, bpm) for t, bpm in rows],
        )
        conn.execute(
            "INSERT INTO minutes (patient, t, min, sum, max, n)"
            " SELECT patient, t - t % ?1, min(bpm), sum(bpm), max(bpm), count(*)"
            " FROM readings WHERE patient = ?2 GROUP BY t - t % ?1",
            (trends.MINUTE_MS, key),
        )
        conn.execute("COMMIT")
    finally:
        conn.close()
    return History(path, end, rows)


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> History:
    path = tmp_path_factory.mktemp("trend") / "history.db"
    return seed(path, int(time.time() * 1000))


@pytest.fixture(scope="module")
def app(history: History) -> Iterator[Running]:
    env = {"HRDASH_DB": str(history.path), "HRDASH_SIMULATOR_SEED": "7"}
    with hrdash_running(app_command(), env) as running:
        yield running


@pytest.fixture
def page(app: Running) -> Iterator[Any]:
    """The patient's monitor, its first trend (1 h) drawn."""
    with chromium_page(1600, 1000, timezone_id=TIME_ZONE) as page:
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(f"{app.url}patient/{PATIENT}")
        wait_drawn(page, 0, "1h", "buckets")
        yield page
        assert errors == [], errors


CARD_JS = f"""() => {{
    const card = document.getElementById('{ids.TREND_CARD}');
    if (!card) return {{drawn: 0, range: '', mode: ''}};  // the page is still loading
    const gd = document.querySelector('#{ids.TREND} .js-plotly-plot');
    const link = (id) => document.getElementById(id).getAttribute('href');
    return {{...card.dataset, drawn: Number(card.dataset.drawn),
        status: document.getElementById('{ids.TREND_STATUS}').textContent,
        readings_csv: link('{ids.TREND_READINGS_CSV}'), trend_csv: link('{ids.TREND_TREND_CSV}'),
        pressed: [...document.querySelectorAll('#{ids.TREND_RANGES} [aria-pressed="true"]')]
            .map((b) => b.dataset.range),
        traces: gd && gd.data ? gd.data.map((t) => ({{type: t.type, x: Array.from(t.x),
            y: Array.from(t.y), base: t.base ? Array.from(t.base) : null,
            n: t.customdata ? t.customdata.map((c) => c && c[2]) : null}})) : [],
        xrange: gd && gd.layout.xaxis.range}};
}}"""


def card(page: Any) -> dict[str, Any]:
    return dict(page.evaluate(CARD_JS))


def wait_drawn(
    page: Any, after: int, range_: str, mode: str, timeout: float = 20
) -> dict[str, Any]:
    """The card once it has drawn again (more than ``after`` draws) showing ``range_`` in
    ``mode``."""
    return poll(
        page,
        card,
        lambda c: c["drawn"] > after and c["range"] == range_ and c["mode"] == mode,
        timeout,
        f"the {range_} trend drawn as {mode}",
    )


def unix_ms(page: Any, plot_times: list[str | None]) -> list[int | None]:
    """The chart's local wall-clock strings back to Unix ms (in the page's time zone)."""
    return list(
        page.evaluate(
            "(xs) => xs.map((x) => x === null ? null : hrdashTrend.parsePlotTime(x))", plot_times
        )
    )


def drag(page: Any, x0: float, x1: float) -> None:
    """A zoom by mouse: drag across the plot area from x0 to x1 (fractions of its width),
    scrolled into view first (the mouse acts on what the viewport shows)."""
    area = page.locator(f"#{ids.TREND} .nsewdrag")
    area.scroll_into_view_if_needed()
    box = area.bounding_box()
    y = box["y"] + box["height"] / 2
    page.mouse.move(box["x"] + box["width"] * x0, y)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * (x0 + x1) / 2, y, steps=4)
    page.mouse.move(box["x"] + box["width"] * x1, y, steps=4)
    page.mouse.up()


def test_24h_trend_shows_the_history_with_its_gap(page: Any, history: History) -> None:
    """Clicking "24 h" draws the stored day: at most 2,000 points a trace, one min-max bar per
    bucket and the mean line through them, each equal to the buckets of the seeded readings,
    nothing drawn inside the 2 h hole and the mean line broken across it; the x axis spans the
    24 h."""
    before = card(page)["drawn"]
    page.click(f"#{ids.TREND_RANGES} [data-range='24h']")
    shown = wait_drawn(page, before, "24h", "buckets")
    assert shown["pressed"] == ["24h"]
    start, end, width = int(shown["from"]), int(shown["to"]), int(shown["width"])
    assert end - start == trend.RANGES["24h"]
    assert width == trends.bucket_width(end - start)
    band, line = shown["traces"]
    assert band["type"] == "bar"
    for t in shown["traces"]:
        assert sum(x is not None for x in t["x"]) <= trends.MAX_POINTS
    # Every seeded bucket meeting the range, whole and value for value (the live readings
    # recorded since the app started only touch buckets after the seeded end).
    first = start - start % width
    want = {b.t: b for b in trends.rollup(history.between(first, history.end), width)}
    starts = unix_ms(page, band["x"])
    drawn = dict(zip(starts, zip(band["base"], band["y"], strict=True), strict=True))
    complete = [t for t in want if t + width <= history.end]
    assert complete, "no complete bucket in range"
    for t in complete:
        b = want[t]
        assert drawn.get(t) == (b.min, b.max - b.min), t
    # The hole: no bar inside it, and the mean line is broken there, once.
    h0, h1 = history.hole
    assert not [t for t in starts if t is not None and h0 <= t and t + width <= h1]
    before_hole = max(t for t, _ in history.readings if t < h0)
    after_hole = min(t for t, _ in history.readings if t >= h1)
    mids = unix_ms(page, line["x"])
    breaks = [i for i, x in enumerate(mids) if x is None]
    assert [(mids[i - 1], mids[i + 1]) for i in breaks] == [
        (
            before_hole - before_hole % width + width // 2,
            after_hole - after_hole % width + width // 2,
        )
    ]
    assert [line["y"][i] for i in breaks] == [None]
    # The x axis: the range asked for, in local time.
    assert unix_ms(page, shown["xrange"]) == [start, end]


def test_zoom_shows_the_raw_readings(page: Any, history: History) -> None:
    """Dragging across the 24 h trend zooms in: first to buckets of a shorter stretch (too many
    readings in it), then, within a few minutes, to the raw readings themselves, value for
    value; a double click goes back to the 24 h trend."""
    before = card(page)["drawn"]
    page.click(f"#{ids.TREND_RANGES} [data-range='24h']")
    day = wait_drawn(page, before, "24h", "buckets")
    # A stretch of about 2 h, 3 h before the end: too many readings, narrower buckets.
    drag(page, 0.84, 0.92)
    first = poll(
        page,
        card,
        lambda c: c["drawn"] > day["drawn"] and c["from"] != day["from"],
        20,
        "the first zoom",
    )
    assert first["mode"] == "buckets" and int(first["width"]) <= int(day["width"])
    assert int(first["to"]) - int(first["from"]) < (int(day["to"]) - int(day["from"])) / 5
    assert "double-click" in first["status"]
    # A few minutes of it: the readings.
    drag(page, 0.50, 0.56)
    raw = poll(page, card, lambda c: c["mode"] == "raw", 20, "the raw readings")
    start, end = int(raw["from"]), int(raw["to"])
    assert 60_000 < end - start < 20 * 60_000
    want = history.between(start, end)
    line = raw["traces"][1]
    assert unix_ms(page, line["x"]) == [t for t, _ in want]
    assert line["y"] == [bpm for _, bpm in want]
    assert raw["status"].startswith(f"{len(want):,} readings (raw)")
    # Back.
    page.dblclick(f"#{ids.TREND} .nsewdrag")
    back = wait_drawn(page, raw["drawn"], "24h", "buckets")
    assert (back["from"], back["to"]) == (day["from"], day["to"])


def test_export_links_name_the_shown_range(page: Any, history: History, app: Running) -> None:
    """The export links ask for the shown range: the readings CSV of a zoomed-in stretch holds
    exactly the seeded readings in it; the trend CSV their minutes."""
    before = card(page)["drawn"]
    page.click(f"#{ids.TREND_RANGES} [data-range='8h']")
    shown = wait_drawn(page, before, "8h", "buckets")
    for key, what in (("readings_csv", "readings.csv"), ("trend_csv", "trend.csv")):
        url = urlsplit(shown[key])
        assert url.path == f"/api/patients/{PATIENT}/{what}"
        assert parse_qs(url.query) == {"from": [shown["from"]], "to": [shown["to"]]}
    # Zoomed in on 4 minutes in the seeded past: the links follow.
    start = history.end - 3 * HOUR_MS + 12_345
    end = start + 4 * 60_000
    page.evaluate(
        """([id, a, b]) => Plotly.relayout(document.querySelector(`#${id} .js-plotly-plot`), {
            'xaxis.range[0]': hrdashCore.plotTime(a),
            'xaxis.range[1]': hrdashCore.plotTime(b)})""",
        [ids.TREND, start, end],
    )
    raw = poll(page, card, lambda c: c["mode"] == "raw", 20, "the zoomed range")
    assert (int(raw["from"]), int(raw["to"])) == (start, end)
    body = page.request.get(app.url.rstrip("/") + raw["readings_csv"]).text()
    rows = list(csv.DictReader(io.StringIO(body)))
    assert [(int(r["time_ms"]), int(r["bpm"])) for r in rows] == history.between(start, end)
    trend_csv = page.request.get(app.url.rstrip("/") + raw["trend_csv"]).text()
    minutes = list(csv.DictReader(io.StringIO(trend_csv)))
    assert minutes and {int(m["time_ms"]) for m in minutes} <= {
        b.t for b in trends.rollup(history.between(start - 60_000, end), trends.MINUTE_MS)
    }


def test_custom_range(page: Any, history: History) -> None:
    """A custom range typed in local time (the page's time zone) is drawn as such."""
    start = history.end - 20 * HOUR_MS
    start -= start % 60_000
    fields = page.evaluate(
        "([a, b]) => [hrdashTrend.fieldTime(a), hrdashTrend.fieldTime(b)]",
        [start, start + 2 * HOUR_MS],
    )
    page.fill(f"#{ids.TREND_FROM}", fields[0])
    page.fill(f"#{ids.TREND_TO}", fields[1])
    before = card(page)["drawn"]
    page.click(f"#{ids.TREND_SHOW}")
    shown = wait_drawn(page, before, "custom", "buckets")
    assert (int(shown["from"]), int(shown["to"])) == (start, start + 2 * HOUR_MS)
    assert shown["pressed"] == []
    page.fill(f"#{ids.TREND_TO}", "tomorrow")
    page.click(f"#{ids.TREND_SHOW}")
    poll(page, card, lambda c: "YYYY-MM-DD HH:MM" in c["status"], 5, "the format hint")


def test_colours_follow_the_theme(page: Any) -> None:
    """The chart takes its colours from the card's CSS variables at each draw (a theme that
    sets them is followed)."""
    page.evaluate(
        """(id) => document.getElementById(id).style.cssText +=
            '--hr-trend-line: rgb(1, 2, 3); --hr-trend-band: rgba(4, 5, 6, 0.5);' +
            '--hr-text: rgb(7, 8, 9); --hr-line: rgb(10, 11, 12)'""",
        ids.TREND_CARD,
    )
    before = card(page)["drawn"]
    page.click(f"#{ids.TREND_RANGES} [data-range='8h']")
    wait_drawn(page, before, "8h", "buckets")
    colours = page.evaluate(
        """(id) => { const gd = document.querySelector(`#${id} .js-plotly-plot`);
            return [gd.data[0].marker.color, gd.data[1].line.color, gd.layout.font.color,
                    gd.layout.yaxis.gridcolor]; }""",
        ids.TREND,
    )
    assert colours == ["rgba(4, 5, 6, 0.5)", "rgb(1, 2, 3)", "rgb(7, 8, 9)", "rgb(10, 11, 12)"]


def test_the_trend_moves_on_without_refetching(page: Any, history: History) -> None:
    """While the 1 h trend is watched, the page asks only for the range from the start of its
    last bucket on, at the same width, and the drawn range moves on: the readings the bridge
    recorded meanwhile (the simulator's, after the seeded ones) are in its last buckets."""
    asked: list[str] = []
    page.on("request", lambda r: asked.append(r.url) if "/trend?" in r.url else None)
    first = card(page)
    width = int(first["width"])
    last_bucket = unix_ms(page, [first["traces"][0]["x"][-1]])[0]
    assert last_bucket is not None and last_bucket + width > history.end  # the live minutes

    def counts(shown: dict[str, Any]) -> dict[int, int]:
        """Readings per bucket start, from the mean line (its middles, with n per point)."""
        line = shown["traces"][1]
        mids = unix_ms(page, line["x"])
        return {m - width // 2: n for m, n in zip(mids, line["n"], strict=True) if m is not None}

    moved = poll(
        page,
        card,
        lambda c: int(c["to"]) > int(first["to"]),
        scaled(trend.REFRESH_MS / 1000 + 10),
        "the trend moving on",
    )
    assert len(asked) == 1, asked
    query = parse_qs(urlsplit(asked[0]).query)
    assert query["from"] == [str(last_bucket)] and query["width"] == [first["width"]]
    assert "range" not in query
    assert int(moved["to"]) - int(moved["from"]) == trend.RANGES["1h"]
    before, after = counts(first), counts(moved)
    assert {t: n for t, n in after.items() if t < last_bucket} == {
        t: n for t, n in before.items() if t < last_bucket and t + width > int(moved["from"])
    }  # what it had is kept as it was
    new = sum(n for t, n in after.items() if t >= last_bucket)
    assert new > before[last_bucket]  # the last bucket replaced, new readings in


def test_under_a_prefix_without_history() -> None:
    """Served under a URL prefix with HRDASH_DB=:memory:, the page asks for its trend under the
    prefix, draws what the bridge holds and says that the history is off."""
    env = {"DASH_URL_BASE_PATHNAME": "/ward/", "HRDASH_DB": ":memory:"}
    with hrdash_running(app_command(), env) as running, chromium_page() as page:
        running.wait_readings(4)
        asked: list[str] = []
        page.on("request", lambda r: asked.append(r.url) if "/trend?" in r.url else None)
        page.goto(f"{running.url}ward/patient/{PATIENT}")
        shown = wait_drawn(page, 0, "1h", "buckets")
        assert [urlsplit(u).path for u in asked] == [f"/ward/api/patients/{PATIENT}/trend"]
        assert shown["points"] != "0"
        assert shown["status"].endswith(trend.MEMORY_NOTE)
        assert urlsplit(shown["readings_csv"]).path == f"/ward/api/patients/{PATIENT}/readings.csv"
