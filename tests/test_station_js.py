"""The station page's client (``assets/station.js`` and ``assets/station.css``) in real Chromium.

One headless Chromium page for the module at 1920x1080, at the Dash server's address (answered
by the test, not by a server): the station page's real layout (``hrdash.pages.station``, rendered
to HTML here as React renders it, one tile per patient) and its real config store, the real
``hrdash.css`` and ``station.css``, a stub of what Dash's renderer puts on
``window.dash_clientside`` (``no_update``, and ``set_props``, recorded and applied to the element
as React would), the real ``hrdash.js`` and a fresh ``station.js`` for every test. Frames have the
station feed's shape (checked against the bridge's hub below) and go through
``on_station_message`` as Dash hands them over. Only the clock is faked (``performance.now``),
and only where a test sets it.
"""

from __future__ import annotations

import html
import json
import math
import re
from collections.abc import Iterator
from typing import Any

import pytest

from hrdash import hub, ids
from hrdash.pages import station as station_page
from hrdash.readings import Reading
from hrdash.settings import Settings
from hrdash.sources import station_sources
from hrdash.webapp import ASSETS
from tests.support import chromium_page

pytestmark = pytest.mark.browser

SETTINGS = Settings.load(env={})
STALE_AFTER = SETTINGS.stale_after
SPARK_SECONDS = station_page.SPARK_SECONDS
PAGE_URL = f"http://127.0.0.1:{SETTINGS.port}/"  # the harness page's address (its origin)
HRDASH_JS = ASSETS / "hrdash.js"
STATION_JS = ASSETS / "station.js"
CSS = [ASSETS / "hrdash.css", ASSETS / "station.css"]
WS_URL = f"ws://127.0.0.1:{SETTINGS.bridge_port}/ws?station=1"  # the config's URL, resolved
T0 = 1_764_400_000_000  # Unix ms of seq 0 (the services' clock, never compared with the page's)
OPEN, CLOSED, CONNECTING = 1, 3, 0
DASH = "\u2013"  # en dash: no reading
IDS = station_page.config(SETTINGS, station_sources(SETTINGS))["ids"]


def patient_ids(count: int) -> list[str]:
    return [f"bed-{i:02d}" for i in range(1, count + 1)]


IDS_3 = patient_ids(3)  # the fixture's ward


def ward(count: int) -> tuple[Settings, list[Any]]:
    """The settings and patients of a simulated ward of ``count``: bed-01 (Bed 1) ..."""
    settings = SETTINGS.replace(simulator_patients=count)
    patients = list(station_sources(settings))
    assert [p.id for p in patients] == patient_ids(count)
    return settings, patients


def station_config(count: int = 3, **extra: Any) -> dict[str, Any]:
    """The station config store's data (what the page hands the clientside callbacks), as the
    station page builds it for a simulated ward of ``count``."""
    return {**station_page.config(*ward(count)), **extra}


def tile_markup(patient_id: str, name: str) -> str:
    """One tile, exactly as DESIGN.md and the common contract have it."""
    pid, name = html.escape(patient_id), html.escape(name)
    return (
        f'<a class="hr-tile" id="hr-tile-{pid}" href="/patient/{pid}" data-patient="{pid}" '
        'data-state="connecting" data-alarm="none">'
        f'<div class="hr-tile-head"><span class="hr-tile-name">{name}</span>'
        '<span class="hr-tile-state">Connecting…</span></div>'
        f'<div class="hr-tile-main"><span class="hr-tile-bpm">{DASH}</span>'
        '<span class="hr-tile-unit">bpm</span></div>'
        '<div class="hr-tile-age"></div>'
        '<canvas class="hr-tile-spark"></canvas>'
        "</a>"
    )


def css_name(key: str) -> str:
    """A React style key as CSS: ``fontSize`` → ``font-size``; custom properties as they are."""
    return key if key.startswith("--") else re.sub("([A-Z])", r"-\1", key).lower()


def to_html(node: Any) -> str:
    """A Dash component tree as the HTML React renders for it: html.* components become their
    elements (id, className, style, data-* / aria-* and other attributes, children); other
    components (the socket, stores, intervals) render nothing visible."""
    if node is None:
        return ""
    if isinstance(node, (str, int, float)):
        return html.escape(str(node))
    if isinstance(node, (list, tuple)):
        return "".join(to_html(child) for child in node)
    spec = node.to_plotly_json()
    if spec["namespace"] != "dash_html_components":
        return ""
    tag = spec["type"].lower()
    props = dict(spec["props"])
    children = props.pop("children", None)
    attrs = []
    for key, value in props.items():
        if value is None:
            continue
        name = {"className": "class"}.get(key, key)
        if key == "style":
            value = "; ".join(f"{css_name(k)}: {v}" for k, v in value.items())
        attrs.append(f' {name}="{html.escape(str(value))}"')
    return f"<{tag}{''.join(attrs)}>{to_html(children)}</{tag}>"


def page_markup(count: int) -> str:
    """The station page for a simulated ward of ``count``, from its real layout."""
    settings, patients = ward(count)
    return to_html(station_page.layout(settings, patients, lambda pid: f"/patient/{pid}"))


# Installed before the assets, as Dash's renderer does: window.dash_clientside with no_update;
# set_props(id, props) is recorded and applied to the element (children as text, className,
# title), as React would render it. Then a switchable clock.
HARNESS_JS = """
(() => {
  const dc = (window.dash_clientside = window.dash_clientside || {});
  Object.defineProperty(dc, 'no_update', {
    value: {description: 'Return to prevent updating an Output.'}, writable: false});
  window.setPropsCalls = [];
  dc.set_props = (id, props) => {
    window.setPropsCalls.push([id, props]);
    const el = document.getElementById(id);
    if (!el) return;
    if ('children' in props) el.textContent = props.children;
    if ('className' in props) el.className = props.className;
    if ('title' in props) el.title = props.title;
  };
  const realNow = performance.now.bind(performance);
  window.fakeNow = null;
  performance.now = () => (window.fakeNow === null ? realNow() : window.fakeNow);
  window.NU = () => window.dash_clientside.no_update;
  // Everything a tile shows, as the user sees it.
  window.tileShown = (el) => {
    const q = (c) => el.querySelector(c);
    const style = (c, prop) => getComputedStyle(q(c))[prop];
    return {
      id: el.getAttribute('data-patient'),
      state: el.getAttribute('data-state'),
      alarm: el.getAttribute('data-alarm'),
      name: q('.hr-tile-name').textContent,
      label: q('.hr-tile-state').textContent,
      title: q('.hr-tile-state').getAttribute('title') || '',
      bpm: q('.hr-tile-bpm').textContent,
      age: q('.hr-tile-age').textContent,
      bpmColor: style('.hr-tile-bpm', 'color'),
      labelColor: style('.hr-tile-state', 'color'),
      labelBackground: style('.hr-tile-state', 'backgroundColor'),
      tileBackground: getComputedStyle(el).backgroundImage + ' ' +
        getComputedStyle(el).backgroundColor,
      sparkColor: style('.hr-tile-spark', 'color'),
    };
  };
  window.tilesShown = () =>
    Array.from(document.querySelectorAll('[data-patient]')).map(window.tileShown);
})();
"""

RESET_JS = """
([source, markup]) => {
  const old = window.hrdashStation && window.hrdashStation.state;
  if (old) [old.timer, old.snapshotTimer].forEach((t) => t !== null && clearTimeout(t));
  document.body.innerHTML = markup;
  const script = document.createElement('script');
  script.textContent = source;
  document.head.appendChild(script);
  script.remove();
  window.setPropsCalls = [];
  window.fakeNow = null;
}
"""


@pytest.fixture(scope="module")
def browser_page() -> Iterator[Any]:
    """One blank page for the module (1920x1080) with the stub, the CSS and hrdash.js."""
    with chromium_page(1920, 1080) as page:
        page.route(
            PAGE_URL,
            lambda route: route.fulfill(
                content_type="text/html",
                body="<!doctype html><html><head></head><body></body></html>",
            ),
        )
        page.goto(PAGE_URL)
        for css in CSS:
            page.add_style_tag(path=str(css))
        page.add_script_tag(content=HARNESS_JS)
        page.add_script_tag(path=str(HRDASH_JS))
        yield page


@pytest.fixture
def page(browser_page: Any) -> Iterator[Any]:
    """The module's page with a fresh station (3 patients) and a freshly evaluated station.js."""
    errors: list[str] = []

    def on_error(error: Any) -> None:
        errors.append(str(error))

    browser_page.on("pageerror", on_error)
    reset(browser_page, station_config())
    yield browser_page
    browser_page.remove_listener("pageerror", on_error)
    assert errors == [], errors


def reset(page: Any, config: dict[str, Any]) -> None:
    page.evaluate(RESET_JS, [STATION_JS.read_text(), page_markup(len(config["patients"]))])


# -- frames, as the station feed sends them -----------------------------------------------------


def reading(seq: int, bpm: float | None = None) -> dict[str, Any]:
    return {"seq": seq, "time": T0 + 500 * seq, "bpm": 60 + seq % 40 if bpm is None else bpm}


def patient(
    pid: str,
    state: str = "live",
    *,
    seq: int | None = 10,
    bpm: float | None = None,
    age: float | None = 0.2,
    upstream: str | None = None,
    detail: str = "",
    recent: list[dict[str, Any]] | None = None,
    alarms: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """One patient of a station frame; ``seq`` None: no reading yet."""
    last = None if seq is None else reading(seq, bpm)
    if upstream is None:
        upstream = {"live": "live", "stale": "live", "connecting": "connecting", "down": "down"}[
            state
        ]
    if recent is None:
        recent = [] if seq is None else [reading(s) for s in range(max(1, seq - 3), seq)] + [last]
    return {
        "id": pid,
        "name": f"Bed {int(pid.split('-')[1])}",
        "upstream": upstream,
        "detail": detail,
        "state": state,
        "age": None if seq is None else age,
        "last": last,
        "recent": recent,
        "alarms": alarms or [],
    }


def station(*patients: dict[str, Any], run: str = "r1", snapshot: bool = False) -> dict[str, Any]:
    frame: dict[str, Any] = {
        "type": "station",
        "run": run,
        "now": T0 + 10_000,
        "stale_after": STALE_AFTER,
        "audio_paused_until": None,
        "patients": list(patients),
    }
    if snapshot:
        frame["snapshot"] = True
    return frame


def alarm(priority: str, state: str = "active", kind: str = "hr_high") -> dict[str, Any]:
    return {
        "id": f"a-{priority}-{state}",
        "patient": "bed-01",
        "kind": kind,
        "priority": priority,
        "state": state,
        "since": T0,
        "ended": None,
        "value": 130,
        "limit": 120,
    }


def test_frames_have_the_feeds_shape() -> None:
    """The frames built here carry exactly the keys of the bridge's station frames (the hub's
    digest), their patients and readings, so the client is tested on what it is really sent."""
    digest = hub.Hub(capacity=100, window=20, run_id="r1")
    digest.add("bed-01", "Bed 1").accept([Reading(T0, 72)], now=T0 / 1000)
    upstreams = {"bed-01": hub.UpstreamState("live", "", T0 / 1000)}
    for snapshot in (False, True):
        real = digest.station_frame(upstreams, T0 / 1000 + 1, STALE_AFTER, snapshot=snapshot)
        ours = station(patient("bed-01", seq=1), snapshot=snapshot)
        assert set(ours) == set(real)
        assert set(ours["patients"][0]) == set(real["patients"][0])
        assert set(ours["patients"][0]["last"]) == set(real["patients"][0]["last"])
        assert set(ours["patients"][0]["recent"][0]) == set(real["patients"][0]["recent"][0])
        assert real["patients"][0]["state"] == "live"


# -- calling the page ------------------------------------------------------------------------


def send(page: Any, frame: dict[str, Any] | str, config: dict[str, Any] | None = None) -> Any:
    """One socket message through ``on_station_message``; its return value must be no_update."""
    return page.evaluate(
        """([f, c]) => {
             const message = {data: typeof f === 'string' ? f : JSON.stringify(f),
                              isTrusted: true, origin: 'ws://127.0.0.1:8765', timeStamp: 0};
             const out = window.dash_clientside.hrdash.on_station_message(message, c);
             return out === window.NU() ? '<no_update>' : out;
           }""",
        [frame, config or station_config()],
    )


def sock(page: Any, ready_state: int, config: dict[str, Any] | None = None) -> None:
    page.evaluate(
        "([s, c]) => window.dash_clientside.hrdash.on_station_state(s, c)",
        [{"readyState": ready_state}, config or station_config()],
    )


def tick(page: Any, config: dict[str, Any] | None = None) -> None:
    page.evaluate(
        "(c) => window.dash_clientside.hrdash.on_station_tick(1, c)", config or station_config()
    )


def next_frame(page: Any) -> None:
    """Until the page has drawn the next frame and the one after: the sparklines are drawn in an
    animation frame after the tile text, and a canvas's first size comes with layout."""
    page.evaluate(
        "() => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(() => r())))"
    )


def set_clock(page: Any, ms: float | None) -> None:
    page.evaluate("(t) => { window.fakeNow = t; }", ms)


def helper(page: Any, name: str, *args: Any) -> Any:
    """``window.hrdashStation[name](...args)`` in the page (arguments and result as JSON)."""
    return page.evaluate(
        "([name, args]) => window.hrdashStation[name](...args)", [name, list(args)]
    )


def shown(page: Any) -> dict[str, dict[str, Any]]:
    return {t["id"]: t for t in page.evaluate("window.tilesShown()")}


def station_state(page: Any) -> dict[str, Any]:
    return dict(
        page.evaluate(
            """() => { const s = window.hrdashStation.state;
                 return {frames: s.frames, rejected: s.rejected, reasons: s.reasons,
                         ignored: s.ignored, tileWrites: s.tileWrites,
                         sparks: Object.fromEntries(Object.entries(s.sparks).map(
                           ([k, v]) => [k, v.points.map((p) => p.seq)]))}; }"""
        )
    )


def badge(page: Any) -> tuple[str, str, str]:
    return tuple(  # type: ignore[return-value]
        page.evaluate(
            "(id) => { const b = document.getElementById(id);"
            " return [b.textContent, b.className, b.title]; }",
            IDS["status"],
        )
    )


def ws_urls(page: Any) -> list[str]:
    calls = page.evaluate("window.setPropsCalls")
    return [props["url"] for target, props in calls if target == IDS["ws"] and "url" in props]


GREY = "rgb(148, 163, 184)"  # the number of a tile that is not live (station.css)


# -- tests -------------------------------------------------------------------------------------


def test_namespace_is_shared_whatever_the_load_order() -> None:
    """hrdash.js and station.js add their functions to one window.dash_clientside.hrdash, in
    either load order, and the station resolves its socket URL with the monitor's
    resolveWsUrl (looked up when called, so it may load first)."""
    names = [
        "connect",
        "on_message",
        "on_state",
        "on_tick",
        "station_connect",
        "on_station_message",
        "on_station_state",
        "on_station_tick",
    ]
    with chromium_page() as page:
        page.set_content("<html><body></body></html>")
        page.add_script_tag(content=HARNESS_JS)
        for order in ([STATION_JS, HRDASH_JS], [HRDASH_JS, STATION_JS]):
            page.evaluate("() => { delete window.dash_clientside.hrdash; }")
            for path in order:
                page.add_script_tag(path=str(path))
            present = page.evaluate(
                "(names) => names.filter((n) => typeof window.dash_clientside.hrdash[n] === "
                "'function')",
                names,
            )
            assert present == names, order
            assert page.evaluate("typeof window.dash_clientside.no_update") == "object"
            config = station_config(ws_url="/ws?station=1", ws_port=8765)
            page.evaluate("() => { window.hrdashStation.state.wsBase = null; }")
            url = page.evaluate(
                "(c) => window.dash_clientside.hrdash.station_connect(c)",
                {**config, "ws_url": "ws://10.0.0.1:9000/ws?station=1"},
            )
            assert url == "ws://10.0.0.1:9000/ws?station=1"


def test_a_frame_writes_every_tile(page: Any) -> None:
    """A station frame fills each tile from its patient: the name, the latest bpm (rounded) or an
    en dash, the state label with the cause as its title, the age when not live, data-state and
    data-alarm; on_station_message returns nothing for Dash to render."""
    frame = station(
        patient("bed-01", seq=20, bpm=71.6),
        patient("bed-02", "down", seq=12, bpm=88, age=30.4, detail="connection refused"),
        patient("bed-03", "connecting", seq=None),
    )
    assert send(page, frame) == "<no_update>"
    tiles = shown(page)
    assert {
        k: (t["state"], t["alarm"], t["bpm"], t["label"], t["title"], t["age"], t["name"])
        for k, t in tiles.items()
    } == {
        "bed-01": ("live", "none", "72", "Live", "", "", "Bed 1"),
        "bed-02": ("down", "none", "88", "Down", "connection refused", "30 s ago", "Bed 2"),
        "bed-03": ("connecting", "none", DASH, "Connecting…", "", "", "Bed 3"),
    }


def test_a_tile_names_the_reading_it_shows(page: Any) -> None:
    """data-time on a tile is the shown reading's time (Unix ms), written with the bpm, also when
    the next reading has the same bpm and brings nothing else new; a tile without a reading has
    it empty."""
    times = "() => [...document.querySelectorAll('[data-patient]')].map((e) => e.dataset.time)"
    send(
        page,
        station(
            patient("bed-01", seq=10, bpm=70),
            patient("bed-02", seq=4),
            patient("bed-03", "connecting", seq=None),
        ),
    )
    assert page.evaluate(times) == [str(reading(10)["time"]), str(reading(4)["time"]), ""]
    send(
        page,
        station(
            patient("bed-01", seq=11, bpm=70, recent=[]),
            patient("bed-02", seq=4),
            patient("bed-03", "connecting", seq=None),
        ),
    )
    assert page.evaluate(times) == [str(reading(11)["time"]), str(reading(4)["time"]), ""]
    assert shown(page)["bed-01"]["bpm"] == "70"


def test_stale_and_down_tiles_never_look_live(page: Any) -> None:
    """Each state has its own label, label colours and sparkline colour, and a tile that is not
    live shows its number grey: a stale or down number never looks like a live one. None of the
    state colours is an alarm colour (red, yellow, cyan)."""
    send(
        page,
        station(
            patient("bed-01", seq=20),
            patient("bed-02", "stale", seq=20, age=12.0),
            patient("bed-03", "down", seq=20, age=40.0, detail="refused"),
        ),
    )
    tiles = shown(page)
    live, stale, down = tiles["bed-01"], tiles["bed-02"], tiles["bed-03"]
    assert (stale["label"], stale["age"], down["label"], down["age"]) == (
        "Stale",
        "12 s ago",
        "Down",
        "40 s ago",
    )
    assert live["bpm"] == stale["bpm"] == down["bpm"]  # the same number, shown differently
    assert live["bpmColor"] != GREY
    for other in (stale, down):
        assert other["bpmColor"] == GREY
        assert other["label"] != live["label"]
        assert other["labelColor"] != live["labelColor"]
        assert other["labelBackground"] != live["labelBackground"]
        assert other["tileBackground"] != live["tileBackground"]
        assert other["sparkColor"] != live["sparkColor"]
    send(page, station(patient("bed-01", "connecting", seq=None)))
    connecting = shown(page)["bed-01"]
    looks = {(t["labelColor"], t["labelBackground"]) for t in (live, stale, down, connecting)}
    assert len(looks) == 4
    alarm_colours = {"rgb(220, 38, 38)", "rgb(234, 179, 8)", "rgb(6, 182, 212)"}
    for t in (live, stale, down, connecting):
        assert not {t["labelColor"], t["labelBackground"], t["bpmColor"]} & alarm_colours


def test_alarm_attribute_is_the_highest_active_priority(page: Any) -> None:
    """data-alarm is the highest priority among a patient's active or latched alarms, "none"
    without; acknowledged and ended alarms do not count; the tile gets a ring in the alarm's
    colour and nothing else changes."""
    cases = [
        ([], "none"),
        ([alarm("low")], "low"),
        ([alarm("low"), alarm("medium", "latched")], "medium"),
        ([alarm("medium"), alarm("high"), alarm("low")], "high"),
        ([alarm("high", "acknowledged"), alarm("high", "ended"), alarm("low")], "low"),
        ([alarm("high", "ended")], "none"),
        ([{"priority": "urgent", "state": "active"}, None], "none"),
    ]
    for alarms, want in cases:
        assert helper(page, "highestAlarm", alarms) == want, alarms
    send(page, station(patient("bed-01", alarms=[alarm("medium")]), patient("bed-02")))
    tiles = shown(page)
    assert (tiles["bed-01"]["alarm"], tiles["bed-02"]["alarm"]) == ("medium", "none")
    rings = page.evaluate(  # the flash's "on" phase (its first half)
        "() => ['bed-01', 'bed-02'].map((p) => { const t = document.querySelector("
        "`[data-patient=${p}]`);"
        " t.getAnimations({subtree: true}).forEach((a) => { a.pause(); a.currentTime = 0; });"
        " const ring = getComputedStyle(t, '::after');"  # the ring is the tile's ::after
        " return ring.boxShadow + ' opacity ' + ring.opacity; })"
    )
    assert "rgb(234, 179, 8)" in rings[0] and "inset" in rings[0] and rings[0].endswith(" 1")
    assert "rgb(234, 179, 8)" not in rings[1]
    send(page, station(patient("bed-01", alarms=[]), patient("bed-02")))
    assert shown(page)["bed-01"]["alarm"] == "none"


def test_sparkline_merges_the_snapshot_and_live_recent_by_seq(page: Any) -> None:
    """The first frame's recent (the last SPARK_SECONDS) is the sparkline; each live frame's
    recent is merged by seq: no duplicates, in seq order, and never more than SPARK_SECONDS of
    readings; a new bridge run starts the line afresh. The line is drawn on the tile's canvas
    in the state's colour."""
    n = 2 * SPARK_SECONDS  # 120 s at 2 Hz
    snap = patient("bed-01", seq=n, recent=[reading(s) for s in range(1, n + 1)])
    send(page, station(snap, snapshot=True))
    assert station_state(page)["sparks"]["bed-01"] == list(range(1, n + 1))
    for seq in range(n + 1, n + 41):  # live frames repeat the last 4 readings
        send(page, station(patient("bed-01", seq=seq)))
    sparks = station_state(page)["sparks"]["bed-01"]
    assert sparks == sorted(set(sparks))
    assert sparks[-1] == n + 40
    window_ms = SPARK_SECONDS * 1000
    assert (sparks[-1] - sparks[0]) * 500 <= window_ms  # bounded by time
    assert len(sparks) == window_ms // 500 + 1

    next_frame(page)
    drawn = page.evaluate(
        """() => {
             const c = document.querySelector('[data-patient="bed-01"] .hr-tile-spark');
             const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
             let painted = 0, green = 0;
             for (let i = 0; i < d.length; i += 4) {
               if (d[i + 3] > 128) { painted += 1; if (d[i + 1] > d[i] + 40) green += 1; }
             }
             return {w: c.width, h: c.height, cssW: c.clientWidth, painted, green};
           }"""
    )
    assert drawn["w"] == drawn["cssW"] > 100
    assert drawn["painted"] > drawn["w"]  # a line across the canvas
    assert drawn["green"] > drawn["painted"] / 2  # live: the live colour

    send(page, station(patient("bed-01", seq=3), run="r2"))
    assert station_state(page)["sparks"]["bed-01"] == [1, 2, 3]


def test_spark_points_helper(page: Any) -> None:
    """sparkPoints puts the newest reading at the right edge, SPARK_SECONDS across the width,
    a y range at least sparkMinSpan tall around the readings (whose range is smaller here), and
    breaks the line at gaps longer than stale_after."""
    pts = [{"seq": s, "time": 1000 * s, "bpm": 70 + s} for s in (1, 2, 3, 10, 11)]
    pts[0]["time"] = 500  # before the window (11 s - 10 s)
    out = helper(page, "sparkPoints", pts, 11_000, 10_000, 100, 50, 2_000)
    segments = out["segments"]
    assert [len(s) for s in segments] == [2, 2]  # seq 1 is outside; 3 → 10 is a gap
    assert segments[1][-1][0] == 100  # newest at the right edge
    assert segments[0][0][0] == 10  # 2 s after the left edge: a tenth of the width
    span = page.evaluate("window.hrdashStation.sparkMinSpan")
    assert span > 11 - 2
    assert out["hi"] - out["lo"] == span
    assert (out["hi"] + out["lo"]) / 2 == (72 + 81) / 2  # centred on the readings' range


def test_staleness_is_extrapolated_from_the_bridges_age(page: Any) -> None:
    """A live tile goes stale by itself once the bridge's age plus the time since the frame
    arrived (the page's monotonic clock) passes stale_after, and its age text counts on; the
    readings' own (service) timestamps play no part, even absurd ones."""
    config = station_config()
    set_clock(page, 10_000)
    old = patient("bed-01", seq=20, age=0.5)
    old["last"]["time"] = old["recent"][-1]["time"] = 946_684_800_000  # year 2000
    send(page, station(old, patient("bed-02", seq=20, age=0.5)), config)
    assert shown(page)["bed-01"]["state"] == "live"
    stale_at = 10_000 + (STALE_AFTER - 0.5) * 1000
    set_clock(page, stale_at - 50)
    tick(page, config)
    tiles = shown(page)
    assert (tiles["bed-01"]["state"], tiles["bed-02"]["state"]) == ("live", "live")
    assert tiles["bed-01"]["age"] == ""
    set_clock(page, stale_at + 50)
    tick(page, config)
    tile = shown(page)["bed-01"]
    assert (tile["state"], tile["label"], tile["bpmColor"]) == ("stale", "Stale", GREY)
    assert tile["age"] == f"{math.floor(STALE_AFTER)} s ago"
    set_clock(page, 10_000 + 11_600)
    tick(page, config)
    assert shown(page)["bed-01"]["age"] == "12 s ago"
    set_clock(page, 10_000 + 125_000)
    tick(page, config)
    assert shown(page)["bed-01"]["age"] == "2 min ago"
    # A fresh frame makes it live again.
    send(page, station(patient("bed-01", seq=21, age=0.1)), config)
    assert shown(page)["bed-01"]["state"] == "live"
    assert helper(page, "ageText", 3700) == "1 h ago"


def test_tiles_go_stale_while_the_page_socket_is_down(page: Any) -> None:
    """With the page's own socket closed no frame arrives, and live tiles turn stale by
    themselves as their extrapolated age grows; down tiles stay down."""
    config = station_config()
    set_clock(page, 1_000)
    sock(page, OPEN, config)
    send(page, station(patient("bed-01"), patient("bed-02", "down", detail="x")), config)
    sock(page, CLOSED, config)
    set_clock(page, 1_000 + STALE_AFTER * 1000 + 500)
    tick(page, config)
    tiles = shown(page)
    assert (tiles["bed-01"]["state"], tiles["bed-02"]["state"]) == ("stale", "down")
    assert badge(page)[0] == "Reconnecting…"


def test_coalesced_frames_leave_every_tile_right(page: Any) -> None:
    """Dash may hand the page only the last of several frames: the tiles then show exactly
    what they show after all of them."""
    frames = [
        station(patient("bed-01", seq=1), patient("bed-02", "connecting", seq=None)),
        station(
            patient("bed-01", seq=2, alarms=[alarm("high")]),
            patient("bed-02", seq=1),
            patient("bed-03", "down", seq=None, detail="refused"),
        ),
        station(
            patient("bed-01", "stale", seq=2, age=3.5),
            patient("bed-02", seq=2, bpm=101),
            patient("bed-03", "connecting", seq=None),
        ),
        station(
            patient("bed-01", seq=3, alarms=[alarm("medium")]),
            patient("bed-02", "down", seq=2, bpm=101, age=4.0, detail="closed"),
            patient("bed-03", seq=1, bpm=55),
        ),
    ]
    set_clock(page, 5_000)
    for frame in frames:
        send(page, frame)
    after_all = shown(page)
    reset(page, station_config())
    set_clock(page, 5_000)
    send(page, frames[-1])
    assert shown(page) == after_all
    assert [t["state"] for t in after_all.values()] == ["live", "down", "live"]


def test_malformed_frames_are_ignored_and_counted(page: Any) -> None:
    """A frame that is not JSON, not a station frame or has one bad patient (a bpm that is
    text, an unknown state, no recent...) changes no tile and is counted with its reason;
    frames of other types are ignored; a malformed first frame leaves the tiles Connecting…."""
    send(page, "{not json")
    assert {t["label"] for t in shown(page).values()} == {"Connecting…"}
    good = station(patient("bed-01", seq=5, bpm=77), patient("bed-02", seq=5, bpm=66))
    send(page, good)
    before = shown(page)
    bad_bpm = station(patient("bed-01", seq=6, bpm=99), patient("bed-02", seq=6))
    bad_bpm["patients"][1]["last"]["bpm"] = "120"
    bad_state = station(patient("bed-01", seq=6, bpm=99))
    bad_state["patients"][0]["state"] = "ok"
    no_recent = station(patient("bed-01", seq=6, bpm=99))
    del no_recent["patients"][0]["recent"]
    neg_age = station(patient("bed-01", seq=6, bpm=99, age=-1))
    malformed = [
        "[1, 2]",
        json.dumps({"type": "station", "run": "r1", "patients": {"bed-01": {}}}),
        json.dumps({"type": "station", "patients": []}),
        bad_bpm,
        bad_state,
        no_recent,
        neg_age,
        json.dumps({"type": 7}),
    ]
    for frame in malformed:
        send(page, frame)
    assert shown(page) == before
    state = station_state(page)
    assert state["rejected"] == 1 + len(malformed)
    assert state["reasons"] == {
        "json": 1,
        "not_object": 1,
        "patients": 1,
        "run": 1,
        "last": 1,
        "state": 1,
        "recent": 1,
        "age": 1,
        "type": 1,
    }
    send(page, {"type": "alarm", "patient": "bed-01", "alarms": []})
    assert station_state(page)["ignored"] == 1
    assert shown(page) == before


def test_upstream_text_is_shown_as_text(page: Any) -> None:
    """A name or cause holding markup is shown as text, never parsed as HTML."""
    p = patient("bed-01", "down", detail='<img src=x onerror="window.pwned=1">')
    p["name"] = "<b>Bed</b>"
    send(page, station(p))
    tile = shown(page)["bed-01"]
    assert (tile["name"], tile["title"]) == ("<b>Bed</b>", p["detail"])
    assert page.evaluate("document.querySelectorAll('.hr-tile img, .hr-tile b').length") == 0


def test_only_tiles_whose_content_changed_are_touched(page: Any) -> None:
    """A frame that changes one patient writes that tile only (a MutationObserver sees no
    change to the others), and a repeated frame writes nothing."""
    config = station_config()
    set_clock(page, 1_000)
    frame = station(patient("bed-01"), patient("bed-02"), patient("bed-03"))
    send(page, frame, config)
    next_frame(page)  # the sparklines drawn (the canvases sized)
    page.evaluate(
        """() => {
             window.mutated = [];
             window.observer = new MutationObserver((records) => records.forEach((r) => {
               const tile = (r.target.nodeType === 1 ? r.target : r.target.parentElement)
                 .closest('[data-patient]');
               window.mutated.push(tile ? tile.getAttribute('data-patient') : '?');
             }));
             window.observer.observe(document.getElementById('hr-station'),
               {subtree: true, childList: true, attributes: true, characterData: true});
           }"""
    )
    writes = station_state(page)["tileWrites"]
    set_clock(page, 1_100)
    send(page, frame, config)
    tick(page, config)
    assert station_state(page)["tileWrites"] == writes
    changed = station(patient("bed-01"), patient("bed-02", seq=11), patient("bed-03"))
    send(page, changed, config)
    assert station_state(page)["tileWrites"] == writes + 1
    mutated = page.evaluate("window.observer.takeRecords().length; window.mutated")
    page.evaluate("window.observer.disconnect()")
    assert mutated and set(mutated) == {"bed-02"}


def test_socket_reconnects_with_backoff_and_a_watchdog(page: Any) -> None:
    """A closed socket is reopened (a new url) after a backoff, the badge says Reconnecting…;
    open with frames it says Live; an open socket silent for more than the watchdog's limit is
    replaced."""
    config = station_config()
    assert (
        page.evaluate("(c) => window.dash_clientside.hrdash.station_connect(c)", config) == WS_URL
    )
    sock(page, OPEN, config)
    assert badge(page)[0] == "Connecting…"
    send(page, station(patient("bed-01")), config)
    assert badge(page)[:2] == ("Live", "hr-badge hr-badge--live")
    sock(page, CLOSED, config)
    assert badge(page)[:2] == ("Reconnecting…", "hr-badge hr-badge--reconnecting")
    page.wait_for_function(
        "(id) => window.setPropsCalls.some(([t, p]) => t === id && p.url)",
        arg=IDS["ws"],
        timeout=5000,
    )
    assert ws_urls(page) == [WS_URL + "&n=1"]
    sock(page, OPEN, config)
    send(page, station(patient("bed-01")), config)
    assert badge(page)[0] == "Live"
    silent = page.evaluate("window.hrdashCore.timing.silentSocketMs")
    t = page.evaluate("performance.now()")
    set_clock(page, t + silent - 100)
    tick(page, config)
    assert len(ws_urls(page)) == 1
    set_clock(page, t + silent + 100)
    tick(page, config)
    assert ws_urls(page) == [WS_URL + "&n=1", WS_URL + "&n=2"]
    assert badge(page)[0] == "Reconnecting…"


def test_a_refused_origin_is_said_in_the_badge(page: Any) -> None:
    """When the bridge's allowed origins do not name the page's origin and the socket closes
    without opening, the badge says Origin refused and its title what to change."""
    config = station_config(allowed_origins=["https://station.example.org"])
    page.evaluate("(c) => window.dash_clientside.hrdash.station_connect(c)", config)
    sock(page, CLOSED, config)
    text, cls, title = badge(page)
    assert (text, cls) == ("Origin refused", "hr-badge hr-badge--down")
    assert "HRDASH_ALLOWED_ORIGINS" in title


def layout_figures(page: Any) -> dict[str, Any]:
    return dict(
        page.evaluate(
            """() => {
                 const tiles = Array.from(document.querySelectorAll('[data-patient]'));
                 const r = tiles.map((t) => t.getBoundingClientRect());
                 const first = tiles[0];
                 const fs = (c) => parseFloat(getComputedStyle(first.querySelector(c)).fontSize);
                 const spark = first.querySelector('.hr-tile-spark').getBoundingClientRect();
                 const inside = (el) => { const a = el.getBoundingClientRect(),
                   b = first.getBoundingClientRect();
                   return a.left >= b.left && a.right <= b.right + 0.5 && a.top >= b.top &&
                          a.bottom <= b.bottom + 0.5; };
                 return {
                   count: tiles.length,
                   scrolls: document.documentElement.scrollHeight > innerHeight ||
                            document.documentElement.scrollWidth > innerWidth,
                   allVisible: r.every((b) => b.top >= 0 && b.left >= 0 &&
                                              b.bottom <= innerHeight && b.right <= innerWidth),
                   tileW: r[0].width, tileH: r[0].height,
                   bpmPx: fs('.hr-tile-bpm'), namePx: fs('.hr-tile-name'),
                   sparkH: spark.height,
                   unitShown: getComputedStyle(first.querySelector('.hr-tile-unit')).display
                              !== 'none',
                   partsInside: ['.hr-tile-name', '.hr-tile-state', '.hr-tile-bpm',
                                 '.hr-tile-age', '.hr-tile-spark']
                                  .every((c) => inside(first.querySelector(c))),
                 };
               }"""
        )
    )


@pytest.mark.parametrize("count", [16, 64])
def test_the_grid_fits_1920x1080(page: Any, count: int) -> None:
    """16 and 64 tiles all fit a 1920x1080 screen without scrolling, every part of a tile inside
    it; with 64 the grid densifies (smaller number and name, no unit, a shorter sparkline) and
    stays readable (a number at least 36 px, a name at least 12 px)."""
    config = station_config(count)
    reset(page, config)
    set_clock(page, 1_000)
    pats = [
        patient(pid, "stale" if i % 5 == 1 else "live", seq=20, age=3.0 if i % 5 == 1 else 0.2)
        for i, pid in enumerate(patient_ids(count))
    ]
    pats[2] = patient(pats[2]["id"], "down", seq=20, age=30.0, detail="connection refused")
    send(page, station(*pats), config)
    tiles = shown(page)
    assert len(tiles) == count
    assert all(t["bpm"] == str(60 + 20 % 40) for t in tiles.values())
    figures = layout_figures(page)
    assert figures["allVisible"] and not figures["scrolls"], figures
    assert figures["partsInside"], figures
    assert figures["bpmPx"] >= 36 and figures["namePx"] >= 12, figures
    assert figures["sparkH"] >= 14, figures
    if count == 16:
        assert figures["bpmPx"] >= 72 and figures["unitShown"], figures
    else:
        assert not figures["unitShown"], figures
        assert figures["bpmPx"] < 72, figures


def test_a_lost_snapshot_is_asked_for_again(page: Any) -> None:
    """Last resort: when a live frame comes on a socket before any snapshot (an old bridge, or
    every repeat lost), the page opens a new socket for a new snapshot after a pause, and stops
    once it has one; it tries a bounded number of times in a row."""
    config = station_config()
    page.evaluate("(c) => window.dash_clientside.hrdash.station_connect(c)", config)
    sock(page, OPEN, config)
    send(page, station(patient("bed-01", seq=50)), config)  # a live frame: the snapshot is lost
    assert station_state(page)["sparks"]["bed-01"] == [47, 48, 49, 50]
    retry_ms = page.evaluate("window.hrdashStation.snapshotRetryMs")
    page.wait_for_function(
        "(id) => window.setPropsCalls.some(([t, p]) => t === id && p.url)",
        arg=IDS["ws"],
        timeout=retry_ms + 3000,
    )
    assert ws_urls(page) == [WS_URL + "&n=1"]
    sock(page, OPEN, config)
    snap = patient("bed-01", seq=51, recent=[reading(s) for s in range(1, 52)])
    send(page, station(snap, snapshot=True), config)
    assert station_state(page)["sparks"]["bed-01"] == list(range(1, 52))
    send(page, station(patient("bed-01", seq=52)), config)
    page.wait_for_timeout(retry_ms + 300)
    assert ws_urls(page) == [WS_URL + "&n=1"]  # no second retry
    # Bounded: after SNAPSHOT_RETRIES misses in a row, no more.
    retries = page.evaluate("window.hrdashStation.snapshotRetries")
    page.evaluate(
        "(n) => { const s = window.hrdashStation.state; s.snapshotMisses = n;"
        " s.snapshotSeen = false; }",
        retries,
    )
    send(page, station(patient("bed-01", seq=53)), config)
    assert page.evaluate("window.hrdashStation.state.snapshotTimer") is None


def acks(page: Any) -> list[dict[str, Any]]:
    """The messages the page sent over its socket (set_props on the socket's ``send``)."""
    calls = page.evaluate("window.setPropsCalls")
    return [
        json.loads(props["send"])
        for target, props in calls
        if target == IDS["ws"] and "send" in props
    ]


def spark_pixels(page: Any, patient_id: str) -> int:
    """Pixels the sparkline's canvas of a patient has drawn (not transparent)."""
    next_frame(page)
    return int(
        page.evaluate(
            """(id) => { const c = document.querySelector(`[data-patient="${id}"] canvas`);
                 if (!c.width || !c.height) return 0;
                 const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
                 let n = 0; for (let i = 3; i < d.length; i += 4) if (d[i]) n += 1;
                 return n; }""",
            patient_id,
        )
    )


def test_a_snapshot_is_acknowledged_with_its_run(page: Any) -> None:
    """On every snapshot frame the page sends {"type": "snapshot_ok", "run": <the snapshot's
    run>} over its socket (each ack a new value of the socket's send, so that the component
    sends it); live frames are not acknowledged, nor is anything sent on a closed socket."""
    config = station_config()
    page.evaluate("(c) => window.dash_clientside.hrdash.station_connect(c)", config)
    sock(page, OPEN, config)
    snap = patient("bed-01", seq=30, recent=[reading(s) for s in range(1, 31)])
    send(page, station(snap, run="9f2c41d0", snapshot=True), config)
    sent = acks(page)
    assert [(a["type"], a["run"]) for a in sent] == [("snapshot_ok", "9f2c41d0")]
    send(page, station(patient("bed-01", seq=31), run="9f2c41d0"), config)
    assert len(acks(page)) == 1
    send(page, station(snap, run="9f2c41d0", snapshot=True), config)  # a repeat: acked again
    sent = acks(page)
    assert [(a["type"], a["run"]) for a in sent] == [("snapshot_ok", "9f2c41d0")] * 2
    calls = [p["send"] for t, p in page.evaluate("window.setPropsCalls") if "send" in p]
    assert calls[0] != calls[1]
    sock(page, CLOSED, config)
    send(page, station(snap, run="9f2c41d0", snapshot=True), config)
    assert len(acks(page)) == 2


def test_a_coalesced_snapshot_fills_the_sparklines_without_a_new_socket(page: Any) -> None:
    """Dash hands the page a later snapshot in place of the first (the bridge repeats them until
    acknowledged), then another before the ack took effect: the sparklines hold every reading
    of both and the live frames after them, they are drawn, the ack names the run, and no new
    socket is opened."""
    config = station_config()
    page.evaluate("(c) => window.dash_clientside.hrdash.station_connect(c)", config)
    set_clock(page, None)
    sock(page, OPEN, config)
    # Snapshot 1 (seq 1..51) is never handed over; snapshots 2 and 3 are.
    second = [patient(pid, seq=52, recent=[reading(s) for s in range(1, 53)]) for pid in IDS_3]
    third = [patient(pid, seq=56, recent=[reading(s) for s in range(1, 57)]) for pid in IDS_3]
    send(page, station(*second, snapshot=True), config)
    send(page, station(*third, snapshot=True), config)
    for seq in (57, 58):
        send(page, station(*[patient(pid, seq=seq) for pid in IDS_3]), config)
    sparks = station_state(page)["sparks"]
    assert sparks == {pid: list(range(1, 59)) for pid in IDS_3}
    assert all(spark_pixels(page, pid) > 0 for pid in IDS_3)
    assert {(a["type"], a["run"]) for a in acks(page)} == {("snapshot_ok", "r1")}
    retry_ms = page.evaluate("window.hrdashStation.snapshotRetryMs")
    page.wait_for_timeout(retry_ms + 300)
    assert ws_urls(page) == []


def test_a_snapshot_after_a_live_frame_calls_off_the_new_socket(page: Any) -> None:
    """A live frame first starts the last resort's pause; a snapshot arriving within it fills
    the sparkline and no new socket is opened."""
    config = station_config()
    page.evaluate("(c) => window.dash_clientside.hrdash.station_connect(c)", config)
    sock(page, OPEN, config)
    send(page, station(patient("bed-01", seq=50)), config)
    snap = patient("bed-01", seq=51, recent=[reading(s) for s in range(1, 52)])
    send(page, station(snap, snapshot=True), config)
    retry_ms = page.evaluate("window.hrdashStation.snapshotRetryMs")
    page.wait_for_timeout(retry_ms + 300)
    assert ws_urls(page) == []
    assert station_state(page)["sparks"]["bed-01"] == list(range(1, 52))


def test_the_page_builds_the_contracts_tiles(page: Any) -> None:
    """The station page's tiles (its real layout) are exactly the tile DOM of the contract,
    the only elements with data-patient, in the grid with its --hr-cols/--hr-rows."""
    config = station_config(5)
    same = page.evaluate(
        """(contract) => Array.from(document.querySelectorAll('[data-patient]')).map((el, i) => {
             const t = document.createElement('template');
             t.innerHTML = contract[i];
             return el.isEqualNode(t.content.firstElementChild);
           })""",
        [tile_markup(p["id"], p["name"]) for p in config["patients"]],
    )
    assert same == [True, True, True]  # the fixture's ward of three
    reset(page, config)
    grid = page.evaluate(
        """(id) => { const g = document.getElementById(id);
             return [g.className, g.style.getPropertyValue('--hr-cols').trim(),
                     g.style.getPropertyValue('--hr-rows').trim(),
                     g.querySelectorAll('[data-patient]').length,
                     document.querySelectorAll('[data-patient]').length]; }""",
        IDS["grid"],
    )
    assert grid == ["hr-station-grid", "3", "2", 5, 5]


# Counts, while window.countLayout is set, every read that can force style or layout.
COUNT_LAYOUT_READS_JS = """
() => {
  if (window.layoutReads !== undefined) return;
  window.layoutReads = [];
  window.countLayout = false;
  const note = (name) => { if (window.countLayout) window.layoutReads.push(name); };
  for (const [proto, names] of [
    [Element.prototype, ['clientWidth', 'clientHeight', 'clientTop', 'clientLeft',
                         'scrollWidth', 'scrollHeight', 'scrollTop']],
    [HTMLElement.prototype, ['offsetWidth', 'offsetHeight', 'offsetTop', 'offsetLeft',
                             'innerText']],
  ]) {
    for (const name of names) {
      const d = Object.getOwnPropertyDescriptor(proto, name);
      Object.defineProperty(proto, name, {
        ...d, get() { note(name); return d.get.call(this); } });
    }
  }
  for (const name of ['getBoundingClientRect', 'getClientRects']) {
    const f = Element.prototype[name];
    Element.prototype[name] = function () { note(name); return f.apply(this, arguments); };
  }
  const gcs = window.getComputedStyle;
  window.getComputedStyle = function () {
    note('getComputedStyle');
    return gcs.apply(this, arguments);
  };
}
"""


def test_sparklines_are_drawn_in_a_frame_without_reading_layout(page: Any) -> None:
    """Once the canvases' sizes are known, a frame writes the tile text at once and draws the
    changed sparklines in the next animation frame, only those whose line changed, and neither
    on_station_message nor the drawing reads layout or computed style."""
    config = station_config()
    set_clock(page, 1_000)
    snap = [patient(pid, seq=40, recent=[reading(s) for s in range(1, 41)]) for pid in IDS_3]
    send(page, station(*snap, snapshot=True), config)
    next_frame(page)
    assert all(spark_pixels(page, pid) > 0 for pid in IDS_3)
    page.evaluate(COUNT_LAYOUT_READS_JS)
    draws = page.evaluate("window.hrdashStation.state.draws")
    page.evaluate("() => { window.layoutReads = []; window.countLayout = true; }")
    # Two frames in one task (as Dash may hand them over): the text at once, the lines later.
    at_once = page.evaluate(
        """([frames, c]) => {
             for (const f of frames) {
               window.dash_clientside.hrdash.on_station_message({data: JSON.stringify(f)}, c);
             }
             return [document.querySelector('[data-patient="bed-01"] .hr-tile-bpm').textContent,
                     window.hrdashStation.state.draws];
           }""",
        [[station(*[patient(pid, seq=seq) for pid in IDS_3]) for seq in (41, 42)], config],
    )
    assert at_once == [str(reading(42)["bpm"]), draws]
    next_frame(page)
    assert page.evaluate("window.hrdashStation.state.draws") == draws + 3  # once each
    changed = station(*[patient(pid, seq=43 if pid == "bed-02" else 42) for pid in IDS_3])
    send(page, changed, config)
    next_frame(page)
    assert page.evaluate("window.hrdashStation.state.draws") == draws + 4  # bed-02 only
    reads = page.evaluate("() => { window.countLayout = false; return window.layoutReads; }")
    assert reads == []


def test_the_page_clock_is_one_timer_started_by_station_connect(page: Any) -> None:
    """station_connect starts the page's clock, a timer calling on_station_tick every tick_ms
    (nothing else calls it here): a live tile goes stale by itself; connecting again restarts
    the one timer (never two); it stops once the station has left the page."""
    config = station_config()
    tick_ms = config["tick_ms"]
    set_clock(page, 10_000)
    page.evaluate("(c) => window.dash_clientside.hrdash.station_connect(c)", config)
    sock(page, OPEN, config)
    send(page, station(patient("bed-01", seq=20, age=0.5)), config)
    set_clock(page, 10_000 + (STALE_AFTER - 0.5) * 1000 + 50)
    page.wait_for_function(
        "() => document.querySelector('[data-patient=\"bed-01\"]').dataset.state === 'stale'",
        timeout=tick_ms * 4 + 2000,
    )
    assert shown(page)["bed-01"]["label"] == "Stale"
    for _ in range(3):
        page.evaluate("(c) => window.dash_clientside.hrdash.station_connect(c)", config)
    start = page.evaluate("window.hrdashStation.state.ticks")
    page.wait_for_timeout(tick_ms * 8)
    ticks = page.evaluate("window.hrdashStation.state.ticks") - start
    assert 4 <= ticks <= 10, ticks  # one timer: about 8 ticks, not 24
    page.evaluate("() => { document.getElementById('hr-station').remove(); }")
    page.wait_for_function("() => window.hrdashStation.state.ticker === null", timeout=2000)


def test_alarms_list_is_highest_priority_first_then_oldest(page: Any) -> None:
    """hr-station-alarms lists the active, latched and acknowledged alarms of every patient,
    highest priority first and oldest first within one, each linking to its patient; ended
    alarms are not listed; without any it says so."""

    def at(priority: str, state: str, since: int, kind: str = "hr_high") -> dict[str, Any]:
        return {**alarm(priority, state, kind), "id": f"{priority}-{since}", "since": since}

    frame = station(
        patient("bed-01", alarms=[at("medium", "active", 5), at("low", "active", 1, "no_signal")]),
        patient("bed-02", alarms=[at("high", "latched", 9, "hr_extreme_low")]),
        patient("bed-03", alarms=[at("medium", "acknowledged", 2), at("high", "ended", 1)]),
    )
    listed = helper(page, "alarmList", frame, None)
    assert [a["id"] for a in listed] == ["high-9", "medium-2", "medium-5", "low-1"]
    send(page, frame)
    rows = page.evaluate(
        "(id) => [...document.querySelectorAll(`#${id} li`)].map((li) => [li.dataset.priority,"
        " li.dataset.state, li.textContent, li.querySelector('a')?.getAttribute('href')])",
        ids.STATION_ALARMS,
    )
    assert [r[:2] for r in rows] == [
        ["high", "latched"],
        ["medium", "acknowledged"],
        ["medium", "active"],
        ["low", "active"],
    ]
    assert rows[0][2].startswith("*** ") and "HR extremely low" in rows[0][2]
    assert rows[3][2].startswith("* ") and "No signal" in rows[3][2]
    assert rows[0][3] == page.evaluate(
        "() => document.querySelector('[data-patient=bed-02]').getAttribute('href')"
    )
    send(page, station(patient("bed-01", alarms=[]), patient("bed-02"), patient("bed-03")))
    empty = page.evaluate(
        "(id) => [...document.querySelectorAll(`#${id} li`)].map((li) => li.textContent)",
        ids.STATION_ALARMS,
    )
    assert empty == ["No active alarms"]


def ack_buttons(page: Any) -> dict[str, Any]:
    """Every ack button: where it is (the tile of a patient, or the alarms list), shown or not,
    its alarm id, and whether it sits inside a link."""
    return dict(
        page.evaluate(
            """(cls) => {
                 const out = {tiles: {}, list: []};
                 for (const b of document.querySelectorAll('button.' + cls)) {
                   const tile = b.parentElement.querySelector(':scope > [data-patient]');
                   const v = {id: b.getAttribute('data-alarm-id'), shown: !b.hidden &&
                              b.getClientRects().length > 0, inLink: b.closest('a') !== null,
                              label: b.getAttribute('aria-label') || ''};
                   if (tile) out.tiles[tile.dataset.patient] = v; else out.list.push(v);
                 }
                 return out; }""",
            ids.ACK_CLASS,
        )
    )


def test_ack_buttons_on_tiles_and_list_items(page: Any) -> None:
    """A tile whose highest alarm is active or latched shows an ack button beside the link
    (never inside it) for that alarm, the oldest within the priority; a tile with none hides
    it; in the alarms list every active or latched item has one, acknowledged ones none."""

    def at(priority: str, state: str, since: int, kind: str = "hr_high") -> dict[str, Any]:
        return {**alarm(priority, state, kind), "id": f"{priority}-{since}", "since": since}

    frame = station(
        patient(
            "bed-01",
            alarms=[
                at("medium", "active", 1),
                at("high", "latched", 9, "hr_extreme_high"),
                at("high", "active", 7, "hr_extreme_low"),
            ],
        ),
        patient("bed-02", alarms=[at("high", "acknowledged", 3), at("low", "active", 4)]),
        patient("bed-03", alarms=[at("medium", "acknowledged", 2)]),
    )
    assert helper(page, "tileAck", frame["patients"][0])["id"] == "high-7"
    assert helper(page, "tileAck", frame["patients"][2]) is None
    send(page, frame)
    got = ack_buttons(page)
    assert {pid: (b["id"], b["shown"], b["inLink"]) for pid, b in got["tiles"].items()} == {
        "bed-01": ("high-7", True, False),
        "bed-02": ("low-4", True, False),
        "bed-03": (None, False, False),
    }
    assert got["tiles"]["bed-01"]["label"].startswith("Acknowledge *** Bed 1 · HR extremely low")
    assert [(b["id"], b["shown"], b["inLink"]) for b in got["list"]] == [
        ("high-7", True, False),
        ("high-9", True, False),
        ("medium-1", True, False),
        ("low-4", True, False),
    ]
    send(page, station(patient("bed-01"), patient("bed-02"), patient("bed-03")))
    got = ack_buttons(page)
    assert [b["shown"] for b in got["tiles"].values()] == [False] * 3 and got["list"] == []


def tile_boxes(page: Any) -> dict[str, Any]:
    """Per tile: the rects of its parts and of its ack button (left, top, right, bottom), the
    button's visibility, and its sparkline's canvas size."""
    return dict(
        page.evaluate(
            """(cls) => {
                 const box = (el) => { const r = el.getBoundingClientRect();
                   return [r.left, r.top, r.right, r.bottom]; };
                 const out = {};
                 for (const t of document.querySelectorAll('[data-patient]')) {
                   const parts = {};
                   for (const c of ['name', 'state', 'bpm', 'age', 'spark']) {
                     parts[c] = box(t.querySelector('.hr-tile-' + c));
                   }
                   const b = t.parentElement.querySelector(':scope > button.' + cls);
                   const canvas = t.querySelector('.hr-tile-spark');
                   out[t.dataset.patient] = {parts, tile: box(t), ack: box(b),
                     visible: b.getClientRects().length > 0 &&
                              getComputedStyle(b).visibility === 'visible',
                     canvas: [canvas.width, canvas.height]};
                 }
                 return out; }""",
            ids.ACK_CLASS,
        )
    )


def overlap(a: list[float], b: list[float]) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


@pytest.mark.parametrize("count", [16, 64])
def test_the_tile_ack_button_moves_nothing(page: Any, count: int) -> None:
    """Showing or hiding a tile's ack button lays out nothing else: every part of every tile
    (the sparkline and its canvas included) keeps its box, and the button keeps its own. It sits
    inside the tile over the sparkline's left (oldest) half, clear of the name, the state, the
    number and the age."""
    config = station_config(count)
    reset(page, config)
    set_clock(page, 1_000)
    pids = patient_ids(count)
    quiet = station(*[patient(pid, seq=20) for pid in pids])
    send(page, quiet, config)
    next_frame(page)
    next_frame(page)
    before = tile_boxes(page)
    loud = station(
        *[
            patient(pid, seq=20, alarms=[{**alarm("high", "latched"), "id": f"a-{i}"}])
            for i, pid in enumerate(pids)
        ]
    )
    send(page, loud, config)
    next_frame(page)
    next_frame(page)
    during = tile_boxes(page)
    for pid in pids:
        b, d = before[pid], during[pid]
        assert not b["visible"] and d["visible"], (pid, b, d)
        assert d["parts"] == b["parts"] and d["ack"] == b["ack"], (pid, b, d)
        assert d["canvas"] == b["canvas"], (pid, b, d)
        ack, tile, spark = d["ack"], d["tile"], d["parts"]["spark"]
        assert tile[0] <= ack[0] and ack[2] <= tile[2] and tile[1] <= ack[1], (pid, d)
        assert ack[3] <= tile[3] + 0.5, (pid, d)
        assert ack[2] <= (spark[0] + spark[2]) / 2, (pid, d)
        for part in ("name", "state", "bpm", "age"):
            if d["parts"][part][2] > d["parts"][part][0]:  # the age is empty while live
                assert not overlap(ack, d["parts"][part]), (pid, part, d)
    send(page, quiet, config)
    next_frame(page)
    after = tile_boxes(page)
    assert all(
        not after[pid]["visible"] and after[pid]["ack"] == before[pid]["ack"] for pid in pids
    )


def test_an_ack_click_sends_the_ack_and_never_navigates(page: Any) -> None:
    """A click on a tile's ack button sends {"type": "ack", "alarm": ID} on the station's
    socket (with a nonce, as snapshot acks) and the page stays where it is; a second click on
    the same alarm at once is not sent again; the list's buttons do the same; on a closed
    socket nothing is sent and the page says so."""
    config = station_config()
    set_clock(page, 1_000)
    sock(page, OPEN, config)
    high = {**alarm("high", "latched", "hr_extreme_high"), "id": "x-1"}
    medium = {**alarm("medium"), "id": "x-2", "patient": "bed-02"}
    send(page, station(patient("bed-01", alarms=[high]), patient("bed-02", alarms=[medium])))
    url = page.url
    page.click(f"#{ids.tile('bed-01')} ~ .{ids.ACK_CLASS}")
    page.click(f"#{ids.tile('bed-01')} ~ .{ids.ACK_CLASS}")
    page.click(f"#{ids.STATION_ALARMS} .{ids.ACK_CLASS}[data-alarm-id='x-2']")
    sent = [a for a in acks(page) if a["type"] == "ack"]
    assert [(a["alarm"], set(a)) for a in sent] == [
        ("x-1", {"type", "alarm", "nonce"}),
        ("x-2", {"type", "alarm", "nonce"}),
    ]
    assert sent[0]["nonce"] != sent[1]["nonce"]
    assert page.url == url
    assert page.evaluate("document.querySelector('[data-patient=bed-01]') !== null")
    message = f"#{ids.STATION_MESSAGE}"
    assert page.is_hidden(message)
    sock(page, CLOSED, config)
    set_clock(page, 10_000)  # past the repeat guard
    page.click(f"#{ids.STATION_ALARMS} .{ids.ACK_CLASS}[data-alarm-id='x-1']")
    assert len([a for a in acks(page) if a["type"] == "ack"]) == 2
    assert "not sent" in page.text_content(message) and page.is_visible(message)


def test_a_refused_ack_is_shown_briefly(page: Any) -> None:
    """An error frame answering an ack (its "request", or an older bridge's "ack:" message) is
    shown in hr-station-message, as text; other error frames are not; it hides itself."""
    message = f"#{ids.STATION_MESSAGE}"
    send(page, {"type": "error", "request": "limits", "message": "limits: bad"})
    assert page.is_hidden(message)
    send(page, {"type": "error", "message": "ack: refused: needs an allowed <b>Origin</b>"})
    assert page.is_visible(message)
    assert page.text_content(message).endswith("ack: refused: needs an allowed <b>Origin</b>")
    send(page, {"type": "error", "request": "ack", "message": "alarm: no active alarm 'x'"})
    assert page.text_content(message).endswith("alarm: no active alarm 'x'")
    page.wait_for_function(
        "(id) => document.getElementById(id).hidden", arg=ids.STATION_MESSAGE, timeout=10_000
    )


def test_frames_drive_the_sound_and_the_socket_is_its_sender(page: Any) -> None:
    """Each station frame hands the sound its `sounding` (missing: null), the pause's end and
    the frame's clock; station_connect registers the socket as the sound's sender, which sends
    on an open socket only; an error frame answering a pause goes to the sound control."""
    page.evaluate(
        """() => { window.audioCalls = []; window.hrdashAudio = {
             update: (f) => window.audioCalls.push(['update', f]),
             setSender: (fn) => { window.audioSender = fn; },
             error: (t) => window.audioCalls.push(['error', t]) }; }"""
    )
    try:
        config = station_config()
        page.evaluate("(c) => window.dash_clientside.hrdash.station_connect(c)", config)
        frame = station(patient("bed-01", alarms=[alarm("high")]))
        send(page, frame, config)
        send(page, {**frame, "sounding": "high", "audio_paused_until": T0 + 60_000}, config)
        send(page, {"type": "error", "request": "audio_pause", "message": "seconds: bad"}, config)
        calls = page.evaluate("window.audioCalls")
        assert calls == [
            ["update", {"sounding": None, "audio_paused_until": None, "now": frame["now"]}],
            [
                "update",
                {"sounding": "high", "audio_paused_until": T0 + 60_000, "now": frame["now"]},
            ],
            ["error", "Audio pause refused: seconds: bad"],
        ]
        pause = {"type": "audio_pause", "seconds": 120}
        assert page.evaluate("(m) => window.audioSender(m)", pause) is False  # not open yet
        sock(page, OPEN, config)
        assert page.evaluate("(m) => window.audioSender(m)", pause) is True
        assert next(a for a in acks(page) if a["type"] == "audio_pause")["seconds"] == 120
    finally:
        page.evaluate("() => { delete window.hrdashAudio; }")


def test_the_badge_says_relay_down_while_an_edge_cannot_reach_redis(page: Any) -> None:
    """An edge of the Redis fan-out marks its station frames ``"relay": "down"`` while it cannot
    reach Redis: the socket is open, but what feeds it is not, so the badge says Relay down (the
    cause as its title) rather than Live over a ward of down tiles, and Live again once a frame
    says ``"up"``; a bridge's frames (no ``relay``) leave it Live."""
    config = station_config()
    page.evaluate("(c) => window.dash_clientside.hrdash.station_connect(c)", config)
    sock(page, OPEN, config)
    send(page, station(patient("bed-01")), config)
    assert badge(page)[0] == "Live"
    down = {**station(patient("bed-01")), "relay": "down", "relay_detail": "Redis unreachable: x"}
    send(page, down, config)
    assert badge(page) == ("Relay down", "hr-badge hr-badge--down", "Redis unreachable: x")
    send(page, {**station(patient("bed-01")), "relay": "up", "relay_detail": ""}, config)
    assert badge(page)[:2] == ("Live", "hr-badge hr-badge--live")
