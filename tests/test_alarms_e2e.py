"""The alarms end to end: `python app.py` reading a scripted heart-rate service through a sources
file, the station page in headless Chromium, the bridge's /api/alarms and /api/alarms/log.

One patient goes normal → 130 → 160 → normal → silent, then the latched alarm is acknowledged
and the signal comes back; a second patient stays normal throughout. At each step the alarms
(/api/alarms), the log's times against the moments the script sent its readings, and the
patient's tile (``data-alarm`` and the colour of its ring) must say what the engine's rules say,
with the engine's own delays (:mod:`hrdash.alarms`) and the app's no-signal time. An ack from a
foreign Origin never reaches the engine: its handshake is refused (403, counted); one on a
connection without an Origin (a script) is answered with an error frame and counted; the same ack
from the page's own origin acknowledges, logged with that origin.

Nothing is mocked: real time passes (about 25 s)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from hrdash.alarms import HIGH_DELAY, MEDIUM_DELAY
from hrdash.settings import Settings
from tests.support import (
    Running,
    ScriptedService,
    app_command,
    chromium_page,
    get_json,
    hrdash_running,
    poll,
    scaled,
)

pytestmark = pytest.mark.browser

PATIENT, OTHER = "bed-a", "bed-b"
NO_SIGNAL_AFTER = Settings.load(env={}).no_signal_after  # the app's default, which it runs with
NORMAL, HIGH, EXTREME = 70, 130, 160  # bpm: inside the default limits, above high, above extreme
POLL_S = 0.05  # seconds between two looks at /api/alarms
LATE_S = 0.5  # seconds a log time may lie after the moment the script sent its reading (scaled)
FOREIGN = "http://evil.example"

# The tiles' data-alarm as they change, with the page's wall clock (Date.now(): the same system
# clock as the bridge's time.time() and this test's), from the first time each tile is seen.
WATCH_JS = """
(() => {
  const seen = window.__alarmTiles = {};
  const look = () => {
    document.querySelectorAll('[data-patient]').forEach((t) => {
      const id = t.getAttribute('data-patient');
      const alarm = t.getAttribute('data-alarm');
      const list = seen[id] || (seen[id] = []);
      if (alarm !== null && (!list.length || list[list.length - 1][0] !== alarm)) {
        list.push([alarm, Date.now()]);
      }
    });
  };
  const attach = () => {
    if (!document.documentElement) return setTimeout(attach, 10);
    new MutationObserver(look).observe(document.documentElement, {
      subtree: true, childList: true, attributes: true, attributeFilter: ['data-alarm'],
    });
    look();
  };
  attach();
})();
"""

# The tile of a patient: its data-alarm and which alarm colour its ring (its ::after's box-shadow)
# carries.
TILE_JS = """
(id) => {
  const tile = document.querySelector(`[data-patient="${id}"]`);
  if (!tile) return {alarm: null, rings: [], list: []};
  // The alarm colours as the page defines them (CSS variables), in the computed form.
  const probe = document.createElement('span');
  tile.parentElement.appendChild(probe);
  const colours = {};
  for (const p of ['high', 'medium', 'low']) {
    probe.style.color = `var(--hr-alarm-${p})`;
    colours[p] = getComputedStyle(probe).color;
  }
  probe.remove();
  const shadow = getComputedStyle(tile, '::after').boxShadow;  // the ring: the tile's ::after
  const list = [...document.querySelectorAll('#hr-station-alarms li[data-alarm-id]')].map(
    (li) => [li.getAttribute('data-alarm-id'), li.getAttribute('data-state')]);
  return {
    alarm: tile.getAttribute('data-alarm'),
    rings: Object.keys(colours).filter((p) => shadow.includes(colours[p])),
    list: list,
  };
}
"""


def alarms_of(running: Running, patient: str = PATIENT) -> list[dict[str, Any]]:
    alarms = get_json(f"http://127.0.0.1:{running.bridge_port}/api/alarms")
    return [a for a in alarms if a["patient"] == patient]


def states(alarms: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(a["kind"], a["state"]) for a in alarms]


def wait_alarms(
    running: Running,
    predicate: Callable[[list[dict[str, Any]]], bool],
    timeout: float,
    what: str,
) -> tuple[float, list[tuple[float, list[dict[str, Any]]]]]:
    """Look at the patient's alarms every POLL_S until ``predicate`` holds; returns when the
    answer that held arrived (Unix s) and every answer before it, with its arrival."""
    before: list[tuple[float, list[dict[str, Any]]]] = []
    deadline = time.monotonic() + scaled(timeout)
    while True:
        alarms = alarms_of(running)
        at = time.time()
        if predicate(alarms):
            return at, before
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}; /api/alarms shows {alarms}")
        before.append((at, alarms))
        time.sleep(POLL_S)


def tile(page: Any, patient: str = PATIENT) -> dict[str, Any]:
    return dict(page.evaluate(TILE_JS, patient))


def wait_tile(page: Any, alarm: str, what: str) -> dict[str, Any]:
    """The patient's tile once its data-alarm is ``alarm``; its ring must be that colour."""
    shown = poll(page, tile, lambda s: s["alarm"] == alarm, 5, what)
    assert shown["rings"] == ([] if alarm == "none" else [alarm]), shown
    return shown


@pytest.fixture
def station(tmp_path: Path) -> Iterator[tuple[ScriptedService, Running]]:
    service = ScriptedService([PATIENT, OTHER], value=NORMAL)
    try:
        path = tmp_path / "sources.toml"
        path.write_text(service.sources({PATIENT: "Bed A", OTHER: "Bed B"}))
        with hrdash_running(app_command(), {"HRDASH_SOURCES": str(path)}) as running:
            yield service, running
    finally:
        service.close()


def test_alarms_from_the_service_to_the_tile(station: tuple[ScriptedService, Running]) -> None:
    """normal → 130 → 160 → normal → silent → ack → normal: each alarm raised no sooner than its
    delay after the reading that began its condition (and soon after), the medium one superseded
    by the extreme one, which latches and keeps the tile red through the silence; no_signal
    (low) after the no-signal time; the ack refused from a foreign Origin and from a script,
    accepted from the page's origin, leaving the cyan ring; every log entry at the time the
    script says, and the other patient untouched."""
    service, running = station
    api = f"http://127.0.0.1:{running.bridge_port}"
    late = scaled(LATE_S)
    with chromium_page(1280, 900, reduced_motion="reduce") as page:
        page.add_init_script(WATCH_JS)
        page.goto(running.url)
        poll(
            page,
            lambda p: {"a": tile(p), "b": tile(p, OTHER)},
            lambda s: s["a"]["alarm"] == "none" and s["b"]["alarm"] == "none",
            20,
            "both tiles without an alarm",
        )
        assert alarms_of(running) == [] and alarms_of(running, OTHER) == []

        # 130: hr_high (medium) after MEDIUM_DELAY, not before.
        t_high = service.set(PATIENT, HIGH)
        seen, before = wait_alarms(
            running,
            lambda a: states(a) == [("hr_high", "active")],
            MEDIUM_DELAY + 5,
            "hr_high",
        )
        assert seen >= t_high + MEDIUM_DELAY
        assert all(alarms == [] for _, alarms in before), before
        assert before and before[-1][0] >= t_high + MEDIUM_DELAY - 2 * POLL_S - late
        wait_tile(page, "medium", "the medium (yellow) ring")

        # 160: hr_extreme_high (high) after HIGH_DELAY; it supersedes hr_high.
        t_extreme = service.set(PATIENT, EXTREME)
        seen, before = wait_alarms(
            running,
            lambda a: any(k == "hr_extreme_high" for k, _ in states(a)),
            HIGH_DELAY + 5,
            "hr_extreme_high",
        )
        assert seen >= t_extreme + HIGH_DELAY
        assert all(states(a) == [("hr_high", "active")] for _, a in before), before
        assert states(alarms_of(running)) == [("hr_extreme_high", "active")]
        wait_tile(page, "high", "the high (red) ring")

        # Back to normal: the extreme alarm latches; the tile stays red.
        t_normal = service.set(PATIENT, NORMAL)
        wait_alarms(
            running,
            lambda a: states(a) == [("hr_extreme_high", "latched")],
            5,
            "hr_extreme_high latched",
        )
        for _ in range(5):
            assert tile(page)["alarm"] == "high"
            page.wait_for_timeout(200)

        # Silent: no_signal (low) after the no-signal time; the latched alarm stays highest.
        service.set(PATIENT, None)
        t_last = service.sent[PATIENT][-1][0]
        seen, _ = wait_alarms(
            running,
            lambda a: any(k == "no_signal" for k, _ in states(a)),
            NO_SIGNAL_AFTER + 5,
            "no_signal",
        )
        assert seen >= t_last + NO_SIGNAL_AFTER
        alarms = alarms_of(running)
        assert states(alarms) == [("hr_extreme_high", "latched"), ("no_signal", "active")]
        assert [a["priority"] for a in alarms] == ["high", "low"]
        extreme_id, no_signal_id = alarms[0]["id"], alarms[1]["id"]
        shown = poll(
            page, tile, lambda s: len(s["list"]) == 2, 5, "both alarms in the station's list"
        )
        assert shown["alarm"] == "high" and shown["rings"] == ["high"], shown
        assert shown["list"] == [[extreme_id, "latched"], [no_signal_id, "active"]]

        # The ack: refused from a foreign Origin (handshake) and from a script (no Origin).
        health = get_json(f"{api}/healthz")
        refused_origins = health["origins"]["refused"]["by_origin"].get(FOREIGN, 0)
        with pytest.raises(InvalidStatus) as info:
            connect(f"ws://127.0.0.1:{running.bridge_port}/ws?station=1", origin=FOREIGN)  # type: ignore[arg-type]
        assert info.value.response.status_code == 403
        ack = json.dumps({"type": "ack", "alarm": extreme_id})
        feed = f"ws://127.0.0.1:{running.bridge_port}/ws?patient={PATIENT}"
        with connect(feed, open_timeout=scaled(10)) as ws:
            ws.send(ack)
            error = next_error(ws)
        assert error["message"] == "ack: refused: needs an allowed Origin"
        health = get_json(f"{api}/healthz")
        assert health["origins"]["refused"]["by_origin"][FOREIGN] == refused_origins + 1
        assert health["alarms"]["refused_state_changes"] == 1
        assert health["alarms"]["state_changes"] == 0
        assert states(alarms_of(running))[0] == ("hr_extreme_high", "latched")

        # ... and accepted from the page's own origin: the latched alarm ends, the ring is cyan.
        origin = running.url.rstrip("/")
        with connect(feed, origin=origin, open_timeout=scaled(10)) as ws:  # type: ignore[arg-type]
            t_ack = time.time()
            ws.send(ack)
            wait_alarms(
                running, lambda a: states(a) == [("no_signal", "active")], 5, "the ack applied"
            )
        assert get_json(f"{api}/healthz")["alarms"]["state_changes"] == 1
        wait_tile(page, "low", "the low (cyan) ring")

        # The signal returns: no_signal ends, the tile is plain again.
        t_back = service.set(PATIENT, NORMAL)
        wait_alarms(running, lambda a: a == [], 5, "no alarms")
        wait_tile(page, "none", "no ring")
        history = page.evaluate("window.__alarmTiles")

    log = list(reversed(get_json(f"{api}/api/alarms/log?patient={PATIENT}&limit=50")))
    assert [(e["kind"], e["event"]) for e in log] == [
        ("hr_high", "raised"),
        ("hr_extreme_high", "raised"),
        ("hr_high", "ended"),
        ("hr_extreme_high", "latched"),
        ("no_signal", "raised"),
        ("hr_extreme_high", "acknowledged"),
        ("hr_extreme_high", "ended"),
        ("no_signal", "ended"),
    ]
    assert [e["origin"] for e in log] == [None] * 5 + [origin, origin, None]
    priorities = ["medium", "high", "medium", "high", "low", "high", "high", "low"]
    assert [e["priority"] for e in log] == priorities
    # Each entry's time (ms) against the moment the script caused it (s): the delays exactly
    # after the bridge took the reading, which is a little after the script sent it.
    due = [
        t_high + MEDIUM_DELAY,
        t_extreme + HIGH_DELAY,
        t_extreme + HIGH_DELAY,
        t_normal,
        t_last + NO_SIGNAL_AFTER,
        t_ack,
        t_ack,
        t_back,
    ]
    for entry, at in zip(log, due, strict=True):
        assert at * 1000 - 1 <= entry["time"] <= (at + late) * 1000, (entry, at)
    assert log[1]["time"] == log[2]["time"]  # superseded at the moment the extreme was raised
    assert log[1]["value"] == EXTREME and log[1]["limit"] == 150
    assert log[0]["value"] == HIGH and log[0]["limit"] == 120
    assert get_json(f"{api}/api/alarms/log?patient={OTHER}") == []

    # The tile changed exactly so, each change no sooner than the alarm it shows.
    changes = history[PATIENT]
    assert [alarm for alarm, _ in changes] == ["none", "medium", "high", "low", "none"], changes
    for (_, shown_ms), entry_ms in zip(
        changes[1:], [log[0]["time"], log[1]["time"], log[6]["time"], log[7]["time"]], strict=True
    ):
        assert entry_ms <= shown_ms <= entry_ms + scaled(2) * 1000, (changes, log)
    assert [alarm for alarm, _ in history[OTHER]] == ["none"]


def next_error(ws: Any) -> dict[str, Any]:
    """Read frames until an error frame (at most 10 s, scaled)."""
    deadline = time.monotonic() + scaled(10)
    while True:
        frame = json.loads(ws.recv(timeout=max(0.1, deadline - time.monotonic())))
        if frame.get("type") == "error":
            return dict(frame)
