"""The card path of ``assets/hrdash.js`` in a real Chromium, without Dash: ``on_message`` writes the
card at once and hands its outputs to Dash after the next paint; a message that arrives meanwhile
takes the pending outputs over, because Dash drops a pending result when the same callback is
requested again."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hrdash import ids
from hrdash.layout import build_layout
from hrdash.settings import Settings
from tests.support import chromium_page

pytestmark = pytest.mark.browser

SCRIPT = Path(__file__).resolve().parent.parent / "assets" / "hrdash.js"

# The parts of dash_clientside that hrdash.js uses, as plain objects (Patch records its operations).
HARNESS = """
window.dash_clientside = {
  no_update: {noUpdate: true},
  set_props: function () {},
  Patch: function () {
    var ops = [];
    this.assign = function (path, value) { ops.push([path, value]); };
    this.build = function () { return {patch: ops}; };
  },
};
"""

# Runs in the page: feeds frames to on_message the way Dash would and reports what it saw.
FEED = """
async ([config, frames]) => {
  const hr = window.dash_clientside.hrdash;
  const nu = window.dash_clientside.no_update;
  const bpm = () => document.getElementById(config.ids.current_bpm).textContent;
  const msg = (f) => ({data: JSON.stringify(f)});
  const isPromise = (x) => typeof (x && x.then) === "function";
  const seen = {};
  // The snapshot on load: no window shown yet, so the outputs come at once.
  const out0 = hr.on_message(msg(frames[0]), null, config);
  seen.snapshotIsPromise = isPromise(out0);
  seen.snapshotSeqs = out0[0].rows.map((r) => r.seq);
  // A new reading: the card is written at once, the outputs wait for a paint.
  const first = hr.on_message(msg(frames[1]), out0[0], config);
  seen.cardRightAfterReading = bpm();
  seen.readingIsPromise = isPromise(first);
  // A status frame arrives before that result was applied (Dash drops it): Dash still passes
  // the snapshot's store; the status frame's result must carry the reading's outputs.
  const out2 = await hr.on_message(msg(frames[2]), out0[0], config);
  seen.carriedStoreSeqs = out2[0].rows.map((r) => r.seq);
  seen.carriedTableSeqs = out2[1].map((r) => r.seq);
  seen.carriedCard = out2[4];
  seen.carriedChart = out2[2] !== nu || out2[3] !== nu;
  await first;
  // The next reading, after the carried result was applied.
  const out3 = await hr.on_message(msg(frames[3]), out2[0], config);
  seen.nextStoreSeqs = out3[0].rows.map((r) => r.seq);
  seen.nextCard = out3[4];
  seen.cardAtEnd = bpm();
  return seen;
}
"""


def _config() -> dict[str, Any]:
    """The config the real layout hands to the page."""
    layout = build_layout(Settings.load(env={}), "ws://127.0.0.1:1/ws")
    stack = [layout]
    while stack:
        node = stack.pop()
        if getattr(node, "id", None) == ids.CONFIG:
            return dict(node.data)
        children = getattr(node, "children", None)
        if isinstance(children, list):
            stack.extend(children)
        elif children is not None:
            stack.append(children)
    raise AssertionError("no config store in the layout")


@pytest.fixture(scope="module")
def page() -> Iterator[Any]:
    with chromium_page() as page:
        page.set_content(
            f'<span id="{ids.CURRENT_BPM}">-</span><div id="{ids.CURRENT_TIME}">waiting</div>'
        )
        page.add_script_tag(content=HARNESS)
        page.add_script_tag(content=SCRIPT.read_text())
        yield page


def test_card_first_and_pending_outputs_carried_over(page: Any) -> None:
    """The card shows a reading as soon as on_message returns; a status frame that arrives
    before the reading's outputs were applied still delivers its rows, table, chart and card."""
    t0 = 1_700_000_000_000

    def frame(seqs: list[int], last: int) -> dict[str, Any]:
        rows = [{"seq": s, "time": t0 + 500 * s, "bpm": 60 + s} for s in seqs]
        return {"type": "readings", "run": "r1", "readings": rows, "first_seq": 1, "last_seq": last}

    frames = [
        frame([1, 2, 3], 3),
        frame([4], 4),
        {"type": "status", "run": "r1", "upstream": "live", "first_seq": 1, "last_seq": 4},
        frame([5], 5),
    ]
    seen = page.evaluate(FEED, [_config(), json.loads(json.dumps(frames))])
    assert not seen["snapshotIsPromise"], seen
    assert seen["snapshotSeqs"] == [1, 2, 3], seen
    assert seen["cardRightAfterReading"] == "64", seen
    assert seen["readingIsPromise"], seen
    assert seen["carriedStoreSeqs"] == [1, 2, 3, 4], seen
    assert seen["carriedTableSeqs"] == [1, 2, 3, 4], seen
    assert seen["carriedCard"] == "64", seen
    assert seen["carriedChart"], seen
    assert seen["nextStoreSeqs"] == [1, 2, 3, 4, 5], seen
    assert seen["nextCard"] == "65", seen
    assert seen["cardAtEnd"] == "65", seen
