"""The client's per-reading logic (``assets/hrdash.js``), function by function, in real Chromium.

One headless Chromium page for the whole module: a blank page with the Plotly bundle Dash serves,
a stub of what Dash's renderer puts on ``window.dash_clientside`` (``no_update``, ``set_props``,
``Patch``, shaped as in dash-renderer) and the very ``hrdash.js`` the app serves, evaluated afresh
for every test so that its per-tab state starts clean. Functions are called with
``page.evaluate``; frames have the bridge's shape (checked against the bridge below). Only the
clock is faked (``performance.now``), and only where a test sets it.

Chromium rather than node's test runner: the code runs in a browser against ``window``,
``document`` and Plotly's graph div (``chartUpdate`` reads the drawn trace), the suite already
drives this Chromium, and the chart updates are applied here with the real Plotly.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import dash
import plotly
import pytest

from hrdash import ids
from hrdash.bridge import OVERLAP, Bridge
from hrdash.layout import PLACEHOLDER, build_layout, initial_figure
from hrdash.settings import Settings
from hrdash.webapp import ASSETS
from tests.support import chromium_page

pytestmark = pytest.mark.browser

# The harness page is about:blank (origin "null"): the config allows any origin, as the real page's
# own origin is allowed, so that a closed socket means Reconnecting…, not Origin refused.
SETTINGS = Settings.load(env={}).replace(allowed_origins=("*",))
WINDOW = SETTINGS.window
WS_URL = "ws://127.0.0.1:8765/ws?overlap=1"
HRDASH_JS = ASSETS / "hrdash.js"
PLOTLY_JS = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"  # what Dash serves
T0 = 1_764_400_000_000  # Unix ms of seq 0
NO_UPDATE = "<no_update>"
OPEN, CLOSED = 1, 3


def page_config(settings: Settings = SETTINGS) -> dict[str, Any]:
    """The config the real page hands the clientside callbacks (the hr-config store's data)."""
    layout = build_layout(settings, WS_URL)
    for component in layout._traverse():
        if getattr(component, "id", None) == ids.CONFIG:
            return dict(component.data)
    raise LookupError("no config store in the layout")


CONFIG = page_config()

# Installed before hrdash.js, as Dash's renderer does: window.dash_clientside with no_update and
# PreventUpdate (read-only objects), set_props(id, props) and Patch (a builder whose build()
# gives {__dash_patch_update, operations}); calls to set_props are recorded. Then a switchable
# clock, and `step`, which plays Dash's part for one socket message.
HARNESS_JS = """
(() => {
  const dc = (window.dash_clientside = window.dash_clientside || {});
  Object.defineProperty(dc, 'no_update', {
    value: {description: 'Return to prevent updating an Output.'}, writable: false});
  Object.defineProperty(dc, 'PreventUpdate', {
    value: {description: 'Throw to prevent updating all Outputs.'}, writable: false});
  window.setPropsCalls = [];
  dc.set_props = (id, props) => { window.setPropsCalls.push([id, props]); };
  class PatchBuilder {
    constructor() { this.operations = []; }
    build() { return {__dash_patch_update: '__dash_patch_update', operations: this.operations}; }
  }
  const ops = {assign: 'Assign', merge: 'Merge', extend: 'Extend', append: 'Append',
               prepend: 'Prepend', add: 'Add', sub: 'Sub', mul: 'Mul', div: 'Div',
               remove: 'Remove', reverse: 'Reverse', clear: 'Clear', delete: 'Delete'};
  for (const [method, operation] of Object.entries(ops)) {
    PatchBuilder.prototype[method] = function (location, value) {
      this.operations.push({operation, location, params: value === undefined ? {} : {value}});
      return this;
    };
  }
  dc.Patch = PatchBuilder;

  // The fake clock: performance.now() is `fakeNow` when a test sets it, else the real one.
  const realNow = performance.now.bind(performance);
  window.fakeNow = null;
  performance.now = () => (window.fakeNow === null ? realNow() : window.fakeNow);

  const NU = () => window.dash_clientside.no_update;
  const plain = (x) => (x === NU() ? '<no_update>' : x);
  window.gd = () => document.querySelector('#hr-chart .js-plotly-plot');

  // Apply a figure Patch as dash-renderer does (only Assign is expected here).
  function applyPatch(figure, patch) {
    if (!patch || patch.__dash_patch_update !== '__dash_patch_update') {
      throw new Error('not a Patch: ' + JSON.stringify(patch));
    }
    const out = JSON.parse(JSON.stringify(figure));
    for (const op of patch.operations) {
      if (op.operation !== 'Assign') throw new Error('unexpected patch operation ' + op.operation);
      let node = out;
      op.location.slice(0, -1).forEach((key) => { node = node[key]; });
      node[op.location[op.location.length - 1]] = op.params.value;
    }
    return out;
  }

  // One socket message through on_message, with its outputs applied the way Dash applies them:
  // the store is kept, extendData goes to Plotly.extendTraces (as dcc.Graph does), a figure
  // Patch is applied to the drawn figure and redrawn with Plotly.react.
  window.step = async (frame, config) => {
    const message = {data: typeof frame === 'string' ? frame : JSON.stringify(frame),
                     isTrusted: true, origin: 'ws://127.0.0.1:8765', timeStamp: 0};
    // Outputs (hrdash/callbacks/live.py): store, table rows, extendData, figure, the cards,
    // and last the message to send on the socket.
    // on_message may hand its outputs over after the next paint (a Promise), as Dash awaits it.
    const out = await window.dash_clientside.hrdash.on_message(message, window.store, config);
    if (out[0] !== NU()) window.store = out[0];
    let chart = 'none';
    const g = window.gd();
    if (out[2] !== NU()) {
      chart = 'extend';
      const [update, traces, maxPoints] = out[2];
      await Plotly.extendTraces(g, update, traces, maxPoints);
    }
    if (out[3] !== NU()) {
      if (chart !== 'none') throw new Error('both extendData and figure');
      chart = 'replace';
      const fig = applyPatch({data: g.data, layout: g.layout}, out[3]);
      await Plotly.react(g, fig.data, fig.layout);
    }
    const core = window.hrdashCore;
    const rows = window.store ? window.store.rows : [];
    return {
      chart,
      store: window.store,
      ids: rows.map((r) => r.id),
      drawnX: Array.from(g.data[0].x),
      drawnY: Array.from(g.data[0].y),
      wantX: rows.map((r) => core.plotTime(r.time)),
      wantY: rows.map((r) => r.bpm),
      yRange: Array.from(g.layout.yaxis.range),
      table: plain(out[1]),
      cards: out.slice(4, -1).map(plain),
      send: plain(out[out.length - 1]),
      state: {run: core.state.run, resumeSeq: core.state.resumeSeq},
    };
  };
})();
"""

# Per test: a fresh hrdash.js (its module state S starts clean), an empty window, no recorded
# set_props, the real clock, and the chart drawn from the app's initial figure.
RESET_JS = """
async ([source, figure]) => {
  const old = window.hrdashCore && window.hrdashCore.state;
  if (old && old.timer !== null) clearTimeout(old.timer);
  const script = document.createElement('script');
  script.textContent = source;
  document.head.appendChild(script);
  script.remove();
  window.store = null;
  window.setPropsCalls = [];
  window.fakeNow = null;
  document.getElementById('hr-chart').innerHTML = '<div></div>';
  await Plotly.newPlot(document.querySelector('#hr-chart > div'), figure.data, figure.layout);
}
"""


@pytest.fixture(scope="module")
def browser_page() -> Iterator[Any]:
    """One blank page for the module with Plotly and the Dash stub loaded."""
    with chromium_page() as page:
        page.set_content(f'<div id="{ids.CHART}"></div>')
        page.add_script_tag(path=str(PLOTLY_JS))
        page.add_script_tag(content=HARNESS_JS)
        yield page


@pytest.fixture
def page(browser_page: Any) -> Any:
    """The module's page with a freshly evaluated ``hrdash.js``."""
    errors: list[str] = []

    def on_error(error: Any) -> None:
        errors.append(str(error))

    browser_page.on("pageerror", on_error)
    browser_page.evaluate(RESET_JS, [HRDASH_JS.read_text(), initial_figure(SETTINGS)])
    yield browser_page
    browser_page.remove_listener("pageerror", on_error)
    assert errors == [], errors


def test_stub_matches_the_dash_renderer() -> None:
    """The installed dash-renderer still defines what the stub imitates: set_props and Patch on
    window.dash_clientside, Patch operations as {operation, location, params: {value}}, build()
    as {__dash_patch_update, operations}, and no_update's description."""
    bundle = (Path(dash.__file__).parent / "dash-renderer/build/dash_renderer.min.js").read_text()
    for piece in (
        "window.dash_clientside=window.dash_clientside||{}",
        ".set_props=function(",
        ".Patch=",
        'operation:"Assign",location:',
        "params:{value:",
        '{__dash_patch_update:"__dash_patch_update",operations:this.operations}',
        "Return to prevent updating an Output.",
    ):
        assert piece in bundle, piece


# -- frames, as the bridge builds them -------------------------------------------------------


def bpm_of(seq: int) -> int:
    return 60 + seq % 40  # 60..99: inside the chart's steady range


def reading(seq: int, bpm: float | None = None) -> dict[str, Any]:
    return {"seq": seq, "time": T0 + 500 * seq, "bpm": bpm_of(seq) if bpm is None else bpm}


def readings(
    run: str,
    seqs: range | list[int],
    *,
    first_seq: int = 1,
    last_seq: int | None = None,
    bpm: dict[int, float] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """A readings frame of ``run`` (the hub's ``readings_frame``): ``first_seq`` is the
    oldest seq the bridge still holds, ``last_seq`` the newest it has sent (default: the newest
    here)."""
    seqs = list(seqs)
    return {
        "type": "readings",
        "run": run,
        "patient": "bed-01",
        "readings": [reading(s, (bpm or {}).get(s)) for s in seqs],
        "first_seq": first_seq,
        "last_seq": max(seqs) if last_seq is None else last_seq,
        **extra,
    }


def overlap_frame(run: str, seq: int, **kw: Any) -> dict[str, Any]:
    """The live frame a ``?overlap=1`` viewer gets for reading ``seq``: it and the ``OVERLAP``
    readings before it."""
    return readings(run, range(max(1, seq - OVERLAP), seq + 1), **kw)


def status(
    run: str, upstream: str = "live", detail: str = "", first_seq: int = 1, last_seq: int = 0
) -> dict[str, Any]:
    """A status frame: the real bridge's ``status()`` with these fields set."""
    frame = Bridge(SETTINGS).status()
    frame.update(run=run, upstream=upstream, detail=detail, first_seq=first_seq, last_seq=last_seq)
    return frame


def test_frames_have_the_bridges_shape() -> None:
    """The frames built here carry exactly the keys of the bridge's readings frames and
    readings, so the client is tested on what it is really sent."""
    bridge = Bridge(SETTINGS)
    bridge.buffer.append(T0, 72)
    real = bridge.patient.readings_frame(bridge.buffer.last(1))
    ours = readings("r", [1])
    assert set(ours) == set(real)
    assert set(ours["readings"][0]) == set(real["readings"][0])
    assert ours["type"] == real["type"] == "readings"
    assert {"type", "run", "upstream", "detail", "first_seq", "last_seq"} <= set(status("r"))


# -- calling the page ------------------------------------------------------------------------


def core(page: Any, name: str, *args: Any) -> Any:
    """``window.hrdashCore[name](...args)`` in the page (arguments and result as JSON)."""
    return page.evaluate("([name, args]) => window.hrdashCore[name](...args)", [name, list(args)])


def merge(page: Any, store: Any, frame: dict[str, Any]) -> tuple[dict[str, Any], list[int]]:
    """Merge ``frame`` into ``store``: the new store and the seqs of the readings added."""
    out = core(page, "merge", store, frame, WINDOW)
    return out["store"], [r["seq"] for r in out["added"]]


def merge_all(page: Any, *frames: dict[str, Any]) -> dict[str, Any]:
    store = core(page, "emptyStore")
    for frame in frames:
        store, _ = merge(page, store, frame)
    return dict(store)


def seqs(store: dict[str, Any], run: str | None = None) -> list[int]:
    return [r["seq"] for r in store["rows"] if run is None or r["run"] == run]


def socket_state(page: Any, ready_state: int) -> None:
    page.evaluate(
        "([s, c]) => window.dash_clientside.hrdash.on_state(s, window.store, c)",
        [{"readyState": ready_state}, CONFIG],
    )


def step(page: Any, frame: dict[str, Any] | str, config: dict[str, Any] = CONFIG) -> Any:
    """One socket message through ``on_message`` with its outputs applied (see HARNESS_JS)."""
    return page.evaluate("([f, c]) => window.step(f, c)", [frame, config])


def tick(page: Any, ready_state: int, config: dict[str, Any] = CONFIG) -> list[Any]:
    """``on_tick``'s outputs (badge text, badge class, card class, time text)."""
    return list(
        page.evaluate(
            """([s, c]) => window.dash_clientside.hrdash
                 .on_tick(1, s, window.store, c)
                 .map((x) => (x === window.dash_clientside.no_update ? '<no_update>' : x))""",
            [{"readyState": ready_state}, config],
        )
    )


def set_clock(page: Any, ms: float | None) -> None:
    page.evaluate("(t) => { window.fakeNow = t; }", ms)


def set_props_calls(page: Any) -> list[Any]:
    return list(page.evaluate("window.setPropsCalls"))


def resume_query(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


# -- merge, holes, window ------------------------------------------------------------------


def test_in_order_frames_append(page: Any) -> None:
    """A snapshot then live frames in order: every reading once, in seq order, with the run's
    id, the bounds of the latest frame, no hole, resuming after the newest."""
    store, added = merge(page, core(page, "emptyStore"), readings("r1", range(1, 6), snapshot=True))
    assert added == [1, 2, 3, 4, 5]
    store, added = merge(page, store, readings("r1", [6]))
    assert added == [6]
    store, added = merge(page, store, readings("r1", [7, 8]))
    assert added == [7, 8]
    assert seqs(store) == list(range(1, 9))
    assert [r["id"] for r in store["rows"]][:2] == ["r1-1", "r1-2"]
    assert store["rows"][0] == {"id": "r1-1", "run": "r1", **reading(1)}
    assert (store["run"], store["runs"], store["first_seq"], store["last_seq"]) == (
        "r1",
        ["r1"],
        1,
        8,
    )
    assert core(page, "firstHole", store, WINDOW) is None
    assert core(page, "resumeSeq", store, WINDOW) == 8


def test_repeated_readings_are_dropped_by_run_and_seq(page: Any) -> None:
    """A reading already in the window (same run and seq) is not added again, even with another
    value; the same seq of another run is another reading."""
    store = merge_all(page, readings("r1", range(1, 6)))
    again, added = merge(page, store, readings("r1", range(1, 6)))
    assert added == []
    assert again["rows"] == store["rows"]
    changed, added = merge(page, store, readings("r1", [5], bpm={5: 150}))
    assert added == []
    assert changed["rows"][-1]["bpm"] == bpm_of(5)
    overlapping, added = merge(page, store, readings("r1", range(3, 8)))
    assert added == [6, 7]
    assert seqs(overlapping) == list(range(1, 8))


def test_coalesced_overlap_frame_restores_the_lost_frames(page: Any) -> None:
    """Dash hands on only the last of several frames; with ``?overlap=1`` that frame repeats
    the readings of the lost ones, so the window is whole without asking."""
    store = merge_all(page, readings("r1", range(1, 6)))
    sent = [overlap_frame("r1", s) for s in (6, 7, 8)]  # three frames in one render
    store, added = merge(page, store, sent[-1])  # only the last one arrives
    assert added == [6, 7, 8]
    assert seqs(store) == list(range(1, 9))
    assert core(page, "firstHole", store, WINDOW) is None


def test_coalesced_frames_beyond_the_overlap_leave_a_hole_that_is_asked_for(page: Any) -> None:
    """More lost frames than the overlap covers leave a hole: firstHole finds it, the client
    asks for a resend after the seq before it (once a second at most), and the reply fills it."""
    set_clock(page, 10_000)
    socket_state(page, OPEN)
    step(page, readings("r1", range(1, 6), snapshot=True))
    last = 6 + OVERLAP + 1  # one frame more than the overlap can repeat
    sent = [overlap_frame("r1", s) for s in range(6, last + 1)]
    out = step(page, sent[-1])
    assert out["ids"] == [f"r1-{s}" for s in [1, 2, 3, 4, 5, *range(7, last + 1)]]
    assert core(page, "firstHole", out["store"], WINDOW) == 6
    assert core(page, "resumeSeq", out["store"], WINDOW) == 5
    request = json.loads(out["send"])
    assert {k: request[k] for k in ("type", "since", "run")} == {
        "type": "resend",
        "since": 5,
        "run": "r1",
    }
    assert out["state"] == {"run": "r1", "resumeSeq": 5}

    set_clock(page, 10_500)  # another frame within the second: no second request
    out = step(page, overlap_frame("r1", last + 1))
    assert out["send"] == NO_UPDATE
    set_clock(page, 11_000)
    out = step(page, status("r1", last_seq=last + 1))
    assert json.loads(out["send"])["since"] == 5
    assert json.loads(out["send"])["nonce"] > request["nonce"]

    out = step(page, readings("r1", range(6, last + 2), resend=True))  # the bridge's reply
    assert out["ids"] == [f"r1-{s}" for s in range(1, last + 2)]
    assert core(page, "firstHole", out["store"], WINDOW) is None
    assert out["state"] == {"run": "r1", "resumeSeq": last + 1}
    set_clock(page, 12_000)
    assert step(page, overlap_frame("r1", last + 2))["send"] == NO_UPDATE


def test_status_frame_reveals_a_lost_readings_frame(page: Any) -> None:
    """When the frame Dash hands on is a status frame, its last_seq still shows the readings
    the page missed: the client asks for them."""
    set_clock(page, 5_000)
    socket_state(page, OPEN)
    step(page, readings("r1", range(1, 6), snapshot=True))
    out = step(page, status("r1", last_seq=7))  # the readings frame for 6 and 7 was lost
    assert core(page, "firstHole", out["store"], WINDOW) == 6
    assert json.loads(out["send"])["since"] == 5
    assert out["ids"] == [f"r1-{s}" for s in range(1, 6)]
    assert out["chart"] == "none"


def test_late_and_out_of_order_frames_fill_a_hole(page: Any) -> None:
    """Frames arriving out of order are put in seq order; a late reading fills its hole."""
    store = merge_all(page, readings("r1", range(1, 6)))
    store, added = merge(page, store, readings("r1", [8]))
    assert core(page, "firstHole", store, WINDOW) == 6
    store, added = merge(page, store, readings("r1", [7]))  # sent before 8, arrived after
    assert added == [7]
    assert core(page, "firstHole", store, WINDOW) == 6
    assert store["last_seq"] == 8  # an older frame never moves last_seq back
    store, added = merge(page, store, readings("r1", [6], last_seq=8))
    assert added == [6]
    assert seqs(store) == list(range(1, 9))
    assert core(page, "firstHole", store, WINDOW) is None


def test_window_keeps_the_newest_rows(page: Any) -> None:
    """The window holds the newest WINDOW readings; only seqs inside it (and still held by the
    bridge) can be holes."""
    store = merge_all(page, *(readings("r1", [s]) for s in range(1, 26)))
    assert seqs(store) == list(range(26 - WINDOW, 26))
    assert core(page, "neededRange", store, WINDOW) == [26 - WINDOW, 25]
    assert core(page, "firstHole", store, WINDOW) is None
    big = merge_all(page, readings("r1", range(1, 31)))
    assert seqs(big) == list(range(31 - WINDOW, 31))

    gap = merge_all(page, readings("r1", range(1, 6)), readings("r1", range(30, 34)))
    assert core(page, "neededRange", gap, WINDOW) == [34 - WINDOW, 33]
    assert core(page, "firstHole", gap, WINDOW) == 34 - WINDOW  # 6..13 left the window
    assert core(page, "resumeSeq", gap, WINDOW) == 33 - WINDOW

    # The bridge's ring no longer holds seqs before first_seq: they are not holes.
    wrapped = merge_all(page, readings("r1", range(10, 16), first_seq=10))
    assert core(page, "neededRange", wrapped, WINDOW) == [10, 15]
    assert core(page, "firstHole", wrapped, WINDOW) is None
    assert core(page, "neededRange", core(page, "emptyStore"), WINDOW) is None
    assert core(page, "firstHole", core(page, "emptyStore"), WINDOW) is None


def test_bad_readings_and_stores_are_ignored(page: Any) -> None:
    """Readings without a finite seq, time or bpm are skipped; a missing or malformed store is
    an empty window."""
    frame = readings("r1", [1, 2])
    frame["readings"] += [{"seq": 3, "time": T0}, {"seq": "4", "time": T0, "bpm": 70}, None]
    _, added = merge(page, core(page, "emptyStore"), frame)
    assert added == [1, 2]
    assert core(page, "normalise", None) == core(page, "emptyStore")
    assert core(page, "normalise", {"rows": 3}) == core(page, "emptyStore")
    assert step(page, "not json")["store"] is None
    assert step(page, {"type": "something-new"})["store"] is None


# -- bridge restart --------------------------------------------------------------------------


def test_bridge_restart_keeps_the_old_runs_rows_first(page: Any) -> None:
    """A restarted bridge (new run, seqs from 1 again): the old run's rows stay, ordered before
    the new run's; no hole across runs; resume and reconnect name the new run."""
    set_clock(page, 1_000)
    socket_state(page, OPEN)
    step(page, readings("old", range(1, 11), snapshot=True))
    out = step(page, status("old", last_seq=10))
    assert out["state"] == {"run": "old", "resumeSeq": 10}

    out = step(page, status("new"))  # the new bridge's first status: nothing sent yet
    assert out["store"]["run"] == "new"
    assert out["store"]["runs"] == ["old", "new"]
    assert out["send"] == NO_UPDATE
    assert out["state"] == {"run": "new", "resumeSeq": None}

    out = step(page, readings("new", range(1, 4), snapshot=True))
    assert out["ids"] == [f"old-{s}" for s in range(1, 11)] + ["new-1", "new-2", "new-3"]
    assert core(page, "firstHole", out["store"], WINDOW) is None
    assert out["send"] == NO_UPDATE
    assert out["state"] == {"run": "new", "resumeSeq": 3}
    assert out["drawnX"] == out["wantX"]
    assert out["cards"][0] == str(bpm_of(3))

    # A silent socket makes the watchdog reconnect: the URL resumes the new run.
    set_clock(page, 1_000 + 3_500)
    tick(page, OPEN)
    (_, props), *_ = [c for c in set_props_calls(page) if c[0] == ids.WS]
    query = resume_query(props["url"])
    assert props["url"].startswith(WS_URL + "&")
    assert (query["since"], query["run"]) == ("3", "new")
    assert core(page, "reconnectUrl", "ws://h/ws").startswith("ws://h/ws?since=3&run=new&n=")

    # A late frame of the old run stays with the old rows and does not switch back.
    out = step(page, readings("old", [11], last_seq=11, resend=True))
    assert out["store"]["run"] == "new"
    assert out["ids"][10] == "old-11" and out["ids"][11] == "new-1"
    assert out["state"] == {"run": "new", "resumeSeq": 3}

    # Once the old rows have left the window, the old run is forgotten.
    out = step(page, readings("new", range(4, WINDOW + 2)))
    assert out["store"]["runs"] == ["new"]
    assert out["ids"] == [f"new-{s}" for s in range(2, WINDOW + 2)]


def test_restart_announced_by_readings_alone(page: Any) -> None:
    """A new run seen first in a readings frame switches the window to it as well."""
    store = merge_all(page, readings("old", range(1, 8)), readings("new", [1, 2]))
    assert (store["run"], store["runs"]) == ("new", ["old", "new"])
    assert [(r["run"], r["seq"]) for r in store["rows"]] == [("old", s) for s in range(1, 8)] + [
        ("new", 1),
        ("new", 2),
    ]
    assert (store["first_seq"], store["last_seq"]) == (1, 2)
    assert core(page, "firstHole", store, WINDOW) is None
    assert core(page, "resumeSeq", store, WINDOW) == 2
    store, added = merge(page, store, readings("new", [4]))
    assert added == [4]
    assert core(page, "firstHole", store, WINDOW) == 3


# -- y range, chart, table, stats ----------------------------------------------------------


def test_y_range_is_steady_unless_a_reading_lies_outside(page: Any) -> None:
    """The chart keeps the 40-160 bpm axis for readings inside it (edges included) and widens,
    to a multiple of 10 with room around the reading, only for readings outside it."""
    base = CONFIG["y_range"]
    assert base == [40, 160]

    def y(*bpms: float) -> list[int]:
        return list(core(page, "yRange", [reading(i, b) for i, b in enumerate(bpms)], base))

    assert y() == [40, 160]
    assert y(40, 44, 100, 156, 160) == [40, 160]
    assert y(39) == [30, 160]
    assert y(35) == [30, 160]
    assert y(34) == [20, 160]
    assert y(161) == [40, 170]
    assert y(166) == [40, 180]
    assert y(20, 200, 80) == [10, 210]
    assert core(page, "yRange", [reading(1, 125)], [50, 120]) == [50, 130]


def test_chart_extends_on_appends_and_redraws_otherwise(page: Any) -> None:
    """Pure appends go to extendData (Plotly trims to the window); a first draw, a filled hole,
    a jump past the window, a new y range or a chart out of step get a full redraw. After every
    frame the drawn chart is exactly the window."""
    socket_state(page, OPEN)

    def check(frame: dict[str, Any], chart: str) -> dict[str, Any]:
        out = step(page, frame)
        assert out["chart"] == chart, frame
        assert (out["drawnX"], out["drawnY"]) == (out["wantX"], out["wantY"])
        assert out["yRange"] == out["store"]["y_range"]
        return dict(out)

    check(readings("r1", range(1, 6), snapshot=True), "replace")  # first draw
    check(readings("r1", [6]), "extend")
    check(overlap_frame("r1", 7), "extend")
    check(readings("r1", range(8, 22)), "extend")  # past the window: Plotly drops the oldest
    out = check(readings("r1", [22]), "extend")
    assert len(out["drawnX"]) == WINDOW
    check(readings("r1", [24]), "extend")
    check(readings("r1", [23], last_seq=24), "replace")  # a hole filled in the middle
    check(readings("r1", range(26, 26 + WINDOW + 5)), "replace")  # nothing drawn stays
    check(readings("r1", [25], last_seq=50), "none")  # too old for the window: nothing to draw
    out = check(readings("r1", [51], bpm={51: 170}), "replace")  # the axis widens
    assert out["yRange"] == [40, 180]
    check(readings("r1", [52]), "extend")
    out = check(readings("r1", range(53, 53 + WINDOW)), "replace")  # 170 leaves: axis back
    assert out["yRange"] == [40, 160]
    # A restarted bridge's readings come after the old run's: still an append.
    check(readings("r2", [1, 2], snapshot=True), "extend")
    # A chart that does not show the window (e.g. redrawn meanwhile) is redrawn in full.
    page.evaluate("Plotly.react(window.gd(), [{x: [], y: []}], window.gd().layout)")
    check(readings("r2", [3]), "replace")
    check(readings("r2", [2, 3]), "none")  # nothing new: no chart output


def test_chart_update_outputs(page: Any) -> None:
    """chartUpdate returns [extendData, no_update] with the new points and the window as
    maxPoints, or [no_update, figure Patch] assigning x, y and the y range."""
    before = merge_all(page, readings("r1", range(1, 4)))
    before["y_range"] = [40, 160]
    after = core(page, "merge", before, readings("r1", [4]), WINDOW)
    page.evaluate(
        "([s, c]) => Plotly.react(window.gd(), [{x: s.rows.map((r) => hrdashCore.plotTime(r.time)),"
        " y: s.rows.map((r) => r.bpm)}], window.gd().layout)",
        [before, CONFIG],
    )
    extend, figure = page.evaluate(
        """([c, b, a, added]) => hrdashCore.chartUpdate(c, b, a, added)
             .map((x) => (x === dash_clientside.no_update ? '<no_update>' : x))""",
        [CONFIG, before, after["store"], after["added"]],
    )
    plot_time = core(page, "plotTime", reading(4)["time"])
    assert extend == [{"x": [[plot_time]], "y": [[bpm_of(4)]]}, [0], WINDOW]
    assert figure == NO_UPDATE

    before["y_range"] = None  # unknown range: redraw
    extend, figure = page.evaluate(
        """([c, b, a, added]) => hrdashCore.chartUpdate(c, b, a, added)
             .map((x) => (x === dash_clientside.no_update ? '<no_update>' : x))""",
        [CONFIG, before, after["store"], after["added"]],
    )
    assert extend == NO_UPDATE
    assert figure["__dash_patch_update"] == "__dash_patch_update"
    assigned = {tuple(op["location"]): op["params"]["value"] for op in figure["operations"]}
    assert {op["operation"] for op in figure["operations"]} == {"Assign"}
    assert assigned[("data", 0, "y")] == [bpm_of(s) for s in range(1, 5)]
    assert assigned[("data", 0, "x")][-1] == plot_time
    assert assigned[("layout", "yaxis", "range")] == [40, 160]


def test_table_rows_and_order(page: Any) -> None:
    """The table gets id, seq, time and bpm of each row: oldest first by default, newest first
    with HRDASH_ORDER=newest-first; on_message uses the configured order."""
    store = merge_all(page, readings("r1", range(1, 4)))
    last = core(page, "tableRows", store["rows"], "newest-last")
    assert last == [{"id": f"r1-{s}", **reading(s)} for s in (1, 2, 3)]
    first = core(page, "tableRows", store["rows"], "newest-first")
    assert [r["seq"] for r in first] == [3, 2, 1]
    assert core(page, "tableRows", [], "newest-first") == []
    assert store["rows"][0]["seq"] == 1  # not reversed in place

    out = step(page, readings("r1", range(1, 4)), {**CONFIG, "order": "newest-first"})
    assert [r["seq"] for r in out["table"]] == [3, 2, 1]
    out = step(page, readings("r1", [4]), {**CONFIG, "order": "newest-last"})
    assert [r["seq"] for r in out["table"]] == [1, 2, 3, 4]


def test_cards_show_the_newest_reading_and_window_stats(page: Any) -> None:
    """The current card shows the newest reading (bpm and local clock time); the stats are the
    window's min, rounded mean and max."""
    assert core(page, "stats", []) == [PLACEHOLDER] * 3
    rows = [reading(1, 60), reading(2, 71), reading(3, 90)]
    assert core(page, "stats", rows) == ["60", "74", "90"]
    out = step(page, readings("r1", [1, 2, 3], bpm={1: 60, 2: 71, 3: 90}))
    assert out["cards"] == ["90", core(page, "clock", reading(3)["time"]), "60", "74", "90"]
    assert core(page, "clock", None) == ""


# -- badge ---------------------------------------------------------------------------------


def badge(
    page: Any,
    *,
    ready: int | None = OPEN,
    upstream: str | None = "live",
    detail: str = "",
    rows: int = 3,
    arrived_ms_ago: float | None = 100,
    ever_open: bool = True,
    relay: str | None = None,
) -> dict[str, Any]:
    """badgeState for a socket in ``ready``, a status frame (None: none yet), a window of
    ``rows`` readings, the newest having arrived ``arrived_ms_ago`` (None: never noted);
    ``relay``: the frame's field from an edge of the Redis fan-out (None: a bridge's frame)."""
    now = 50_000.0
    store = merge_all(page, readings("r1", range(1, rows + 1))) if rows else None
    frame = None if upstream is None else status("r1", upstream=upstream, detail=detail)
    if frame is not None and relay is not None:
        frame["relay"] = relay
    sock = {
        "readyState": ready,
        "everOpen": ever_open,
        "lastReadingAt": 0 if arrived_ms_ago is None else now - arrived_ms_ago,
    }
    return dict(core(page, "badgeState", frame, store, sock, now, CONFIG))


def test_badge_states(page: Any) -> None:
    """The badge says Live, Reconnecting…, Upstream down (with the bridge's detail as title),
    Stale · N s or Connecting…, the socket's state first, then the upstream, then the age."""
    stale_after = CONFIG["stale_after"]
    assert stale_after == 2.0

    def text(**kw: Any) -> tuple[str, str]:
        b = badge(page, **kw)
        return b["text"], b["cls"]

    assert text() == ("Live", "hr-badge--live")
    assert text(ready=CLOSED) == ("Reconnecting…", "hr-badge--reconnecting")
    assert text(ready=0) == ("Reconnecting…", "hr-badge--reconnecting")
    assert text(ready=0, ever_open=False) == ("Reconnecting…", "hr-badge--reconnecting")
    assert text(ready=0, ever_open=False, rows=0) == ("Connecting…", "hr-badge--connecting")
    assert text(ready=None, ever_open=False, rows=0) == ("Connecting…", "hr-badge--connecting")
    assert text(ready=CLOSED, ever_open=False, rows=0) == (
        "Reconnecting…",
        "hr-badge--reconnecting",
    )
    assert text(ready=CLOSED, upstream="down") == ("Reconnecting…", "hr-badge--reconnecting")

    down = badge(page, upstream="down", detail="connection refused", arrived_ms_ago=9_000)
    assert (down["text"], down["cls"], down["title"]) == (
        "Upstream down",
        "hr-badge--down",
        "connection refused",
    )
    assert text(upstream="connecting", detail="timed out") == ("Upstream down", "hr-badge--down")
    cause = "Redis unreachable: connection refused"
    relay = badge(page, upstream="down", detail=cause, relay="down")
    assert (relay["text"], relay["cls"], relay["title"]) == (
        "Relay down",
        "hr-badge--down",
        cause,
    )
    assert text(upstream="down", relay="up") == ("Upstream down", "hr-badge--down")
    assert text(relay="up") == ("Live", "hr-badge--live")
    assert text(upstream="connecting") == ("Connecting…", "hr-badge--connecting")
    assert text(upstream=None, rows=0) == ("Connecting…", "hr-badge--connecting")
    assert text(upstream=None) == ("Live", "hr-badge--live")

    stale = badge(page, arrived_ms_ago=4_200)
    assert (stale["text"], stale["cls"], stale["stale"], stale["age"]) == (
        "Stale · 4.2 s",
        "hr-badge--stale",
        True,
        4.2,
    )
    at_limit = badge(page, arrived_ms_ago=stale_after * 1000)
    assert (at_limit["text"], at_limit["stale"]) == ("Live", False)
    assert text(arrived_ms_ago=stale_after * 1000 + 100) == ("Stale · 2.1 s", "hr-badge--stale")
    assert text(arrived_ms_ago=None) == ("Stale · ? s", "hr-badge--stale")
    assert badge(page, rows=0, arrived_ms_ago=None)["stale"] is False


def test_on_tick_badge_and_stale_card(page: Any) -> None:
    """on_tick writes the badge only when it changes: Live after a reading, Stale · N s with
    the card marked stale and the time of the last reading once the readings stop (status
    frames still arriving), Live again with the next reading; a closed socket says
    Reconnecting…."""
    set_clock(page, 1_000)
    socket_state(page, OPEN)
    assert tick(page, OPEN)[:2] == ["Connecting…", "hr-badge hr-badge--connecting"]
    step(page, status("r1"))
    step(page, readings("r1", range(1, 4), snapshot=True))
    set_clock(page, 1_250)
    assert tick(page, OPEN) == ["Live", "hr-badge hr-badge--live", "hr-card hr-current", NO_UPDATE]
    set_clock(page, 1_500)
    assert tick(page, OPEN)[:2] == [NO_UPDATE, NO_UPDATE]

    for t in (2_000, 3_000, 4_000):  # the bridge's heartbeat: status, no readings
        set_clock(page, t)
        step(page, status("r1", last_seq=3))
    set_clock(page, 4_300)
    last_time = core(page, "clock", reading(3)["time"])
    assert tick(page, OPEN) == [
        "Stale · 3.3 s",
        "hr-badge hr-badge--stale",
        "hr-card hr-current hr-current--stale",
        f"Last reading 3 s ago · {last_time}",
    ]
    set_clock(page, 4_400)
    assert tick(page, OPEN) == [
        "Stale · 3.4 s",
        "hr-badge hr-badge--stale",
        "hr-card hr-current hr-current--stale",
        NO_UPDATE,
    ]
    step(page, readings("r1", [4]))
    set_clock(page, 4_500)
    assert tick(page, OPEN)[:3] == ["Live", "hr-badge hr-badge--live", "hr-card hr-current"]

    step(page, status("r1", upstream="down", detail="connection refused", last_seq=4))
    assert tick(page, OPEN)[:2] == ["Upstream down", "hr-badge hr-badge--down"]
    assert [ids.STATUS, {"title": "connection refused"}] in set_props_calls(page)

    socket_state(page, CLOSED)
    assert [
        ids.STATUS,
        {
            "children": "Reconnecting…",
            "className": "hr-badge hr-badge--reconnecting",
            "title": "",
        },
    ] in set_props_calls(page)
    assert tick(page, CLOSED)[:2] == [NO_UPDATE, NO_UPDATE]  # already shown by on_state


def test_a_refused_origin_is_said_in_the_badge_and_a_line(page: Any) -> None:
    """When the allowed origins do not name the page's origin and the socket closes without
    opening, the badge says Origin refused (its title and the alert line say what to change);
    once a socket opens, the line is hidden again."""
    config = {**CONFIG, "allowed_origins": ["https://monitor.example.org"]}
    origin = page.evaluate("window.location.origin")
    set_clock(page, 1_000)
    assert tick(page, 0, config)[:2] == ["Connecting…", "hr-badge hr-badge--connecting"]
    page.evaluate(
        "([s, c]) => window.dash_clientside.hrdash.on_state(s, window.store, c)",
        [{"readyState": CLOSED}, config],
    )
    assert tick(page, CLOSED, config)[:2] == ["Origin refused", "hr-badge hr-badge--down"]
    calls = set_props_calls(page)
    alert = [props for target, props in calls if target == ids.ORIGIN_ALERT][-1]
    assert alert["hidden"] is False
    assert f"this page's origin, {origin}." in alert["children"]
    assert "HRDASH_ALLOWED_ORIGINS" in alert["children"]
    assert "it is now https://monitor.example.org." in alert["children"]
    assert [ids.STATUS, {"title": alert["children"]}] in calls
    assert not any(p.get("children") == "Reconnecting…" for t, p in calls if t == ids.STATUS)
    page.evaluate(
        "([s, c]) => window.dash_clientside.hrdash.on_state(s, window.store, c)",
        [{"readyState": OPEN}, config],
    )
    tick(page, OPEN, config)
    alert = [props for target, props in set_props_calls(page) if target == ids.ORIGIN_ALERT][-1]
    assert alert == {"children": "", "hidden": True}
