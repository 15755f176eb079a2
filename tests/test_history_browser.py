"""The Session card in a real Chromium, against `python app.py` with a history file: the range
chosen on the card decides what is summarised, and Download CSV saves the same file as the
readings.csv route for that range."""

from __future__ import annotations

import time
import urllib.request
from pathlib import Path

import pytest

from hrdash import ids
from tests.support import app_command, chromium_page, free_port, hrdash_running, wait_js
from tests.test_history import Row, fill

pytestmark = pytest.mark.browser

PATIENT = "patient-1"  # the one patient of HRDASH_UPSTREAM_URL
MINUTE = 60_000


def test_session_card_summarises_and_downloads_the_chosen_range(tmp_path: Path) -> None:
    """With readings stored 5 to 6 h and 19 to 20 h ago (and none since: the service is down),
    the card says there is nothing in the last hour, counts the first block for 8 h and both
    for 24 h and for everything stored; Download CSV saves readings.csv of the chosen range,
    byte for byte."""
    now = int(time.time() * 1000)
    recent: list[Row] = [(now - 6 * 60 * MINUTE + i * 10_000, 60 + i % 40) for i in range(360)]
    older: list[Row] = [(now - 20 * 60 * MINUTE + i * 10_000, 100 + i % 20) for i in range(360)]
    path = tmp_path / "history.db"
    fill(path, {PATIENT: older + recent})
    env = {
        "HRDASH_DB": str(path),
        "HRDASH_UPSTREAM_URL": f"ws://127.0.0.1:{free_port()}/",  # nobody listens: no readings
    }
    summary = f"#{ids.SESSION_SUMMARY}"
    with hrdash_running(app_command(), env) as running, chromium_page() as page:
        page.goto(running.url)
        page.wait_for_selector(f"#{ids.SESSION_SUMMARY_BUTTON}")

        def summarise(label: str) -> str:
            """Choose ``label``, press Summarise and return the new summary (each differs from
            the one before)."""
            before = page.inner_text(summary)
            page.locator(f"#{ids.SESSION_RANGE} label", has_text=label).click()
            page.click(f"#{ids.SESSION_SUMMARY_BUTTON}")
            changed = f"(b) => document.querySelector('{summary}').textContent !== b"
            wait_js(page, changed, 10, arg=before)
            return str(page.inner_text(summary))

        assert summarise("1 h") == "No readings stored in the last 1 h."
        everything = summarise("All stored")
        assert everything.startswith("720 readings over 15.0 h") and "max 119 bpm" in everything
        assert summarise("8 h").startswith("360 readings over 59.8 min")
        assert summarise("24 h") == everything

        page.locator(f"#{ids.SESSION_RANGE} label", has_text="8 h").click()
        with page.expect_download() as info:
            page.click(f"#{ids.SESSION_EXPORT_BUTTON}")
        download = info.value
        name = download.suggested_filename
        assert name.startswith(f"hrdash-{PATIENT}-") and name.endswith(".csv")
        start, end = (int(part) for part in name.removesuffix(".csv").split("-")[-2:])
        assert end - start == 8 * 60 * MINUTE
        saved = Path(download.path()).read_text()
        url = f"{running.url}api/patients/{PATIENT}/readings.csv?from={start}&to={end}"
        with urllib.request.urlopen(url, timeout=10) as answer:
            assert saved == answer.read().decode()
        assert saved.count("\n") == 1 + len(recent)
