"""The alarms through a real bridge: a scripted service on 127.0.0.1 goes high, extreme, back to
normal and silent; the patient feed's alarm frames, the station frames, /api/alarms and
/api/alarms/log say what the engine says, in order. State changes (ack, limits, audio_pause)
from an allowed Origin are applied and logged with it; from a connection without one they are
refused and counted; invalid ones get an error frame. State changes have their own allowance
per connection: ten acks at once are all applied, and a flood beyond it is answered, never
dropped silently.

The bridge's clock is the only thing mocked: real time plus an offset the test moves forward
(the engine's delays, 5 s and 2 s, and the no-signal time pass in an instant)."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus

from hrdash.alarms import AUDIO_PAUSE_MAX, HIGH_DELAY, MEDIUM_DELAY
from hrdash.bridge import Bridge
from hrdash.edge import STATE_CHANGE_BURST, STATE_CHANGE_PER_S, TokenBucket
from hrdash.settings import Settings
from hrdash.station_alarms import LOG_KEPT
from hrdash.store import MEMORY
from tests.conftest import (
    Upstream,
    bridge_settings,
    healthz,
    http_get,
    read_until,
    strict_json,
    timeout,
    viewer_url,
    wait_for,
)

ORIGIN = "http://127.0.0.1:8050"  # the Dash server's own origin: allowed by default
PATIENT = "patient-1"
NO_SIGNAL_AFTER = 10.0


class Clock:
    """Real time plus an offset the test moves forward."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


@contextlib.asynccontextmanager
async def alarm_bridge(upstream: Upstream, clock: Clock) -> AsyncIterator[Bridge]:
    settings = bridge_settings(upstream.url, port=8050, no_signal_after=NO_SIGNAL_AFTER)
    steps = itertools.count()
    # The viewers' message rate limit's clock: a second per message, so none is refused.
    bridge = Bridge(settings, clock=clock, monotonic=lambda: float(next(steps)))
    await bridge.start()
    try:
        await upstream.wait_connections(1)
        await wait_for(lambda: bridge.source.upstream == "live", what="the service live")
        yield bridge
    finally:
        async with asyncio.timeout(timeout(5)):
            await bridge.close()


async def send_bpm(upstream: Upstream, bridge: Bridge, bpm: int) -> None:
    """One reading from the service, waited for until the bridge accepted it."""
    accepted = bridge.patient.counters["accepted"]
    await upstream.send(json.dumps({"time": int(time.time() * 1000), "value": bpm}))
    await wait_for(lambda: bridge.patient.counters["accepted"] > accepted, what="accepted")


def kinds(frame: dict[str, Any]) -> list[tuple[str, str]]:
    return [(a["kind"], a["state"]) for a in frame["alarms"]]


async def next_alarm(ws: ClientConnection) -> dict[str, Any]:
    return (await read_until(ws, lambda f: f["type"] == "alarm"))[-1]


async def get(bridge: Bridge, path: str) -> tuple[int, Any]:
    status, body = await asyncio.to_thread(http_get, bridge.port, path)
    return status, strict_json(body) if status == 200 else body.decode()


async def station_alarms(ws: ClientConnection, want: list[tuple[str, str]]) -> dict[str, Any]:
    """Read station frames until the patient's alarms are ``want``; returns that frame."""
    frames = await read_until(
        ws, lambda f: f["type"] == "station" and kinds(f["patients"][0]) == want
    )
    return frames[-1]


async def test_alarm_story(upstream: Upstream) -> None:
    """normal → 130 beyond its delay → 160 beyond its delay → normal → silent: each change is one
    complete alarm frame, the station frames and /api/alarms agree, the log has every event in
    order; an ack from the page's Origin ends the latched alarm and is logged with it."""
    clock = Clock()
    async with alarm_bridge(upstream, clock) as bridge:
        patient = await connect(viewer_url(bridge, f"patient={PATIENT}"), origin=ORIGIN)  # type: ignore[arg-type]
        station = await connect(viewer_url(bridge, "station=1"), origin=ORIGIN)  # type: ignore[arg-type]
        async with patient, station:
            before = clock()
            first = await next_alarm(patient)
            now = first.pop("now")  # the bridge's clock, as station frames carry it
            assert isinstance(now, int)
            assert before * 1000 - timeout(5) * 1000 <= now <= clock() * 1000 + 1
            assert first == {
                "type": "alarm",
                "patient": PATIENT,
                "alarms": [],
                "limits": {"extreme_low": 40, "low": 50, "high": 120, "extreme_high": 150},
                "sounding": None,
                "audio_paused_until": None,
            }
            await send_bpm(upstream, bridge, 70)
            await send_bpm(upstream, bridge, 130)
            clock.offset += MEDIUM_DELAY + 0.1
            await send_bpm(upstream, bridge, 131)
            high = await next_alarm(patient)
            assert kinds(high) == [("hr_high", "active")]
            assert high["alarms"][0]["value"] == 131 and high["alarms"][0]["limit"] == 120
            assert high["sounding"] == "medium"
            frame = await station_alarms(station, [("hr_high", "active")])
            assert frame["sounding"] == "medium"

            await send_bpm(upstream, bridge, 160)
            clock.offset += HIGH_DELAY + 0.1
            await send_bpm(upstream, bridge, 161)
            frames = await read_until(
                patient, lambda f: f["type"] == "alarm" and kinds(f) != kinds(high)
            )
            extreme = frames[-1]
            assert kinds(extreme) == [("hr_extreme_high", "active")]
            assert extreme["alarms"][0]["value"] == 161
            assert extreme["sounding"] == "high"

            await send_bpm(upstream, bridge, 70)
            latched = await next_alarm(patient)
            assert kinds(latched) == [("hr_extreme_high", "latched")]
            assert latched["sounding"] == "high"  # latched: sounds until acknowledged

            clock.offset += NO_SIGNAL_AFTER + 0.1
            bridge.alarms.wake()  # the clock stepped: the timer looks again
            silent = await next_alarm(patient)
            assert kinds(silent) == [("hr_extreme_high", "latched"), ("no_signal", "active")]
            assert silent["alarms"] == bridge.alarms.alarms(PATIENT)
            frame = await station_alarms(station, kinds(silent))
            assert frame["patients"][0]["alarms"] == silent["alarms"]
            assert frame["audio_paused_until"] is None
            assert (await get(bridge, "/api/alarms")) == (200, silent["alarms"])
            status, listing = await get(bridge, "/api/patients")
            assert listing[0]["alarms"] == silent["alarms"]

            status, log = await get(bridge, f"/api/alarms/log?patient={PATIENT}")
            assert status == 200
            assert [(e["kind"], e["event"]) for e in reversed(log)] == [
                ("hr_high", "raised"),
                ("hr_extreme_high", "raised"),
                ("hr_high", "ended"),
                ("hr_extreme_high", "latched"),
                ("no_signal", "raised"),
            ]
            assert all(e["origin"] is None and e["patient"] == PATIENT for e in log)
            times = [e["time"] for e in log]
            assert times == sorted(times, reverse=True)
            assert log[0]["time"] - log[1]["time"] >= NO_SIGNAL_AFTER * 1000
            assert (await get(bridge, "/api/alarms/log?limit=2"))[1] == log[:2]

            extreme_id = silent["alarms"][0]["id"]
            await patient.send(json.dumps({"type": "ack", "alarm": extreme_id}))
            acked = await next_alarm(patient)
            assert kinds(acked) == [("no_signal", "active")]
            assert acked["sounding"] == "low"
            frame = await station_alarms(station, [("no_signal", "active")])
            assert frame["sounding"] == "low"
            _, log = await get(bridge, f"/api/alarms/log?patient={PATIENT}&limit=2")
            assert [(e["alarm"], e["event"], e["origin"]) for e in reversed(log)] == [
                (extreme_id, "acknowledged", ORIGIN),
                (extreme_id, "ended", ORIGIN),
            ]
            await send_bpm(upstream, bridge, 72)  # the signal is back
            assert kinds(await next_alarm(patient)) == []
            health = await healthz(bridge.port)
            assert health["alarms"]["state_changes"] == 1
            assert health["alarms"]["refused_state_changes"] == 0


async def test_state_changes_need_an_allowed_origin(upstream: Upstream) -> None:
    """A page from another origin cannot connect at all (403); a connection without an Origin
    (a script) may read but its ack and limits are refused, answered and counted."""
    async with alarm_bridge(upstream, Clock()) as bridge:
        with pytest.raises(InvalidStatus) as info:
            async with connect(viewer_url(bridge), origin="http://evil.example"):  # type: ignore[arg-type]
                pass
        assert info.value.response.status_code == 403
        limits = {"low": 45, "high": 125, "extreme_low": 35, "extreme_high": 160}
        for query in (f"patient={PATIENT}", "station=1"):
            async with connect(viewer_url(bridge, query)) as ws:
                await ws.send(json.dumps({"type": "ack", "alarm": f"{PATIENT}:hr_high:1"}))
                await ws.send(json.dumps({"type": "limits", "patient": PATIENT, **limits}))
                errors = []
                for _ in range(2):
                    frame = (await read_until(ws, lambda f: f["type"] == "error"))[-1]
                    errors.append((frame["request"], frame["message"]))
                assert errors == [
                    ("ack", "ack: refused: needs an allowed Origin"),
                    ("limits", "limits: refused: needs an allowed Origin"),
                ]
        health = await healthz(bridge.port)
        assert health["alarms"]["refused_state_changes"] == 4
        assert health["alarms"]["state_changes"] == 0
        assert bridge.alarms.engines[PATIENT].limits.high == 120  # unchanged
        _, log = await get(bridge, "/api/alarms/log")
        assert [e["event"] for e in log] == []


async def test_limits_and_audio_pause(upstream: Upstream) -> None:
    """Bad limits and audio pauses get one-line error frames and change nothing; good ones are
    applied, logged with the Origin and sent at once (alarm frames, station frame)."""
    clock = Clock()
    async with alarm_bridge(upstream, clock) as bridge:
        patient = await connect(viewer_url(bridge, f"patient={PATIENT}"), origin=ORIGIN)  # type: ignore[arg-type]
        station = await connect(viewer_url(bridge, "station=1"), origin=ORIGIN)  # type: ignore[arg-type]
        async with patient, station:
            await next_alarm(patient)
            await send_bpm(upstream, bridge, 100)
            bad: list[dict[str, Any]] = [
                {"low": 45, "high": 125, "extreme_low": 35},  # extreme_high missing
                {"low": 45, "high": 125, "extreme_low": 50, "extreme_high": 160},  # order
                {"low": 45, "high": 125, "extreme_low": 35, "extreme_high": 301},  # range
                {"low": "45", "high": 125, "extreme_low": 35, "extreme_high": 160},
            ]
            for fields in bad:
                await station.send(json.dumps({"type": "limits", "patient": PATIENT, **fields}))
            await station.send(json.dumps({"type": "limits", "patient": "nobody", **bad[1]}))
            messages = [
                f["request"] + " | " + f["message"]
                for f in await read_until(
                    station,
                    lambda f: f["type"] == "error" and "nobody" in f["message"],
                )
                if f["type"] == "error"
            ]
            assert [m.split(" | ")[0] for m in messages] == ["limits"] * 5
            assert [m.split(" | ")[1] for m in messages] == [
                "limits: extreme_high: missing (all four are required: extreme_low, low, high, "
                "extreme_high)",
                "limits: low: expected more than extreme_low (50), got 45",
                "limits: extreme_high: expected 20-300 bpm, got 301",
                "limits: low: expected a number, got str",
                "limits: patient: no patient 'nobody'",
            ]
            for seconds in (0, AUDIO_PAUSE_MAX + 1, "60", None):
                await patient.send(json.dumps({"type": "audio_pause", "seconds": seconds}))
                error = (await read_until(patient, lambda f: f["type"] == "error"))[-1]
                assert error["message"].startswith("audio_pause: seconds: expected")
                assert error["request"] == "audio_pause"
            health = await healthz(bridge.port)
            assert health["alarms"]["invalid_state_changes"] == 9
            assert bridge.alarms.engines[PATIENT].limits.high == 120

            # 100 bpm is above a high of 90: the delay counts from the change.
            good = {"low": 45, "high": 90, "extreme_low": 35, "extreme_high": 160}
            await patient.send(json.dumps({"type": "limits", "patient": PATIENT, **good}))
            changed = await next_alarm(patient)  # at once, though no alarm changed
            assert changed["limits"] == good and changed["alarms"] == []
            _, listing = await get(bridge, "/api/patients")
            assert listing[0]["limits"] == good
            clock.offset += MEDIUM_DELAY + 0.1
            bridge.alarms.wake()
            high = await next_alarm(patient)
            assert kinds(high) == [("hr_high", "active")]
            assert high["alarms"][0]["limit"] == 90

            before = clock()
            await station.send(json.dumps({"type": "audio_pause", "seconds": AUDIO_PAUSE_MAX}))
            paused = await next_alarm(patient)
            until = paused["audio_paused_until"]
            assert until == pytest.approx((before + AUDIO_PAUSE_MAX) * 1000, abs=timeout(5) * 1000)
            assert paused["sounding"] is None  # the medium alarm is paused
            frame = (await read_until(station, lambda f: f.get("audio_paused_until") is not None))[
                -1
            ]
            assert frame["audio_paused_until"] == until and frame["sounding"] is None

            _, log = await get(bridge, "/api/alarms/log?limit=3")
            assert [(e["event"], e["origin"]) for e in log] == [
                ("audio_paused", ORIGIN),
                ("raised", None),
                ("limits_changed", ORIGIN),
            ]
            assert log[0]["patient"] is None and log[0]["value"] == AUDIO_PAUSE_MAX
            assert log[2]["value"]["high"] == 120 and log[2]["limit"]["high"] == 90
            _, own = await get(bridge, f"/api/alarms/log?patient={PATIENT}")
            assert [e["event"] for e in own] == ["raised", "limits_changed"]
            health = await healthz(bridge.port)
            assert health["alarms"]["state_changes"] == 2
            assert health["alarms"]["audio_paused_until"] == until

            # The pause ends with no message: the timer sends every patient's frame again.
            # (Readings keep coming, every 9.5 s of the test's clock, so the signal is not lost.)
            await send_bpm(upstream, bridge, 100)
            for _ in range(13):
                clock.offset += 9.5
                await send_bpm(upstream, bridge, 100)
            bridge.alarms.wake()  # the clock stepped: the timer looks again
            ended = await next_alarm(patient)
            assert ended["audio_paused_until"] is None and ended["sounding"] == "medium"
            assert kinds(ended) == kinds(high)
            frame = (await read_until(station, lambda f: f.get("sounding") == "medium"))[-1]
            assert frame["audio_paused_until"] is None


async def test_alarm_log_queries(upstream: Upstream) -> None:
    """A bad query gets 400 with one line, an unknown patient 404."""
    async with alarm_bridge(upstream, Clock()) as bridge:
        assert await get(bridge, "/api/alarms/log") == (200, [])
        assert await get(bridge, f"/api/alarms/log?limit={LOG_KEPT}") == (200, [])
        for query in ("limit=0", f"limit={LOG_KEPT + 1}", "limit=x", "limit=-1", "limit=%C2%B2"):
            status, body = await get(bridge, f"/api/alarms/log?{query}")
            assert status == 400 and body.startswith("Bad limit"), body
            assert body.count("\n") == 1
        for query in ("since=1", "limit=1&limit=2"):
            status, body = await get(bridge, f"/api/alarms/log?{query}")
            assert status == 400 and body.startswith("Bad query"), body
        status, body = await get(bridge, "/api/alarms/log?patient=nobody")
        assert status == 404 and "nobody" in body


async def test_source_down_with_no_page_open(upstream: Upstream) -> None:
    """The service goes away with no viewer connected: no_signal and source_down are raised by
    the bridge's timer; a page opened later gets them in its first alarm frame."""
    clock = Clock()
    async with alarm_bridge(upstream, clock) as bridge:
        await send_bpm(upstream, bridge, 70)
        await upstream.stop()
        await wait_for(lambda: bridge.source.upstream != "live", what="the service lost")
        clock.offset += NO_SIGNAL_AFTER + 0.1
        bridge.alarms.wake()
        await wait_for(lambda: len(bridge.alarms.alarms(PATIENT)) == 2, what="the technical alarms")
        async with connect(viewer_url(bridge, f"patient={PATIENT}")) as ws:
            first = await next_alarm(ws)
        assert sorted(kinds(first)) == [("no_signal", "active"), ("source_down", "active")]
        assert {a["priority"] for a in first["alarms"]} == {"low"}


def test_token_bucket() -> None:
    """A burst of ``capacity``, then ``per_s`` a second; an event refused takes no token."""
    bucket = TokenBucket(3, 2.0)
    assert [bucket.allow(10.0) for _ in range(5)] == [True] * 3 + [False] * 2
    assert bucket.allow(10.25) is False  # half a token
    assert bucket.allow(10.5) is True  # one: 0.5 s at 2 a second
    assert bucket.allow(10.5) is False
    assert [bucket.allow(100.0) for _ in range(4)] == [True] * 3 + [False]  # never above 3


class FrozenClock:
    """The viewers' message rate limit's clock: still until the test moves it."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_ten_acks_at_once_are_all_applied(upstream: Upstream, tmp_path: Path) -> None:
    """A nurse acknowledges ten patients' alarms as fast as the page sends them (the rate limit's
    clock stands still: they all arrive within one instant): every one is applied, none is
    refused or answered with an error."""
    ward = 10
    path = tmp_path / "ward.toml"
    path.write_text(
        "".join(f'[[patient]]\nid = "p-{i}"\nurl = "{upstream.url}"\n\n' for i in range(ward))
    )
    settings = Settings.load(env={"HRDASH_SOURCES": str(path)}).replace(
        bridge_port=0, db=MEMORY, port=8050, no_signal_after=NO_SIGNAL_AFTER
    )
    clock = Clock()
    bridge = Bridge(settings, clock=clock, monotonic=FrozenClock())
    await bridge.start()
    try:
        await upstream.wait_connections(ward)
        clock.offset += NO_SIGNAL_AFTER + 0.1  # no reading from anyone: no_signal everywhere
        bridge.alarms.wake()
        await wait_for(
            lambda: all(bridge.alarms.alarms(f"p-{i}") for i in range(ward)), what="ten alarms"
        )
        ids = [bridge.alarms.alarms(f"p-{i}")[0]["id"] for i in range(ward)]
        async with connect(viewer_url(bridge, "station=1"), origin=ORIGIN) as station:  # type: ignore[arg-type]
            for alarm_id in ids:
                await station.send(json.dumps({"type": "ack", "alarm": alarm_id}))
            await wait_for(
                lambda: bridge.edge.alarm_counters["state_changes"] == ward, what="ten acks"
            )
            states = [a["state"] for i in range(ward) for a in bridge.alarms.alarms(f"p-{i}")]
            assert states == ["acknowledged"] * ward
            health = await healthz(bridge.port)
            assert health["alarms"]["throttled_state_changes"] == 0
            assert health["alarms"]["invalid_state_changes"] == 0
            assert health["station"]["viewer_messages_refused"] == 0
            _, log = await get(bridge, "/api/alarms/log")
            acked = {e["alarm"] for e in log if e["event"] == "acknowledged"}
            assert acked == set(ids)
    finally:
        async with asyncio.timeout(timeout(5)):
            await bridge.close()


async def test_a_flood_of_state_changes_is_answered_not_dropped(upstream: Upstream) -> None:
    """Beyond the connection's allowance (a burst, then a rate) a state change is not applied
    but answered with a one-line error frame and counted: every message sent is either applied
    or answered. The allowance refills with time; resends keep their own limit."""
    rate_clock = FrozenClock()
    settings = bridge_settings(upstream.url, port=8050, no_signal_after=NO_SIGNAL_AFTER)
    bridge = Bridge(settings, clock=Clock(), monotonic=rate_clock)
    await bridge.start()
    try:
        await upstream.wait_connections(1)
        await wait_for(lambda: bridge.source.upstream == "live", what="the service live")
        await send_bpm(upstream, bridge, 70)
        async with connect(viewer_url(bridge, f"patient={PATIENT}"), origin=ORIGIN) as ws:  # type: ignore[arg-type]
            await next_alarm(ws)
            sent = STATE_CHANGE_BURST + 15
            for _ in range(sent):
                await ws.send(json.dumps({"type": "audio_pause", "seconds": 60}))
            await ws.send(json.dumps({"type": "ack", "alarm": "nobody:hr_high:1"}))  # one more
            frames = await read_until(ws, lambda f: f["type"] == "error" and f["request"] == "ack")
            errors = [f for f in frames if f["type"] == "error"]
            assert len(errors) == sent + 1 - STATE_CHANGE_BURST
            assert {e["request"] for e in errors[:-1]} == {"audio_pause"}
            for error in errors:
                assert error["message"] == (
                    f"{error['request']}: too many changes at once (over {STATE_CHANGE_BURST}, "
                    f"then {STATE_CHANGE_PER_S:g} a second); try again"
                )
            health = await healthz(bridge.port)
            counted = health["alarms"]
            assert counted["state_changes"] == STATE_CHANGE_BURST
            assert counted["throttled_state_changes"] == len(errors)
            assert counted["state_changes"] + counted["throttled_state_changes"] == sent + 1
            _, log = await get(bridge, "/api/alarms/log?limit=1000")
            assert [e["event"] for e in log] == ["audio_paused"] * STATE_CHANGE_BURST

            rate_clock.now += 1 / STATE_CHANGE_PER_S  # one token back
            await ws.send(json.dumps({"type": "audio_pause", "seconds": 30}))
            await wait_for(
                lambda: bridge.edge.alarm_counters["state_changes"] == STATE_CHANGE_BURST + 1,
                what="the change after the refill applied",
            )
            # The flood took nothing from the resend limit: a resend is answered.
            await ws.send(json.dumps({"type": "resend", "since": 0, "run": bridge.hub.run_id}))
            resent = await read_until(ws, lambda f: f["type"] == "readings")
            assert resent[-1]["readings"][-1]["bpm"] == 70
            health = await healthz(bridge.port)
            assert health["patients"][0]["counters"]["viewer_messages_refused"] == 0
    finally:
        async with asyncio.timeout(timeout(5)):
            await bridge.close()
