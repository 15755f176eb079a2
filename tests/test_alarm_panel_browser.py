"""The monitor's Alarms panel end to end: `python app.py` reading one scripted heart-rate service
(a real websockets server on 127.0.0.1 whose value the test sets), a history file, and the
monitor page in headless Chromium.

The service drives a high-priority alarm (165 bpm beyond the extreme high limit): the panel
shows it and its log entry, Acknowledge acknowledges it on the bridge, a limit the rules refuse
is refused in the page with a message and sends nothing, a good one changes the limits the
bridge's frames carry; and the panel never asks the Dash server per reading.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import json
import os
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import pytest
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from hrdash import ids
from tests.support import (
    Running,
    app_command,
    chromium_page,
    free_port,
    get_json,
    hrdash_running,
    poll,
    scaled,
    watch,
)

pytestmark = pytest.mark.browser

PATIENT = "bed-01"
PERIOD = 0.5  # seconds between readings
SHOTS = os.environ.get("HRDASH_TEST_SHOTS")  # a directory: the test saves its screenshot there

PANEL_JS = """
() => {
  const panel = document.getElementById('hr-alarms');
  const field = (n) => document.getElementById('hr-limit-' + n);
  if (!panel || !field('low')) return {alarm: null, items: [], log: [], limits: [], message: ''};
  return {
    alarm: panel.getAttribute('data-alarm'),
    items: Array.from(panel.querySelectorAll('#hr-alarm-current > li[data-alarm-id]')).map(
      (li) => ({id: li.getAttribute('data-alarm-id'), state: li.getAttribute('data-state'),
                priority: li.getAttribute('data-priority'), text: li.textContent,
                ack: !!li.querySelector('button.hr-ack')})),
    log: Array.from(document.querySelectorAll('#hr-alarm-log tbody tr')).map(
      (tr) => Array.from(tr.cells).map((td) => td.textContent)),
    limits: ['extreme_low', 'low', 'high', 'extreme_high'].map((n) => field(n).value),
    message: document.getElementById('hr-limits-message').textContent,
    sounding: document.getElementById('hr-audio').getAttribute('data-sounding'),
  };
}
"""


class Service:
    """A heart-rate service on 127.0.0.1 in a thread of its own: a reading of ``bpm`` every
    PERIOD to each connection (set ``bpm`` to change what it sends)."""

    def __init__(self, bpm: int) -> None:
        self.bpm = bpm
        self.port = free_port()
        self._loop = asyncio.new_event_loop()
        self._server: Server | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(scaled(10))

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/hr"

    async def _start(self) -> None:
        self._server = await serve(self._handler, "127.0.0.1", self.port)

    async def _handler(self, ws: ServerConnection) -> None:
        with contextlib.suppress(ConnectionClosed):
            while True:
                await ws.send(json.dumps({"time": int(time.time() * 1000), "value": self.bpm}))
                await asyncio.sleep(PERIOD)

    def close(self) -> None:
        async def halt() -> None:
            if self._server is not None:
                self._server.close()
                await self._server.wait_closed()

        asyncio.run_coroutine_threadsafe(halt(), self._loop).result(scaled(10))
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(scaled(10))
        self._loop.close()


@dataclass
class Bed:
    running: Running
    service: Service

    def api(self, path: str) -> Any:
        return get_json(f"http://127.0.0.1:{self.running.bridge_port}{path}")

    def limits(self) -> dict[str, Any]:
        [entry] = [p for p in self.api("/api/patients") if p["id"] == PATIENT]
        return dict(entry["limits"])


@pytest.fixture
def bed(tmp_path: Path) -> Iterator[Bed]:
    service = Service(80)
    try:
        sources = tmp_path / "sources.toml"
        sources.write_text(
            f'[[patient]]\nid = "{PATIENT}"\nname = "Bed 1"\nurl = "{service.url}"\n'
        )
        env = {"HRDASH_SOURCES": str(sources), "HRDASH_DB": str(tmp_path / "h.db")}
        with hrdash_running(app_command(), env) as running:
            yield Bed(running, service)
    finally:
        service.close()


def panel(page: Any) -> dict[str, Any]:
    return dict(page.evaluate(PANEL_JS))


def test_an_alarm_on_the_panel_acknowledged_and_the_limits_edited(bed: Bed) -> None:
    """Normal → 165 bpm: the panel shows the high alarm (*** HR extremely high, flashing ring)
    and the log its raise, and the sound control sounds it; Acknowledge acknowledges it on the
    bridge (logged with the page's origin, the sound stops); low 130 (above high) is refused in
    the page and nothing changes on the bridge; high 110 and extreme high 140 change the limits
    the frames carry. No Dash request per reading meanwhile."""
    with chromium_page(1280, 1300) as page:
        requests, errors = watch(page)
        page.goto(bed.running.url + "patient/" + PATIENT)
        shown = poll(
            page,
            panel,
            lambda s: s["limits"] == ["40", "50", "120", "150"] and s["alarm"] == "none",
            30,
            "the limits of the frame, no alarm",
        )
        assert shown["items"] == []

        bed.service.bpm = 165
        shown = poll(
            page,
            panel,
            lambda s: s["alarm"] == "high" and any(r[1] == "raised" for r in s["log"]),
            20,
            "the high alarm and its log entry",
        )
        [item] = [i for i in shown["items"] if i["priority"] == "high"]
        assert item["text"].startswith("***HR extremely high165 bpm > 150since ")
        assert item["state"] == "active" and item["ack"]
        # The sound control (assets/alarm_sound.js) got the frame: the high alarm sounds.
        poll(page, panel, lambda s: s["sounding"] == "high", 5, "the sound control sounding")
        raised = [r for r in shown["log"] if r[1] == "raised" and r[2] == "HR extremely high"]
        assert raised and raised[0][3:6] == ["*** high", "165 bpm", "150 bpm"]
        if SHOTS:
            page.wait_for_timeout(600)
            page.screenshot(path=str(Path(SHOTS) / "monitor-alarm-panel.png"), full_page=True)
        # No Dash request while the readings and alarm frames came in.
        before = len(requests)
        page.wait_for_timeout(scaled(2) * 1000)
        assert len(requests) == before, requests[before:]

        page.click(f"button.hr-ack[data-alarm-id='{item['id']}']")
        shown = poll(
            page,
            panel,
            lambda s: (
                [i["state"] for i in s["items"] if i["id"] == item["id"]] == ["acknowledged"]
                and any(r[1] == "acknowledged" for r in s["log"])
            ),
            10,
            "the alarm acknowledged, and logged",
        )
        assert not next(i for i in shown["items"] if i["id"] == item["id"])["ack"]
        poll(page, panel, lambda s: s["sounding"] == "none", 5, "silence once acknowledged")
        log = bed.api("/api/alarms/log?patient=" + PATIENT)
        [ack] = [e for e in log if e["event"] == "acknowledged"]
        assert ack["alarm"] == item["id"]
        assert ack["origin"] == bed.running.url.rstrip("/")
        assert next(r for r in shown["log"] if r[1] == "acknowledged")[6] == ack["origin"]
        href = page.get_attribute(f"#{ids.ALARM_EXPORT}", "href")
        with urllib.request.urlopen(urljoin(page.url, href), timeout=scaled(5)) as answer:
            exported = list(csv.DictReader(io.StringIO(answer.read().decode())))
        # The export: the whole log kept, oldest first, this alarm's raise before its ack.
        assert [r["event"] for r in exported if r["alarm"] == item["id"]] == [
            "raised",
            "acknowledged",
        ]
        times = [int(r["time_ms"]) for r in exported]
        assert times == sorted(times)

        page.fill(f"#{ids.limit_input('low')}", "130")
        page.click(f"#{ids.LIMITS_APPLY}")
        assert panel(page)["message"] == "high: expected more than low (130), got 120"
        page.wait_for_timeout(500)
        assert bed.limits() == {"extreme_low": 40, "low": 50, "high": 120, "extreme_high": 150}

        page.fill(f"#{ids.limit_input('low')}", "50")
        page.fill(f"#{ids.limit_input('high')}", "110")
        page.fill(f"#{ids.limit_input('extreme_high')}", "140")
        page.click(f"#{ids.LIMITS_APPLY}")
        shown = poll(
            page,
            panel,
            lambda s: s["message"].startswith("Limits applied"),
            10,
            "the new limits confirmed by a frame",
        )
        assert shown["limits"] == ["40", "50", "110", "140"]
        assert bed.limits() == {"extreme_low": 40, "low": 50, "high": 110, "extreme_high": 140}
        poll(
            page,
            panel,
            lambda s: any(r[1] == "limits changed" for r in s["log"]),
            10,
            "the limits change in the log",
        )
    assert errors == []
