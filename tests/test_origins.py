"""Refused browser origins: the pure check and counter, then the bridge on real sockets."""

from __future__ import annotations

import asyncio
import logging

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from hrdash.origins import (
    ORIGIN_CHARS,
    OTHER,
    RefusedOrigins,
    canonical_origin,
    origin_allowed,
)
from tests.conftest import (
    StartBridge,
    Upstream,
    healthz,
    strict_json,
    timeout,
    viewer_url,
)

ALLOWED = ("https://monitor.example.org:8443",)


def test_origin_allowed_is_an_exact_match() -> None:
    """Only the exact origin is allowed: another port, scheme or case is not; no Origin header
    (not a browser) is; * allows any."""
    assert origin_allowed("https://monitor.example.org:8443", ALLOWED)
    for origin in (
        "https://monitor.example.org",
        "http://monitor.example.org:8443",
        "https://monitor.example.org:8444",
        "https://Monitor.example.org:8443",
        "null",
        "",
    ):
        assert not origin_allowed(origin, ALLOWED), origin
    assert origin_allowed(None, ALLOWED)
    assert origin_allowed("http://evil.example", ("*",))


def test_refusals_are_logged_once_per_origin_per_minute() -> None:
    """The first refusal of an origin is logged; the next ones within 60 s are not (counted as
    suppressed); the first after 60 s is, with the number suppressed. Origins are independent."""
    refused = RefusedOrigins(log_every=60.0)
    assert refused.add("https://a.example", now=1000.0) == 0
    assert refused.add("https://a.example", now=1001.0) is None
    assert refused.add("https://a.example", now=1059.9) is None
    assert refused.add("https://b.example", now=1059.9) == 0
    assert refused.add("https://a.example", now=1060.0) == 2
    assert refused.add("https://a.example", now=1061.0) is None
    assert refused.total == 6
    assert refused.as_dict() == {
        "total": 6,
        "by_origin": {"https://a.example": 5, "https://b.example": 1},
    }


def test_refused_origins_use_bounded_memory() -> None:
    """However many distinct origins are refused, at most ``max_tracked`` are counted by name
    (cut to ORIGIN_CHARS); the rest are counted, and logged once a minute, as one OTHER."""
    refused = RefusedOrigins(log_every=60.0, max_tracked=3)
    logged = [refused.add(f"https://{i}.example", now=float(i)) for i in range(1000)]
    assert logged[:4] == [0, 0, 0, 0]  # three by name, then the first OTHER
    assert logged[4:63] == [None] * 59
    assert logged[63] == 59  # 60 s after the first OTHER line (at 3 s), with those 59
    assert refused.total == 1000
    counts = refused.as_dict()["by_origin"]
    assert len(counts) == 4
    assert counts[OTHER] == 997
    long = RefusedOrigins()
    long.add("https://" + "x" * 10_000, now=0.0)
    assert [len(key) for key in long.counts] == [ORIGIN_CHARS]


async def test_bridge_refuses_counts_and_logs_a_foreign_origin(
    upstream: Upstream, start_bridge: StartBridge, caplog: pytest.LogCaptureFixture
) -> None:
    """A handshake from an origin not in HRDASH_ALLOWED_ORIGINS gets 403, is counted in
    /healthz (total and by origin) and logged once in a minute with the allowed list; the
    allowed origin and a client without Origin still connect."""
    caplog.set_level(logging.WARNING, logger="hrdash.bridge")
    bridge = await start_bridge(upstream.url, allowed_origins=ALLOWED)
    foreign = "https://monitor.example.org"  # the port left out: a different origin
    async with asyncio.timeout(timeout(10)):
        for origin in (foreign, foreign, foreign, "http://evil.example"):
            with pytest.raises(InvalidStatus) as info:
                async with connect(viewer_url(bridge), origin=origin):  # type: ignore[arg-type]
                    pass
            assert info.value.response.status_code == 403
        for allowed in (ALLOWED[0], None):
            async with connect(viewer_url(bridge), origin=allowed) as ws:  # type: ignore[arg-type]
                assert strict_json(await ws.recv())["type"] == "readings"
    health = await healthz(bridge.port)
    assert health["origins"] == {
        "allowed": list(ALLOWED),
        "refused": {"total": 4, "by_origin": {foreign: 3, "http://evil.example": 1}},
    }
    lines = [r.getMessage() for r in caplog.records if "refused a viewer" in r.getMessage()]
    assert len(lines) == 2, lines
    assert repr(foreign) in lines[0]
    assert "HRDASH_ALLOWED_ORIGINS (https://monitor.example.org:8443)" in lines[0]
    assert repr("http://evil.example") in lines[1]


async def test_bridge_with_star_refuses_nothing(
    upstream: Upstream, start_bridge: StartBridge
) -> None:
    """With * every origin connects and nothing is counted as refused."""
    bridge = await start_bridge(upstream.url, allowed_origins=("*",))
    async with (
        asyncio.timeout(timeout(10)),
        connect(viewer_url(bridge), origin="http://evil.example") as ws,  # type: ignore[arg-type]
    ):
        assert strict_json(await ws.recv())["type"] == "readings"
    assert (await healthz(bridge.port))["origins"]["refused"] == {"total": 0, "by_origin": {}}


@pytest.mark.parametrize(
    ("entry", "canonical"),
    [
        ("https://monitor.example.org:8443", "https://monitor.example.org:8443"),
        ("https://Monitor.Example.org:443", "https://monitor.example.org"),
        ("HTTP://localhost:80", "http://localhost"),
        ("http://localhost:443", "http://localhost:443"),
        ("http://[::1]:8050", "http://[::1]:8050"),
        ("*", "*"),
    ],
)
def test_canonical_origin_is_what_a_browser_sends(entry: str, canonical: str) -> None:
    """Allowed entries are compared as browsers write an Origin: lower case, no default port."""
    assert canonical_origin(entry) == canonical


async def test_bridge_compares_origins_as_browsers_write_them(
    upstream: Upstream, start_bridge: StartBridge
) -> None:
    """An allowed entry with the default port or upper case accepts the browser's Origin for
    it (which has neither)."""
    bridge = await start_bridge(upstream.url, allowed_origins=("https://Monitor.example.org:443",))
    async with (
        asyncio.timeout(timeout(10)),
        connect(viewer_url(bridge), origin="https://monitor.example.org") as ws,  # type: ignore[arg-type]
    ):
        assert strict_json(await ws.recv())["type"] == "readings"
