"""The Alarms panel's client (``assets/alarm_panel.js``) in real Chromium, function by function
and through its DOM: alarm frames in (read from the page's socket itself), the list, the
Acknowledge buttons and the limits editor, messages out on the socket.

One blank page for the module (served on 127.0.0.1 by a real websockets server, which also
sends back what a socket sends it) with a stub of what Dash's renderer puts on
``window.dash_clientside`` (``no_update``, a recording ``set_props``), the panel's markup with
the contract's ids, and the very ``hrdash.js`` (the socket's state) and ``alarm_panel.js`` the
app serves, evaluated afresh for every test. The config is the one Python builds
(:func:`alarm_panel.config`). Only the clock is faked (``Date.now``), and only where a test
sets it; the log's ``fetch`` is a counting stand-in here (the route itself is tested in
test_alarm_panel.py, and the page asking it in test_alarm_panel_browser.py).
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.http11 import Request, Response

from hrdash import alarms, ids
from hrdash.callbacks import alarm_panel
from hrdash.layout import PLACEHOLDER as DASH
from hrdash.webapp import ASSETS
from tests.support import chromium_page

pytestmark = pytest.mark.browser

BLANK = b"<!doctype html><html><head></head><body></body></html>"
PATIENT = "bed-01"
PANEL_JS = ASSETS / "alarm_panel.js"
HRDASH_JS = ASSETS / "hrdash.js"
T0 = 1_764_400_000_000
CONFIG = alarm_panel.config(PATIENT)
PAGE_CONFIG = {"patient": PATIENT, "prefix": "/", "window": 20, "ids": {"ws": ids.WS}}
LIMITS = {"extreme_low": 40, "low": 50, "high": 120, "extreme_high": 150}

HARNESS_JS = """
(() => {
  const dc = (window.dash_clientside = window.dash_clientside || {});
  Object.defineProperty(dc, 'no_update', {
    value: {description: 'Return to prevent updating an Output.'}, writable: false});
  window.setPropsCalls = [];
  dc.set_props = (id, props) => { window.setPropsCalls.push([id, props]); };
  // The fake clock: Date.now() is `fakeNow` when a test sets it, else the real one.
  const realNow = Date.now;
  window.fakeNow = null;
  Date.now = () => (window.fakeNow === null ? realNow() : window.fakeNow);
  // The messages sent on the socket (set_props of hr-ws's `send`), parsed.
  window.sent = () => window.setPropsCalls
    .filter(([id, p]) => id === 'hr-ws' && p.send !== undefined)
    .map(([, p]) => JSON.parse(p.send));
  // A socket message event, as the panel's listener on the page's socket gets it.
  window.deliver = (frame) => window.hrdashAlarms.onSocketMessage(
    new MessageEvent('message', {data: JSON.stringify(frame)}));
})();
"""


def markup() -> str:
    """The panel's elements with the contract's ids (what hrdash/callbacks/alarm_panel.py
    lays out), without Dash's wrappers."""
    fields = "".join(
        f'<label><input id="{ids.limit_input(n)}" type="number"></label>'
        for n in alarms.LIMIT_ORDER
    )
    return (
        f'<section id="{ids.ALARMS}" data-alarm="none">'
        f'<ul id="{ids.ALARM_CURRENT}"></ul><div id="{ids.ALARM_MESSAGE}" hidden></div>'
        f'<div id="{ids.LIMITS}">{fields}<button id="{ids.LIMITS_APPLY}">Apply</button>'
        f'<span id="{ids.LIMITS_MESSAGE}"></span></div>'
        f'<table id="{ids.ALARM_LOG}"><thead></thead><tbody></tbody></table>'
        f'<div id="{ids.ALARM_LOG_STATUS}"></div></section>'
    )


RESET_JS = """
([panel, core, html, config, pageConfig]) => {
  const old = window.hrdashAlarms && window.hrdashAlarms.state;
  if (old) {
    if (old.ticker !== null) clearInterval(old.ticker);
    if (old.logTimer !== null) clearTimeout(old.logTimer);
    if (old.pending) clearTimeout(old.pending.timer);
  }
  document.body.innerHTML = html;
  for (const source of [core, panel]) {
    const script = document.createElement('script');
    script.textContent = source;
    document.head.appendChild(script);
    script.remove();
  }
  window.setPropsCalls = [];
  window.fakeNow = null;
  window.fetchedLogs = 0;
  window.fetch = () => { window.fetchedLogs += 1; return Promise.resolve(
    new Response('[]', {headers: {'Content-Type': 'application/json'}})); };
  window.hrdashCore.state.readyState = 1; // the page's socket is open
  window.dash_clientside.hrdash.alarm_panel_start(config, pageConfig);
}
"""


@pytest.fixture(scope="module")
def echo() -> Iterator[str]:
    """A websockets server on 127.0.0.1 (in a thread) that sends back every message, and
    serves the blank page at /patient/bed-01 (Chromium lets a page open sockets to 127.0.0.1
    only from a local origin). Yields its base URL, http://127.0.0.1:PORT."""

    async def handler(ws: ServerConnection) -> None:
        async for message in ws:
            await ws.send(message)

    def page_or_socket(connection: ServerConnection, request: Request) -> Response | None:
        if request.headers.get("Upgrade", "").lower() == "websocket":
            return None
        headers = Headers([("Content-Type", "text/html; charset=utf-8")])
        return Response(200, "OK", headers, BLANK)

    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()

    async def start() -> Server:
        return await serve(handler, "127.0.0.1", 0, process_request=page_or_socket)

    server = asyncio.run_coroutine_threadsafe(start(), loop).result(10)
    port = next(iter(server.sockets)).getsockname()[1]
    try:
        yield f"127.0.0.1:{port}"
    finally:

        async def stop() -> None:
            server.close()
            await server.wait_closed()

        asyncio.run_coroutine_threadsafe(stop(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


@pytest.fixture(scope="module")
def browser_page(echo: str) -> Iterator[Any]:
    with chromium_page() as page:
        page.goto(f"http://{echo}/patient/{PATIENT}")
        page.add_script_tag(content=HARNESS_JS)
        yield page


@pytest.fixture
def page(browser_page: Any) -> Iterator[Any]:
    """The module's page with the panel's markup and freshly evaluated scripts, started."""
    errors: list[str] = []

    def on_error(error: Any) -> None:
        errors.append(str(error))

    browser_page.on("pageerror", on_error)
    browser_page.evaluate(
        RESET_JS,
        [PANEL_JS.read_text(), HRDASH_JS.read_text(), markup(), CONFIG, PAGE_CONFIG],
    )
    yield browser_page
    browser_page.remove_listener("pageerror", on_error)
    assert errors == [], errors


def alarm(kind: str, state: str = "active", since: int = T0, **fields: Any) -> dict[str, Any]:
    """An ALARM as the engine gives it (hrdash.alarms.PatientAlarms.alarms)."""
    value, limit = {
        "hr_low": (44, 50),
        "hr_high": (131, 120),
        "hr_extreme_low": (35, 40),
        "hr_extreme_high": (162, 150),
        "no_signal": (None, 10.0),
        "source_down": (None, 10.0),
    }[kind]
    return {
        "id": f"{PATIENT}:{kind}:{since}",
        "patient": PATIENT,
        "kind": kind,
        "priority": alarms.PRIORITY[kind],
        "state": state,
        "since": since,
        "ended": None,
        "value": value,
        "limit": limit,
        **fields,
    }


def frame(*items: dict[str, Any], limits: dict[str, float] | None = None, **extra: Any) -> Any:
    """An alarm frame as the bridge sends it to the patient's viewers."""
    return {
        "type": "alarm",
        "patient": PATIENT,
        "alarms": list(items),
        "limits": LIMITS if limits is None else limits,
        "sounding": None,
        "audio_paused_until": None,
        **extra,
    }


def deliver(page: Any, message: dict[str, Any]) -> None:
    page.evaluate("(f) => window.deliver(f)", message)


def shown(page: Any) -> dict[str, Any]:
    return dict(
        page.evaluate(
            """() => ({
          panel: document.getElementById('hr-alarms').getAttribute('data-alarm'),
          items: Array.from(document.querySelectorAll('#hr-alarm-current > li')).map((li) => ({
            id: li.getAttribute('data-alarm-id'), state: li.getAttribute('data-state'),
            priority: li.getAttribute('data-priority'), text: li.textContent,
            ack: !!li.querySelector('button.hr-ack[data-alarm-id]')})),
          limitsMessage: document.getElementById('hr-limits-message').textContent,
          alarmMessage: document.getElementById('hr-alarm-message').textContent,
        })"""
        )
    )


def sent(page: Any) -> list[dict[str, Any]]:
    return list(page.evaluate("window.sent()"))


# -- pure helpers ------------------------------------------------------------------------------


def call(page: Any, name: str, *args: Any) -> Any:
    return page.evaluate("([name, args]) => window.hrdashAlarms[name](...args)", [name, list(args)])


@pytest.mark.parametrize(
    ("texts", "message"),
    [
        ({"extreme_low": 40, "low": 50, "high": 120, "extreme_high": 150}, None),
        ({"extreme_low": 20, "low": 50.5, "high": 120, "extreme_high": 300}, None),
        ({"extreme_low": 19, "low": 50, "high": 120, "extreme_high": 150},
         "extreme_low: expected 20-300 bpm, got 19"),
        ({"extreme_low": 40, "low": 50, "high": 120, "extreme_high": 301},
         "extreme_high: expected 20-300 bpm, got 301"),
        ({"extreme_low": 40, "low": 50, "high": 50, "extreme_high": 150},
         "high: expected more than low (50), got 50"),
        ({"extreme_low": 55, "low": 50, "high": 120, "extreme_high": 150},
         "low: expected more than extreme_low (55), got 50"),
        ({"extreme_low": 40, "low": 50, "high": 160, "extreme_high": 150},
         "extreme_high: expected more than high (160), got 150"),
        ({"extreme_low": "", "low": 50, "high": 120, "extreme_high": 150},
         "extreme_low: expected a number"),
        ({"extreme_low": 40, "low": "5O", "high": 120, "extreme_high": 150},
         "low: expected a number"),
    ],
)  # fmt: skip
def test_check_limits_follows_the_python_rules(
    page: Any, texts: dict[str, Any], message: str | None
) -> None:
    """The page's check refuses what hrdash.alarms.Limits.check refuses, with the same one-line
    message, and accepts what it accepts."""
    got = call(page, "checkLimits", {k: str(v) for k, v in texts.items()}, CONFIG)
    numbers = {k: v for k, v in texts.items() if isinstance(v, int | float)}
    if message is None:
        assert got == {"ok": True, "limits": {k: float(v) for k, v in texts.items()}}
        alarms.Limits.from_mapping(numbers)
    else:
        assert got == {"ok": False, "field": message.split(":")[0], "message": message}
        if len(numbers) == len(texts):  # Python's own words for the same numbers
            with pytest.raises(ValueError) as refused:
                alarms.Limits.from_mapping(numbers)
            assert str(refused.value) == message


def test_rows_order_and_text(page: Any) -> None:
    """Current alarms: highest priority first, oldest first within one; marker, label, the
    value against its limit, since (local time) and for how long, the state; an Acknowledge
    button only for active and latched ones; ended ones are not shown."""
    items = [
        alarm("no_signal", since=T0 + 1_000),
        alarm("hr_high", "acknowledged", since=T0 + 2_000),
        alarm("hr_extreme_high", "latched", since=T0 + 5_000),
        alarm("hr_low", "ended", since=T0),
        alarm("hr_extreme_low", since=T0 + 3_000),
    ]
    rows = call(page, "alarmRows", items, CONFIG, T0 + 125_000)
    assert [(r["label"], r["marker"], r["ackable"]) for r in rows] == [
        ("HR extremely low", "***", True),
        ("HR extremely high", "***", True),
        ("HR high", "**", False),
        ("No signal", "*", True),
    ]
    assert [r["valueText"] for r in rows] == [
        "35 bpm < 40",
        "162 bpm > 150",
        "131 bpm > 120",
        "no reading for 10 s",
    ]
    assert rows[1]["forText"] == "for 2 min 0 s"
    local = page.evaluate(
        "(ms) => { const d = new Date(ms); return [d.getHours(), d.getMinutes(), "
        "d.getSeconds()].map((n) => String(n).padStart(2, '0')).join(':'); }",
        T0 + 5_000,
    )
    assert rows[1]["sinceText"] == f"since {local}"
    assert rows[1]["stateText"] == alarm_panel.STATE_LABELS["latched"]
    assert call(page, "highest", rows, CONFIG) == "high"


@pytest.mark.parametrize(
    ("ms", "text"),
    [(-5, "0 s"), (0, "0 s"), (59_999, "59 s"), (60_000, "1 min 0 s"), (3_725_000, "1 h 2 min")],
)
def test_duration_text(page: Any, ms: int, text: str) -> None:
    assert call(page, "durationText", ms) == text


def test_log_cells(page: Any) -> None:
    """A log entry's cells: local date and time, the event in words, the kind's label, the
    priority with its marker, value and limit with units (a limits change: old and new limits),
    the origin or a dash."""
    cells = call(
        page,
        "logCells",
        {"time": T0, "event": "raised", "kind": "hr_extreme_high", "priority": "high",
         "value": 162.25, "limit": 150, "origin": None, "alarm": "x", "patient": PATIENT},
        CONFIG,
    )  # fmt: skip
    assert cells[1:] == ["raised", "HR extremely high", "*** high", "162.3 bpm", "150 bpm", DASH]
    assert cells[0] == page.evaluate("(ms) => window.hrdashAlarms.dateTimeText(ms)", T0)
    change = call(
        page,
        "logCells",
        {"time": T0, "event": "limits_changed", "kind": None, "priority": None,
         "value": LIMITS, "limit": {**LIMITS, "low": 55}, "origin": "http://x:1"},
        CONFIG,
    )  # fmt: skip
    assert change[1:] == [
        "limits changed",
        DASH,
        DASH,
        "40 / 50 / 120 / 150",
        "40 / 55 / 120 / 150",
        "http://x:1",
    ]


# -- the panel through the page's socket ---------------------------------------------------------


def test_alarm_frames_are_drawn(page: Any) -> None:
    """An alarm frame is drawn: one item per current alarm with its marker and label, the
    panel's data-alarm the highest active priority, Acknowledge buttons carrying the alarm's
    id; with no alarm, the empty line."""
    deliver(page, frame(alarm("hr_high", since=T0), alarm("no_signal", since=T0 + 1)))
    view = shown(page)
    assert view["panel"] == "medium"
    assert [(i["priority"], i["state"], i["ack"]) for i in view["items"]] == [
        ("medium", "active", True),
        ("low", "active", True),
    ]
    assert view["items"][0]["text"].startswith("**HR high131 bpm > 120since ")
    deliver(page, frame())
    assert shown(page)["items"] == [
        {"id": None, "state": None, "priority": None, "text": "No alarms", "ack": False}
    ]
    assert shown(page)["panel"] == "none"


def test_frames_are_read_from_the_socket_itself(page: Any, echo: str) -> None:
    """A socket the page opens (as the hr-ws component does, through window.WebSocket) hands
    its alarm and error frames to the panel, even when a readings frame follows within the
    same moment (Dash would hand its callbacks only the last); other frames are left alone.
    The socket is a real one, to a real server on 127.0.0.1 that sends back what it gets."""
    item = alarm("hr_extreme_high")
    got = page.evaluate(
        """async ([url, frames]) => {
          const ws = new WebSocket(url);
          const constants = [WebSocket.CONNECTING, WebSocket.OPEN, WebSocket.CLOSED,
                             ws instanceof WebSocket];
          const late = (what) => new Promise((_, reject) => setTimeout(
            () => reject(new Error('timed out: ' + what)), 5000));
          await Promise.race([new Promise((resolve) => { ws.onopen = resolve; }), late('open')]);
          let n = 0;
          const all = Promise.race([new Promise((resolve) => {
            ws.onmessage = () => { n += 1; if (n === frames.length) resolve(); };
          }), late('the frames back')]);
          for (const f of frames) ws.send(JSON.stringify(f));
          await all;
          ws.close();
          return constants;
        }""",
        [
            f"ws://{echo}/",
            [
                {"type": "status", "run": "r", "upstream": "live"},
                frame(item),
                {"type": "readings", "run": "r", "readings": []},
            ],
        ],
    )
    assert got == [0, 1, 3, True]
    assert [i["id"] for i in shown(page)["items"]] == [item["id"]]
    assert shown(page)["panel"] == "high"


def test_another_patients_frame_is_ignored(page: Any) -> None:
    deliver(page, {**frame(alarm("hr_high")), "patient": "bed-02"})
    assert shown(page)["panel"] == "none"


def test_acknowledge_sends_the_alarm_id(page: Any) -> None:
    """Acknowledge sends {"type": "ack", "alarm": ID} on the page's socket (each message with
    a new nonce) and says so on the button; an ack error frame is shown in the panel and the
    button comes back."""
    item = alarm("hr_extreme_high", "latched")
    deliver(page, frame(item))
    page.click(f"button.hr-ack[data-alarm-id='{item['id']}']")
    assert [{k: v for k, v in m.items() if k != "nonce"} for m in sent(page)] == [
        {"type": "ack", "alarm": item["id"]}
    ]
    assert page.text_content("button.hr-ack") == "Acknowledging…"
    message = "ack: alarm: no active or latched alarm 'x'"
    deliver(page, {"type": "error", "message": message, "request": "ack"})
    view = shown(page)
    assert view["alarmMessage"] == message
    assert view["items"][0]["ack"] is True
    assert page.text_content("button.hr-ack") == "Acknowledge"
    page.click("button.hr-ack")
    nonces = [m["nonce"] for m in sent(page)]
    assert len(nonces) == 2 and nonces[0] != nonces[1]


def fill(page: Any, values: dict[str, Any]) -> None:
    for name, value in values.items():
        page.fill(f"#{ids.limit_input(name)}", str(value))


def test_limits_prefilled_from_the_frame(page: Any) -> None:
    """The four fields get the frame's limits (through set_props, as Dash sets a value), and
    a field typed into keeps what was typed when the next frame comes."""
    deliver(page, frame())
    values = page.evaluate(
        "() => Object.fromEntries(window.setPropsCalls.filter(([id]) => id.startsWith("
        "'hr-limit-')).map(([id, p]) => [id, p.value]))"
    )
    assert values == {ids.limit_input(k): v for k, v in LIMITS.items()}
    page.evaluate("() => { window.setPropsCalls = []; }")
    fill(page, {"low": 45})
    deliver(page, frame(limits={**LIMITS, "low": 48, "high": 115}))
    written = page.evaluate(
        "() => window.setPropsCalls.filter(([id]) => id.startsWith('hr-limit-'))"
        ".map(([id, p]) => [id, p.value])"
    )
    assert written == [[ids.limit_input("extreme_low"), 40], [ids.limit_input("high"), 115],
                       [ids.limit_input("extreme_high"), 150]]  # fmt: skip


def test_a_bad_limit_is_refused_in_the_page(page: Any) -> None:
    """A value the rules refuse gets its one-line message and nothing is sent."""
    deliver(page, frame())
    fill(page, {**LIMITS, "low": 130})
    page.click(f"#{ids.LIMITS_APPLY}")
    assert shown(page)["limitsMessage"] == "high: expected more than low (130), got 120"
    fill(page, {"low": 15})
    page.press(f"#{ids.limit_input('low')}", "Enter")
    assert shown(page)["limitsMessage"] == "low: expected 20-300 bpm, got 15"
    assert sent(page) == []


def test_good_limits_are_sent_and_confirmed_by_the_next_frame(page: Any) -> None:
    """Apply sends all four limits for the page's patient; the message says so once a frame
    carries them; a frame with other limits does not confirm."""
    deliver(page, frame())
    fill(page, {"extreme_low": 35, "low": 45, "high": 130, "extreme_high": 160.5})
    page.click(f"#{ids.LIMITS_APPLY}")
    [message] = sent(page)
    assert {k: v for k, v in message.items() if k != "nonce"} == {
        "type": "limits",
        "patient": PATIENT,
        "extreme_low": 35,
        "low": 45,
        "high": 130,
        "extreme_high": 160.5,
    }
    assert shown(page)["limitsMessage"] == "Applying…"
    deliver(page, frame(alarm("hr_high")))
    assert shown(page)["limitsMessage"] == "Applying…"
    deliver(page, frame(limits={"extreme_low": 35, "low": 45, "high": 130, "extreme_high": 160.5}))
    assert shown(page)["limitsMessage"].startswith("Limits applied at ")


def test_the_bridges_limits_error_is_shown(page: Any) -> None:
    """An error frame answering a limits message is shown on the editor (also from a bridge
    that does not name the request); an error about something else is not."""
    deliver(page, frame())
    fill(page, {**LIMITS, "low": 45})
    page.click(f"#{ids.LIMITS_APPLY}")
    deliver(page, {"type": "error", "message": "audio_pause: refused", "request": "audio_pause"})
    assert shown(page)["limitsMessage"] == "Applying…"
    deliver(page, {"type": "error", "message": "limits: refused: needs an allowed Origin",
                   "request": "limits"})  # fmt: skip
    assert shown(page)["limitsMessage"] == "limits: refused: needs an allowed Origin"
    deliver(page, {"type": "error", "message": "limits: patient: no patient 'x'"})
    assert shown(page)["limitsMessage"] == "limits: patient: no patient 'x'"


def test_unchanged_limits_are_not_sent(page: Any) -> None:
    deliver(page, frame())
    fill(page, LIMITS)
    page.click(f"#{ids.LIMITS_APPLY}")
    assert sent(page) == []
    assert shown(page)["limitsMessage"] == "These are the limits in effect."


def test_upstream_text_stays_text(page: Any) -> None:
    """Strings from the bridge (an unknown kind, an error message) are text, never markup."""
    deliver(page, frame({**alarm("hr_high"), "kind": "<img src=x onerror=alert(1)>"}))
    deliver(page, {"type": "error", "message": "ack: <b>bold</b>", "request": "ack"})
    assert page.evaluate("document.querySelectorAll('#hr-alarms img, #hr-alarms b').length") == 0
    assert "<img src=x onerror=alert(1)>" in shown(page)["items"][0]["text"]


def test_the_log_is_asked_again_a_second_after_a_state_change(page: Any) -> None:
    """The log is fetched on start, then once about LOG_REFETCH_MS after frames that change the
    alarm state (debounced), and not for a frame that changes only a value."""
    page.wait_for_function("window.fetchedLogs === 1")
    deliver(page, frame(alarm("hr_high")))
    deliver(page, frame(alarm("hr_high", value=140)))  # a worse reading: no new log entry
    page.wait_for_timeout(CONFIG["log_refetch_ms"] + 300)
    assert page.evaluate("window.fetchedLogs") == 1
    deliver(page, frame(alarm("hr_high", "acknowledged")))
    page.wait_for_timeout(300)
    deliver(page, frame(alarm("hr_high", "acknowledged"), alarm("no_signal")))
    page.wait_for_timeout(CONFIG["log_refetch_ms"] // 2)
    assert page.evaluate("window.fetchedLogs") == 1
    page.wait_for_function("window.fetchedLogs === 2")
    page.wait_for_timeout(CONFIG["log_refetch_ms"] + 300)
    assert page.evaluate("window.fetchedLogs") == 2


def test_sound_gets_each_alarm_frame_and_sends_its_pause_on_the_socket(page: Any) -> None:
    """With window.hrdashAudio present, each alarm frame's sounding and audio_paused_until go to
    update(), and the sender registered on start sends the pause on the page's socket."""
    page.evaluate(
        """([config, pageConfig]) => {
          window.audioCalls = [];
          window.hrdashAudio = {update: (f) => window.audioCalls.push(f),
                                setSender: (fn) => { window.audioSend = fn; }};
          window.dash_clientside.hrdash.alarm_panel_start(config, pageConfig);
        }""",
        [CONFIG, PAGE_CONFIG],
    )
    deliver(page, frame(alarm("hr_high"), sounding="medium", audio_paused_until=T0 + 60_000))
    assert page.evaluate("window.audioCalls") == [
        {"sounding": "medium", "audio_paused_until": T0 + 60_000}
    ]
    assert page.evaluate("window.audioSend({type: 'audio_pause', seconds: 120})") is True
    assert [{k: v for k, v in m.items() if k != "nonce"} for m in sent(page)] == [
        {"type": "audio_pause", "seconds": 120}
    ]
    deliver(page, frame(now=T0 + 1_000))
    assert page.evaluate("window.audioCalls")[-1] == {
        "sounding": None,
        "audio_paused_until": None,
        "now": T0 + 1_000,
    }
    page.evaluate("window.hrdashCore.state.readyState = 3")
    assert page.evaluate("window.audioSend({type: 'audio_pause', seconds: 120})") is False
    assert len(sent(page)) == 1
    page.evaluate("delete window.hrdashAudio")


def test_nothing_is_sent_while_the_socket_is_not_open(page: Any) -> None:
    """With the page's socket closed, Acknowledge and Apply say that nothing was sent (a
    message is never queued for later)."""
    item = alarm("hr_extreme_high")
    deliver(page, frame(item))
    page.evaluate("window.hrdashCore.state.readyState = 3")
    page.click("button.hr-ack")
    assert shown(page)["alarmMessage"] == "Not connected to the bridge: not sent."
    assert page.text_content("button.hr-ack") == "Acknowledge"
    fill(page, {**LIMITS, "high": 110})
    page.click(f"#{ids.LIMITS_APPLY}")
    assert shown(page)["limitsMessage"] == "Not connected to the bridge: not sent."
    assert sent(page) == []


def test_durations_count_on_the_bridges_clock(page: Any) -> None:
    """A frame's `now` (the bridge's clock) sets the "for …": a browser clock 30 s behind the
    bridge's does not shorten it."""
    page.evaluate(f"window.fakeNow = {T0 + 10_000}")
    deliver(page, frame(alarm("hr_high", since=T0 + 30_000), now=T0 + 40_000))
    assert "for 10 s" in shown(page)["items"][0]["text"]


def test_durations_move_on(page: Any) -> None:
    """The "for …" of each current alarm is rewritten every second."""
    page.evaluate(f"window.fakeNow = {T0 + 10_000}")
    deliver(page, frame(alarm("hr_high", since=T0)))
    assert "for 10 s" in shown(page)["items"][0]["text"]
    page.evaluate(f"window.fakeNow = {T0 + 75_000}")
    page.wait_for_function(
        "document.querySelector('.hr-alarm__for').textContent === 'for 1 min 15 s'",
        timeout=3000,
    )


def test_config_is_json() -> None:
    json.dumps(CONFIG, allow_nan=False)
