"""The alarm sound (``assets/alarm_sound.js``) and its control (``hrdash.layout.audio_control``)
in real headless Chromium, with real Web Audio.

Two pages at the Dash server's address (answered by the test): the control as the layout builds
it (rendered to HTML as React renders it), the real CSS and the real script, evaluated afresh
for every test. One Chromium runs with ``--autoplay-policy=no-user-gesture-required`` (the
AudioContext runs without a click, so the schedule can be checked); the other with the default
policy of a desktop browser: headless Chromium lets every AudioContext run whatever
``--autoplay-policy`` says, so that page holds each new context suspended, as a desktop browser
does, and lets ``resume()`` through only during a real user activation (Playwright's clicks
are trusted input): the prompt shows until a click. Web Audio is not mocked: ``AudioContext``
is wrapped so that every oscillator the script makes records its type, frequency and the times
of its ``start``/``stop`` calls, then does what it would have done.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import pytest

from hrdash import ids
from hrdash.alarms import AUDIO_PAUSE_MAX
from hrdash.layout import AUDIO_TEXT, audio_control
from hrdash.settings import Settings
from hrdash.webapp import ASSETS
from tests.support import chromium_page, wait_js
from tests.test_station_js import to_html

pytestmark = pytest.mark.browser

PAGE_URL = f"http://127.0.0.1:{Settings.load(env={}).port}/"
SOUND_JS = ASSETS / "alarm_sound.js"
CSS = [ASSETS / "hrdash.css", ASSETS / "alarm_sound.css"]
AUTOPLAY = "--autoplay-policy=no-user-gesture-required"
HORIZON_S = 10  # alarm_sound.js schedules bursts this far ahead
T0 = 1_764_400_000_000  # a bridge clock (Unix ms), far from the browser's on purpose

# Before the script: every oscillator records what is asked of it (then does it).
WRAP_JS = """
(() => {
  window.oscillators = [];
  const make = AudioContext.prototype.createOscillator;
  AudioContext.prototype.createOscillator = function () {
    const osc = make.call(this);
    const rec = {starts: [], stops: [], type: null, hz: null, ctx: this};
    window.oscillators.push(rec);
    const start = osc.start.bind(osc);
    const stop = osc.stop.bind(osc);
    osc.start = (when) => { rec.type = osc.type; rec.hz = osc.frequency.value;
                            rec.starts.push(when); return start(when); };
    osc.stop = (when) => { rec.stops.push(when === undefined ? null : when);
                           return stop(when); };
    return osc;
  };
  window.pulsesOf = (hz) => window.oscillators
    .filter((o) => hz === undefined || o.hz === hz)
    .map((o) => ({at: o.starts[0], type: o.type, hz: o.hz, stops: o.stops,
                  now: o.ctx.currentTime}));
})();
"""

# The gesture page: a desktop browser's autoplay policy over the real AudioContext.
GESTURE_POLICY_JS = """
(() => {
  const Real = window.AudioContext;
  window.AudioContext = class extends Real {
    constructor(...args) { super(...args); super.suspend(); }
    resume() {
      return navigator.userActivation.isActive ? super.resume()
        : Promise.reject(new DOMException('needs a user gesture', 'NotAllowedError'));
    }
  };
})();
"""

RESET_JS = """
([source, markup]) => {
  if (window.hrdashAudio) window.hrdashAudio.dispose();
  delete window.hrdashAudio;
  document.body.innerHTML = markup;
  window.oscillators = [];
  const script = document.createElement('script');
  script.textContent = source;
  document.head.appendChild(script);
  script.remove();
}
"""


def open_page(args: list[str], policy: str = "") -> Iterator[Any]:
    with chromium_page(800, 600, args=args) as page:
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
        page.add_script_tag(content=WRAP_JS)
        if policy:
            page.add_script_tag(content=policy)
        yield page


@pytest.fixture
def autoplay_page() -> Iterator[Any]:
    """A Chromium of its own for each test (one Playwright at a time: the gesture page's
    Chromium cannot run beside a module-wide one)."""
    yield from open_page([AUTOPLAY])


@pytest.fixture
def gesture_page() -> Iterator[Any]:
    yield from open_page([], GESTURE_POLICY_JS)


def fresh(page: Any) -> Any:
    page.evaluate(RESET_JS, [SOUND_JS.read_text(), to_html(audio_control())])
    return page


@pytest.fixture
def page(autoplay_page: Any) -> Any:
    """The autoplay page with a fresh control and script."""
    return fresh(autoplay_page)


def update(page: Any, frame: dict[str, Any]) -> None:
    page.evaluate("(f) => window.hrdashAudio.update(f)", frame)


def stats(page: Any) -> dict[str, Any]:
    return dict(page.evaluate("window.hrdashAudio.stats()"))


def pulses(page: Any, hz: float | None = None) -> list[dict[str, Any]]:
    return list(page.evaluate("(hz) => window.pulsesOf(hz === null ? undefined : hz)", hz))


def control(page: Any) -> dict[str, Any]:
    return dict(
        page.evaluate(
            """(ids) => { const g = (id) => document.getElementById(id);
                 const cd = g(ids.countdown);
                 return {sound: g(ids.root).dataset.sound, sounding: g(ids.root).dataset.sounding,
                         enable: g(ids.enable).textContent, countdown: cd.textContent,
                         countdownShown: !cd.hidden && cd.getClientRects().length > 0,
                         message: g(ids.message).hidden ? '' : g(ids.message).textContent}; }""",
            {
                "root": ids.AUDIO,
                "enable": ids.AUDIO_ENABLE,
                "countdown": ids.AUDIO_COUNTDOWN,
                "message": ids.AUDIO_MESSAGE,
            },
        )
    )


def pattern(page: Any, priority: Any) -> Any:
    return page.evaluate("(p) => window.hrdashAudio.pattern(p)", priority)


def starts(burst: list[dict[str, Any]]) -> list[float]:
    """The pulses' start times in ms from the first, rounded to the ms."""
    return [round((p["at"] - burst[0]["at"]) * 1000) for p in burst]


def wait_running(page: Any) -> None:
    wait_js(page, "() => window.hrdashAudio.enabled()", 5)


# -- the patterns --------------------------------------------------------------------------------


def test_patterns_follow_iec_60601_1_8(page: Any) -> None:
    """High: 10 pulses of 75-200 ms in groups of 3, 2, 3, 2 (50-125 ms apart inside a group,
    a missing pulse's slot between the 3 and the 2, 0.35-1.3 s between the halves), every 5 s;
    medium: 3 pulses of 125-250 ms, 125-250 ms apart, every 8 s; low: 1 pulse every 20 s;
    nothing else has a pattern."""
    high = pattern(page, "high")
    assert (high["priority"], high["repeat_ms"], len(high["pulses"])) == ("high", 5000, 10)
    gaps = [b["at"] - (a["at"] + a["ms"]) for a, b in itertools.pairwise(high["pulses"])]
    ms = high["pulses"][0]["ms"]
    assert all(75 <= p["ms"] <= 200 for p in high["pulses"])
    spacing = gaps[0]
    assert 50 <= spacing <= 125
    half = [spacing, spacing, 2 * spacing + ms, spacing]  # x x x _ x x
    assert gaps == [*half, gaps[4], *half]
    assert 350 <= gaps[4] <= 1300
    end = high["pulses"][-1]["at"] + high["pulses"][-1]["ms"]
    assert end < high["repeat_ms"]  # one burst is over before the next starts

    medium = pattern(page, "medium")
    assert (medium["repeat_ms"], len(medium["pulses"])) == (8000, 3)
    assert all(125 <= p["ms"] <= 250 for p in medium["pulses"])
    m = medium["pulses"]
    assert all(125 <= b["at"] - (a["at"] + a["ms"]) <= 250 for a, b in itertools.pairwise(m))
    low = pattern(page, "low")
    assert (low["repeat_ms"], len(low["pulses"])) == (20000, 1)
    tones = [high["hz"], medium["hz"], low["hz"]]
    assert 500 <= min(tones) <= max(tones) <= 700 and len(set(tones)) == 3
    for other in ("urgent", None, "__proto__", "toString", 3):
        assert pattern(page, other) is None, other


def test_clock_text(page: Any) -> None:
    """The countdown's m:ss, seconds rounded up (0:01 until the very end)."""
    texts = page.evaluate(
        "(ms) => ms.map((x) => window.hrdashAudio.clock(x))",
        [103_000, 102_001, 60_000, 59_001, 500, 0, -5],
    )
    assert texts == ["1:43", "1:43", "1:00", "1:00", "0:01", "0:00", "0:00"]


# -- update(): what plays ----------------------------------------------------------------------


def test_sounding_high_schedules_its_bursts_and_repeats(page: Any) -> None:
    """update({sounding: "high"}) with a running AudioContext: square pulses at the high tone,
    10 per burst at the pattern's offsets, bursts 5 s apart, scheduled HORIZON_S ahead and
    topped up as time passes; the same priority again schedules nothing new."""
    update(page, {"sounding": "high", "audio_paused_until": None})
    wait_running(page)
    high = pattern(page, "high")
    offsets = [p["at"] for p in high["pulses"]]
    wait_js(page, "() => window.oscillators.length >= 20", 5)
    got = pulses(page)
    assert len(got) == 10 * (HORIZON_S * 1000 // high["repeat_ms"])
    assert {(p["type"], p["hz"]) for p in got} == {("square", high["hz"])}
    assert starts(got[:10]) == offsets
    assert starts(got)[10:] == [high["repeat_ms"] + x for x in offsets]
    for _ in range(5):
        update(page, {"sounding": "high", "audio_paused_until": None})
    assert stats(page)["playing"] == "high"
    page.wait_for_timeout(1500)  # the timer tops the schedule up: a third burst
    got = pulses(page)
    assert len(got) == 30
    assert starts(got)[20:] == [2 * high["repeat_ms"] + x for x in offsets]
    assert control(page)["sounding"] == "high"


def test_null_stops_every_pulse_at_once(page: Any) -> None:
    """sounding null (or missing) stops at once every pulse scheduled, those already started
    and those still to come; nothing more is scheduled."""
    update(page, {"sounding": "high"})
    wait_running(page)
    wait_js(page, "() => window.oscillators.length >= 20", 5)
    update(page, {"sounding": None})
    got = pulses(page)
    assert stats(page)["scheduled"] == 0 and stats(page)["playing"] is None
    # Every pulse not ended yet got a stop() with no time (now), after its scheduled one.
    assert all(p["stops"][-1] is None for p in got if p["at"] + 0.2 > got[0]["now"])
    # At least the whole next burst (5 s after the first; the first may be partly over on a
    # busy machine) was scheduled and then stopped.
    assert sum(1 for p in got if len(p["stops"]) == 2) >= 10
    page.wait_for_timeout(1300)
    assert len(pulses(page)) == len(got)
    update(page, {"sounding": "low"})
    wait_js(page, "(n) => window.oscillators.length > n", 5, len(got))
    update(page, {})  # missing: null
    assert stats(page)["playing"] is None and stats(page)["sounding"] is None


def test_another_priority_replaces_the_pattern(page: Any) -> None:
    """high → medium: the high pulses are stopped and medium's (3 a burst, 8 s apart, its own
    tone) scheduled from now; an unknown priority counts as null."""
    update(page, {"sounding": "high"})
    wait_running(page)
    high, medium = pattern(page, "high"), pattern(page, "medium")
    wait_js(page, "() => window.oscillators.length >= 20", 5)
    update(page, {"sounding": "medium"})
    got = pulses(page, medium["hz"])
    assert len(got) == 3 * 2  # bursts at +0 and +8 s within the 10 s ahead
    assert starts(got) == [p["at"] for p in medium["pulses"]] + [
        medium["repeat_ms"] + p["at"] for p in medium["pulses"]
    ]
    assert all(p["stops"][-1] is None for p in pulses(page, high["hz"])[10:])
    assert stats(page)["playing"] == "medium"
    update(page, {"sounding": "urgent"})
    assert stats(page)["playing"] is None


# -- the control -------------------------------------------------------------------------------


def test_countdown_uses_the_frames_clock(page: Any) -> None:
    """audio_paused_until is taken against the frame's own `now` (the bridge's clock), not the
    browser's: 103 s left shows "Audio paused 1:43" whatever the browser's clock says; without
    `now` the browser's clock is used; null hides it; it goes by itself when the pause ends."""
    update(page, {"sounding": None, "audio_paused_until": T0 + 103_000, "now": T0})
    shown = control(page)
    assert shown["countdown"] == f"{AUDIO_TEXT['paused']} 1:43" and shown["countdownShown"]
    browser_now = page.evaluate("Date.now()")
    update(page, {"sounding": None, "audio_paused_until": browser_now + 65_000})
    assert control(page)["countdown"] in (
        f"{AUDIO_TEXT['paused']} 1:05",
        f"{AUDIO_TEXT['paused']} 1:04",
    )
    update(page, {"sounding": None, "audio_paused_until": None, "now": T0})
    assert not control(page)["countdownShown"]
    update(page, {"sounding": None, "audio_paused_until": T0 + 1200, "now": T0})
    assert control(page)["countdown"] == f"{AUDIO_TEXT['paused']} 0:02"
    wait_js(
        page,
        "(id) => document.getElementById(id).hidden",
        5,
        ids.AUDIO_COUNTDOWN,
    )
    assert stats(page)["pause_left_ms"] == 0


def test_pause_button_sends_through_the_registered_sender(page: Any) -> None:
    """The pause button hands {"type": "audio_pause", "seconds": AUDIO_PAUSE_MAX} to the sender
    the page registered; with none, or one that could not send, it says so; error() shows a
    refusal."""
    assert page.text_content(f"#{ids.AUDIO_PAUSE}") == "Pause audio 2 min"
    page.click(f"#{ids.AUDIO_PAUSE}")
    assert control(page)["message"] == AUDIO_TEXT["not_sent"]
    page.evaluate(
        "() => { window.sent = []; window.hrdashAudio.setSender((m) => { window.sent.push(m);"
        " return true; }); }"
    )
    page.click(f"#{ids.AUDIO_PAUSE}")
    assert page.evaluate("window.sent") == [
        {"type": "audio_pause", "seconds": int(AUDIO_PAUSE_MAX)}
    ]
    page.evaluate("() => window.hrdashAudio.error('audio_pause: refused: <b>x</b>')")
    assert control(page)["message"] == "audio_pause: refused: <b>x</b>"  # as text


def test_sound_on_once_the_context_runs(page: Any) -> None:
    """With autoplay allowed the context runs on the first update: the control says so."""
    update(page, {"sounding": None})
    wait_running(page)
    page.wait_for_function(
        "(id) => document.getElementById(id).dataset.sound === 'on'", arg=ids.AUDIO
    )
    update(page, {"sounding": None})
    shown = control(page)
    assert (shown["sound"], shown["enable"]) == ("on", AUDIO_TEXT["on"])


def test_without_a_click_the_prompt_shows_and_nothing_plays(gesture_page: Any) -> None:
    """Default autoplay policy: the control asks "Alarm sound is off — click to enable" and a
    sounding priority schedules nothing; a click on the prompt starts the context, the control
    says "Sound on" and what is sounding plays at once."""
    page = fresh(gesture_page)
    update(page, {"sounding": "high"})
    page.wait_for_timeout(300)
    page.evaluate("() => window.hrdashAudio.update({sounding: 'high'})")
    shown = control(page)
    assert (shown["sound"], shown["enable"]) == ("off", AUDIO_TEXT["off"])
    assert AUDIO_TEXT["off"] == "Alarm sound is off \u2014 click to enable"
    assert page.evaluate("window.hrdashAudio.enabled()") is False
    got = stats(page)
    assert (got["context"], got["playing"], got["scheduled"]) == ("suspended", None, 0)
    page.click(f"#{ids.AUDIO_ENABLE}")
    wait_running(page)
    page.wait_for_function(
        "(id) => document.getElementById(id).dataset.sound === 'on'", arg=ids.AUDIO
    )
    assert control(page)["enable"] == AUDIO_TEXT["on"]
    wait_js(page, "() => window.oscillators.length >= 10", 5)
    assert stats(page)["playing"] == "high"
