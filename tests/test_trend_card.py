"""The Trend card as Python builds it: where it sits on the monitor, what its config store and
the page config hand to ``assets/trend.js``, and the one clientside callback that starts it."""

from __future__ import annotations

from typing import Any

from dash import dcc, html

from hrdash import history, ids, pages, trends
from hrdash.callbacks import trend
from hrdash.settings import Settings
from hrdash.webapp import create_app
from tests.support import walk


def _by_id(layout: Any) -> dict[str, Any]:
    return {c.id: c for c in walk(layout) if getattr(c, "id", None)}


def monitor(prefix: str = "/", **env: str) -> Any:
    site = pages.Site.for_settings(Settings.load(env=env), prefix=prefix)
    return site.monitor("bed-01")


def test_the_card_sits_below_the_live_chart() -> None:
    """hr-trend is a dcc.Graph inside the Trend card, which comes after the live chart and
    before the readings table, with its ranges, custom range, status line and export links."""
    layout = monitor()
    found = _by_id(layout)
    assert isinstance(found[ids.TREND], dcc.Graph)
    order = [getattr(c, "id", None) for c in walk(layout)]
    assert order.index(ids.CHART) < order.index(ids.TREND_CARD) < order.index(ids.TREND)
    assert order.index(ids.TREND) < order.index(ids.TABLE)
    card = found[ids.TREND_CARD]
    in_card = {getattr(c, "id", None) for c in walk(card)}
    assert set(ids.TREND_IDS.values()) | {ids.TREND_CONFIG} <= in_card
    buttons = [c for c in walk(found[ids.TREND_RANGES]) if isinstance(c, html.Button)]
    assert [b.to_plotly_json()["props"]["data-range"] for b in buttons] == list(history.RANGES_MS)
    assert [b.children for b in buttons] == ["1 h", "8 h", "24 h"]
    pressed = [b.to_plotly_json()["props"]["aria-pressed"] for b in buttons]
    assert pressed == ["true", "false", "false"]  # the default range, 1 h
    props = card.to_plotly_json()["props"]
    assert (props["data-range"], props["data-drawn"]) == (trend.DEFAULT_RANGE, "0")


def test_config_hands_the_constants_over() -> None:
    """The trend config store carries the ranges of the history routes, the point limit, the
    refresh period, the raw gap (the stale limit), the figure's base layout and the ids; the
    page config carries the patient and the app's URL prefix."""
    settings = Settings.load(env={"HRDASH_STALE_AFTER": "3.5"})
    config = trend.config(settings)
    assert config["ranges"] == history.RANGES_MS
    assert config["default_range"] in config["ranges"]
    assert config["max_points"] == trends.MAX_POINTS
    assert config["refresh_ms"] == trend.REFRESH_MS
    assert config["raw_gap_ms"] == 3500
    assert config["ids"] == ids.TREND_IDS
    assert config["layout"]["xaxis"]["type"] == "date"
    assert config["layout"]["yaxis"]["fixedrange"] is True  # zoom on time only
    assert config["note"] == ""
    memory = trend.config(settings.replace(db=":memory:"))["note"]
    assert "HRDASH_DB=:memory:" in memory
    found = _by_id(monitor("/ward/4b/", HRDASH_SIMULATOR_PATIENTS="3"))
    assert found[ids.TREND_CONFIG].data == trend.config(
        Settings.load(env={"HRDASH_SIMULATOR_PATIENTS": "3"})
    )
    page = found[ids.CONFIG].data
    assert (page["patient"], page["prefix"]) == ("bed-01", "/ward/4b/")


def test_the_app_starts_the_trend_clientside() -> None:
    """One clientside callback starts the trend when its config store mounts; no Python
    callback listens to anything of the card."""
    app = create_app(Settings.load(env={"HRDASH_DB": ":memory:"}))
    client = app.server.test_client()
    client.get("/")
    deps = client.get("/_dash-dependencies").get_json()  # what the browser registers
    starts = [d for d in deps if any(i["id"] == ids.TREND_CONFIG for i in d["inputs"])]
    assert len(starts) == 1
    assert starts[0]["clientside_function"] == {
        "namespace": "hrdash",
        "function_name": "trend_start",
    }
    trend_ids = set(ids.TREND_IDS.values()) | {ids.TREND_CONFIG}
    for d in deps:
        if d.get("clientside_function") is None:
            assert not {i["id"] for i in d["inputs"]} & trend_ids, d
