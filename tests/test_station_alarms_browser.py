"""The station's alarms end to end: `python app.py` with a sources file of six patients, each fed
by its own heart-rate service (a real websockets server on 127.0.0.1) at a value that alarms (or
not), and the station page in headless Chromium.

  bed-01 170 bpm → hr_extreme_high (high)     bed-04 72 bpm → no alarm
  bed-02 130 bpm → hr_high (medium)           bed-05 35 bpm → hr_extreme_low (high)
  bed-03 two readings, then silent → no_signal (low, after HRDASH_NO_SIGNAL_AFTER)
  bed-06 45 bpm → hr_low (medium)

Checked: high tiles flash at 2 Hz and medium ones at 0.6 Hz, low stays steady, nothing flashes
under prefers-reduced-motion; the flashing animates only the opacity of the rings, all in
phase; an ack button (a tile's, the list's) acknowledges the alarm (/api/alarms says so) and the
page stays on the station; the station sounds its highest priority, and the pause button pauses
the audio (/healthz), silences it and shows its countdown.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from hrdash import ids
from hrdash.layout import AUDIO_TEXT
from tests.support import (
    Running,
    app_command,
    chromium_page,
    get_json,
    hrdash_running,
    poll,
    wait_js,
)
from tests.test_station_browser import SHAPES, PatientService

pytestmark = pytest.mark.browser

NO_SIGNAL_AFTER = 3  # seconds (HRDASH_NO_SIGNAL_AFTER): bed-03's low alarm comes soon
WARD = {  # id → (name, values its service sends, readings before it falls silent)
    "bed-01": ("Bed 1", [170, 171], None),
    "bed-02": ("Bed 2", [130, 131], None),
    "bed-03": ("Bed 3", [66], 2),
    "bed-04": ("Bed 4", [72, 73, 71], None),
    "bed-05": ("Bed 5", [35, 36], None),
    "bed-06": ("Bed 6", [45, 46], None),
}
WANT = {  # the tiles' data-alarm once every condition has held for its delay
    "bed-01": "high",
    "bed-02": "medium",
    "bed-03": "low",
    "bed-04": "none",
    "bed-05": "high",
    "bed-06": "medium",
}

TILES_JS = """
() => Object.fromEntries(Array.from(document.querySelectorAll('[data-patient]')).map((t) => {
  const ring = getComputedStyle(t, '::after');
  const ack = t.parentElement.querySelector(':scope > .hr-ack');
  const flashing = t.getAnimations({subtree: true});
  return [t.dataset.patient, {alarm: t.dataset.alarm, state: t.dataset.state,
    animation: ring.animationName, duration: ring.animationDuration, ring: ring.boxShadow,
    opacity: getComputedStyle(t).opacity, composited: ring.willChange,
    periods: flashing.map((a) => a.effect.getComputedTiming().duration),
    starts: flashing.map((a) => a.startTime),
    ack: ack && !ack.hidden ? ack.getAttribute('data-alarm-id') : null}];
}))
"""


@dataclass
class Station:
    running: Running
    services: dict[str, PatientService]
    page: Any


@contextlib.contextmanager
def alarming_station(
    tmp: Path, width: int = 1600, height: int = 900, init_script: str = ""
) -> Iterator[Station]:
    """The six services, `python app.py` reading them, and the station open in Chromium with
    every tile alarming as WANT says (``init_script``: run in the page before its own)."""
    services = {
        pid: PatientService(SHAPES["reference"], values, limit)
        for pid, (_, values, limit) in WARD.items()
    }
    try:
        for service in services.values():
            service.start()
        sources = tmp / "sources.toml"
        sources.write_text(
            "\n".join(
                f'[[patient]]\nid = "{pid}"\nname = "{name}"\nurl = "{services[pid].url}"\n'
                for pid, (name, _, _) in WARD.items()
            )
        )
        env = {"HRDASH_SOURCES": str(sources), "HRDASH_NO_SIGNAL_AFTER": str(NO_SIGNAL_AFTER)}
        with hrdash_running(app_command(), env) as running, chromium_page(width, height) as page:
            if init_script:
                page.add_init_script(init_script)
            page.goto(running.url)
            poll(
                page,
                tiles,
                lambda shown: {pid: t["alarm"] for pid, t in shown.items()} == WANT,
                30,
                "every tile alarming",
            )
            yield Station(running, services, page)
    finally:
        for service in services.values():
            service.close()


@pytest.fixture(scope="module")
def station(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Station]:
    with alarming_station(Path(tmp_path_factory.mktemp("alarms"))) as s:
        yield s


def tiles(page: Any) -> dict[str, Any]:
    return dict(page.evaluate(TILES_JS))


def api_alarms(station: Station) -> dict[str, dict[str, str]]:
    """/api/alarms as patient → kind → state."""
    out: dict[str, dict[str, str]] = {}
    for a in get_json(f"http://127.0.0.1:{station.running.bridge_port}/api/alarms"):
        out.setdefault(a["patient"], {})[a["kind"]] = a["state"]
    return out


def test_high_and_medium_tiles_flash_low_stays_steady(station: Station) -> None:
    """A high alarm's tile flashes with a 0.5 s period (2 Hz), a medium one's with 1.667 s
    (0.6 Hz), in their colours; a low one's ring is steady; no alarm, no ring; the list's
    active high and medium items flash with them."""
    shown = tiles(station.page)
    for pid in ("bed-01", "bed-05"):
        assert (shown[pid]["animation"], shown[pid]["duration"]) == ("hr-flash-high", "0.5s")
        assert shown[pid]["periods"] == [500]
        assert "rgb(220, 38, 38)" in shown[pid]["ring"] or "rgba(220, 38, 38" in shown[pid]["ring"]
    for pid in ("bed-02", "bed-06"):
        assert shown[pid]["animation"] == "hr-flash-medium"
        assert shown[pid]["periods"] == [1667]
    assert (shown["bed-03"]["animation"], shown["bed-03"]["periods"]) == ("none", [])
    assert "rgb(6, 182, 212)" in shown["bed-03"]["ring"]
    assert shown["bed-04"]["periods"] == [] and "inset" not in shown["bed-04"]["ring"]
    items = station.page.evaluate(
        "(id) => [...document.querySelectorAll(`#${id} li`)].map((li) =>"
        " [li.dataset.priority, getComputedStyle(li, '::before').animationDuration,"
        " li.getAnimations({subtree: true}).map((a) => a.effect.getComputedTiming().duration)])",
        ids.STATION_ALARMS,
    )
    assert sorted(items) == [
        ["high", "0.5s", [500]],
        ["high", "0.5s", [500]],
        ["low", "0s", []],
        ["medium", "1.667s", [1667]],
        ["medium", "1.667s", [1667]],
    ]


def test_flashing_runs_on_the_compositor_in_unison(station: Station) -> None:
    """The flashing animates the opacity of a ring (the tile's ::after, the list item's
    ::before) in a layer of its own, nothing the page must restyle or lay out each frame; the
    tile itself is never faded; and every flashing animation, tiles' and list's, starts at the
    same moment (a wall of alarms flashes together)."""
    page = station.page
    wait_js(page, "() => document.getAnimations().every((a) => a.startTime === 0)", 10)
    shown = tiles(page)
    for pid in ("bed-01", "bed-02", "bed-05", "bed-06"):
        assert shown[pid]["composited"] == "opacity"
        assert shown[pid]["opacity"] == "1"
        assert shown[pid]["starts"] == [0]
    props = page.evaluate(
        "() => document.getAnimations().map((a) => [a.animationName,"
        " [...new Set(a.effect.getKeyframes().flatMap((k) => Object.keys(k)"
        ".filter((p) => !['offset', 'computedOffset', 'easing', 'composite'].includes(p))))]])"
    )
    assert len(props) == 8  # 4 flashing tiles, 4 flashing items
    assert {name for name, _ in props} == {
        "hr-flash-high",
        "hr-flash-medium",
        "hr-flash-item-high",
        "hr-flash-item-medium",
    }
    assert all(p == ["opacity"] for _, p in props), props


def test_reduced_motion_stops_the_flashing(station: Station) -> None:
    """Under prefers-reduced-motion: reduce nothing flashes: the rings stay, steady, in their
    colours, and the list keeps its markers."""
    page = station.page
    page.emulate_media(reduced_motion="reduce")
    try:
        shown = tiles(page)
        assert {pid: t["periods"] for pid, t in shown.items()} == {pid: [] for pid in WARD}
        assert {t["animation"] for t in shown.values()} == {"none"}
        assert "rgb(220, 38, 38)" in shown["bed-01"]["ring"]
        assert "rgb(234, 179, 8)" in shown["bed-02"]["ring"]
        texts = page.evaluate(
            "(id) => [...document.querySelectorAll(`#${id} li`)].map((li) =>"
            " [li.textContent, li.getAnimations({subtree: true}).length])",
            ids.STATION_ALARMS,
        )
        assert texts[0][0].startswith("*** ") and {n for _, n in texts} == {0}
    finally:
        page.emulate_media(reduced_motion="no-preference")


def test_ack_buttons_acknowledge_without_leaving_the_station(station: Station) -> None:
    """The ack button of bed-05's tile (its hr_extreme_low) and the one of bed-06's item in the
    alarms list (its hr_low) acknowledge those alarms in the bridge (/api/alarms), the tile's
    ring and button go, and the page is still the station."""
    page = station.page
    url = page.url
    assert api_alarms(station)["bed-05"] == {"hr_extreme_low": "active"}
    page.click(f"#{ids.tile('bed-05')} ~ .{ids.ACK_CLASS}")
    poll(
        page,
        lambda _: {"state": api_alarms(station)["bed-05"]["hr_extreme_low"]},
        lambda s: s["state"] == "acknowledged",
        10,
        "bed-05's alarm acknowledged",
    )
    after = poll(page, tiles, lambda s: s["bed-05"]["alarm"] == "none", 10, "bed-05's ring gone")
    assert after["bed-05"]["ack"] is None
    alarm_id = next(
        a["id"]
        for a in get_json(f"http://127.0.0.1:{station.running.bridge_port}/api/alarms")
        if a["patient"] == "bed-06"
    )
    page.click(f"#{ids.STATION_ALARMS} .{ids.ACK_CLASS}[data-alarm-id='{alarm_id}']")
    poll(
        page,
        lambda _: {"state": api_alarms(station)["bed-06"]["hr_low"]},
        lambda s: s["state"] == "acknowledged",
        10,
        "bed-06's alarm acknowledged",
    )
    assert page.url == url
    assert page.evaluate("document.querySelectorAll('[data-patient]').length") == len(WARD)
    assert page.is_hidden(f"#{ids.STATION_MESSAGE}")


def test_pause_button_pauses_the_audio_with_a_countdown(station: Station) -> None:
    """The station sounds its highest priority (bed-01's high alarm; headless Chromium lets the
    AudioContext run without a click); the "Pause audio 2 min" button pauses the station's audio
    in the bridge (/healthz alarms audio_paused_until, about 120 s ahead), the sound stops at
    once and the control counts down "Audio paused 1:59"."""
    page = station.page
    health = f"http://127.0.0.1:{station.running.bridge_port}/healthz"
    assert get_json(health)["alarms"]["audio_paused_until"] is None
    wait_js(page, "() => window.hrdashAudio.stats().playing === 'high'", 10)
    assert page.evaluate("window.hrdashAudio.stats().pulses") >= 10
    page.click(f"#{ids.AUDIO_PAUSE}")
    poll(
        page,
        lambda _: {"until": get_json(health)["alarms"]["audio_paused_until"]},
        lambda s: s["until"] is not None,
        10,
        "the audio paused",
    )
    wait_js(page, "(id) => !document.getElementById(id).hidden", 10, ids.AUDIO_COUNTDOWN)
    text = page.text_content(f"#{ids.AUDIO_COUNTDOWN}")
    match = re.fullmatch(AUDIO_TEXT["paused"] + r" (\d):(\d\d)", text or "")
    assert match, text
    assert 100 <= int(match[1]) * 60 + int(match[2]) <= 120
    assert page.is_visible(f"#{ids.AUDIO_COUNTDOWN}")
    wait_js(page, "() => window.hrdashAudio.stats().playing === null", 10)
    assert page.evaluate("window.hrdashAudio.stats().scheduled") == 0
