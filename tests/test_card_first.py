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
  const bpm = () => document.getElementById(config.ids.current_bpm).textContent;
  const msg = (f) => ({data: JSON.stringify(f)});
  const seen = {};
  // Dash passes the store it has applied so far: null until the first result lands.
  const first = hr.on_message(msg(frames[0]), null, config);
  seen.cardRightAfterFirst = bpm();
  seen.firstIsPromise = typeof (first && first.then) === "function";
  // A status frame arrives before the first result was applied (Dash drops that result).
  const second = hr.on_message(msg(frames[1]), null, config);
  const out2 = await second;
  seen.secondStoreSeqs = out2[0].rows.map((r) => r.seq);
  seen.secondTableSeqs = out2[1].map((r) => r.seq);
  seen.secondCard = out2[4];
  seen.secondChartSet = out2[2] !== window.dash_clientside.no_update ||
    out2[3] !== window.dash_clientside.no_update;
  await first;
  // The next reading, after the second result was applied.
  const out3 = await hr.on_message(msg(frames[2]), out2[0], config);
  seen.thirdStoreSeqs = out3[0].rows.map((r) => r.seq);
  seen.thirdCard = out3[4];
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
    before the outputs were applied still delivers the snapshot's rows, table and card."""
    t0 = 1_700_000_000_000
    readings = [{"seq": s, "time": t0 + 500 * s, "bpm": 60 + s} for s in range(1, 4)]
    frames = [
        {"type": "readings", "run": "r1", "readings": readings, "first_seq": 1, "last_seq": 3},
        {"type": "status", "run": "r1", "upstream": "live", "first_seq": 1, "last_seq": 3},
        {
            "type": "readings",
            "run": "r1",
            "readings": [{"seq": 4, "time": t0 + 2000, "bpm": 77}],
            "first_seq": 1,
            "last_seq": 4,
        },
    ]
    seen = page.evaluate(FEED, [_config(), json.loads(json.dumps(frames))])
    assert seen["cardRightAfterFirst"] == "63", seen
    assert seen["firstIsPromise"], seen
    assert seen["secondStoreSeqs"] == [1, 2, 3], seen
    assert seen["secondTableSeqs"] == [1, 2, 3], seen
    assert seen["secondCard"] == "63", seen
    assert seen["secondChartSet"], seen
    assert seen["thirdStoreSeqs"] == [1, 2, 3, 4], seen
    assert seen["thirdCard"] == "77", seen
    assert seen["cardAtEnd"] == "77", seen
