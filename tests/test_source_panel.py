"""The Source panel, end to end: `python app.py` in a subprocess, the page in headless Chromium.

The panel is fed by the bridge's status frames only (no Dash request), shows the redacted service
URL, the counters, the mapping and the last raw frame, and renders hostile upstream text as text.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from hrdash import ids
from hrdash.layout import PLACEHOLDER
from tests.support import (
    Running,
    app_command,
    chromium_page,
    hrdash_running,
    poll,
    start_hrdash,
    stop,
    wait_js,
    watch,
)

pytestmark = pytest.mark.browser

# Every field of the panel by its clientside name, plus the reason table and the summary.
PANEL_JS = """
(ids) => {
  const text = (id) => document.getElementById(id)?.textContent ?? null;
  const out = {};
  for (const [name, id] of Object.entries(ids)) out[name] = text(id);
  const panel = document.getElementById(ids.panel);
  out.open = panel ? panel.open : null;
  out.summary = panel?.querySelector('summary')?.textContent ?? null;
  out.reasons = Object.fromEntries(
    [...document.querySelectorAll(`#${ids.reasons} tr[data-reason]`)]
      .map((tr) => [tr.cells[0].textContent, Number(tr.cells[1].textContent)]));
  return out;
}
"""
XSS_IMG = "<img src=x onerror=window.__xss=1>"
XSS_SCRIPT = "<script>window.__xss=1</script>"
EMPTY = PLACEHOLDER  # what a field shows before it has a value


def panel(page: Any) -> dict[str, Any]:
    return dict(page.evaluate(PANEL_JS, ids.SOURCE_IDS))


def wait_panel(page: Any, predicate: Any, timeout: float, what: str) -> dict[str, Any]:
    """Poll the panel until ``predicate`` holds; fail with what it shows."""
    return poll(page, panel, predicate, timeout, what)


def open_panel(page: Any) -> None:
    page.click(f"#{ids.SOURCE_PANEL} > summary")
    assert page.evaluate(f"document.getElementById('{ids.SOURCE_PANEL}').open") is True


@pytest.fixture(scope="module")
def python_app() -> Iterator[Running]:
    with hrdash_running(app_command()) as running:
        yield running


def test_panel_shows_the_simulator_source(python_app: Running) -> None:
    """Opened, the panel shows the simulator's URL, state live, growing counters, the default
    mapping, the last raw frame as JSON and that no history is kept; six more frames shown
    while open cost no Dash request."""
    python_app.wait_readings(4)
    with chromium_page() as page:
        requests, errors = watch(page)
        page.goto(python_app.url)
        closed = wait_panel(
            page, lambda p: "live" in (p["summary"] or ""), 15, "the summary to say live"
        )
        assert closed["open"] is False
        # Closed, the body is never touched: the fields still hold their placeholders.
        assert closed["url"] == closed["frames"] == closed["map_value"] == EMPTY, closed
        assert closed["last_frame"] == ""
        assert closed["summary"].startswith("Source — Embedded simulator · live"), closed
        open_panel(page)
        first = wait_panel(page, lambda p: p["url"] != EMPTY, 5, "the source detail")
        assert first["url"] == f"ws://127.0.0.1:{python_app.simulator_port}/"
        assert first["state"] == "live"
        assert "for " in first["since"], first["since"]
        assert first["map_value"] == "value"
        assert first["map_time"] == "time"
        assert first["map_transform"] == "none"
        assert first["rejected"] == "0"
        frame = json.loads(first["last_frame"])
        assert set(frame) >= {"time", "value"}, frame
        assert first["last_frame_at"].startswith("received "), first["last_frame_at"]
        assert first["history"] == "off (HRDASH_DB=:memory:)"  # the test session keeps none

        requests.clear()
        later = wait_panel(
            page,
            lambda p: (
                int(p["frames"]) >= int(first["frames"]) + 6
                and int(p["accepted"]) >= int(first["accepted"]) + 6
            ),
            10,
            "six more frames received and accepted",
        )
        assert requests == [], requests
        assert later["last_frame"] != first["last_frame"]
        assert json.loads(later["last_frame"])["time"] > frame["time"]
        assert errors == [], errors

        # Closed again: the bridge stops sending the detail (the page asked it to).
        page.click(f"#{ids.SOURCE_PANEL} > summary")
        wait_js(
            page,
            "!window.hrdashCore.state.status || !window.hrdashCore.state.status.source_detail",
            5,
        )


def test_panel_resubscribes_after_the_bridge_restarts(python_app: Running) -> None:
    """The detail subscription is per connection: with the panel open, a restarted bridge (new
    connection) sends source_detail again because the page asks again."""
    python_app.wait_readings(4)
    with chromium_page() as page:
        page.goto(python_app.url)
        wait_panel(page, lambda p: "live" in (p["summary"] or ""), 15, "live")
        open_panel(page)
        wait_panel(page, lambda p: p["url"] != EMPTY, 5, "the source detail")
        old_run = page.evaluate("window.hrdashCore.state.status.run")
        python_app.child("bridge").kill()
        wait_js(
            page,
            """(run) => {
                const s = window.hrdashCore.state.status;
                return s && s.run !== run && s.source_detail && s.upstream === 'live';
            }""",
            20,
            arg=old_run,
        )
        before = int(panel(page)["frames"])
        wait_panel(page, lambda p: int(p["frames"]) > before, 5, "the frame count to grow")


class ScriptedUpstream:
    """A heart-rate service on 127.0.0.1 (port 0), in a thread with its own asyncio loop: one
    valid frame, then ``bad`` frames 0.3 s apart (on the first connection only), then a valid
    frame every 0.5 s. Runs at most ``seconds``."""

    def __init__(self, bad: list[str], seconds: float = 120.0) -> None:
        self.bad = bad
        self.seconds = seconds
        self.port = 0
        self.connections = 0
        self._ready = threading.Event()
        self._loop = asyncio.new_event_loop()
        self._stopped: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, name="scripted-upstream", daemon=True)

    def __enter__(self) -> ScriptedUpstream:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("scripted upstream did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._stopped is not None:
            self._loop.call_soon_threadsafe(self._stopped.set)
        self._thread.join(10)

    def _run(self) -> None:
        try:
            self._loop.run_until_complete(self._main())
        finally:
            self._loop.close()

    async def _main(self) -> None:
        self._stopped = asyncio.Event()
        async with serve(self._handler, "127.0.0.1", 0) as server:
            self.port = int(server.sockets[0].getsockname()[1])
            self._ready.set()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.seconds):
                    await self._stopped.wait()

    async def _handler(self, ws: ServerConnection) -> None:
        self.connections += 1
        first = self.connections == 1

        def valid(bpm: int) -> str:
            return json.dumps({"time": int(time.time() * 1000), "value": bpm})

        with contextlib.suppress(ConnectionClosed):
            await ws.send(valid(72))
            for data in self.bad if first else []:
                await asyncio.sleep(0.3)
                await ws.send(data)
            for i in range(int(self.seconds * 2)):
                await asyncio.sleep(0.5)
                await ws.send(valid(70 + (i * 7) % 11))


def test_panel_renders_hostile_upstream_as_text() -> None:
    """Markup from upstream (in a value, and as a non-JSON frame) shows as literal text, runs
    nothing, and the page never contains the upstream URL's password or token."""
    hostile = [json.dumps({"value": XSS_IMG, "time": 1}), XSS_SCRIPT]
    with ScriptedUpstream(hostile) as upstream:
        url = f"ws://user:pw-7Qx2v@127.0.0.1:{upstream.port}/hr?token=s3cret"
        running = start_hrdash(app_command(), {"HRDASH_UPSTREAM_URL": url})
        try:
            running.wait_readings(3)
            with chromium_page() as page:
                requests, errors = watch(page)
                page.goto(running.url)
                wait_panel(page, lambda p: "live" in (p["summary"] or ""), 15, "live")
                assert len(requests) == 1, requests  # the page load's routing (Dash pages)
                requests.clear()
                open_panel(page)
                shown = wait_panel(
                    page,
                    lambda p: (
                        p["rej_frame"] == XSS_SCRIPT
                        and p["reasons"].get("not_numeric") == 1
                        and p["reasons"].get("not_json") == 1
                    ),
                    10,
                    "both rejections and the rejected frame",
                )
                assert shown["rejected"] == "2"
                assert shown["rej_reason"] == "not_json"
                assert shown["rej_detail"] not in ("", EMPTY)
                assert shown["url"] == f"ws://***@127.0.0.1:{upstream.port}/hr?token=***"
                assert shown["state"] == "live"
                assert set(json.loads(shown["last_frame"])) == {"time", "value"}
                # Later status frames re-render the panel (its counters move on).
                wait_panel(
                    page,
                    lambda p: int(p["frames"]) >= int(shown["frames"]) + 2,
                    5,
                    "the panel re-rendered by later status frames",
                )
                inside = page.evaluate(
                    "(id) => document.getElementById(id).querySelectorAll('script, img').length",
                    ids.SOURCE_PANEL,
                )
                assert inside == 0
                assert page.evaluate("typeof window.__xss") == "undefined"
                html = page.content()
                assert "pw-7Qx2v" not in html  # the password (distinct: never there by chance)
                assert "s3cret" not in html
                assert XSS_SCRIPT not in html  # only ever escaped: &lt;script&gt;
                assert requests == [], requests
                assert errors == [], errors
        finally:
            leftovers = stop(running)
        assert leftovers == [], f"processes left behind: {leftovers}"


SHOTS = {"source-panel.png": (1280, 900), "source-panel-phone.png": (390, 844)}


def make_screenshots() -> None:
    """Screenshots of the open panel (desktop and phone) into assets/screenshots/, against a
    scripted service that sends a few typical bad frames: `python -m tests.test_source_panel`."""
    from tests.support import ROOT

    out = ROOT / "assets" / "screenshots"
    bad = [
        json.dumps({"time": int(time.time() * 1000), "value": "--"}),
        "upstream overloaded, retry later",
        json.dumps({"time": int(time.time() * 1000), "value": 0}),
        json.dumps({"time": int(time.time() * 1000), "value": "n/a"}),
    ]
    with ScriptedUpstream(bad) as upstream:
        url = f"ws://127.0.0.1:{upstream.port}/heartrate?token=s3cret"
        running = start_hrdash(app_command(), {"HRDASH_UPSTREAM_URL": url})
        try:
            running.wait_readings(24)
            for name, (width, height) in SHOTS.items():
                with chromium_page(width, height) as page:
                    page.goto(running.url)
                    wait_js(
                        page,
                        "document.querySelectorAll('#hr-table .ag-center-cols-container .ag-row')"
                        ".length >= 20",
                        15,
                    )
                    open_panel(page)
                    wait_panel(page, lambda p: p["url"] != EMPTY, 5, "the source detail")
                    page.wait_for_timeout(1500)
                    page.screenshot(path=str(out / name), full_page=True)
                    print(f"wrote {out / name}")
        finally:
            stop(running)


if __name__ == "__main__":
    make_screenshots()


def test_panel_says_when_the_history_is_not_recorded(tmp_path: Any) -> None:
    """A history file that is not a database: the monitor stays live, the panel's History line
    says it is not recording and why (marked as a fault), readings wait, and the file's bytes
    are left as they were."""
    path = tmp_path / "history.db"
    garbage = b"not a database " * 4000
    path.write_bytes(garbage)
    with hrdash_running(app_command(), {"HRDASH_DB": str(path)}) as running:
        running.wait_readings(4)
        with chromium_page() as page:
            page.goto(running.url)
            open_panel(page)
            shown = wait_panel(
                page,
                lambda p: (p["history"] or "").startswith("not recording"),
                10,
                "the History line to say it is not recording",
            )
            assert shown["state"] == "live", shown
            line = shown["history"]
            assert f"not recording to {path} — file is not a database (since " in line, line
            assert "readings waiting" in line, line
            classes = page.evaluate(
                "(id) => document.getElementById(id).className", ids.SOURCE_HISTORY
            )
            assert "hr-state--down" in classes.split(), classes
    assert path.read_bytes() == garbage
