"""hrdash.upstream: how the bridge connects to any heart-rate service and reads its frames.

FrameReader is pure (the clock is its ``now`` argument). Every upstream option is observed from
the service's side, with a real websockets server on 127.0.0.1 that records the request path,
headers, negotiated subprotocol and the first message it receives. TLS uses a throwaway CA made
by ``trustme``.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
from websockets.asyncio.client import connect

from hrdash.bridge import OVERLAP, Bridge
from hrdash.readings import Reading, Rejected
from hrdash.settings import SettingError, Settings
from hrdash.store import MEMORY
from hrdash.upstream import INFER_FRAMES, INFER_WAIT, FrameReader, load_transform
from tests.conftest import (
    ServiceFactory,
    StartBridge,
    Tls,
    Upstream,
    bridges_closed_after,
    free_port,
    healthz,
    read_until,
    timeout,
    viewer_url,
    wait_for,
)

T0 = 1_513_152_655_902  # Unix ms, years before any receive time in these tests
MODULE = __name__  # hooks below are loaded by name, as HRDASH_TRANSFORM would


def ref(bpm: int, ms: int) -> str:
    return json.dumps({"time": ms, "value": bpm})


def reference_points(count: int) -> list[tuple[int, int]]:
    """(time, bpm) of conftest's ``reference_frames(count)``."""
    return [(T0 + 500 * i, 70 + i) for i in range(count)]


def readings_of(results: list[Reading | Rejected]) -> list[Reading]:
    assert all(isinstance(r, Reading) for r in results), results
    return [r for r in results if isinstance(r, Reading)]


# -- FrameReader: mapping ------------------------------------------------------------------------


def test_configured_mapping_reads_from_the_first_frame() -> None:
    """With HRDASH_VALUE_FIELD set, the first frame is read with that mapping at once."""
    reader = FrameReader("data.hr", "data.ts")
    assert not reader.deciding
    out = reader.feed(json.dumps({"data": {"hr": 77, "ts": T0}}), 5, now=0.0)
    assert out == [Reading(T0, 77)]
    assert reader.describe() == {
        "value": "data.hr",
        "time": "data.ts",
        "inferred": False,
        "confidence": "configured",
    }


def test_reference_frames_adopt_the_default_mapping_at_once() -> None:
    """No mapping configured: a first frame in the reference shape is read at once (no holding)
    and settles the mapping value/time."""
    reader = FrameReader()
    assert reader.deciding
    assert reader.feed(ref(95, T0), 5, now=0.0) == [Reading(T0, 95)]
    assert not reader.deciding
    assert reader.describe()["confidence"] == "default"
    assert reader.feed(ref(96, T0 + 500), 6, now=0.1) == [Reading(T0 + 500, 96)]


def test_other_shape_is_held_then_inferred_and_read_in_order() -> None:
    """A non-reference shape is held for INFER_FRAMES frames; then the mapping is inferred and the
    held frames come out in the order they arrived."""
    reader = FrameReader()
    frames = [json.dumps({"d": {"pulse": 70 + 3 * i, "at": T0 + 500 * i}}) for i in range(5)]
    for i, frame in enumerate(frames[: INFER_FRAMES - 1]):
        assert reader.feed(frame, 1, now=10.0 + 0.01 * i) == []
        assert reader.deciding
    out = reader.feed(frames[INFER_FRAMES - 1], 1, now=10.1)
    assert not reader.deciding
    assert readings_of(out) == [Reading(T0 + 500 * i, 70 + 3 * i) for i in range(INFER_FRAMES)]
    assert reader.inference is not None and reader.inference.value_path == "d.pulse"
    assert reader.describe()["inferred"] is True
    rest = reader.feed(frames[INFER_FRAMES], 1, now=10.2)
    assert rest == [Reading(T0 + 500 * INFER_FRAMES, 70 + 3 * INFER_FRAMES)]


def test_held_frames_are_decided_after_infer_wait() -> None:
    """Fewer than INFER_FRAMES frames: nothing comes out before INFER_WAIT has passed since the
    first held frame; at INFER_WAIT, due() infers and returns the held frames in order."""
    reader = FrameReader()
    first = json.dumps({"hr": 61, "ts": T0})
    second = json.dumps({"hr": 64, "ts": T0 + 500})
    start = 1000.0
    assert reader.feed(first, 1, now=start) == []
    assert reader.feed(second, 1, now=start + INFER_WAIT - 0.2) == []
    assert reader.due(start + INFER_WAIT - 0.01) == []
    assert reader.deciding
    out = reader.due(start + INFER_WAIT)
    assert readings_of(out) == [Reading(T0, 61), Reading(T0 + 500, 64)]
    assert reader.describe()["value"] == "hr"
    assert reader.due(start + 100) == []  # nothing is held any more

    late = FrameReader()  # a frame arriving after INFER_WAIT decides too, without due()
    assert late.feed(first, 1, now=start) == []
    out = late.feed(second, 1, now=start + INFER_WAIT)
    assert readings_of(out) == [Reading(T0, 61), Reading(T0 + 500, 64)]


def test_nothing_inferable_falls_back_to_rejections() -> None:
    """Held frames without any heart rate: inference says none, the defaults are used, and every
    frame is rejected (never relayed, never raised)."""
    reader = FrameReader()
    out: list[Reading | Rejected] = []
    for i in range(INFER_FRAMES):
        out += reader.feed(json.dumps({"type": "ping", "n": 1000 + i}), 1, now=float(i))
    assert not reader.deciding
    assert reader.inference is not None and reader.inference.confidence == "none"
    assert len(out) == INFER_FRAMES
    assert all(isinstance(r, Rejected) and r.reason == "no_value" for r in out)


# -- FrameReader: transform hook -------------------------------------------------------------------

SEEN_BY_HOOK: list[Any] = []


def hook_dict(obj: Any) -> Any:
    SEEN_BY_HOOK.append(obj)
    return {"bpm": obj["p"], "time": obj["when"]}


def hook_list(obj: Any) -> Any:
    return [{"value": v, "time": T0 + i} for i, v in enumerate(obj["all"])]


def hook_none(obj: Any) -> Any:
    return None


def hook_raise(obj: Any) -> Any:
    raise KeyError("no such field\nsecond line")


def hook_junk(obj: Any) -> Any:
    return obj["junk"]


def hook_mixed(obj: Any) -> Any:
    """Skips pings, raises on "boom", turns everything else into a reading."""
    if obj == "boom":
        raise RuntimeError("boom")
    if isinstance(obj, dict) and obj.get("type") == "ping":
        return None
    return {"bpm": obj["beat"], "time": obj["t"]}


def test_transform_returning_a_dict() -> None:
    """A hook returning {"bpm", "time"} gives that reading."""
    reader = FrameReader(transform=hook_dict)
    assert reader.feed(json.dumps({"p": 88, "when": T0}), 1, now=0) == [Reading(T0, 88)]


def test_transform_returning_a_list() -> None:
    """A hook returning a list of {"value", "time"} gives one reading each, in order."""
    reader = FrameReader(transform=hook_list)
    out = reader.feed(json.dumps({"all": [70, 71, 72]}), 1, now=0)
    assert out == [Reading(T0, 70), Reading(T0 + 1, 71), Reading(T0 + 2, 72)]


def test_transform_returning_none_is_skipped_and_counted() -> None:
    """A hook returning None yields one transform_skipped rejection."""
    reader = FrameReader(transform=hook_none)
    out = reader.feed(ref(80, T0), 1, now=0)
    assert [r.reason for r in out if isinstance(r, Rejected)] == ["transform_skipped"]
    assert len(out) == 1


def test_transform_returning_an_empty_list_is_skipped_and_counted() -> None:
    """A hook returning [] is a counted skip too, never a silent drop."""
    reader = FrameReader(transform=lambda frame: [])
    out = reader.feed(ref(80, T0), 1, now=0)
    assert [r.reason for r in out if isinstance(r, Rejected)] == ["transform_skipped"]


def test_transform_raising_is_a_transform_error() -> None:
    """A hook that raises yields a transform_error naming the exception; feed never raises."""
    reader = FrameReader(transform=hook_raise)
    (out,) = reader.feed(ref(80, T0), 1, now=0)
    assert isinstance(out, Rejected) and out.reason == "transform_error"
    assert "KeyError" in out.detail and "\n" not in out.detail


@pytest.mark.parametrize(
    ("junk", "reason"),
    [
        ("seventy", "transform_error"),
        (72, "transform_error"),
        ([{"bpm": 72, "time": T0}, "x"], "transform_error"),
        ({"bpm": "fast", "time": T0}, "not_numeric"),
        ({"bpm": 999, "time": T0}, "out_of_range"),
        ({"bpm": 72, "time": "yesterday"}, "bad_time"),
    ],
)
def test_transform_returning_junk_is_rejected(junk: Any, reason: str) -> None:
    """Whatever junk a hook returns is rejected with a stable reason, never relayed or raised."""
    reader = FrameReader(transform=hook_junk)
    out = reader.feed(json.dumps({"junk": junk}), 1, now=0)
    rejected = [r for r in out if isinstance(r, Rejected)]
    assert rejected and rejected[-1].reason == reason
    readings = [r for r in out if isinstance(r, Reading)]
    assert readings == ([Reading(T0, 72)] if isinstance(junk, list) else [])


def test_text_that_is_not_json_reaches_the_hook_as_a_string() -> None:
    """A text frame that is not JSON is passed to the hook as the string itself."""
    SEEN_BY_HOOK.clear()
    reader = FrameReader(transform=hook_dict)
    out = reader.feed("HR=72;T=now", 1, now=0)
    assert SEEN_BY_HOOK == ["HR=72;T=now"]
    assert [r.reason for r in out if isinstance(r, Rejected)] == ["transform_error"]


def test_load_transform_by_name() -> None:
    """package.module:function loads that function; an empty spec means no hook."""
    assert load_transform(f"{MODULE}:hook_dict") is hook_dict
    assert load_transform("") is None


def test_load_transform_errors_are_one_line(tmp_path: Path, monkeypatch: Any) -> None:
    """A missing module, a missing function, a non-callable and a module that fails on import
    each raise SettingError with one line naming HRDASH_TRANSFORM."""
    (tmp_path / "hrdash_test_broken_hook.py").write_text(
        "raise ValueError('first line\\nsecond line\\nthird line')\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    specs = [
        "hrdash_test_no_such_module:f",
        f"{MODULE}:no_such_function",
        f"{MODULE}:T0",
        "hrdash_test_broken_hook:f",
    ]
    for spec in specs:
        with pytest.raises(SettingError) as info:
            load_transform(spec)
        message = str(info.value)
        assert "\n" not in message, message
        assert message.startswith("HRDASH_TRANSFORM"), message
    sys.modules.pop("hrdash_test_broken_hook", None)


# -- upstream options, seen by the service ----------------------------------------------------


def test_bridge_command_with_a_broken_hook_is_one_line_status_2() -> None:
    """`hrdash bridge` with a HRDASH_TRANSFORM that cannot be imported ends with one line on
    stderr and status 2, not a traceback."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HRDASH_")}
    env["HRDASH_TRANSFORM"] = "hrdash_test_no_such_module:hook"
    env["HRDASH_UPSTREAM_URL"] = "ws://127.0.0.1:9/"
    env["HRDASH_BRIDGE_PORT"] = str(free_port())
    result = subprocess.run(
        [sys.executable, "-m", "hrdash", "bridge"],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout(30),
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "HRDASH_TRANSFORM" in lines[0] and "hrdash_test_no_such_module" in lines[0]


# -- upstream options, seen by the service ----------------------------------------------------


@pytest.fixture
async def env_bridge() -> AsyncIterator[Callable[[dict[str, str]], Awaitable[Bridge]]]:
    """Factory: a bridge configured from HRDASH_* variables (as a user sets them), on a free
    port; closed at teardown."""
    async with bridges_closed_after() as start_settings:

        async def start(env: dict[str, str]) -> Bridge:
            return await start_settings(Settings.load(env=env).replace(bridge_port=0, db=MEMORY))

        yield start


BridgeFactory = Callable[[dict[str, str]], Awaitable[Bridge]]


async def wait_live(bridge: Bridge) -> dict[str, Any]:
    await wait_for(lambda: bridge.upstream == "live", what="upstream live")
    return await healthz(bridge.port)


async def test_path_parameters_are_substituted(
    services: ServiceFactory, env_bridge: BridgeFactory
) -> None:
    """{patient} in the URL is replaced by HRDASH_PATH_PARAMS' value (URL-quoted)."""
    service = await services()
    bridge = await env_bridge(
        {
            "HRDASH_UPSTREAM_URL": f"ws://127.0.0.1:{service.port}/patients/{{patient}}/{{bed}}/hr",
            "HRDASH_PATH_PARAMS": "patient=7,bed=A 3",
        }
    )
    seen = await service.wait_seen(1)
    assert seen.path == "/patients/7/A%203/hr"
    await wait_live(bridge)


async def test_query_is_merged_with_the_urls_own(
    services: ServiceFactory, env_bridge: BridgeFactory
) -> None:
    """HRDASH_QUERY is added to a query already in the URL; both reach the service."""
    service = await services()
    await env_bridge(
        {
            "HRDASH_UPSTREAM_URL": f"ws://127.0.0.1:{service.port}/hr?patient=7",
            "HRDASH_QUERY": "format=json&v=2",
        }
    )
    seen = await service.wait_seen(1)
    parts = urlsplit(seen.path)
    assert parts.path == "/hr"
    assert parse_qsl(parts.query) == [("patient", "7"), ("format", "json"), ("v", "2")]


async def test_send_body_after_every_reconnect(
    services: ServiceFactory, env_bridge: BridgeFactory
) -> None:
    """HRDASH_SEND is the first message of every connection, again after the service kills one."""
    body = '{"subscribe": "heart-rate", "patient": 7}'
    service = await services(first_wait=2.0)
    bridge = await env_bridge(
        {"HRDASH_UPSTREAM_URL": f"ws://127.0.0.1:{service.port}/", "HRDASH_SEND": body}
    )
    for count in (1, 2, 3):
        seen = await service.wait_seen(count)
        assert seen.first_message == body
        transport = service.connections[count - 1].transport
        assert transport is not None
        transport.abort()  # the service dies mid-connection
    assert bridge.counters["upstream_connects"] >= 3


@pytest.mark.parametrize(
    "headers",
    [
        '{"X-Api-Key": "k-123", "X-Ward": "cardio 3"}',
        "X-Api-Key: k-123\nX-Ward: cardio 3\n",
    ],
    ids=["json", "lines"],
)
async def test_headers_reach_the_service(
    services: ServiceFactory, env_bridge: BridgeFactory, headers: str
) -> None:
    """HRDASH_HEADERS, as a JSON object or as 'Name: value' lines, are request headers."""
    service = await services()
    await env_bridge(
        {"HRDASH_UPSTREAM_URL": f"ws://127.0.0.1:{service.port}/", "HRDASH_HEADERS": headers}
    )
    seen = await service.wait_seen(1)
    assert seen.headers.get_all("X-Api-Key") == ["k-123"]
    assert seen.headers.get_all("X-Ward") == ["cardio 3"]


async def test_one_authorization_header_when_url_and_headers_both_carry_one(
    services: ServiceFactory, env_bridge: BridgeFactory
) -> None:
    """With user:password in the URL and an Authorization in HRDASH_HEADERS, the service gets
    exactly one Authorization header: the configured one."""
    service = await services()
    await env_bridge(
        {
            "HRDASH_UPSTREAM_URL": f"ws://user:pw@127.0.0.1:{service.port}/",
            "HRDASH_HEADERS": '{"Authorization": "Bearer t0k"}',
        }
    )
    seen = await service.wait_seen(1)
    assert seen.headers.get_all("Authorization") == ["Bearer t0k"]


async def test_subprotocol_is_negotiated(
    services: ServiceFactory, env_bridge: BridgeFactory
) -> None:
    """HRDASH_SUBPROTOCOLS are offered in order and the one the service speaks is chosen."""
    service = await services(subprotocols=["hr.v1"])
    bridge = await env_bridge(
        {
            "HRDASH_UPSTREAM_URL": f"ws://127.0.0.1:{service.port}/",
            "HRDASH_SUBPROTOCOLS": "hr.v2, hr.v1",
        }
    )
    seen = await service.wait_seen(1)
    assert seen.headers.get("Sec-WebSocket-Protocol") == "hr.v2, hr.v1"
    assert seen.subprotocol == "hr.v1"
    health = await wait_live(bridge)
    assert health["counters"]["upstream_connects"] >= 1


# -- TLS ------------------------------------------------------------------------------------------


async def relayed_values(bridge: Bridge, count: int) -> list[tuple[int, float]]:
    """Connect a viewer and collect (time, bpm) until ``count`` readings have arrived."""
    got: list[tuple[int, float]] = []

    def enough(frame: dict[str, Any]) -> bool:
        if frame.get("type") == "readings":
            got.extend((r["time"], r["bpm"]) for r in frame["readings"])
        return len(got) >= count

    async with asyncio.timeout(timeout(10)), connect(viewer_url(bridge)) as ws:
        await read_until(ws, enough, 8)
    return got


async def test_tls_with_the_test_ca(
    tls: Tls, services: ServiceFactory, env_bridge: BridgeFactory
) -> None:
    """wss:// to a service whose certificate the test CA signed works with HRDASH_CA_FILE."""
    service = await services(ssl_context=tls.server)
    bridge = await env_bridge(
        {"HRDASH_UPSTREAM_URL": f"wss://127.0.0.1:{service.port}/", "HRDASH_CA_FILE": tls.ca_file}
    )
    await wait_live(bridge)
    assert await relayed_values(bridge, 8) == reference_points(8)


async def test_tls_without_the_ca_is_down_naming_the_certificate(
    tls: Tls, services: ServiceFactory, env_bridge: BridgeFactory
) -> None:
    """Without HRDASH_CA_FILE the certificate is not trusted: status "down", the detail mentions
    the certificate, and no reading is relayed."""
    service = await services(ssl_context=tls.server)
    bridge = await env_bridge({"HRDASH_UPSTREAM_URL": f"wss://127.0.0.1:{service.port}/"})
    await wait_for(lambda: bridge.counters["upstream_failures"] >= 1, what="a failed attempt")
    health = await healthz(bridge.port)
    assert health["upstream"] == "down"
    assert "certificate" in health["detail"].lower(), health["detail"]
    assert health["counters"]["accepted"] == 0
    assert service.seen == []


async def test_tls_insecure_skips_verification(
    tls: Tls, services: ServiceFactory, env_bridge: BridgeFactory, caplog: Any
) -> None:
    """HRDASH_INSECURE=true connects to the untrusted service (and warns that it does)."""
    service = await services(ssl_context=tls.server)
    bridge = await env_bridge(
        {"HRDASH_UPSTREAM_URL": f"wss://127.0.0.1:{service.port}/", "HRDASH_INSECURE": "true"}
    )
    await wait_live(bridge)
    assert await relayed_values(bridge, 8) == reference_points(8)
    assert any("INSECURE" in r.getMessage() for r in caplog.records)


# -- services whose shapes no project code knows -----------------------------------------------


def iso(ms: int, offset_hours: float) -> str:
    tz = timezone(timedelta(hours=offset_hours))
    return datetime.fromtimestamp(ms / 1000, UTC).astimezone(tz).isoformat(timespec="milliseconds")


Points = list[tuple[int, int]]

SHAPES: dict[str, tuple[str, str, Callable[[Points], list[Any]]]] = {
    "nested": ("data.hr", "data.ts", lambda pts: [{"data": {"hr": v, "ts": t}} for t, v in pts]),
    "iso": ("heart", "at", lambda pts: [{"heart": v, "at": iso(t, 5.5)} for t, v in pts]),
    "seconds": ("bpm", "t", lambda pts: [{"bpm": v, "t": t / 1000} for t, v in pts]),
    "strings": (
        "pulse",
        "time",
        lambda pts: [{"pulse": str(v), "time": str(t)} for t, v in pts],
    ),
    "array-frame": (
        "*.bpm",
        "*.time",
        lambda pts: [
            [{"bpm": v, "time": t} for t, v in pts[i : i + 2]] for i in range(0, len(pts), 2)
        ],
    ),
    "holds-array": (
        "readings.*.pulse",
        "readings.*.at",
        lambda pts: [
            {"sent": pts[-1][0], "readings": [{"pulse": v, "at": t} for t, v in pts[i : i + 2]]}
            for i in range(0, len(pts), 2)
        ],
    ),
}


@pytest.mark.parametrize("told", [True, False], ids=["told", "inferred"])
@pytest.mark.parametrize("shape", list(SHAPES))
async def test_bridge_relays_unknown_shapes(
    upstream: Upstream, start_bridge: StartBridge, shape: str, told: bool
) -> None:
    """The bridge relays exactly the values a service of this shape sent, with the service's
    times (to the millisecond), whether it is told the mapping or infers it."""
    value_field, time_field, build = SHAPES[shape]
    points = [(T0 + 500 * i + 7 * i * i, 60 + (i * 37) % 90) for i in range(8)]
    fields = {"value_field": value_field, "time_field": time_field} if told else {}
    bridge = await start_bridge(upstream.url, **fields)
    await upstream.wait_connections(1)
    await wait_for(lambda: bridge.upstream == "live", what="upstream live")
    collecting = asyncio.create_task(relayed_values(bridge, len(points)))
    await wait_for(lambda: bridge.viewers, what="viewer joined")
    await upstream.send(*(json.dumps(frame) for frame in build(points)))
    got = await collecting
    assert [bpm for _, bpm in got] == [v for _, v in points]
    for (time_ms, _), (sent, _) in zip(got, points, strict=True):
        assert abs(time_ms - sent) <= 1
    mapping = (await healthz(bridge.port))["mapping"]
    assert (mapping["value"], mapping["time"]) == (value_field, time_field)
    assert mapping["inferred"] is not told


async def test_bridge_decides_after_infer_wait_with_few_frames(
    upstream: Upstream, start_bridge: StartBridge
) -> None:
    """A slow service of an unknown shape sends one frame: the bridge does not wait for more than
    INFER_WAIT; it infers from that frame and relays its reading."""
    bridge = await start_bridge(upstream.url)
    await upstream.wait_connections(1)
    collecting = asyncio.create_task(relayed_values(bridge, 1))
    await wait_for(lambda: bridge.viewers, what="viewer joined")
    await upstream.send(json.dumps({"vitals": {"pulse": 83, "taken": T0}}))
    assert await collecting == [(T0, 83)]
    assert (await healthz(bridge.port))["mapping"]["value"] == "vitals.pulse"


async def test_bridge_transform_hook_counts_skips_and_errors(
    upstream: Upstream, start_bridge: StartBridge
) -> None:
    """With HRDASH_TRANSFORM, what the hook returns is relayed; None is counted
    transform_skipped, a raise transform_error, and the bridge keeps going."""
    bridge = await start_bridge(upstream.url, transform=f"{MODULE}:hook_mixed")
    await upstream.wait_connections(1)
    collecting = asyncio.create_task(relayed_values(bridge, 2))
    await wait_for(lambda: bridge.viewers, what="viewer joined")
    await upstream.send(
        json.dumps({"beat": 66, "t": T0}),
        json.dumps({"type": "ping"}),
        json.dumps("boom"),
        "not json at all",
        json.dumps({"beat": 67, "t": T0 + 500}),
    )
    assert await collecting == [(T0, 66), (T0 + 500, 67)]
    counts = (await healthz(bridge.port))["counters"]["rejected_by_reason"]
    assert counts == {"transform_skipped": 1, "transform_error": 2}


# -- viewer options used by the page -----------------------------------------------------------


async def test_overlap_viewers_get_earlier_readings_repeated(
    upstream: Upstream, start_bridge: StartBridge
) -> None:
    """A viewer with ?overlap=1 gets, in each live frame, the OVERLAP readings before the new one;
    a plain viewer gets only the new one."""
    bridge = await start_bridge(upstream.url)
    await upstream.wait_connections(1)
    n = OVERLAP + 3
    async with (
        asyncio.timeout(timeout(10)),
        connect(viewer_url(bridge, "overlap=1")) as overlap,
        connect(viewer_url(bridge)) as plain,
    ):
        await wait_for(lambda: len(bridge.viewers) == 2, what="two viewers")
        live: dict[str, list[list[int]]] = {"overlap": [], "plain": []}
        for i in range(1, n + 1):
            await upstream.send(ref(60 + i, T0 + 500 * i))
            for name, ws in (("overlap", overlap), ("plain", plain)):
                frames = await read_until(
                    ws,
                    lambda f, i=i: (
                        f.get("type") == "readings"  # type: ignore[misc]
                        and not f.get("snapshot")
                        and f["readings"][-1]["seq"] >= i
                    ),
                )
                live[name].append([r["seq"] for r in frames[-1]["readings"]])
    assert live["plain"] == [[i] for i in range(1, n + 1)]
    assert live["overlap"] == [list(range(max(1, i - OVERLAP), i + 1)) for i in range(1, n + 1)]


async def test_detail_request_adds_source_detail(
    upstream: Upstream, start_bridge: StartBridge
) -> None:
    """{"type": "detail", "on": true} makes that viewer's status frames carry source_detail (the
    mapping and the last raw frame); "on": false stops it; other viewers never get it."""
    bridge = await start_bridge(upstream.url)
    await upstream.wait_connections(1)
    frame = json.dumps({"data": {"hr": 71, "ts": T0}})

    def is_status(f: dict[str, Any]) -> bool:
        return f.get("type") == "status"

    async with (
        asyncio.timeout(timeout(15)),
        connect(viewer_url(bridge)) as detail,
        connect(viewer_url(bridge)) as plain,
    ):
        await detail.send(json.dumps({"type": "detail", "on": True}))
        await wait_for(lambda: len(bridge.detail_viewers) == 1, what="detail viewer")
        await upstream.send(frame, frame, frame)
        frames = await read_until(
            detail,
            lambda f: (
                is_status(f)
                and "source_detail" in f
                and f["source_detail"]["mapping"]["value"] == "data.hr"
            ),
        )
        info = frames[-1]["source_detail"]
        assert info["last_frame"] == frame
        assert info["url"] == upstream.url
        plain_frames = await read_until(plain, lambda f: is_status(f) and f["mapping"]["value"])
        assert not any("source_detail" in f for f in plain_frames)
        await detail.send(json.dumps({"type": "detail", "on": False}))
        await wait_for(lambda: not bridge.detail_viewers, what="detail off")
        mark = int(bridge.clock() * 1000)  # status frames stamped later were sent after "off"
        later = await read_until(detail, lambda f: is_status(f) and f["now"] > mark, 3)
        assert "source_detail" not in later[-1]
