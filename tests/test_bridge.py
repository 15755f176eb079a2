"""hrdash.bridge on real sockets: simulator or scripted upstream → bridge → viewers."""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import math
import os
import socket
from collections.abc import Callable
from typing import Any

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from hrdash.bridge import UPSTREAM_MAX_SIZE, reconnect_delays
from hrdash.buffer import SINCE_LIMIT
from hrdash.edge import RateWindow
from hrdash.readings import FRAME_REASONS
from tests.conftest import (
    RunningSimulator,
    StartBridge,
    Upstream,
    healthz,
    http_get,
    read_until,
    seqs_of,
    strict_json,
    timeout,
    viewer_url,
    wait_for,
)


def is_readings(frame: dict[str, Any]) -> bool:
    return frame.get("type") == "readings"


def has_seq_at_least(seq: int) -> Callable[[dict[str, Any]], bool]:
    return lambda f: is_readings(f) and any(r["seq"] >= seq for r in f["readings"])


def assert_valid_reading(reading: dict[str, Any]) -> None:
    assert set(reading) == {"seq", "time", "bpm"}
    assert type(reading["seq"]) is int and type(reading["time"]) is int
    assert isinstance(reading["bpm"], int | float) and not isinstance(reading["bpm"], bool)
    assert math.isfinite(reading["bpm"]) and 20 <= reading["bpm"] <= 300


def contiguous(seqs: list[int]) -> bool:
    return seqs == list(range(seqs[0], seqs[0] + len(seqs))) if seqs else True


def valid(bpm: int, time_ms: int = 1_700_000_000_000) -> str:
    return json.dumps({"time": time_ms + bpm, "value": bpm})


# -- snapshot, live, status -------------------------------------------------------------------


async def test_snapshot_then_live_readings(
    simulator: RunningSimulator, start_bridge: StartBridge
) -> None:
    """A viewer gets one snapshot (the last `window` readings, contiguous) and then live readings
    that continue it with strictly increasing seqs and no gap."""
    bridge = await start_bridge(simulator.url, window=20)
    await wait_for(lambda: bridge.buffer.last_seq >= 30, what="30 readings in the bridge")
    async with asyncio.timeout(timeout(10)), connect(viewer_url(bridge)) as ws:
        first = strict_json(await ws.recv())
        assert first["type"] == "readings"
        assert first["snapshot"] is True
        assert first["run"] == bridge.run_id
        snap = [r["seq"] for r in first["readings"]]
        assert len(snap) == 20
        assert contiguous(snap)
        assert first["last_seq"] == snap[-1]
        frames = await read_until(ws, has_seq_at_least(snap[-1] + 25))
    live = seqs_of(frames)
    assert live[0] == snap[-1] + 1
    assert contiguous(live)
    for f in [first, *frames]:
        if is_readings(f):
            assert f["run"] == bridge.run_id
            for reading in f["readings"]:
                assert_valid_reading(reading)


async def test_snapshot_is_at_most_window_when_few_readings(
    upstream: Upstream, start_bridge: StartBridge
) -> None:
    """With fewer readings than the window, the snapshot holds exactly those readings."""
    bridge = await start_bridge(upstream.url, window=20)
    await upstream.wait_connections(1)
    await upstream.send(valid(70), valid(71), valid(72))
    await wait_for(lambda: bridge.patient.flushed_seq == 3, what="the three readings sent out")
    async with asyncio.timeout(timeout(5)), connect(viewer_url(bridge)) as ws:
        first = strict_json(await ws.recv())
    assert [(r["seq"], r["bpm"]) for r in first["readings"]] == [(1, 70), (2, 71), (3, 72)]
    assert (first["first_seq"], first["last_seq"]) == (1, 3)


async def test_pending_readings_are_not_in_a_snapshot(
    upstream: Upstream, start_bridge: StartBridge
) -> None:
    """A reading accepted but not yet sent out is left out of a snapshot built at that instant
    (it goes out once, in the next live frame), so a viewer joining then gets no duplicate."""
    bridge = await start_bridge(upstream.url)
    async with asyncio.timeout(timeout(5)), connect(viewer_url(bridge)) as ws:
        await read_until(ws, is_readings)
        bridge.on_frame(valid(70))  # accepted now; the fan-out runs on the next loop turn
        pending = strict_json(bridge.edge.first_frame(""))
        assert pending["readings"] == []
        assert pending["last_seq"] == 0
        frames = await read_until(ws, has_seq_at_least(1))
        assert [r["bpm"] for f in frames if is_readings(f) for r in f["readings"]] == [70]
        after = strict_json(bridge.edge.first_frame(""))
        assert [r["seq"] for r in after["readings"]] == [1]


async def test_status_heartbeat(simulator: RunningSimulator, start_bridge: StartBridge) -> None:
    """Status frames say upstream "live" and come at least once a second."""
    bridge = await start_bridge(simulator.url)
    async with asyncio.timeout(timeout(15)), connect(viewer_url(bridge)) as ws:
        await read_until(ws, lambda f: f.get("type") == "status" and f["upstream"] == "live")
        loop = asyncio.get_running_loop()
        arrivals: list[float] = []
        statuses: list[dict[str, Any]] = []
        end = loop.time() + 3.5
        while loop.time() < end:
            frame = strict_json(await ws.recv())
            if frame.get("type") == "status":
                arrivals.append(loop.time())
                statuses.append(frame)
    assert len(statuses) >= 3
    assert all(s["upstream"] == "live" and s["run"] == bridge.run_id for s in statuses)
    gaps = [b - a for a, b in itertools.pairwise(arrivals)]
    assert max(gaps) < 1.5, gaps  # the contract is 1 s; the margin absorbs scheduling jitter
    assert statuses[-1]["last_seq"] > statuses[0]["last_seq"]


# -- resume and resend ------------------------------------------------------------------------


async def test_resume_with_since_and_run(
    simulator: RunningSimulator, start_bridge: StartBridge
) -> None:
    """Reconnecting with ?since=SEQ&run=RUN gives exactly the readings after SEQ: across the
    reconnect there is no gap and no duplicate."""
    bridge = await start_bridge(simulator.url, window=20)
    async with asyncio.timeout(timeout(15)):
        async with connect(viewer_url(bridge)) as ws:
            frames = await read_until(ws, has_seq_at_least(15))
        before = seqs_of(frames)
        last, run = before[-1], frames[-1]["run"]
        # Let more readings than a window arrive while the viewer is away.
        await wait_for(lambda: bridge.buffer.last_seq >= last + 30)
        async with connect(viewer_url(bridge, f"since={last}&run={run}")) as ws:
            first = strict_json(await ws.recv())
            assert first["type"] == "readings" and first["snapshot"] is True
            assert first["readings"][0]["seq"] == last + 1
            frames = [first, *await read_until(ws, has_seq_at_least(last + 45))]
    after = seqs_of(frames)
    assert len(first["readings"]) > 20  # more than a window: everything missed
    assert contiguous(before + after)


async def test_wrong_run_gets_the_snapshot(
    simulator: RunningSimulator, start_bridge: StartBridge
) -> None:
    """A ?since= from another bridge run is ignored: the viewer gets the last window."""
    bridge = await start_bridge(simulator.url, window=20)
    await wait_for(lambda: bridge.buffer.last_seq >= 40)
    for query in ("since=5&run=deadbeef", "since=5", "since=abc&run=" + bridge.run_id):
        async with asyncio.timeout(timeout(5)), connect(viewer_url(bridge, query)) as ws:
            first = strict_json(await ws.recv())
        seqs = [r["seq"] for r in first["readings"]]
        assert len(seqs) == 20, query
        assert contiguous(seqs)
        assert seqs[0] > 6, query


async def test_resend_request(upstream: Upstream, start_bridge: StartBridge) -> None:
    """{"type": "resend", "since": N, "run": RUN} is answered by one frame with exactly the
    readings after N; with another run id it gets the last window."""
    bridge = await start_bridge(upstream.url, window=5)
    await upstream.wait_connections(1)
    await upstream.send(*(valid(60 + i) for i in range(1, 13)))  # seqs 1..12
    async with asyncio.timeout(timeout(10)), connect(viewer_url(bridge)) as ws:
        await read_until(ws, has_seq_at_least(12))
        await ws.send(json.dumps({"type": "resend", "since": 3, "run": bridge.run_id}))
        frames = await read_until(ws, lambda f: is_readings(f) and f.get("resend") is True)
        assert [(r["seq"], r["bpm"]) for r in frames[-1]["readings"]] == [
            (seq, 60 + seq) for seq in range(4, 13)
        ]
        await ws.send(json.dumps({"type": "resend", "since": 3, "run": "other"}))
        frames = await read_until(ws, lambda f: is_readings(f) and f.get("resend") is True)
        assert [r["seq"] for r in frames[-1]["readings"]] == [8, 9, 10, 11, 12]
        # Requests that are not resends are ignored; the connection stays usable.
        for junk in ("nonsense", '{"type": "resend", "since": true}'):
            await ws.send(junk)
        await ws.send(json.dumps({"type": "resend", "since": 11, "run": bridge.run_id}))
        frames = await read_until(ws, lambda f: is_readings(f) and f.get("resend") is True)
        assert [r["seq"] for r in frames[-1]["readings"]] == [12]
    assert bridge.counters["resends"] == 3


class FakeClock:
    """A monotonic clock that moves only when the test says so."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_rate_window_allows_limit_per_window() -> None:
    """RateWindow lets ``limit`` events through per window of ``per`` seconds, counted from the
    first event of the window, and refuses the rest until the window has passed."""
    rate = RateWindow(5, per=1.0)
    assert [rate.allow(10.0) for _ in range(7)] == [True] * 5 + [False] * 2
    assert rate.allow(10.999) is False
    assert [rate.allow(11.0) for _ in range(6)] == [True] * 5 + [False]
    assert rate.allow(20.0) is True


async def test_resend_requests_are_rate_limited(
    upstream: Upstream, start_bridge: StartBridge
) -> None:
    """A viewer's messages beyond five a second are ignored and counted as refused (in /healthz
    too), so a client cannot make the bridge resend in a loop; a second later it is answered
    again. The rate limit runs on the bridge's injected clock, so nothing races a real second."""
    bridge = await start_bridge(upstream.url, window=5)
    clock = FakeClock()
    bridge.monotonic = clock
    await upstream.wait_connections(1)
    await upstream.send(*(valid(60 + i) for i in range(1, 13)))
    async with asyncio.timeout(timeout(10)), connect(viewer_url(bridge)) as ws:
        await read_until(ws, has_seq_at_least(12))
        request = json.dumps({"type": "resend", "since": 0, "run": bridge.run_id})
        for _ in range(12):
            await ws.send(request)
        handled = ("resends", "viewer_messages_refused")
        await wait_for(lambda: sum(bridge.counters[k] for k in handled) == 12, what="12 handled")
        assert (bridge.counters["resends"], bridge.counters["viewer_messages_refused"]) == (5, 7)
        clock.now += 0.999  # still the same one-second window: refused
        await ws.send(json.dumps({"type": "resend", "since": 10, "run": bridge.run_id}))
        await wait_for(lambda: bridge.counters["viewer_messages_refused"] == 8, what="refused")
        clock.now += 0.001  # a new window
        await ws.send(json.dumps({"type": "resend", "since": 11, "run": bridge.run_id}))
        frames = await read_until(
            ws, lambda f: is_readings(f) and f.get("resend") is True and len(f["readings"]) == 1
        )
    answered = [f for f in frames if is_readings(f) and f.get("resend") is True]
    assert len(answered) == 6
    assert all(len(f["readings"]) == 12 for f in answered[:-1])
    assert bridge.counters["resends"] == 6
    counters = (await healthz(bridge.port))["counters"]
    assert (counters["resends"], counters["viewer_messages_refused"]) == (6, 8)


async def test_since_and_resend_answers_are_bounded_and_counted(
    upstream: Upstream, start_bridge: StartBridge
) -> None:
    """However much the buffer holds, a ?since= snapshot or a resend gives at most SINCE_LIMIT
    readings, the newest (contiguous up to the last one sent), and each answer cut short is
    counted in since_truncated (/healthz too); answers within the bound are whole and uncounted."""
    total = SINCE_LIMIT + 500
    bridge = await start_bridge(upstream.url, buffer=2 * total, window=20)
    await upstream.wait_connections(1)
    await upstream.send(*(valid(40 + i % 200, 1_700_000_000_000 + i) for i in range(total)))
    await wait_for(lambda: bridge.patient.flushed_seq == total, what=f"{total} readings sent out")
    newest = list(range(total - SINCE_LIMIT + 1, total + 1))
    async with asyncio.timeout(timeout(10)):
        query = f"since=0&run={bridge.run_id}"
        async with connect(viewer_url(bridge, query), max_size=None) as ws:
            first = strict_json(await ws.recv())
            assert first["snapshot"] is True
            assert [r["seq"] for r in first["readings"]] == newest
            assert bridge.counters["since_truncated"] == 1
            for since, expected, cut in [
                (0, newest, 2),
                (total - SINCE_LIMIT - 1, newest, 3),  # one more than the bound: cut
                (total - SINCE_LIMIT, newest, 3),  # exactly the bound: whole
                (total - 20, list(range(total - 19, total + 1)), 3),  # a page's window
            ]:
                await ws.send(json.dumps({"type": "resend", "since": since, "run": bridge.run_id}))
                frames = await read_until(ws, lambda f: is_readings(f) and f.get("resend") is True)
                assert [r["seq"] for r in frames[-1]["readings"]] == expected, since
                assert bridge.counters["since_truncated"] == cut, since
            # Readings accepted but not yet sent out do not count against the bound: they go out
            # in the next live frame, and the answer still holds the newest SINCE_LIMIT sent.
            for _ in range(5):
                bridge.on_frame(valid(90))
            query = f"since={total - SINCE_LIMIT}&run={bridge.run_id}"
            pending = strict_json(bridge.edge.first_frame(query))
            assert [r["seq"] for r in pending["readings"]] == newest
            assert bridge.counters["since_truncated"] == 3
    counters = (await healthz(bridge.port))["counters"]
    assert counters["since_truncated"] == 3


async def test_resume_after_more_than_the_bound_still_fills_the_window(
    upstream: Upstream, start_bridge: StartBridge
) -> None:
    """A page away for more than SINCE_LIMIT readings reconnects with ?since=: it gets the newest
    SINCE_LIMIT, which hold its whole window, so the page's gap fill has no hole to ask for."""
    bridge = await start_bridge(upstream.url, buffer=5000, window=20)
    await upstream.wait_connections(1)
    await upstream.send(*(valid(70) for _ in range(10)))
    await wait_for(lambda: bridge.patient.flushed_seq == 10)
    await upstream.send(*(valid(80) for _ in range(SINCE_LIMIT + 100)))
    last = 10 + SINCE_LIMIT + 100
    await wait_for(lambda: bridge.patient.flushed_seq == last)
    async with (
        asyncio.timeout(timeout(10)),
        connect(viewer_url(bridge, f"since=10&run={bridge.run_id}"), max_size=None) as ws,
    ):
        first = strict_json(await ws.recv())
    seqs = [r["seq"] for r in first["readings"]]
    assert len(seqs) == SINCE_LIMIT and seqs[-1] == first["last_seq"] == last
    assert contiguous(seqs)
    assert set(range(last - 19, last + 1)) <= set(seqs)  # the window: no hole for the page


# -- upstream cuts ----------------------------------------------------------------------------


async def test_upstream_restart(simulator: RunningSimulator, start_bridge: StartBridge) -> None:
    """When the upstream dies the status leaves "live"; when it is back on the same port the
    bridge reconnects (within a few seconds), says "live" again and readings resume in seq."""
    bridge = await start_bridge(simulator.url)
    async with asyncio.timeout(timeout(20)), connect(viewer_url(bridge)) as ws:
        frames = await read_until(ws, has_seq_at_least(10))
        last_before = seqs_of(frames)[-1]
        await simulator.stop()
        frames = await read_until(
            ws, lambda f: f.get("type") == "status" and f["upstream"] in ("connecting", "down")
        )
        last_before = max([last_before, *seqs_of(frames)])
        # The first retry comes soon after the cut (it fails: nothing listens).
        await wait_for(lambda: bridge.counters["upstream_failures"] >= 1, seconds=2)
        await simulator.restart()
        loop = asyncio.get_running_loop()
        back = loop.time()
        await read_until(
            ws, lambda f: f.get("type") == "status" and f["upstream"] == "live", seconds=3
        )
        assert loop.time() - back < 3.0 * timeout(1)
        frames = await read_until(ws, has_seq_at_least(last_before + 10))
    after = seqs_of(frames)
    assert after[0] == last_before + 1
    assert contiguous(after)
    assert bridge.counters["upstream_connects"] == 2


async def test_reconnects_after_the_service_closes_the_connection(
    upstream: Upstream, start_bridge: StartBridge
) -> None:
    """If the service closes a connection (server still up), the bridge is back well within a
    few seconds and relays frames from the new connection."""
    bridge = await start_bridge(upstream.url)
    ws_up = await upstream.wait_connections(1)
    await upstream.send(valid(80))
    await wait_for(lambda: bridge.buffer.last_seq == 1)
    await ws_up.close(1011, "maintenance")
    await upstream.wait_connections(2, seconds=3)
    await upstream.send(valid(81))
    await wait_for(lambda: bridge.buffer.last_seq == 2)
    assert [r.bpm for r in bridge.buffer] == [80, 81]
    assert bridge.upstream == "live"


async def test_upstream_silence_triggers_reconnect(
    upstream: Upstream, start_bridge: StartBridge
) -> None:
    """An upstream that stays connected but sends nothing for upstream_silence is dropped and
    reconnected."""
    bridge = await start_bridge(upstream.url, upstream_silence=0.2)
    first = await upstream.wait_connections(1)
    await upstream.wait_connections(2, seconds=3)
    await wait_for(lambda: bridge.counters["upstream_connects"] == 2)
    await asyncio.wait_for(first.wait_closed(), timeout(5))
    assert first.close_code == 1001  # closed by the bridge ("going away"), not by the service


def test_reconnect_delays_are_capped_exponential_with_jitter() -> None:
    """Backoff delays start within [first/2, first], double, and never exceed the cap."""
    import random

    delays = reconnect_delays(first=0.5, factor=2.0, cap=4.0, rng=random.Random(1))
    got = [next(delays) for _ in range(8)]
    bounds = [0.5, 1.0, 2.0, 4.0, 4.0, 4.0, 4.0, 4.0]
    assert all(b / 2 <= d <= b for d, b in zip(got, bounds, strict=True)), got


# -- hostile upstream -------------------------------------------------------------------------

HOSTILE: list[tuple[str, str | bytes]] = [
    ("binary", b"\x00\x01\x02"),
    ("binary", b'{"time": 1700000000000, "value": 77}'),
    ("not_json", "{"),
    ("not_json", '{"time": 1700000000000, "value": 7'),
    ("not_json", "[" * 5000 + "]" * 5000),
    ("not_object", "[77]"),
    ("not_object", "77"),
    ("no_value", '{"time": 1700000000000}'),
    ("no_value", '{"value": null}'),
    ("boolean", '{"value": true}'),
    ("not_numeric", '{"value": "seventy"}'),
    ("not_finite", '{"value": NaN}'),
    ("not_finite", '{"value": Infinity}'),
    ("not_finite", '{"value": 1e999}'),
    ("out_of_range", '{"value": 19}'),
    ("out_of_range", '{"value": 301}'),
    ("out_of_range", '{"value": -5}'),
    ("bad_time", '{"value": 77, "time": "last tuesday"}'),
]


def test_hostile_table_covers_every_reason_but_too_large() -> None:
    """The hostile frames exercise every reason the parser can give."""
    assert {r for r, _ in HOSTILE} == set(FRAME_REASONS)


async def test_hostile_frames_are_never_relayed(
    upstream: Upstream, start_bridge: StartBridge
) -> None:
    """Hostile frames never reach a viewer, every frame a viewer gets is strict JSON, and the
    /healthz counters match exactly what was sent."""
    bridge = await start_bridge(upstream.url)
    await upstream.wait_connections(1)
    sent_valid: list[int] = []
    async with asyncio.timeout(timeout(10)), connect(viewer_url(bridge)) as ws:
        await ws.recv()  # the (empty) snapshot
        for i, (_, data) in enumerate(HOSTILE):
            await upstream.send(data, valid(100 + i))
            sent_valid.append(100 + i)
        await upstream.send(valid(250))  # sentinel: everything before it has been handled
        frames = await read_until(ws, lambda f: is_readings(f) and f["readings"][-1]["bpm"] == 250)
    relayed = [r["bpm"] for f in frames if is_readings(f) for r in f["readings"]]
    assert relayed == [*sent_valid, 250]
    assert contiguous(seqs_of(frames))
    expected: dict[str, int] = {}
    for reason, _ in HOSTILE:
        expected[reason] = expected.get(reason, 0) + 1
    health = await healthz(bridge.port)
    counters = health["counters"]
    assert counters["rejected_by_reason"] == expected
    assert counters["rejected"] == len(HOSTILE)
    assert counters["accepted"] == len(sent_valid) + 1
    assert counters["frames"] == len(HOSTILE) + len(sent_valid) + 1
    assert health["last_rejection"]["reason"] == "bad_time"
    assert health["upstream"] == "live"


async def test_too_large_frame_is_counted_and_the_bridge_reconnects(
    upstream: Upstream, start_bridge: StartBridge
) -> None:
    """A frame over 64 KiB counts as too_large, is not relayed, and the bridge reconnects and
    relays what comes next."""
    bridge = await start_bridge(upstream.url)
    await upstream.wait_connections(1)
    big = json.dumps({"value": 99, "pad": "x" * UPSTREAM_MAX_SIZE})
    await upstream.send(valid(70), big)
    await upstream.wait_connections(2, seconds=5)
    await upstream.send(valid(71))
    await wait_for(lambda: bridge.buffer.last_seq == 2)
    assert [r.bpm for r in bridge.buffer] == [70, 71]
    counters = (await healthz(bridge.port))["counters"]
    assert counters["rejected_by_reason"] == {"too_large": 1}
    assert counters["upstream_connects"] == 2


async def test_frame_just_under_the_limit_is_accepted(
    upstream: Upstream, start_bridge: StartBridge
) -> None:
    """A valid frame a little under 64 KiB is relayed and does not cost the connection."""
    bridge = await start_bridge(upstream.url)
    await upstream.wait_connections(1)
    frame = json.dumps({"value": 99, "pad": "x" * (UPSTREAM_MAX_SIZE - 100)})
    assert len(frame) < UPSTREAM_MAX_SIZE
    await upstream.send(frame)
    await wait_for(lambda: bridge.buffer.last_seq == 1)
    assert bridge.counters["upstream_connects"] == 1
    assert bridge.rejects.total == 0


# -- viewers: origins, HTTP -------------------------------------------------------------------


async def test_foreign_origin_is_refused(upstream: Upstream, start_bridge: StartBridge) -> None:
    """A browser page from another origin gets HTTP 403; the Dash server's own origins and
    clients without an Origin header are accepted."""
    bridge = await start_bridge(upstream.url, port=8050)
    async with asyncio.timeout(timeout(10)):
        for origin in ("http://evil.example", "http://127.0.0.1:9999", "null"):
            with pytest.raises(InvalidStatus) as info:
                async with connect(viewer_url(bridge), origin=origin):  # type: ignore[arg-type]
                    pass
            assert info.value.response.status_code == 403
        for origin in ("http://127.0.0.1:8050", "http://localhost:8050", None):
            async with connect(viewer_url(bridge), origin=origin) as ws:  # type: ignore[arg-type]
                assert strict_json(await ws.recv())["type"] == "readings"


async def test_allowed_origins_setting(upstream: Upstream, start_bridge: StartBridge) -> None:
    """HRDASH_ALLOWED_ORIGINS replaces the defaults; * accepts any origin."""
    bridge = await start_bridge(upstream.url, allowed_origins=("https://dash.example",))
    any_bridge = await start_bridge(upstream.url, allowed_origins=("*",))
    async with asyncio.timeout(timeout(10)):
        with pytest.raises(InvalidStatus) as info:
            async with connect(viewer_url(bridge), origin="http://127.0.0.1:8050"):  # type: ignore[arg-type]
                pass
        assert info.value.response.status_code == 403
        async with connect(viewer_url(bridge), origin="https://dash.example") as ws:  # type: ignore[arg-type]
            assert strict_json(await ws.recv())["type"] == "readings"
        async with connect(viewer_url(any_bridge), origin="http://evil.example") as ws:  # type: ignore[arg-type]
            assert strict_json(await ws.recv())["type"] == "readings"


async def test_healthz_and_unknown_paths(upstream: Upstream, start_bridge: StartBridge) -> None:
    """GET /healthz is 200 strict JSON with the upstream state and counters; other paths 404."""
    bridge = await start_bridge(upstream.url)
    await upstream.wait_connections(1)
    await upstream.send(valid(90), "junk")
    await wait_for(lambda: bridge.counters["frames"] == 2)
    status, body = await asyncio.to_thread(http_get, bridge.port, "/healthz")
    assert status == 200
    health = strict_json(body)
    assert health["upstream"] == "live"
    assert health["run"] == bridge.run_id
    assert health["last_seq"] == 1
    assert health["counters"]["accepted"] == 1
    assert health["counters"]["rejected_by_reason"] == {"not_json": 1}
    assert health["counters"]["upstream_connects"] == 1
    for path in ("/", "/nope", "/healthz/x", "/ws/extra"):
        status, _ = await asyncio.to_thread(http_get, bridge.port, path)
        assert status == 404, path


async def test_healthz_hides_upstream_secrets(
    upstream: Upstream, start_bridge: StartBridge
) -> None:
    """Credentials and query values of the upstream URL appear neither in /healthz nor in the
    status frames viewers get."""
    url = f"ws://user:s3cret@127.0.0.1:{upstream.port}/hr?token=t0ken"
    bridge = await start_bridge(url)
    await upstream.wait_connections(1)
    await wait_for(lambda: bridge.upstream == "live")
    body = json.dumps(await healthz(bridge.port))
    async with asyncio.timeout(timeout(5)), connect(viewer_url(bridge)) as ws:
        frames = await read_until(ws, lambda f: f.get("type") == "status")
    for text in (body, json.dumps(frames)):
        assert "s3cret" not in text and "t0ken" not in text
        assert f"127.0.0.1:{upstream.port}/hr" in text


async def test_healthz_reports_down_upstream(start_bridge: StartBridge) -> None:
    """With nothing listening upstream, /healthz says "down" and counts the failures, and a
    viewer's status frame says the same."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        dead_port = sock.getsockname()[1]  # nothing listens on it (not even after close)
        bridge = await start_bridge(f"ws://127.0.0.1:{dead_port}/")
        await wait_for(lambda: bridge.counters["upstream_failures"] >= 1)
        health = await healthz(bridge.port)
        assert health["upstream"] == "down"
        assert health["detail"]
        async with asyncio.timeout(timeout(5)), connect(viewer_url(bridge)) as ws:
            frames = await read_until(ws, lambda f: f.get("type") == "status")
        assert frames[-1]["upstream"] == "down"


# -- slow viewers -----------------------------------------------------------------------------


async def open_stalled_viewer(port: int) -> socket.socket:
    """A viewer that completes the WebSocket handshake with a tiny receive buffer and then
    never reads again."""
    loop = asyncio.get_running_loop()
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 2048)
    sock.setblocking(False)
    await loop.sock_connect(sock, ("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16)).decode()
    request = (
        f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    await loop.sock_sendall(sock, request.encode())
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = await loop.sock_recv(sock, 1)  # byte by byte: read nothing past the headers
        assert chunk, "bridge closed the handshake"
        head += chunk
    assert head.startswith(b"HTTP/1.1 101"), head
    return sock


async def test_slow_viewer_is_dropped_without_delaying_others(
    upstream: Upstream, start_bridge: StartBridge
) -> None:
    """A viewer that never reads is dropped once its unread bytes pass viewer_buffer (counted in
    viewers_dropped_slow), while a reading viewer gets every seq, in order, and stays."""
    bridge = await start_bridge(upstream.url, viewer_buffer=2048, buffer=100_000)
    await upstream.wait_connections(1)
    async with asyncio.timeout(timeout(30)):
        async with connect(viewer_url(bridge), max_size=None) as healthy:
            await healthy.recv()  # snapshot
            stalled = await open_stalled_viewer(bridge.port)
            try:
                await wait_for(lambda: len(bridge.viewers) == 2)
                received: list[int] = []
                sent = 0
                # Bursts of readings, each read in full by the healthy viewer before the next,
                # until the stalled one has been dropped (kernel buffers hold a few MB at most).
                while bridge.counters["viewers_dropped_slow"] == 0:
                    assert sent < 400_000, "the stalled viewer was never dropped"
                    burst = [valid(60 + (sent + i) % 200) for i in range(2000)]
                    await upstream.send(*burst)
                    sent += len(burst)
                    frames = await read_until(healthy, has_seq_at_least(sent), seconds=10)
                    received += seqs_of(frames)
                await upstream.send(valid(61))
                frames = await read_until(healthy, has_seq_at_least(sent + 1), seconds=10)
                received += seqs_of(frames)
                print(f"stalled viewer dropped after {sent} readings")
                assert received == list(range(1, sent + 2))
                assert bridge.counters["viewers_dropped_slow"] == 1
                assert len(bridge.viewers) == 1
                health = await healthz(bridge.port)
                assert health["counters"]["viewers_dropped_slow"] == 1
            finally:
                stalled.close()
