"""Session summary and CSV export over the bridge's buffer (pandas, server side)."""

from __future__ import annotations

import asyncio
import base64
import io

import pandas as pd

from hrdash import history
from hrdash.callbacks import session
from hrdash.settings import Settings
from tests.conftest import StartBridge, Upstream, free_port, wait_for

T0 = 1_764_324_000_000


def readings(bpms: list[int], step_ms: int = 500) -> list[dict[str, int]]:
    return [{"seq": i + 1, "time": T0 + i * step_ms, "bpm": b} for i, b in enumerate(bpms)]


def test_summary_weights_each_reading_by_its_duration() -> None:
    """Share of time below 50 / above 120 bpm counts each reading until the next one."""
    rows = readings([45, 45, 80, 80, 130, 130, 80, 80])
    s = history.summary(history.table(rows))
    assert s["count"] == 8
    assert s["span_s"] == 3.5
    assert (s["min"], s["max"]) == (45, 130)
    assert s["mean"] == sum(r["bpm"] for r in rows) / 8
    assert s["below_pct"] == 25.0
    assert s["above_pct"] == 25.0


def test_summary_of_nothing() -> None:
    """An empty buffer gives a count of zero, not an error."""
    assert history.summary(history.table([])) == {"count": 0}


def test_minute_trend_groups_by_minute() -> None:
    """Readings spread over three minutes give three rows with their own min/mean/max."""
    rows = [
        {"seq": 1, "time": T0, "bpm": 60},
        {"seq": 2, "time": T0 + 30_000, "bpm": 70},
        {"seq": 3, "time": T0 + 60_000, "bpm": 90},
        {"seq": 4, "time": T0 + 150_000, "bpm": 100},
    ]
    trend = history.minute_trend(history.table(rows))
    assert list(trend["count"]) == [2, 1, 1]
    assert list(trend["mean"]) == [65.0, 90.0, 100.0]


def test_csv_round_trips_every_reading() -> None:
    """The CSV holds every reading with its seq, ISO-8601 UTC time to the ms, and bpm."""
    rows = readings([72, 73, 74], step_ms=333)
    text = history.to_csv(history.table(rows))
    back = pd.read_csv(io.StringIO(text))
    assert list(back["seq"]) == [1, 2, 3]
    assert list(back["bpm"]) == [72, 73, 74]
    parsed = pd.to_datetime(back["time"], utc=True).dt.as_unit("ms").astype("int64")
    assert list(parsed) == [r["time"] for r in rows]
    assert back["time"][1].endswith("Z")


def test_unreachable_bridge_is_one_line() -> None:
    """Without a bridge the summary says so in one line, and the export gives nothing."""
    settings = Settings.load(env={}).replace(bridge_port=free_port())
    text = session.summary_text(settings)
    assert text.startswith("cannot reach the bridge at http://127.0.0.1:")
    assert "\n" not in text
    assert session.export(settings) is None


async def test_export_and_summary_from_a_running_bridge(
    upstream: Upstream, start_bridge: StartBridge
) -> None:
    """Against a real bridge, the export holds exactly the readings it keeps and the summary
    counts them."""
    bridge = await start_bridge(upstream.url)
    await upstream.wait_connections(1)
    for i, bpm in enumerate([61, 62, 63, 140]):
        await upstream.send(f'{{"time": {T0 + i * 500}, "value": {bpm}}}')
    await wait_for(lambda: bridge.counters["accepted"] == 4, 5)
    settings = bridge.settings.replace(bridge_port=bridge.port)
    payload = await asyncio.to_thread(session.export, settings)
    assert payload is not None and payload["filename"].endswith(".csv")
    content = payload["content"]
    if payload.get("base64"):
        content = base64.b64decode(content).decode()
    back = pd.read_csv(io.StringIO(content))
    assert list(back["bpm"]) == [61, 62, 63, 140]
    text = await asyncio.to_thread(session.summary_text, settings)
    assert text.startswith("4 readings over 0.0 min")
    assert "max 140 bpm" in text
