"""(c) Ingest: how many upstream frames per second hrdash turns into buffered readings.

* core: the pure path on one core, no I/O: :func:`hrdash.readings.parse_frame` +
  :meth:`hrdash.buffer.RingBuffer.append` on reference-format frames, and the bridge's own
  :class:`hrdash.upstream.FrameReader.feed` (what ``Bridge.on_frame`` calls) + append.
* bridge end to end: a local upstream sends N reference-format frames as fast as it can to a
  ``python -m hrdash bridge`` process (0 viewers); frames/s = N / (first frame sent → /healthz
  counts all N accepted).
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from typing import Any

from benchmarks.common import PY, CpuSampler, end, spawn
from tests.support import free_port, get_json, wait_port


def _frames(n: int) -> list[str]:
    base = int(time.time() * 1000)
    return [
        json.dumps({"time": base + 500 * i, "value": 60 + i % 80}, separators=(",", ":"))
        for i in range(n)
    ]


def core(n: int, repeats: int = 3) -> dict[str, Any]:
    from hrdash.buffer import RingBuffer
    from hrdash.readings import FieldMapping, Reading, parse_frame
    from hrdash.upstream import FrameReader

    frames = _frames(n)
    mapping = FieldMapping()
    now_ms = int(time.time() * 1000)
    parse_rates, reader_rates = [], []
    for _ in range(repeats):
        buf = RingBuffer(3600)
        t0 = time.perf_counter()
        for f in frames:
            r = parse_frame(f, mapping, now_ms)
            if isinstance(r, Reading):
                buf.append(r.time, r.bpm)
        parse_rates.append(n / (time.perf_counter() - t0))
        assert buf.last_seq == n
        buf = RingBuffer(3600)
        reader = FrameReader()
        t0 = time.perf_counter()
        now = time.monotonic()
        for f in frames:
            for r in reader.feed(f, now_ms, now):
                if isinstance(r, Reading):
                    buf.append(r.time, r.bpm)
        reader_rates.append(n / (time.perf_counter() - t0))
        assert buf.last_seq == n
    return {
        "frames": n,
        "repeats": repeats,
        "parse_frame_append_per_s": statistics.median(parse_rates),
        "frame_reader_append_per_s": statistics.median(reader_rates),
    }


async def _bridge_e2e(n: int, limit_s: float) -> dict[str, Any]:
    from websockets.asyncio.server import ServerConnection, serve

    frames = _frames(n)
    sent_at: dict[str, float] = {}
    connections = [0]

    async def handler(ws: ServerConnection) -> None:
        connections[0] += 1
        if connections[0] == 1:
            sent_at["start"] = time.monotonic()
            for f in frames:
                await ws.send(f)
            sent_at["end"] = time.monotonic()
        await ws.wait_closed()

    upstream = await serve(handler, "127.0.0.1", 0, compression=None)
    up_port = upstream.sockets[0].getsockname()[1]
    bridge_port = free_port()
    env = {
        "HRDASH_UPSTREAM_URL": f"ws://127.0.0.1:{up_port}/",
        "HRDASH_BRIDGE_PORT": str(bridge_port),
        "HRDASH_LOG_LEVEL": "warning",
        "HRDASH_UPSTREAM_SILENCE": "60",
    }
    bridge = spawn("ingest-bridge", [PY, "-m", "hrdash", "bridge"], env)
    out: dict[str, Any] = {"frames": n, "viewers": 0}
    try:
        await asyncio.to_thread(wait_port, bridge_port, 20, bridge.proc)
        sampler = CpuSampler([bridge.proc.pid])
        sampler.start()
        deadline = time.monotonic() + limit_s
        accepted = 0
        while time.monotonic() < deadline:
            health = await asyncio.to_thread(get_json, f"http://127.0.0.1:{bridge_port}/healthz")
            accepted = health["counters"]["accepted"]
            if accepted >= n:
                break
            await asyncio.sleep(0.02)
        done = time.monotonic()
        usage = sampler.stop()
        if "start" in sent_at:
            elapsed = done - sent_at["start"]
            out["seconds"] = round(elapsed, 3)
            out["frames_per_s"] = accepted / elapsed if elapsed > 0 else None
            if "end" in sent_at:
                out["sender_seconds"] = round(sent_at["end"] - sent_at["start"], 3)
        out["accepted"] = accepted
        out["complete"] = accepted >= n
        out["bridge_cpu_percent"] = usage["cpu_percent"]
        out["bridge_rss_max_mb"] = usage["rss_max_mb"]
    finally:
        end(bridge)
        upstream.close()
        await upstream.wait_closed()
    return out


def run(quick: bool) -> dict[str, Any]:
    return {
        "core": core(100_000 if quick else 500_000, repeats=3),
        "bridge": asyncio.run(_bridge_e2e(50_000 if quick else 200_000, 60 if quick else 180)),
    }


if __name__ == "__main__":
    import sys

    print(json.dumps(run("--quick" in sys.argv), indent=1))
