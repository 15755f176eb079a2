"""A load or probe process for the fan-out benchmark (run by ``benchmarks/fanout.py``).

``python -m benchmarks._load load URL N``: open N bridge viewers (websockets asyncio clients,
compression off) in batches, read every frame (a viewer that does not read would be dropped as
slow), print one JSON line ``{"ready": n, "failed": m}``, then keep reading until SIGTERM, and
close everything.

``python -m benchmarks._load probe URL N SECONDS``: open N viewers, and for SECONDS record for
every live reading its delivery age (receive wall time - reading ``time``, ms), gaps and
duplicates by seq; print one JSON object at the end.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
import time
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

from benchmarks.common import raise_nofile

BATCH = 100
CONNECT_TIMEOUT = 30.0
RETRIES = 3


async def _open(url: str) -> ClientConnection | None:
    for attempt in range(RETRIES):
        try:
            return await connect(
                url,
                compression=None,
                open_timeout=CONNECT_TIMEOUT,
                ping_interval=None,  # the bridge pings us; our pongs are automatic
                max_size=2**22,
                max_queue=64,
            )
        except Exception:
            await asyncio.sleep(0.2 * (attempt + 1))
    return None


async def _drain(ws: ClientConnection, counts: list[int]) -> None:
    with contextlib.suppress(Exception):
        async for _ in ws:
            counts[0] += 1


async def load(url: str, n: int) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    conns: list[ClientConnection] = []
    tasks: list[asyncio.Task[None]] = []
    counts = [0]
    failed = 0
    while len(conns) + failed < n and not stop.is_set():
        size = min(BATCH, n - len(conns) - failed)
        for ws in await asyncio.gather(*(_open(url) for _ in range(size))):
            if ws is None:
                failed += 1
            else:
                conns.append(ws)
                tasks.append(asyncio.create_task(_drain(ws, counts)))
    closed_early = sum(1 for ws in conns if ws.close_code is not None)
    print(json.dumps({"ready": len(conns), "failed": failed, "closed": closed_early}), flush=True)
    await stop.wait()
    for task in tasks:
        task.cancel()
    for ws in conns:  # abort: a close handshake with thousands of peers is not the point here
        if ws.transport is not None:
            ws.transport.abort()
    print(json.dumps({"messages": counts[0]}), flush=True)


async def probe(url: str, n: int, seconds: float) -> None:
    result: dict[str, Any] = {"ages_ms": [], "gaps": 0, "duplicates": 0, "readings": 0}
    result["probes"] = []

    async def one(ws: ClientConnection, deadline: float) -> None:
        last: int | None = None
        first = True
        mine = {"readings": 0, "gaps": 0, "duplicates": 0}
        with contextlib.suppress(Exception):
            while time.monotonic() < deadline:
                async with asyncio.timeout(max(0.01, deadline - time.monotonic())):
                    message = await ws.recv()
                now = time.time() * 1000
                frame = json.loads(message)
                if frame.get("type") != "readings":
                    continue
                for r in frame.get("readings") or []:
                    seq = r["seq"]
                    if last is not None:
                        if seq <= last:
                            mine["duplicates"] += 1
                            continue
                        if seq > last + 1:
                            mine["gaps"] += seq - last - 1
                    last = seq
                    if not first:  # the snapshot on connect holds old readings: not an age
                        result["ages_ms"].append(round(now - r["time"], 2))
                        mine["readings"] += 1
                first = False
        result["probes"].append(mine)

    conns = [ws for ws in await asyncio.gather(*(_open(url) for _ in range(n))) if ws]
    deadline = time.monotonic() + seconds
    await asyncio.gather(*(one(ws, deadline) for ws in conns))
    for key in ("readings", "gaps", "duplicates"):
        result[key] = sum(p[key] for p in result["probes"])
    result["connected"] = len(conns)
    for ws in conns:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(ws.close(), 2)
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    raise_nofile()
    mode, url, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    if mode == "load":
        asyncio.run(load(url, count))
    else:
        asyncio.run(probe(url, count, float(sys.argv[4])))
