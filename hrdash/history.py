"""The bridge's buffer as a table: session summary and CSV export (pandas, server side).

Not on the per-reading path: these run when a person asks (a button in the page), over the
readings the bridge keeps (``HRDASH_BUFFER``, 30 min at 2 Hz by default), fetched from the
bridge's ``GET /readings?patient=ID``.
"""

from __future__ import annotations

import json
import urllib.parse
import urllib.request
from typing import Any

import pandas as pd

from hrdash.settings import Settings, url_host

FETCH_TIMEOUT = 3.0  # seconds
LOW_BPM = 50  # bradycardia threshold used in the summary (common adult alarm default)
HIGH_BPM = 120  # tachycardia threshold used in the summary


class HistoryError(Exception):
    """One line for the page: the bridge could not be asked."""


def bridge_http_url(settings: Settings, path: str) -> str:
    return f"http://{url_host(settings.bridge_host)}:{settings.bridge_port}{path}"


def fetch(settings: Settings, patient: str | None = None) -> list[dict[str, Any]]:
    """The readings the bridge holds for ``patient`` (``None``: its first patient), oldest
    first."""
    query = "" if patient is None else "?" + urllib.parse.urlencode({"patient": patient})
    url = bridge_http_url(settings, "/readings" + query)
    try:
        with urllib.request.urlopen(url, timeout=FETCH_TIMEOUT) as response:
            body = json.loads(response.read())
    except (OSError, ValueError) as exc:
        raise HistoryError(f"cannot reach the bridge at {url}: {exc}") from None
    readings = body.get("readings") if isinstance(body, dict) else None
    if not isinstance(readings, list):
        raise HistoryError("the bridge answered without readings")
    return readings


def table(readings: list[dict[str, Any]]) -> pd.DataFrame:
    """Readings as a DataFrame: seq, time (UTC timestamps), bpm; sorted by seq."""
    df = pd.DataFrame(readings, columns=["seq", "time", "bpm"])
    df["time"] = pd.to_datetime(df["time"], unit="ms", utc=True)
    return df.sort_values("seq", ignore_index=True)


def summary(df: pd.DataFrame) -> dict[str, Any]:
    """Count, span, min / mean / max, and the share of time below LOW_BPM and above HIGH_BPM
    (each reading weighted by the time until the next one)."""
    if df.empty:
        return {"count": 0}
    span = (df["time"].iloc[-1] - df["time"].iloc[0]).total_seconds()
    weights = df["time"].diff().shift(-1).dt.total_seconds()
    weights = weights.fillna(weights.median() if len(df) > 1 else 1.0)
    total = float(weights.sum()) or 1.0
    return {
        "count": len(df),
        "span_s": span,
        "first": df["time"].iloc[0],
        "last": df["time"].iloc[-1],
        "min": float(df["bpm"].min()),
        "mean": float(df["bpm"].mean()),
        "max": float(df["bpm"].max()),
        "below_pct": 100.0 * float(weights[df["bpm"] < LOW_BPM].sum()) / total,
        "above_pct": 100.0 * float(weights[df["bpm"] > HIGH_BPM].sum()) / total,
    }


def minute_trend(df: pd.DataFrame) -> pd.DataFrame:
    """One row per minute: min, mean and max bpm and the number of readings."""
    if df.empty:
        return pd.DataFrame(columns=["minute", "min", "mean", "max", "count"])
    grouped = df.set_index("time")["bpm"].resample("1min")
    out = grouped.agg(["min", "mean", "max", "count"]).reset_index(names="minute")
    return out[out["count"] > 0].reset_index(drop=True)


def to_csv(df: pd.DataFrame) -> str:
    """CSV with ISO-8601 UTC times (millisecond precision), one reading per line."""
    out = df.copy()
    out["time"] = out["time"].dt.strftime("%Y-%m-%dT%H:%M:%S.%f").str[:-3] + "Z"
    return str(out.to_csv(index=False))
