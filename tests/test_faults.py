"""Faults and hostile input at the bridge's edges: a chaotic upstream, garbage of every kind,
stalls, oversize frames, bursts, and viewers that come and go. Loopback only, bounded in time."""

from __future__ import annotations

import asyncio
import gc
import json
import tracemalloc
from typing import Any

from websockets.asyncio.client import connect
from websockets.frames import Frame, Opcode

from hrdash.readings import FRAME_REASONS
from tests.conftest import (
    StartBridge,
    Upstream,
    healthz,
    read_until,
    seqs_of,
    timeout,
    viewer_url,
    wait_for,
)

T0 = 1_764_000_000_000  # a plausible Unix ms time

SCRIPT = "<script>window.__x=1</script>"
# At least 20 kinds of garbage, each with the reason it must be rejected for.
GARBAGE: list[tuple[str, str | bytes]] = [
    ("not_json", "not json at all"),
    ("binary", b"\xff\xfe\x00garbage"),
    ("not_finite", '{"time": 1764000000000, "value": NaN}'),
    ("not_finite", '{"time": 1764000000000, "value": -Infinity}'),
    ("out_of_range", '{"time": 1764000000000, "value": 1e308}'),
    ("out_of_range", '{"time": 1764000000000, "value": ' + "9" * 400 + "}"),
    ("out_of_range", '{"time": 1764000000000, "value": -72}'),
    ("out_of_range", '{"time": 1764000000000, "value": 0}'),
    ("boolean", '{"time": 1764000000000, "value": false}'),
    ("not_numeric", '{"time": 1764000000000, "value": {"nested": [1, {"junk": null}]}}'),
    ("not_numeric", '{"time": 1764000000000, "value": [72]}'),
    ("not_json", "[" * 5000 + "]" * 5000),
    ("not_json", '{"time": 1764000000000, "value": 7'),
    ("not_json", '{"time": 1764000000000, "value": 72}}'),
    ("not_json", '{"value": 72, "time": 1764000000000,}'),
    ("not_numeric", '{"time": 1764000000000, "value": "7\\u00002"}'),
    ("not_json", '{"time": 1764000000000, "value": 72\x00}'),
    ("not_numeric", json.dumps({"time": T0, "value": SCRIPT})),
    ("bad_time", json.dumps({"time": SCRIPT, "value": 72})),
    ("bad_time", '{"time": -1764000000000, "value": 72}'),
    ("bad_time", '{"time": true, "value": 72}'),
    ("no_value", json.dumps({SCRIPT: 72, "time": T0})),
    ("no_value", "{}"),
    ("not_object", '"<img src=x onerror=alert(1)>"'),
    ("not_object", "null"),
    ("not_numeric", '{"time": 1764000000000, "value": "<b>72</b>"}'),
]


def valid(bpm: int, i: int) -> str:
    return json.dumps({"time": T0 + i * 10, "value": bpm, "note": SCRIPT})


def readings_of(frames: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for f in frames if f.get("type") == "readings" for r in f["readings"]]


def test_garbage_covers_twenty_kinds_and_every_parser_reason() -> None:
    """The garbage table has at least 20 kinds and exercises every reason the parser gives."""
    assert len(GARBAGE) >= 20
    assert {reason for reason, _ in GARBAGE} == set(FRAME_REASONS)


async def test_chaotic_upstream_relays_every_valid_reading_and_no_invalid_one(
    upstream: Upstream, start_bridge: StartBridge
) -> None:
    """Abrupt disconnects every second with garbage between valid frames: the bridge stays up,
    relays exactly the valid readings it received, in order, and counts every rejection."""
    bridge = await start_bridge(upstream.url)
    sent: list[int] = []
    expected: dict[str, int] = {}
    async with asyncio.timeout(timeout(30)), connect(viewer_url(bridge)) as viewer:
        await viewer.recv()  # snapshot
        i = 0
        for cycle in range(5):
            await upstream.wait_connections(cycle + 1, seconds=10)
            for reason, data in GARBAGE:
                bpm = 40 + (i % 150)
                await upstream.send(valid(bpm, i), data)
                sent.append(bpm)
                expected[reason] = expected.get(reason, 0) + 1
                i += 1
            count = len(sent)
            await wait_for(lambda: bridge.counters["accepted"] == count, 5, "accepted")  # noqa: B023
            # Abrupt cut: no close frame, the TCP connection just goes away.
            transport = upstream.connections[-1].transport
            assert transport is not None
            transport.abort()
        frames = await read_until(
            viewer, lambda f: len(readings_of([f])) > 0 and f["last_seq"] == len(sent), 10
        )
    relayed = readings_of(frames)
    assert [r["bpm"] for r in relayed] == sent
    assert seqs_of(frames) == list(range(1, len(sent) + 1))
    health = await healthz(bridge.port)
    assert health["counters"]["rejected_by_reason"] == expected
    assert health["counters"]["accepted"] == len(sent)
    assert health["counters"]["upstream_connects"] >= 5
    for frame in frames:
        assert SCRIPT not in json.dumps(frame)


async def test_stalled_upstream_is_noticed_and_replaced(
    upstream: Upstream, start_bridge: StartBridge
) -> None:
    """An upstream that stops sending and stops answering pings (but never closes) is noticed by
    the keepalive, reported, and reconnected to."""
    bridge = await start_bridge(
        upstream.url, ping_interval=0.3, ping_timeout=0.3, upstream_silence=30
    )
    first = await upstream.wait_connections(1)
    await upstream.send(valid(80, 0))
    await wait_for(lambda: bridge.counters["accepted"] == 1, 5)
    assert first.transport is not None
    first.transport.pause_reading()  # no more pongs, no close
    async with asyncio.timeout(timeout(10)), connect(viewer_url(bridge)) as viewer:
        frames = await read_until(
            viewer, lambda f: f.get("type") == "status" and f["upstream"] != "live", 5
        )
        assert frames[-1]["detail"]
        await upstream.wait_connections(2, seconds=5)
        await read_until(viewer, lambda f: f.get("type") == "status" and f["upstream"] == "live")
    first.transport.abort()


async def test_silent_upstream_is_reconnected(
    upstream: Upstream, start_bridge: StartBridge
) -> None:
    """An upstream that answers pings but sends no frame for upstream_silence seconds is
    dropped and reconnected, with the cause in the status."""
    bridge = await start_bridge(upstream.url, upstream_silence=0.5)
    await upstream.wait_connections(1)
    async with asyncio.timeout(timeout(10)), connect(viewer_url(bridge)) as viewer:
        frames = await read_until(
            viewer, lambda f: f.get("type") == "status" and "no frame" in f["detail"], 5
        )
        assert frames[-1]["upstream"] == "connecting"
        await upstream.wait_connections(2, seconds=5)


async def test_two_mib_frame_is_rejected_and_the_bridge_recovers(
    upstream: Upstream, start_bridge: StartBridge
) -> None:
    """A 2 MiB frame is counted too_large, the bridge reconnects and relays what follows."""
    bridge = await start_bridge(upstream.url)
    await upstream.wait_connections(1)
    big = json.dumps({"time": T0, "value": 72, "pad": "x" * (2 * 1024 * 1024)})
    await upstream.send(big)
    await upstream.wait_connections(2, seconds=5)
    await upstream.send(valid(99, 1))
    await wait_for(lambda: bridge.counters["accepted"] == 1, 5)
    assert bridge.rejects.counts == {"too_large": 1}
    assert [item.bpm for item in bridge.buffer] == [99]


def readings_frames(frames: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [f for f in frames if f.get("type") == "readings"]


def assert_frames_describe_themselves(frames: list[dict[str, Any]], first_seq: int) -> None:
    """Each live readings frame is contiguous, ends at its own last_seq and names the oldest seq
    the bridge holds as first_seq."""
    for frame in readings_frames(frames):
        seqs = [r["seq"] for r in frame["readings"]]
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), seqs
        assert frame["last_seq"] == seqs[-1]
        assert frame["first_seq"] == first_seq


async def test_burst_of_a_thousand_readings_arrives_whole(
    upstream: Upstream, start_bridge: StartBridge
) -> None:
    """1,000 readings sent one message at a time within a second all reach a viewer, once each,
    in order, in frames that each describe their own seq range."""
    bridge = await start_bridge(upstream.url, buffer=5000)
    await upstream.wait_connections(1)
    async with asyncio.timeout(timeout(20)), connect(viewer_url(bridge)) as viewer:
        await viewer.recv()
        for i in range(1000):
            await upstream.send(json.dumps({"time": T0 + i, "value": 40 + i % 200}))
        frames = await read_until(
            viewer, lambda f: f.get("type") == "readings" and f["last_seq"] == 1000, 15
        )
    relayed = readings_of(frames)
    assert [r["seq"] for r in relayed] == list(range(1, 1001))
    assert [r["bpm"] for r in relayed] == [40 + i % 200 for i in range(1000)]
    assert [r["time"] for r in relayed] == [T0 + i for i in range(1000)]
    assert_frames_describe_themselves(frames, first_seq=1)


async def test_readings_accepted_in_one_loop_iteration_go_out_as_one_frame(
    upstream: Upstream, start_bridge: StartBridge
) -> None:
    """What batching promises: every reading accepted within one event-loop iteration goes out in
    ONE readings frame (exact readings, contiguous seqs, first_seq/last_seq matching), sent on
    the next iteration; the next iteration's readings go out in the next frame."""
    bridge = await start_bridge(upstream.url, buffer=5000)
    async with asyncio.timeout(timeout(10)), connect(viewer_url(bridge)) as viewer:
        await read_until(viewer, lambda f: f.get("type") == "readings")
        for batch in range(3):
            for i in range(100):  # no await in between: one loop iteration
                bridge.on_frame(json.dumps({"time": T0 + 100 * batch + i, "value": 60 + i}))
            assert bridge.counters["accepted"] == 100 * (batch + 1)
            frames = await read_until(viewer, lambda f: f.get("type") == "readings")
            (frame,) = readings_frames(frames)
            assert [r["seq"] for r in frame["readings"]] == list(
                range(100 * batch + 1, 100 * batch + 101)
            )
            assert [r["bpm"] for r in frame["readings"]] == [60 + i for i in range(100)]
            assert [r["time"] for r in frame["readings"]] == [
                T0 + 100 * batch + i for i in range(100)
            ]
            assert (frame["first_seq"], frame["last_seq"]) == (1, 100 * (batch + 1))


async def test_burst_in_one_tcp_write_arrives_in_a_few_frames(
    upstream: Upstream, start_bridge: StartBridge
) -> None:
    """1,000 readings that the service writes in one TCP write reach a viewer in a handful of
    frames (one per socket read the bridge makes, not one per reading), whole and in order."""
    bridge = await start_bridge(upstream.url, buffer=5000)
    connection = await upstream.wait_connections(1)
    burst = b"".join(
        Frame(Opcode.TEXT, json.dumps({"time": T0 + i, "value": 40 + i % 200}).encode()).serialize(
            mask=False
        )
        for i in range(1000)
    )
    async with asyncio.timeout(timeout(20)), connect(viewer_url(bridge)) as viewer:
        await viewer.recv()
        assert connection.transport is not None
        connection.transport.write(burst)  # server frames are unmasked: the bytes on the wire
        frames = await read_until(
            viewer, lambda f: f.get("type") == "readings" and f["last_seq"] == 1000, 15
        )
    relayed = readings_of(frames)
    assert [r["seq"] for r in relayed] == list(range(1, 1001))
    assert [r["bpm"] for r in relayed] == [40 + i % 200 for i in range(1000)]
    assert_frames_describe_themselves(frames, first_seq=1)
    count = len(readings_frames(frames))
    assert count <= 5, f"1,000 readings read together went out in {count} frames"


async def test_viewer_churn_leaks_no_task_and_no_memory(
    upstream: Upstream, start_bridge: StartBridge
) -> None:
    """1,000 viewer connect/disconnect cycles leave no viewer, no task and no memory behind."""
    bridge = await start_bridge(upstream.url)
    await upstream.wait_connections(1)
    url = viewer_url(bridge)

    async def cycle(n: int) -> None:
        for _ in range(n):
            async with connect(url, compression=None) as ws:
                await ws.recv()

    async with asyncio.timeout(timeout(120)):
        await cycle(100)  # warm up caches and pools
        await wait_for(lambda: not bridge.viewers, 5)
        gc.collect()
        tasks_before = len(asyncio.all_tasks())
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        await cycle(1000)
        await wait_for(lambda: not bridge.viewers, 5)
        gc.collect()
        after = tracemalloc.get_traced_memory()[0]
        tracemalloc.stop()
    assert bridge.counters["viewers_connected"] == 1100
    assert len(asyncio.all_tasks()) <= tasks_before
    assert after - before < 256 * 1024, f"grew {after - before} bytes over 1,000 viewers"


async def test_bridge_binds_loopback_by_default(
    upstream: Upstream, start_bridge: StartBridge
) -> None:
    """With default settings the bridge listens on 127.0.0.1 only."""
    bridge = await start_bridge(upstream.url)
    assert bridge.server is not None
    assert {sock.getsockname()[0] for sock in bridge.server.sockets} == {"127.0.0.1"}


def test_bridge_process_survives_viewers_that_vanish_mid_stream() -> None:
    """`hrdash bridge` (a real process) keeps running when viewers close their sockets without a
    close frame while readings are being written to them (no death by SIGPIPE)."""
    import os
    import socket
    import subprocess
    import sys
    import time

    from tests.support import free_port, wait_port

    sim_port, bridge_port = free_port(), free_port()
    env = {
        **os.environ,
        "HRDASH_SIMULATOR_PORT": str(sim_port),
        "HRDASH_BRIDGE_PORT": str(bridge_port),
        "HRDASH_SIMULATOR_PERIOD": "0.02",
        "HRDASH_LOG_LEVEL": "warning",
    }
    procs = [
        subprocess.Popen([sys.executable, "-m", "hrdash", command], env=env)
        for command in ("simulate", "bridge")
    ]
    try:
        wait_port(sim_port, 10)
        wait_port(bridge_port, 10)
        handshake = (
            b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            b"Sec-WebSocket-Version: 13\r\n\r\n"
        )
        for _ in range(15):
            with socket.create_connection(("127.0.0.1", bridge_port), timeout=5) as sock:
                sock.sendall(handshake)
                assert sock.recv(4096).startswith(b"HTTP/1.1 101")
            time.sleep(0.2)  # the bridge writes readings into the closed socket meanwhile
            assert procs[1].poll() is None, f"bridge died with status {procs[1].returncode}"
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(timeout=10)
