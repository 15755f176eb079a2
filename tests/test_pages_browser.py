"""The station and the monitors in a real Chromium, against `python app.py` with 3 simulated
patients: the tiles at /, a tile opening its patient's monitor (its socket on that patient's
feed), the way back, and an unknown patient."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from hrdash import ids
from tests.support import (
    Running,
    app_command,
    chromium_page,
    get_json,
    hrdash_running,
    poll,
    wait_js,
)

pytestmark = pytest.mark.browser

PATIENTS = ["bed-01", "bed-02", "bed-03"]

# The monitor's table rows as (seq, bpm).
ROWS_JS = """(table) => ({rows: [...document.querySelectorAll(
    `#${table} .ag-center-cols-container .ag-row`)].map((row) => [
        Number(row.querySelector('[col-id="seq"]')?.textContent),
        Number(row.querySelector('[col-id="bpm"]')?.textContent)])})"""

TILES_JS = """() => Array.from(document.querySelectorAll('[data-patient]')).map(e => ({
    id: e.id, patient: e.dataset.patient, href: e.getAttribute('href'),
    state: e.dataset.state, alarm: e.dataset.alarm, tag: e.tagName,
}))"""


@pytest.fixture(scope="module")
def ward() -> Iterator[Running]:
    with hrdash_running(
        app_command(), {"HRDASH_SIMULATOR_PATIENTS": str(len(PATIENTS))}
    ) as running:
        yield running


def _patient_of(frame: Any) -> Any:
    """The ``patient`` of a frame the bridge sent (Playwright hands text frames as str)."""
    return json.loads(frame).get("patient") if isinstance(frame, str) else None


def _tiles(page: Any) -> list[dict[str, Any]]:
    wait_js(
        page, f"() => document.querySelectorAll('[data-patient]').length === {len(PATIENTS)}", 20
    )
    return list(page.evaluate(TILES_JS))


def test_station_tile_opens_the_monitor_and_back(ward: Running) -> None:
    """/ shows one tile per patient (links to /patient/<id>); clicking Bed 2's opens
    /patient/bed-02, whose socket asks for patient=bed-02 and whose table shows bed-02's
    readings as the bridge holds them, every frame naming bed-02; "← Station" returns to the
    tiles. Each page has its title."""
    with chromium_page(1920, 1080) as page:
        sockets: list[str] = []
        patients_seen: set[Any] = set()  # the "patient" of every frame on a monitor's socket

        def on_socket(ws: Any) -> None:
            sockets.append(ws.url)
            if "station=1" not in ws.url:
                ws.on("framereceived", lambda frame: patients_seen.add(_patient_of(frame)))

        page.on("websocket", on_socket)
        page.goto(ward.url)
        tiles = _tiles(page)
        assert [t["patient"] for t in tiles] == PATIENTS
        assert [t["id"] for t in tiles] == [ids.tile(p) for p in PATIENTS]
        assert [t["href"] for t in tiles] == [f"/patient/{p}" for p in PATIENTS]
        assert {t["tag"] for t in tiles} == {"A"}
        wait_js(page, "() => document.title === 'Station — hrdash'", 10)

        page.click(f"#{ids.tile('bed-02')}")
        page.wait_for_url(f"{ward.url}patient/bed-02")
        wait_js(page, "() => document.title === 'Bed 2 — hrdash'", 10)
        assert page.text_content(f"#{ids.PATIENT_NAME}") == "Bed 2"
        assert page.evaluate("document.querySelectorAll('[data-patient]').length") == 0

        def monitor_socket(shown: dict[str, Any]) -> bool:
            return any("patient=bed-02" in url for url in shown["sockets"])

        poll(page, lambda _: {"sockets": list(sockets)}, monitor_socket, 15, "the monitor's socket")
        url = urlsplit(next(u for u in sockets if "patient=bed-02" in u))
        assert (url.scheme, url.port, url.path) == ("ws", ward.bridge_port, "/ws")
        query = parse_qs(url.query)
        assert (query["patient"], query["overlap"]) == (["bed-02"], ["1"])
        shown = poll(
            page,
            lambda p: p.evaluate(ROWS_JS, ids.TABLE),
            lambda shown: len(shown["rows"]) >= 3,
            20,
            "readings on Bed 2's monitor",
        )
        # They are Bed 2's: each (seq, bpm) shown is one the bridge holds for bed-02.
        held = get_json(f"http://127.0.0.1:{ward.bridge_port}/readings?patient=bed-02")
        bridge = {(r["seq"], r["bpm"]) for r in held["readings"]}
        assert {(seq, bpm) for seq, bpm in shown["rows"]} <= bridge, (shown, held)
        assert patients_seen == {"bed-02"}, patients_seen

        page.click(f"#{ids.BACK_LINK}")
        page.wait_for_url(ward.url)
        assert [t["patient"] for t in _tiles(page)] == PATIENTS
        wait_js(page, "() => document.title === 'Station — hrdash'", 10)


def test_unknown_patient_says_so(ward: Running) -> None:
    """/patient/<unknown> says "No patient <id>" and links to the station."""
    with chromium_page() as page:
        page.goto(f"{ward.url}patient/bed-99")
        wait_js(page, "(id) => document.getElementById(id) !== null", 20, ids.NOT_FOUND)
        assert "No patient bed-99" in (page.text_content(f"#{ids.NOT_FOUND}") or "")
        page.click(f"#{ids.BACK_LINK}")
        page.wait_for_url(ward.url)
        assert len(_tiles(page)) == len(PATIENTS)
